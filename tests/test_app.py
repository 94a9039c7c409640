"""`torchddsp app` at the HTTP level: routes, jobs, sessions, validation, and a real server
stopped in the middle of a training."""

import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import asdict

import numpy as np
import pytest
import soundfile as sf
import torch
from starlette.requests import Request
from starlette.testclient import TestClient

from torchddsp.adjust import LIMITS, Adjustments
from torchddsp.app import routes
from torchddsp.app.server import create_app
from torchddsp.app.sessions import SessionStore
from torchddsp.app.uploads import MB, UploadLimits
from torchddsp.cli import main
from torchddsp.config import config_to_dict, load_config
from torchddsp.data.midi import NOTE_OFF, NOTE_ON, TEMPO, MidiEvent, MidiFile, midi_bytes
from torchddsp.errors import UserError
from torchddsp.features import CONFIDENT, compute_features
from torchddsp.models import example_input
from torchddsp.models.saved import FORMAT, VERSION, list_checkpoints
from torchddsp.models.trained import pretrained_dir
from torchddsp.models.voice import VoiceAutoencoder

pytestmark = pytest.mark.usefixtures("single_thread")
PAGE = {"X-Torchddsp": "1"}
SAMPLE_RATE = 16000


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """The app's data and work folders, and an empty user models folder for this module."""
    root = tmp_path_factory.mktemp("app")
    previous = os.environ.get("TORCHDDSP_MODELS")
    os.environ["TORCHDDSP_MODELS"] = str(root / "models")
    yield root
    if previous is None:
        del os.environ["TORCHDDSP_MODELS"]
    else:
        os.environ["TORCHDDSP_MODELS"] = previous


@pytest.fixture(scope="module")
def client(folders):
    limits = UploadLimits(audio=2 * MB, recording=2 * MB, midi=1024)
    app = create_app(folders / "data", folders / "work", limits=limits)
    with TestClient(app, client=("127.0.0.1", 50000)) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """The first 3 s of the bundled example melody, as a WAV file."""
    audio, rate = sf.read(example_input(), dtype="float32")
    path = tmp_path_factory.mktemp("clip") / "take.wav"
    sf.write(path, audio[: 3 * rate], rate)
    return path


def _upload(client, path, kind="audio", name=None):
    query = {"kind": kind, "name": name or path.name}
    return client.post("/api/uploads", params=query, content=path.read_bytes(), headers=PAGE)


def _post(client, route, payload):
    return client.post(route, json=payload, headers=PAGE)


def _finish(client, job, timeout=120.0):
    deadline = time.monotonic() + timeout
    while job["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, f"job {job['id']} still {job['status']}"
        time.sleep(0.1)
        job = client.get(f"/api/jobs/{job['id']}").json()
    return job


def _wav(client, url):
    response = client.get(url)
    assert response.status_code == 200 and response.content[:4] == b"RIFF"
    audio, rate = sf.read(io.BytesIO(response.content), dtype="float32")
    return audio, rate


def _pitch_classes_agree(output, source, rate):
    """Median distance in cents, modulo octaves, between the notes of two takes."""
    tracks = []
    for audio in (output, source):
        n = len(audio) // 160 * 160
        features = compute_features(torch.from_numpy(audio[None, :n]), rate, 100)
        tracks.append(features)
    frames = (tracks[0]["f0_confidence"][0] >= CONFIDENT) & (
        tracks[1]["f0_confidence"][0] >= CONFIDENT
    )
    cents = 1200 * torch.log2(tracks[0]["f0_hz"][0][frames] / tracks[1]["f0_hz"][0][frames])
    folded = torch.remainder(cents + 600, 1200) - 600
    return int(frames.sum()), float(folded.abs().median())


# ---- the page ---------------------------------------------------------------------------------
def test_the_page_and_its_files_come_from_the_app_alone(client):
    page = client.get("/")
    assert page.status_code == 200 and "torchddsp_session" in page.cookies
    csp = page.headers["content-security-policy"]
    assert "default-src 'self'" in csp and "http" not in csp
    assets = re.findall(r'(?:src|href)="([^"#]+)"', page.text)
    assert set(assets) == {"/static/icon.svg", "/static/app.css", "/static/app.js"}
    for asset in ["/", *assets]:
        response = client.get(asset)
        assert response.status_code == 200
        text = response.text.replace('xmlns="http://www.w3.org/2000/svg"', "")  # a name, not a load
        for outside in ("http://", "https://", "@import", "url("):
            assert outside not in text, f"{asset} refers to {outside}"


def test_options_are_the_librarys_own(client):
    options = client.get("/api/options").json()
    transfer = options["transfer"]
    assert transfer["defaults"] == asdict(Adjustments())
    assert {k: tuple(v) for k, v in transfer["limits"].items()} == LIMITS
    assert options["train"]["recipe"] == "solo_instrument_fast"


def test_the_model_list_is_torchddsp_models(client):
    listed = client.get("/api/models").json()["models"]
    names = {m["name"]: m for m in listed}
    assert {"violin", "flute", "trumpet", "tenor_sax"} <= set(names)
    assert names["violin"]["kind"] == "instrument" and names["violin"]["origin"] == "bundled"


# ---- jobs ---------------------------------------------------------------------------------------
def test_transfer_returns_a_wav_whose_pitch_follows_the_input(client, clip):
    upload = _upload(client, clip).json()
    assert upload["seconds"] == pytest.approx(3.0) and upload["sample_rate"] == SAMPLE_RATE
    settings = {"autotune": 0.6, "autotune_mode": "chromatic", "octave_shift": -1, "quiet": 30}
    payload = {"input": upload["id"], "model": "flute", "settings": settings}
    job = _finish(client, client.post("/api/transfer", json=payload, headers=PAGE).json())
    assert job["status"] == "done" and "flute" in job["summary"]
    audio, rate = _wav(client, job["files"]["output.wav"])
    source, _ = sf.read(clip, dtype="float32")
    assert rate == SAMPLE_RATE and len(audio) == len(source)
    assert np.sqrt(np.mean(audio**2)) > 0.01
    frames, cents = _pitch_classes_agree(audio, source, rate)
    assert frames > 50 and cents < 60  # autotune moves notes by at most 50 cents
    plot = client.get(job["files"]["plot.png"])
    assert plot.content[:8] == b"\x89PNG\r\n\x1a\n"
    download = client.get(job["files"]["output.wav"] + "?download=1")
    assert download.headers["content-disposition"] == "attachment; filename*=UTF-8''take.flute.wav"


def test_five_transfers_at_once_complete_and_the_server_keeps_answering(client, clip):
    upload = _upload(client, clip).json()
    models = ["violin", "flute", "trumpet", "tenor_sax", "violin"]
    jobs = [
        client.post("/api/transfer", json={"input": upload["id"], "model": m}, headers=PAGE).json()
        for m in models
    ]
    assert all(job["status"] in ("queued", "running") for job in jobs)
    started = time.monotonic()
    assert client.get("/api/models").status_code == 200
    assert time.monotonic() - started < 2.0  # the event loop is not computing transfers
    finished = [_finish(client, job) for job in jobs]
    assert [job["status"] for job in finished] == ["done"] * 5
    for job in finished:
        audio, _ = _wav(client, job["files"]["output.wav"])
        assert len(audio) == 3 * SAMPLE_RATE and np.sqrt(np.mean(audio**2)) > 0.01


def _midi_file(path):
    events = [MidiEvent(0, TEMPO, value=500_000)]
    for k, pitch in enumerate((69, 72, 76)):
        events += [MidiEvent(480 * k, NOTE_ON, 0, pitch, 100)]
        events += [MidiEvent(480 * (k + 1), NOTE_OFF, 0, pitch, 0)]
    path.write_bytes(midi_bytes(MidiFile(480, events, end_tick=3 * 480)))
    return path


def test_play_renders_a_midi_file(client, tmp_path):
    upload = _upload(client, _midi_file(tmp_path / "line.mid"), kind="midi").json()
    assert upload["notes"] == 3
    settings = {"vibrato_cents": 20.0, "release_s": 0.2}
    payload = {"midi": upload["id"], "model": "violin", "settings": settings, "channel": 1}
    job = _finish(client, client.post("/api/play", json=payload, headers=PAGE).json())
    assert job["status"] == "done" and "3 notes" in job["summary"]
    audio, rate = _wav(client, job["files"]["output.wav"])
    assert len(audio) == round((1.5 + 0.2) * 100) * 160 and np.sqrt(np.mean(audio**2)) > 0.01
    payload["channel"] = 2  # no notes there: the library's sentence, with the browser's name
    job = _finish(client, client.post("/api/play", json=payload, headers=PAGE).json())
    assert job["status"] == "failed"
    expected = "line.mid: channel 2 has no melodic notes; they are on track 1, channel 1"
    assert job["message"] == expected


def test_export_for_nn_and_a_missing_neutone_sdk_in_one_sentence(client, monkeypatch):
    job = client.post("/api/export", json={"model": "violin", "format": "nn"}, headers=PAGE)
    job = _finish(client, job.json())
    assert job["status"] == "done" and list(job["files"]) == ["violin.ts"]
    scripted = torch.jit.load(io.BytesIO(client.get(job["files"]["violin.ts"]).content))
    assert scripted.get_latency() > 0
    monkeypatch.setitem(sys.modules, "neutone_sdk", None)
    monkeypatch.setitem(sys.modules, "neutone_sdk.utils", None)
    job = client.post("/api/export", json={"model": "violin", "format": "neutone"}, headers=PAGE)
    job = _finish(client, job.json())
    assert job["status"] == "failed" and "pip install 'torchddsp[neutone]'" in job["message"]
    assert "\n" not in job["message"]


def _save_voice_model(path):
    tiny = ["model.mlp_units=16", "model.gru_units=16", "model.encoder_gru_units=8"]
    config = load_config("voice_fast", [*tiny, "model.n_mfcc=13"])
    model = VoiceAutoencoder(config.model, config.data.sample_rate, config.data.frame_rate)
    dataset = {"settings": {"f0_method": "yin"}, "statistics": None}
    contents = {"format": FORMAT, "version": VERSION, "torchddsp_version": "test", "step": 0}
    contents |= {"model": model.state_dict(), "config": config_to_dict(config), "dataset": dataset}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(contents, path)


@pytest.fixture
def without_bundled_voice(monkeypatch, tmp_path):
    """The bundled files less a bundled voice model, where one ships."""
    folder = tmp_path / "pretrained"
    folder.mkdir()
    for path in pretrained_dir().iterdir():
        if path.stem != "voice":
            (folder / path.name).symlink_to(path)
    monkeypatch.setattr("torchddsp.models.trained.pretrained_dir", lambda: folder)


def test_voice_says_none_is_installed_then_converts_with_one(
    client, folders, without_bundled_voice
):
    payload = {"input": "example_speech", "model": "voice", "gender": 1.0}
    refused = client.post("/api/convert", json=payload, headers=PAGE)
    assert refused.status_code == 400 and refused.json()["error"] == "no voice model is installed"
    voice = folders / "models" / "voice.pt"
    _save_voice_model(voice)
    try:
        kinds = {m["name"]: m["kind"] for m in client.get("/api/models").json()["models"]}
        assert kinds["voice"] == "voice"
        for shift, said in ((None, "pitch shift +"), (-2.5, "pitch shift -2.5 semitones")):
            job = _post(client, "/api/convert", {**payload, "pitch_shift": shift}).json()
            job = _finish(client, job)
            assert job["status"] == "done" and "gender 1.00" in job["summary"]
            assert said in job["summary"]  # unset: the pitch follows the voice, up for a woman's
        audio, rate = _wav(client, job["files"]["output.wav"])
        assert len(audio) == 4 * rate
        bad = client.post("/api/convert", json={**payload, "age": 7}, headers=PAGE).json()
        assert bad["error"] == "age must be a number within 0 .. 1"
    finally:
        voice.unlink()


# ---- robustness ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "name, content, kind, status, message",
    [
        ("notes.txt", b"not audio at all", "audio", 400, "notes.txt is not an audio file"),
        ("empty.wav", b"", "audio", 400, "empty.wav is empty"),
        ("big.wav", b"\0" * (2 * MB + 1), "audio", 413, "big.wav is 2.0 MB, more than the 2 MB"),
        ("song.mid", b"RIFF0000WAVE", "midi", 400, "song.mid is not a MIDI file"),
        ("song.mid", b"MThd\0\0\0\6\0", "midi", 400, "song.mid is not a readable MIDI file"),
        ("song.mid", b"MThd\0\0\0\6\0\0\0\1\1\xe0", "midi", 400, "song.mid has no notes"),
        ("../../x.wav", b"", "audio", 400, "x.wav is empty"),
        ("x.wav", b"RIFF", "video", 400, "unknown upload kind"),
    ],
)
def test_bad_uploads_get_one_sentence_and_the_server_keeps_serving(
    client, name, content, kind, status, message
):
    query = {"kind": kind, "name": name}
    response = client.post("/api/uploads", params=query, content=content, headers=PAGE)
    assert response.status_code == status
    error = response.json()["error"]
    assert error.startswith(message) and "\n" not in error
    assert client.get("/api/models").status_code == 200
    assert not list((client.app.state.studio.store.root).glob("*/uploads/*.txt"))


def test_an_upload_without_a_declared_size_stops_at_the_limit(client):
    chunks = (b"\0" * 65536 for _ in range(40))  # 2.5 MB, sent chunked
    query = {"kind": "audio", "name": "stream.wav"}
    response = client.post("/api/uploads", params=query, content=chunks, headers=PAGE)
    assert response.status_code == 413 and "stream.wav is over" in response.json()["error"]


@pytest.mark.parametrize(
    "model",
    ["../../../etc/passwd", str(example_input().parent / "violin.pt"), "violin.pt", "", None, []],
)
def test_a_model_name_never_reaches_the_filesystem(client, model):
    for route, payload in (
        ("/api/transfer", {"input": "example", "model": model}),
        ("/api/export", {"model": model, "format": "nn"}),
    ):
        response = client.post(route, json=payload, headers=PAGE)
        assert response.status_code == 400
        assert response.json()["error"].startswith("unknown")
    assert client.get("/api/models").status_code == 200


def test_requests_from_elsewhere_and_bad_settings_are_refused(client):
    payload = {"input": "example", "model": "violin"}
    forged = client.post("/api/transfer", json=payload)  # a cross-site form cannot set the header
    assert forged.status_code == 403
    for settings, message in (
        ({"autotune": 2}, "autotune must be within [0, 1], found 2"),
        ({"octave_shift": 0.5}, "octave_shift must be a whole number, found 0.5"),
        ({"auto_adjust": "yes"}, "auto_adjust must be true or false, found 'yes'"),
        ({"bogus": 1}, "unknown transfer setting 'bogus'"),
    ):
        response = _post(client, "/api/transfer", {**payload, "settings": settings})
        assert response.json() == {"error": message}
    bad_json = client.post("/api/transfer", content=b"{", headers=PAGE)
    assert bad_json.json() == {"error": "the request is not valid JSON"}


def test_a_failing_job_is_one_sentence_and_the_traceback_goes_to_the_log(
    client, monkeypatch, caplog
):
    def broken(*args):
        def work(folder):
            raise RuntimeError("a bug")

        return work

    monkeypatch.setattr("torchddsp.app.routes.transfer_work", broken)
    job = client.post("/api/transfer", json={"input": "example", "model": "violin"}, headers=PAGE)
    job = _finish(client, job.json())
    assert job["message"] == "The transfer failed on an unexpected error; see the server's log."
    assert "RuntimeError: a bug" in caplog.text


def test_sessions_are_kept_apart(client, clip):
    upload = _upload(client, clip).json()
    payload = {"input": upload["id"], "model": "violin"}
    job = _finish(client, _post(client, "/api/transfer", payload).json())
    mine = client.cookies["torchddsp_session"]
    client.cookies.clear()  # another browser
    assert client.get(f"/api/jobs/{job['id']}").status_code == 404
    assert client.get(job["files"]["output.wav"]).status_code == 404
    stolen = _post(client, "/api/transfer", payload)
    assert stolen.json() == {"error": "that file is no longer here: upload it again"}
    assert client.cookies["torchddsp_session"] != mine
    client.cookies.clear()  # the first browser again
    client.cookies.set("torchddsp_session", mine)
    assert client.get(f"/api/jobs/{job['id']}").status_code == 200


def test_idle_sessions_are_removed_unless_busy(tmp_path):
    store = SessionStore(tmp_path / "work", idle_seconds=0.0)
    idle, _ = store.open(None)
    busy, _ = store.open(None)
    (idle.folder / "uploads").mkdir()
    time.sleep(0.01)
    assert store.sweep(busy=lambda session_id: session_id == busy.id) == [idle.id]
    assert not idle.folder.exists() and busy.folder.exists()
    again, new = store.open(idle.id)  # an expired cookie gets a new session, not the old id
    assert new and again.id != idle.id
    store.close()
    assert not (tmp_path / "work").exists()


def test_the_app_command_names_the_missing_dependency(monkeypatch, capsys):
    monkeypatch.delitem(sys.modules, "torchddsp.app.server")
    monkeypatch.setitem(sys.modules, "starlette", None)
    monkeypatch.setitem(sys.modules, "starlette.applications", None)
    assert main(["app"]) == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "torchddsp app: error: the app needs starlette: pip install 'torchddsp[app]'"
    )


def test_training_requests_are_checked(client, tmp_path, clip):
    recording = _upload(client, clip, kind="recording").json()["id"]
    folder = str(tmp_path)
    for payload, message in (
        ({"name": "../x", "folder": folder}, "name the model with letters, digits, - or _"),
        ({"name": "cello", "folder": folder, "steps": 0}, "steps must be a whole number"),
        ({"name": "cello", "folder": folder, "steps": 9, "max_minutes": -1}, "the time limit"),
        ({"name": "cello", "folder": "relative/path", "steps": 9}, "relative/path is not a folder"),
        ({"name": "cello", "uploads": []}, "add recordings: upload audio files or give a folder"),
        ({"name": "cello", "uploads": ["nope"]}, "that file is no longer here"),
        ({"name": "violin", "uploads": [recording], "steps": 9, "max_minutes": 1}, "a model named"),
    ):
        response = _post(client, "/api/trainings", payload)
        assert response.status_code == 400 and response.json()["error"].startswith(message)
    assert _post(client, "/api/trainings/nobody/stop", {}).json() == {
        "error": "there is no training of that name"
    }
    assert client.get("/api/trainings").json() == {"trainings": []}
    remote = Request({"type": "http", "client": ("192.0.2.1", 4000), "headers": []})
    with pytest.raises(UserError, match="only on the server's own computer: upload instead"):
        routes._local_folder(remote, folder)


def test_a_busy_port_is_one_line(capsys):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["app", "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"torchddsp app: error: cannot serve on 127.0.0.1:{port} (")
    assert err.endswith("try another --port") and "\n" not in err


# ---- a real server, stopped in the middle of a training ------------------------------------------
def _tones(folder):
    """Three 4 s harmonic tones: enough examples for the fast recipe's batch of 8."""
    folder.mkdir()
    t = np.arange(4 * SAMPLE_RATE) / SAMPLE_RATE
    for f0_hz in (220.0, 262.0, 330.0):
        tone = sum(0.3 / k * np.sin(2 * np.pi * f0_hz * k * t) for k in range(1, 8))
        sf.write(folder / f"tone_{f0_hz:.0f}.wav", tone.astype(np.float32), SAMPLE_RATE)
    return folder


def _serve(tmp_path):
    """``torchddsp app --port 0`` in a subprocess; its URL from the line it prints."""
    environment = {**os.environ, "TORCHDDSP_MODELS": str(tmp_path / "models")}
    command = [sys.executable, "-m", "torchddsp", "app", "--port", "0", "--data", str(tmp_path)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=environment)
    line = server.stdout.readline()
    url = re.search(r"http://\S+/", line)
    assert url, f"the server printed {line!r}"
    threading.Thread(target=server.stdout.read, daemon=True).start()  # never block its prints
    return server, url.group(0)


def _call(url, payload=None):
    data = None if payload is None else json.dumps(payload).encode()
    headers = {**PAGE, "content-type": "application/json"}
    request = urllib.request.Request(url, data=data, headers=headers)
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_stopping_the_server_mid_training_leaves_a_run_that_train_resumes(tmp_path, capsys):
    recordings = _tones(tmp_path / "recordings")
    server, url = _serve(tmp_path)
    try:
        payload = {"name": "tones", "folder": str(recordings), "steps": 200, "max_minutes": 0}
        started = _call(url + "api/trainings", payload)
        assert started["phase"] == "preparing"
        deadline = time.monotonic() + 120
        while True:  # until the loss curve has its first point
            (training,) = _call(url + "api/trainings")["trainings"]
            assert training["phase"] in ("preparing", "training"), training["message"]
            if training["losses"]:
                break
            assert time.monotonic() < deadline, "no training step logged in 2 minutes"
            time.sleep(0.5)
        assert training["eta_seconds"] > 0
        server.send_signal(signal.SIGINT)  # Ctrl-C
        assert server.wait(timeout=90) in (0, 130)  # uvicorn >= 0.29 passes the signal on
    finally:
        if server.poll() is None:
            server.kill()
    run_dir = tmp_path / "trainings" / "tones" / "run"
    (checkpoint,) = list_checkpoints(run_dir / "checkpoints")[:1]
    stopped_at = int(checkpoint.stem.split("_")[1])
    assert stopped_at >= training["step"]
    command = shlex.split(training["resume_command"])
    assert command[:4] == ["torchddsp", "train", "--config", "solo_instrument_fast"]
    steps = f"train.steps={stopped_at + 2}"
    assert main([steps if a.startswith("train.steps=") else a for a in command[1:]]) == 0
    err = capsys.readouterr().err
    assert f"resuming from step {stopped_at}" in err
