"""Trainings started from the page: ``torchddsp prepare``, then ``torchddsp train`` with the
fast recipe, as subprocesses writing into ``<data>/trainings/NAME/``.

A training outlives the page and the server. The trainer checkpoints atomically
and stops after its current step on SIGTERM, so the Stop button and a server
shutdown both leave a run that resumes: from the page, or from a terminal with
the ``torchddsp train`` command the page shows. Progress (step, loss, speed,
audio previews at checkpoints) is read from the run's TensorBoard events. A run
that ends by itself (its steps or the recipe's time limit) is published: its
weights go to the user models folder, so ``torchddsp models`` and the page list it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import UserError
from .sessions import Upload

log = logging.getLogger("torchddsp.app")
RECIPE = "solo_instrument_fast"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,39}$")
_SAFE_FILE_CHARS = re.compile(r"[^A-Za-z0-9._-]+")
SPEC_FILE, LOG_FILE = "training.json", "log.txt"
MAX_STEPS, MAX_MINUTES = 1_000_000, 24 * 60.0
PREPARING, TRAINING, PUBLISHING = "preparing", "training", "publishing"
FINISHED, STOPPED, FAILED = "finished", "stopped", "failed"
PREVIEWS = ("target", "resynthesis")  # the audio the trainer logs at each checkpoint here
RESYNTHESIS = "audio/resynthesis"
STOP_SECONDS = 60.0  # how long a stop waits for the trainer's last step and checkpoint


@dataclass(frozen=True)
class TrainingSpec:
    """What a training was asked to do; saved beside it, so that it resumes the same way."""

    name: str
    recordings: str  # folder of the recordings
    steps: int
    max_minutes: float  # per start, as the recipe's train.max_minutes; 0: no limit

    def commands(self, folder: Path) -> list[list[str]]:
        """``torchddsp`` arguments of preparation and training, in order."""
        from ..config import load_config

        recipe = load_config(RECIPE)
        data, dataset, run_dir = recipe.data, folder / "dataset", folder / "run"
        every = max(1, min(recipe.train.checkpoint_every, self.steps // 2))
        prepare = ["prepare", self.recordings, str(dataset)]
        prepare += ["--sample-rate", str(data.sample_rate), "--frame-rate", str(data.frame_rate)]
        prepare += ["--example-seconds", str(data.example_seconds)]
        prepare += ["--hop-seconds", str(data.hop_seconds), "--f0-method", data.f0_method]
        train = ["train", "--config", RECIPE, f"data={dataset}", f"train.run_dir={run_dir}"]
        train += [f"train.steps={self.steps}", f"train.max_minutes={self.max_minutes:g}"]
        train += [f"train.checkpoint_every={every}", f"train.audio_every={every}"]
        train += [f"train.log_every={max(1, min(recipe.train.log_every, self.steps // 100))}"]
        return [prepare, train]


def checked_spec(
    name: object, recordings: Path, steps: object, max_minutes: object
) -> TrainingSpec:
    """The page's values as a spec; a UserError for a bad name, step count or time limit."""
    if not isinstance(name, str) or not _NAME.match(name):
        raise UserError("name the model with letters, digits, - or _ (at most 40, no spaces)")
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= MAX_STEPS:
        raise UserError(f"steps must be a whole number within 1 .. {MAX_STEPS}")
    bad = isinstance(max_minutes, bool) or not isinstance(max_minutes, (int, float))
    if bad or not 0 <= max_minutes <= MAX_MINUTES:
        raise UserError(f"the time limit must be within 0 .. {MAX_MINUTES:g} minutes (0: none)")
    return TrainingSpec(name, str(recordings), steps, float(max_minutes))


class Training:
    """One training's folder, its subprocess while it runs, and what the page sees of it."""

    def __init__(self, spec: TrainingSpec, folder: Path, phase: str = STOPPED):
        self.spec, self.folder, self.phase = spec, folder, phase
        self.commands = spec.commands(folder)  # [prepare, train]
        self.message = ""
        self.events = RunEvents(folder / "run")
        self._process: subprocess.Popen | None = None
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._train_started: float | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        self._stopping, self.message = False, ""
        self.phase = PREPARING
        self._thread = threading.Thread(target=self._pipeline, name=f"train-{self.spec.name}")
        self._thread.start()

    def stop(self, wait: float = 0.0) -> None:
        """Ask the running step to finish and checkpoint (SIGTERM); wait up to ``wait`` s."""
        self._stopping = True
        process = self._process
        if process is not None and process.poll() is None:
            process.terminate()
        if wait and self._thread is not None:
            self._thread.join(wait)

    def resume_command(self) -> str:
        return shlex.join(["torchddsp", *self.commands[1]])

    def status(self) -> dict:
        progress = self.events.read()
        step, speed = progress["step"], progress["steps_per_second"]
        return {
            "name": self.spec.name,
            "phase": self.phase,
            "running": self.running,
            "message": self.message,
            "step": step,
            "steps": self.spec.steps,
            "eta_seconds": self._eta(step, speed) if self.phase == TRAINING else None,
            "losses": progress["losses"],
            "previews": progress["previews"],
            "resume_command": self.resume_command(),
        }

    def _eta(self, step: int, speed: float | None) -> float | None:
        if not speed:
            return None
        eta = (self.spec.steps - step) / speed
        if self.spec.max_minutes and self._train_started is not None:
            left = self.spec.max_minutes * 60 - (time.monotonic() - self._train_started)
            eta = min(eta, max(0.0, left))
        return eta

    def _pipeline(self) -> None:
        try:
            self._prepare_train_publish()
        except Exception:  # a bug or a broken disk: the page gets a sentence, the log the rest
            log.exception("training %s failed", self.spec.name)
            self.phase, self.message = FAILED, "the training failed unexpectedly; see the log"

    def _prepare_train_publish(self) -> None:
        for phase, arguments in zip((PREPARING, TRAINING), self.commands, strict=True):
            self.phase = phase
            code = self._run(arguments)
            if self._stopping:
                self.phase = STOPPED
                return
            if code != 0:
                self.phase, self.message = FAILED, self._failure(arguments[0], code)
                return
        self._publish()

    def _run(self, arguments: list[str]) -> int:
        self._train_started = time.monotonic()
        environment = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": "5"}
        with open(self.folder / LOG_FILE, "a") as output:
            output.write(f"\n$ torchddsp {shlex.join(arguments)}\n")
            output.flush()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "torchddsp", *arguments],
                stdout=output,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=environment,
            )
            if self._stopping:  # a stop that came while the process started
                self._process.terminate()
            return self._process.wait()

    def _failure(self, command: str, code: int) -> str:
        """The command's own one-line error, or where to look."""
        text = (self.folder / LOG_FILE).read_text(errors="replace")
        for line in reversed(text.replace("\r", "\n").splitlines()):
            if line.startswith(f"torchddsp {command}: error: "):
                return line.split(": error: ", 1)[1]
        return f"{command} stopped with exit status {code}; its log is {self.folder / LOG_FILE}"

    def _publish(self) -> None:
        from ..models import user_models_dir
        from ..models.saved import export_model

        self.phase = PUBLISHING
        try:
            export_model(self.folder / "run", user_models_dir() / f"{self.spec.name}.pt")
        except (UserError, OSError) as err:
            self.phase, self.message = FAILED, f"the model could not be saved: {err}"
            return
        self.phase = FINISHED
        _write_spec(self.folder, self.spec, finished=True)


class RunEvents:
    """A run's progress from its TensorBoard event files, read incrementally."""

    def __init__(self, run_dir: Path):
        self.run_dir = run_dir
        self._accumulator = None
        self._lock = threading.Lock()

    def read(self) -> dict:
        with self._lock:
            events = self._reload()
            if events is None:
                return {"step": 0, "steps_per_second": None, "losses": [], "previews": []}
            losses = _by_step(events, "train/total")
            speed = _by_step(events, "train/steps_per_second")
            logged = RESYNTHESIS in events.Tags()["audio"]
            previews = sorted({e.step for e in events.Audio(RESYNTHESIS)}) if logged else []
        return {
            "step": losses[-1][0] if losses else 0,
            "steps_per_second": speed[-1][1] if speed else None,
            "losses": losses,
            "previews": previews,
        }

    def preview(self, step: int, which: str) -> bytes | None:
        """The WAV of the target or resynthesis audio logged at ``step``."""
        with self._lock:
            events = self._reload()
            if events is None or f"audio/{which}" not in events.Tags()["audio"]:
                return None
            found = [e for e in events.Audio(f"audio/{which}") if e.step == step]
        return found[-1].encoded_audio_string if found else None

    def _reload(self):
        if not any(self.run_dir.glob("events.out.tfevents.*")):
            return None
        if self._accumulator is None:
            from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

            keep_all = {"scalars": 0, "audio": 0, "images": 1, "tensors": 1, "histograms": 1}
            self._accumulator = EventAccumulator(str(self.run_dir), size_guidance=keep_all)
        return self._accumulator.Reload()


def _by_step(events, tag: str) -> list[tuple[int, float]]:
    """The tag's values by step (the last one where a resumed run logged a step twice)."""
    if tag not in events.Tags()["scalars"]:
        return []
    values = {e.step: e.value for e in events.Scalars(tag) if math.isfinite(e.value)}
    return sorted(values.items())


class Trainings:
    """The trainings under ``root``: found on disk at start, one running at a time."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._trainings: dict[str, Training] = {}
        self._lock = threading.Lock()
        for spec_file in sorted(self.root.glob(f"*/{SPEC_FILE}")):
            saved = json.loads(spec_file.read_text())
            phase = FINISHED if saved.pop("finished", False) else STOPPED
            spec = TrainingSpec(**saved)
            self._trainings[spec.name] = Training(spec, spec_file.parent, phase)

    def statuses(self) -> list[dict]:
        return [training.status() for _, training in sorted(self._trainings.items())]

    def get(self, name: object) -> Training:
        found = self._trainings.get(name) if isinstance(name, str) else None
        if found is None:
            raise UserError("there is no training of that name")
        return found

    def start(self, spec: TrainingSpec, uploads: list[Upload]) -> Training:
        """A new training of ``spec``; ``uploads`` (if any) become its recordings."""
        from ..models import available_models

        with self._lock:
            self._check_idle()
            if spec.name in self._trainings or (self.root / spec.name).exists():
                raise UserError(f"a training named {spec.name} exists: resume it or pick a name")
            if spec.name in available_models():
                raise UserError(f"a model named {spec.name} exists: pick another name")
            folder = self.root / spec.name
            if uploads:
                spec = TrainingSpec(**{**asdict(spec), "recordings": str(folder / "recordings")})
                _take_recordings(uploads, folder / "recordings")
            folder.mkdir(exist_ok=True)
            _write_spec(folder, spec, finished=False)
            training = self._trainings[spec.name] = Training(spec, folder)
            training.start()
            return training

    def resume(self, name: object) -> Training:
        with self._lock:
            training = self.get(name)
            self._check_idle()
            if training.phase == FINISHED:
                raise UserError(f"{training.spec.name} is finished: start a new training")
            training.start()
            return training

    def shutdown(self) -> None:
        """Stop every running training so that it checkpoints (server shutdown)."""
        running = [t for t in self._trainings.values() if t.running]
        for training in running:
            training.stop()
        for training in running:
            training.stop(wait=STOP_SECONDS)

    def _check_idle(self) -> None:
        busy = [name for name, t in self._trainings.items() if t.running]
        if busy:
            raise UserError(f"{busy[0]} is training: stop it first (one training at a time)")


def _take_recordings(uploads: list[Upload], folder: Path) -> None:
    """Move checked uploads into ``folder``, named after the browser's names."""
    folder.mkdir(parents=True)
    for index, upload in enumerate(uploads):
        stem = _SAFE_FILE_CHARS.sub("_", Path(upload.name).stem)[:60] or "recording"
        shutil.move(upload.path, folder / f"{index:03d}-{stem}{upload.path.suffix}")


def _write_spec(folder: Path, spec: TrainingSpec, finished: bool) -> None:
    from ..data.atomic import write_bytes_atomic

    text = json.dumps({**asdict(spec), "finished": finished}, indent=2)
    write_bytes_atomic(folder / SPEC_FILE, text.encode())
