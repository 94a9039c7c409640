"""Training material from General MIDI SoundFonts, with exact f0 ground truth.

:func:`render` plays a melody or a MIDI file through the ``fluidsynth``
command (reverb and chorus off, so the audio is the dry instrument) and saves
frame-rate ground truth next to the audio; :func:`render_dataset` renders many
minutes of generated melodies, resumably.

The parts, re-exported here: :mod:`torchddsp.data.melody` (melodies an
instrumentalist could play), :mod:`torchddsp.data.melody_midi` (their MIDI),
:mod:`torchddsp.data.fluidsynth` (the synthesiser) and
:mod:`torchddsp.data.ground_truth` (f0, notes and loudness per frame).
"""

from __future__ import annotations

import io
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ..functional.spectral import frame_hop_size
from .atomic import check_same_settings, write_bytes_atomic
from .audio import write_audio
from .fluidsynth import (
    DEFAULT_GAIN,
    DEFAULT_SOUNDFONT,
    check_soundfont,
    fluidsynth_binary,
    synthesize,
)
from .ground_truth import DEFAULT_FRAME_RATE, SILENCE_DB, ground_truth
from .melody import (
    INSTRUMENTS,
    MIN_MELODY_SECONDS,
    VIBRATO_MIN_S,
    Instrument,
    Melody,
    Note,
    generate_melody,
    get_instrument,
)
from .melody_midi import melody_to_midi
from .midi import (
    NOTE_ON,
    PROGRAM_CHANGE,
    MidiEvent,
    MidiFile,
    last_tick,
    read_midi,
    tick_seconds,
    write_midi,
)

__all__ = [
    "DEFAULT_CLIP_SECONDS",
    "DEFAULT_FRAME_RATE",
    "DEFAULT_GAIN",
    "DEFAULT_SOUNDFONT",
    "INSTRUMENTS",
    "MIN_MELODY_SECONDS",
    "RELEASE_TAIL_S",
    "SILENCE_DB",
    "VIBRATO_MIN_S",
    "DatasetSummary",
    "Instrument",
    "Melody",
    "Note",
    "Rendering",
    "check_soundfont",
    "fluidsynth_binary",
    "generate_melody",
    "get_instrument",
    "ground_truth",
    "melody_to_midi",
    "render",
    "render_dataset",
    "synthesize",
]

DEFAULT_CLIP_SECONDS = (30.0, 60.0)
RELEASE_TAIL_S = 1.0  # Audio kept after the end of a MIDI file, for release tails.


# ---------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Rendering:
    """What :func:`render` wrote."""

    audio_path: Path
    truth_path: Path
    midi_path: Path | None
    seconds: float
    peak: float


def _write_truth(path: Path, truth: dict[str, np.ndarray], sample_rate, frame_rate) -> Path:
    buffer = io.BytesIO()
    np.savez(buffer, **truth, sample_rate=sample_rate, frame_rate=frame_rate)
    return write_bytes_atomic(path, buffer.getvalue())


def _with_program(midi: MidiFile, program: int) -> MidiFile:
    """``midi`` with every channel that plays notes set to ``program`` from the start."""
    if not 0 <= program <= 127:
        raise ValueError(f"program must be within 0..127 (GM number - 1), found {program}")
    channels = sorted({e.channel for e in midi.events if e.kind == NOTE_ON})
    events = [e for e in midi.events if e.kind != PROGRAM_CHANGE]
    programs = [MidiEvent(0, PROGRAM_CHANGE, c, program) for c in channels]
    return MidiFile(midi.ticks_per_quarter, programs + events, midi.end_tick)


def render(
    source: Melody | str | os.PathLike,
    out_path: str | os.PathLike,
    sample_rate: int = 16000,
    soundfont: str | os.PathLike | None = None,
    gain: float = DEFAULT_GAIN,
    frame_rate: int = DEFAULT_FRAME_RATE,
    program: int | None = None,
) -> Rendering:
    """Render a melody or a MIDI file to ``out_path`` with ground truth beside it.

    Writes the audio (mono; format from the extension), ``<stem>.npz`` with
    the arrays of :func:`ground_truth` plus ``sample_rate`` and ``frame_rate``,
    and for a melody its ``<stem>.mid``; each atomically, the audio last. A
    MIDI file is rendered with ``RELEASE_TAIL_S`` after its end; ``program``
    replaces its program changes. Glides are only known for melodies.
    """
    hop = frame_hop_size(sample_rate, frame_rate)
    soundfont = check_soundfont(soundfont)
    out_path = Path(out_path)
    if isinstance(source, Melody):
        midi, seconds, glides = melody_to_midi(source), source.seconds, source.glide_spans()
    else:
        midi, glides = read_midi(source), []
        midi = midi if program is None else _with_program(midi, program)
        seconds = tick_seconds(midi, [last_tick(midi)])[0] + RELEASE_TAIL_S
    n_samples = hop * math.ceil(round(seconds * sample_rate) / hop)  # Whole frames.
    audio = synthesize(midi, n_samples, sample_rate, soundfont, gain)
    truth = ground_truth(midi, len(audio), sample_rate, frame_rate, glides)
    midi_path = (
        write_midi(out_path.with_suffix(".mid"), midi) if isinstance(source, Melody) else None
    )
    truth_path = _write_truth(out_path.with_suffix(".npz"), truth, sample_rate, frame_rate)
    write_audio(out_path, audio, sample_rate)
    peak = float(np.abs(audio).max())
    return Rendering(out_path, truth_path, midi_path, n_samples / sample_rate, peak)


# ---------------------------------------------------------------- datasets


@dataclass(frozen=True)
class DatasetSummary:
    """What :func:`render_dataset` did."""

    manifest_path: Path
    n_clips: int
    n_rendered: int
    seconds: float


def _clip_seed(seed: int, index: int) -> int:
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def _clip_plan(minutes: float, seed: int) -> list[tuple[int, float]]:
    """(seed, seconds) of each clip: 30-60 s drawn per clip, the last one cut to the total."""
    plan, remaining, index = [], minutes * 60.0, 0
    while remaining >= MIN_MELODY_SECONDS:
        clip_seed = _clip_seed(seed, index)
        seconds = float(np.random.default_rng(clip_seed).uniform(*DEFAULT_CLIP_SECONDS))
        seconds = round(min(seconds, remaining), 3)
        plan.append((clip_seed, seconds))
        remaining -= seconds
        index += 1
    return plan


def render_dataset(
    instrument: str | Instrument,
    minutes: float,
    out_dir: str | os.PathLike,
    seed: int = 0,
    sample_rate: int = 16000,
    soundfont: str | os.PathLike | None = None,
    gain: float = DEFAULT_GAIN,
    frame_rate: int = DEFAULT_FRAME_RATE,
) -> DatasetSummary:
    """Render ``minutes`` of generated melodies into ``out_dir``, with ``manifest.json``.

    Clips are 30-60 s, named ``<instrument>_<index>.wav`` (+ ``.npz``,
    ``.mid``); clips already there are kept, so an interrupted run resumes.
    """
    preset = get_instrument(instrument)
    if not minutes * 60 >= MIN_MELODY_SECONDS:
        raise ValueError(
            f"minutes must give at least one {MIN_MELODY_SECONDS:g} s clip, found {minutes}"
        )
    frame_hop_size(sample_rate, frame_rate)
    soundfont = check_soundfont(soundfont)
    fluidsynth_binary()
    out_dir = Path(out_dir)
    settings = {
        "instrument": preset.name,
        "program": preset.program,
        "seed": seed,
        "sample_rate": sample_rate,
        "frame_rate": frame_rate,
        "soundfont": str(soundfont),
        "gain": gain,
    }
    manifest_path = out_dir / "manifest.json"
    check_same_settings(manifest_path, settings)
    _write_manifest(manifest_path, settings, [])  # Guards a resume after an interruption.
    plan = _clip_plan(minutes, seed)
    clips, n_rendered = [], 0
    with tqdm(total=sum(s for _, s in plan), desc=f"render {preset.name}", unit="s") as bar:
        for index, (clip_seed, seconds) in enumerate(plan):
            audio_path = out_dir / f"{preset.name}_{index:04d}.wav"
            if not (audio_path.is_file() and audio_path.with_suffix(".npz").is_file()):
                melody = generate_melody(preset, seconds, clip_seed)
                render(melody, audio_path, sample_rate, soundfont, gain, frame_rate=frame_rate)
                n_rendered += 1
            clips.append(_clip_entry(audio_path, clip_seed))
            bar.update(seconds)
    _write_manifest(manifest_path, settings, clips)
    total_s = sum(clip["seconds"] for clip in clips)
    return DatasetSummary(manifest_path, len(clips), n_rendered, total_s)


def _write_manifest(path: Path, settings: dict, clips: list[dict]) -> None:
    manifest = {"settings": settings, "clips": clips}
    write_bytes_atomic(path, json.dumps(manifest, indent=1).encode())


def _clip_entry(audio_path: Path, clip_seed: int) -> dict:
    return {
        "audio": audio_path.name,
        "truth": audio_path.with_suffix(".npz").name,
        "midi": audio_path.with_suffix(".mid").name,
        "seed": clip_seed,
        "seconds": sf.info(str(audio_path)).duration,
    }
