"""The app's routes: the page, its options and models, uploads, jobs and trainings.

Handlers check what the page sends (:mod:`.forms`, :mod:`.catalog`,
:mod:`.uploads`), queue the work and answer at once; anything slow or touching
torch runs on a thread, never on the event loop.
"""

from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from ..errors import UserError
from .catalog import INSTRUMENT, VOICE, checked_model_name, model_entries
from .forms import optional_number, read_json, settings_from
from .jobs import JobRunner
from .sessions import Session, SessionStore, Upload
from .training import PREVIEWS, RECIPE, Trainings, checked_spec
from .uploads import UploadLimits, check_declared_size, check_upload, display_name, save_limited
from .work import EXPORT_SUFFIXES, convert_work, export_work, play_work, transfer_work

STATIC = Path(__file__).parent / "static"


@dataclass
class Studio:
    """Everything the routes share."""

    store: SessionStore
    jobs: JobRunner
    trainings: Trainings
    limits: UploadLimits


def _session(request: Request) -> Session:
    return request.state.session


def _studio(request: Request) -> Studio:
    return request.app.state.studio


# ---- the page, examples, options, models ------------------------------------------------------
async def index(request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers={"cache-control": "no-cache"})


def _examples() -> dict[str, Path]:
    from ..models import example_input, example_voice

    return {"example": example_input(), "example_speech": example_voice()}


async def example(request: Request) -> Response:
    path = _examples().get(request.path_params["name"])
    if path is None:
        raise HTTPException(404)
    return FileResponse(path, media_type="audio/flac")


async def options(request: Request) -> JSONResponse:
    """The controls' defaults and limits, from the library's own definitions."""
    from ..adjust import AUTOTUNE_MODES, Adjustments
    from ..adjust import LIMITS as ADJUST_LIMITS
    from ..config import load_config
    from ..play import LIMITS as PLAY_LIMITS
    from ..play import Performance
    from ..voice.convert import CONTROL_RANGES

    recipe = load_config(RECIPE).train
    limits = _studio(request).limits
    return JSONResponse(
        {
            "transfer": {
                "defaults": asdict(Adjustments()),
                "limits": ADJUST_LIMITS,
                "autotune_modes": AUTOTUNE_MODES,
            },
            "play": {"defaults": asdict(Performance()), "limits": PLAY_LIMITS},
            "voice": {"limits": CONTROL_RANGES},
            "train": {"recipe": RECIPE, "steps": recipe.steps, "max_minutes": recipe.max_minutes},
            "upload_bytes": asdict(limits),
            "export_formats": list(EXPORT_SUFFIXES),
        }
    )


async def models(request: Request) -> JSONResponse:
    from ..models import user_models_dir

    entries = await run_in_threadpool(model_entries)
    listed = [asdict(entry) for entry in entries]
    return JSONResponse({"models": listed, "user_models_dir": str(user_models_dir())})


# ---- uploads ----------------------------------------------------------------------------------
async def upload(request: Request) -> JSONResponse:
    """The raw body is the file; ``?kind=audio|recording|midi&name=<the browser's name>``."""
    from ..data.prepare import AUDIO_EXTENSIONS

    kind, name = request.query_params.get("kind"), display_name(request.query_params.get("name"))
    limit = _studio(request).limits.of(kind)
    check_declared_size(name, request.headers.get("content-length"), limit)
    suffix = Path(name).suffix.lower()
    suffix = ".mid" if kind == "midi" else suffix if suffix in AUDIO_EXTENSIONS else ".wav"
    session = _session(request)
    upload_id, path = session.new_upload_path(suffix)
    await save_limited(request.stream(), path, name, limit)
    try:
        info = await run_in_threadpool(check_upload, path, name, kind)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    session.add_upload(Upload(upload_id, name, kind, path, info))
    return JSONResponse({"id": upload_id, "name": name, "kind": kind, **info})


def _input(session: Session, value: object) -> tuple[Path, str]:
    """An upload of this session, or a bundled example: (path, name for messages)."""
    examples = _examples()
    if isinstance(value, str) and value in examples:
        return examples[value], examples[value].name
    found = session.upload(value, ("audio",))
    return found.path, found.name


async def _submit(request: Request, kind: str, work) -> JSONResponse:
    session = _session(request)
    job = _studio(request).jobs.submit(session.id, session.folder, kind, work)
    return JSONResponse(job.to_json(), status_code=202)


# ---- jobs ------------------------------------------------------------------------------------
async def transfer(request: Request) -> JSONResponse:
    from ..adjust import Adjustments

    body = await read_json(request)
    source, name = _input(_session(request), body.get("input"))
    model = await run_in_threadpool(checked_model_name, body.get("model"), INSTRUMENT)
    settings = settings_from(Adjustments, body.get("settings"), "transfer")
    return await _submit(request, "transfer", transfer_work(model, source, name, settings))


async def play(request: Request) -> JSONResponse:
    from ..play import Performance

    body = await read_json(request)
    found = _session(request).upload(body.get("midi"), ("midi",))
    model = await run_in_threadpool(checked_model_name, body.get("model"), INSTRUMENT)
    performance = settings_from(Performance, body.get("settings"), "play")
    part = {key: optional_number(body, key, 1, 65535) for key in ("track", "channel")}
    if any(value is not None and value != int(value) for value in part.values()):
        raise UserError("track and channel must be whole numbers")
    part = {key: None if value is None else int(value) for key, value in part.items()}
    work = play_work(model, found.path, found.name, performance, part)
    return await _submit(request, "play", work)


async def convert(request: Request) -> JSONResponse:
    from ..voice.convert import CONTROL_RANGES

    body = await read_json(request)
    source, name = _input(_session(request), body.get("input"))
    model = await run_in_threadpool(checked_model_name, body.get("model"), VOICE)
    controls = {key: optional_number(body, key, *CONTROL_RANGES[key]) for key in CONTROL_RANGES}
    work = convert_work(model, source, name, controls)
    return await _submit(request, "conversion", work)


async def export(request: Request) -> JSONResponse:
    body = await read_json(request)
    export_format = body.get("format")
    if export_format not in EXPORT_SUFFIXES:
        raise UserError(f"choose an export format: {' or '.join(EXPORT_SUFFIXES)}")
    entries = {entry.name: entry for entry in await run_in_threadpool(model_entries)}
    entry = entries.get(body.get("model")) if isinstance(body.get("model"), str) else None
    if entry is None:
        raise UserError(f"unknown model: choose one of {', '.join(entries)}")
    return await _submit(request, "export", export_work(entry.name, entry.kind, export_format))


async def job_status(request: Request) -> JSONResponse:
    return JSONResponse(_job(request).to_json())


async def job_file(request: Request) -> Response:
    job, name = _job(request), request.path_params["file"]
    if name not in job.output.files:
        raise HTTPException(404)
    headers = {}
    if request.query_params.get("download"):
        download = quote(job.output.download_name(name))
        headers["content-disposition"] = f"attachment; filename*=UTF-8''{download}"
    return FileResponse(job.folder / name, headers=headers)


def _job(request: Request):
    job = _studio(request).jobs.get(_session(request).id, request.path_params["job_id"])
    if job is None:  # unknown, or another session's: the same answer
        raise HTTPException(404)
    return job


# ---- trainings --------------------------------------------------------------------------------
async def trainings(request: Request) -> JSONResponse:
    statuses = await run_in_threadpool(_studio(request).trainings.statuses)
    return JSONResponse({"trainings": statuses})


async def start_training(request: Request) -> JSONResponse:
    body = await read_json(request)
    session = _session(request)
    if body.get("folder"):
        recordings, uploads = _local_folder(request, body["folder"]), []
    else:
        ids = body.get("uploads")
        if not isinstance(ids, list) or not ids or len(ids) > 1000:
            raise UserError("add recordings: upload audio files or give a folder")
        uploads = [session.upload(upload_id, ("recording",)) for upload_id in ids]
        recordings = Path()  # the training's own folder, once the uploads are moved there
    spec = checked_spec(body.get("name"), recordings, body.get("steps"), body.get("max_minutes"))
    started = await run_in_threadpool(_studio(request).trainings.start, spec, uploads)
    return JSONResponse(await run_in_threadpool(started.status), status_code=202)


def _local_folder(request: Request, text: object) -> Path:
    """A folder on the server's disk, given only by a browser on the same computer."""
    if request.client is None or not is_loopback(request.client.host):
        raise UserError("a folder can be given only on the server's own computer: upload instead")
    if not isinstance(text, str) or "\0" in text:
        raise UserError("give the folder as a full path")
    path = Path(text).expanduser()
    if not path.is_absolute() or not path.is_dir():
        raise UserError(f"{text[:200]} is not a folder here: give its full path")
    return path.resolve()


async def stop_training(request: Request) -> JSONResponse:
    training = _studio(request).trainings.get(request.path_params["name"])
    if not training.running:
        raise UserError(f"{training.spec.name} is not running")
    training.stop()
    return JSONResponse(await run_in_threadpool(training.status))


async def resume_training(request: Request) -> JSONResponse:
    resumed = await run_in_threadpool(
        _studio(request).trainings.resume, request.path_params["name"]
    )
    return JSONResponse(await run_in_threadpool(resumed.status), status_code=202)


async def preview(request: Request) -> Response:
    training = _studio(request).trainings.get(request.path_params["name"])
    which = request.path_params["which"]
    found = None
    if which in PREVIEWS:
        found = await run_in_threadpool(training.events.preview, request.path_params["step"], which)
    if found is None:
        raise HTTPException(404)
    return Response(found, media_type="audio/wav")


def is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


ROUTES = [
    Route("/", index),
    Mount("/static", StaticFiles(directory=STATIC), name="static"),
    Route("/api/options", options),
    Route("/api/models", models),
    Route("/api/examples/{name}", example),
    Route("/api/uploads", upload, methods=["POST"]),
    Route("/api/transfer", transfer, methods=["POST"]),
    Route("/api/play", play, methods=["POST"]),
    Route("/api/convert", convert, methods=["POST"]),
    Route("/api/export", export, methods=["POST"]),
    Route("/api/jobs/{job_id}", job_status),
    Route("/api/jobs/{job_id}/{file}", job_file),
    Route("/api/trainings", trainings),
    Route("/api/trainings", start_training, methods=["POST"]),
    Route("/api/trainings/{name}/stop", stop_training, methods=["POST"]),
    Route("/api/trainings/{name}/resume", resume_training, methods=["POST"]),
    Route("/api/trainings/{name}/previews/{step:int}/{which}", preview),
]
