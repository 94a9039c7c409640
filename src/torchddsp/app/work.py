"""What each job does, with the library: transfer, play, convert, export.

Each function takes checked inputs (a listed model name, a session's upload,
settings already validated) and returns the job's work: a callable that fills
its folder. Messages name files as the browser named them, not by the server's
paths.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..adjust import Adjustments
from ..errors import UserError
from ..play import Performance
from .catalog import INSTRUMENT, VOICE, load_listed
from .jobs import JobOutput, Work

OUTPUT, PLOT = "output.wav", "plot.png"
EXPORT_SUFFIXES = {"nn": ".ts", "neutone": ".nm"}
_PLOTTING = threading.Lock()  # pyplot keeps global state: one figure at a time


@contextmanager
def _shown_as(path: Path, name: str) -> Iterator[None]:
    """Errors that name ``path`` name the browser's ``name`` instead."""
    try:
        yield
    except UserError as err:
        raise UserError(str(err).replace(str(path), name)) from None


def _output_name(source_name: str, model: str) -> dict[str, str]:
    """The download name of the output, as the command line names it: INPUT_STEM.MODEL.wav."""
    return {OUTPUT: f"{Path(source_name).stem}.{model}.wav"}


def transfer_work(model: str, source: Path, name: str, settings: Adjustments) -> Work:
    def work(folder: Path) -> JobOutput:
        from ..data.audio import load_audio, write_audio
        from ..plots import plot_transfer
        from ..transfer import describe, transfer

        loaded = load_listed(model, INSTRUMENT)
        with _shown_as(source, name):
            audio, _ = load_audio(source, sample_rate=loaded.sample_rate)
        result = transfer(audio, loaded, settings)
        write_audio(folder / OUTPUT, result.audio, result.sample_rate)
        with _PLOTTING:
            plot_transfer(folder / PLOT, audio, result)
        summary = f"{name} -> {model}: {describe(result, loaded)}"
        return JobOutput([OUTPUT, PLOT], summary, _output_name(name, model))

    return work


def play_work(
    model: str, source: Path, name: str, performance: Performance, part: dict[str, int | None]
) -> Work:
    """``part``: the ``track`` and ``channel`` to play (None: all), numbered from 1."""

    def work(folder: Path) -> JobOutput:
        import torch

        from ..data.audio import write_audio
        from ..play import describe, play_midi
        from ..plots import plot_features

        loaded = load_listed(model, INSTRUMENT)
        with _shown_as(source, name):
            result = play_midi(source, loaded, performance, part["track"], part["channel"])
        write_audio(folder / OUTPUT, result.audio, result.sample_rate)
        played = {key: torch.from_numpy(getattr(result, key)) for key in ("f0_hz", "loudness_db")}
        audio, rates = torch.from_numpy(result.audio), (result.sample_rate, result.frame_rate)
        with _PLOTTING:
            plot_features(folder / PLOT, audio, *rates, {"played": played})
        summary = f"{name} -> {model}: {describe(result)}"
        return JobOutput([OUTPUT, PLOT], summary, _output_name(name, model))

    return work


def convert_work(model: str, source: Path, name: str, controls: dict[str, float | None]) -> Work:
    """``controls``: ``pitch_shift``, ``gender``, ``age``; None keeps the input's gender or age,
    and lets the pitch follow the voice (see :mod:`torchddsp.voice.convert`)."""

    def work(folder: Path) -> JobOutput:
        from ..data.audio import load_audio, write_audio
        from ..voice.convert import convert_voice

        loaded = load_listed(model, VOICE)
        with _shown_as(source, name):
            audio, _ = load_audio(source, sample_rate=loaded.sample_rate)
        result = convert_voice(audio, loaded, **controls)
        write_audio(folder / OUTPUT, result.audio, result.sample_rate)
        summary = (
            f"{name} -> {model}: gender {result.gender:.2f}, age {result.age:.2f}, "
            f"pitch shift {result.pitch_shift:+.1f} semitones"
        )
        return JobOutput([OUTPUT], summary, _output_name(name, model))

    return work


def export_work(model: str, kind: str, export_format: str) -> Work:
    def work(folder: Path) -> JobOutput:
        target = folder / f"{model}{EXPORT_SUFFIXES[export_format]}"
        loaded = load_listed(model, kind)
        if export_format == "nn":
            from ..export import export_nn

            export_nn(loaded, target)
        else:
            from ..export.neutone import export_neutone

            export_neutone(loaded, target)
        size = target.stat().st_size / 2**20
        return JobOutput([target.name], f"{target.name} ({size:.1f} MB) for {export_format}")

    return work
