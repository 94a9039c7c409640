"""Play a MIDI line with a trained instrument: notes -> f0 and loudness curves -> the model.

MIDI file -> the notes of one part (a track and/or a channel; never the drums)
-> one line by the highest-note rule -> frame-rate controls that sound played,
not stepped:

- f0: each note's pitch; a note that starts while the one before is still held
  (legato) glides to its pitch, a detached note steps to it; optional vibrato
  that fades in after a delay at the start of each phrase (a run of legato notes).
- loudness: velocity 1..127 picks a quantile of the model's note loudness
  (its training data's note frames); each phrase attacks from silence (slower
  when softer), legato notes move between their levels, and a release decays
  toward the quiet floor below the model's quietest notes.

The model renders the controls as timbre transfer does (block by block, its
state carried), so the same controls give the same audio as ``transfer``.
The live counterpart is ``examples/pd/midi.pd``.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from .adjust import Adjustments
from .data.midi import MidiFile, last_tick, read_midi, tick_seconds
from .data.midi_line import (
    Note,
    Run,
    highest_line,
    numbered,
    part_notes,
    phrase_bounds,
    split_tracks,
)
from .functional.core import DB_RANGE, midi_to_hz
from .models import DatasetStatistics, TrainedModel
from .models.autoencoder import render_in_blocks
from .transfer import BLOCK_SECONDS, check_instrument

VELOCITY_QUANTILES = (0.1, 0.95)  # velocity 1 and 127 -> these quantiles of the note loudness
NO_STATISTICS_DB = (-36.0, 0.0)  # velocity 1 and 127 without statistics, as midi.pd maps them
SLOWEST_ATTACK = 2.0  # the attack at velocity 1 takes this many times the attack at 127
VIBRATO_FADE_S = 0.25
# The loudness curve runs this many frames ahead of the notes: the models answer a loudness rise
# about a frame late (they learned loudness from a centred 32 ms window, which rises before the
# sound does), so their audio, not the curve, starts on the MIDI time.
LOUDNESS_LEAD_FRAMES = 1
LIMITS = {
    "glide_s": (0.0, 2.0),
    "attack_s": (0.0, 2.0),
    "release_s": (0.0, 10.0),
    "vibrato_hz": (0.0, 20.0),
    "vibrato_cents": (0.0, 200.0),
    "vibrato_delay_s": (0.0, 10.0),
}


@dataclass(frozen=True)
class Performance:
    """How the notes are played: glide, attack (at velocity 127), release, vibrato."""

    glide_s: float = 0.05
    attack_s: float = 0.04
    release_s: float = 0.3
    vibrato_hz: float = 5.5
    vibrato_cents: float = 0.0  # peak deviation; 0 for none
    vibrato_delay_s: float = 0.25  # after a phrase starts; then fades in (VIBRATO_FADE_S)

    def __post_init__(self):
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be within [{low:g}, {high:g}], found {value}")


@dataclass
class PlayResult:
    """Audio at ``sample_rate``, the controls that made it, the part's notes and the line."""

    audio: np.ndarray
    sample_rate: int
    frame_rate: int
    f0_hz: np.ndarray
    loudness_db: np.ndarray
    notes: list[Note]
    line: list[Run]
    seconds: float


# ---- controls -------------------------------------------------------------------------------
def progress(elapsed_s: np.ndarray, duration_s: np.ndarray | float) -> np.ndarray:
    """0 .. 1 over ``duration_s`` (1 at once for a duration of 0). Shape: broadcast."""
    duration_s = np.broadcast_to(duration_s, np.shape(elapsed_s))
    fraction = np.divide(
        elapsed_s, duration_s, out=np.ones(np.shape(elapsed_s)), where=duration_s > 0
    )
    return np.clip(fraction, 0.0, 1.0)


def transitions(
    times_s: np.ndarray, line: list[Run], values: np.ndarray, duration_s: float, smooth: bool
) -> np.ndarray:
    """Each run's value from its start until the next run starts: reached from the value the
    curve had at that start over ``duration_s`` for a legato run, at once otherwise; before the
    first run, the first value. ``smooth``: smoothstep, else a linear ramp.

    Shape: times_s [n], values [n_runs] -> [n].
    """
    starts = np.array([run.start_s for run in line])

    def ease(u):
        return u * u * (3.0 - 2.0 * u) if smooth else u

    begins, current = np.empty(len(line)), float(values[0])
    for k, run in enumerate(line):
        begins[k] = current if run.legato else values[k]
        if k + 1 < len(line):
            reached = ease(progress(np.array(starts[k + 1] - run.start_s), duration_s))
            current = float(begins[k] + (values[k] - begins[k]) * reached)
    k = np.maximum(np.searchsorted(starts, times_s, side="right") - 1, 0)
    reached = ease(progress(np.maximum(times_s - starts[k], 0.0), duration_s))
    return begins[k] + (values[k] - begins[k]) * reached


def vibrato_cents(times_s: np.ndarray, line: list[Run], performance: Performance) -> np.ndarray:
    """Each phrase's vibrato: silent for the delay, then fading in over ``VIBRATO_FADE_S``;
    it goes on through the release, until the next phrase.

    Shape: times_s [n] -> [n].
    """
    if performance.vibrato_cents == 0.0 or performance.vibrato_hz == 0.0:
        return np.zeros_like(times_s)
    starts, _, _ = phrase_bounds(line)
    phrase = np.searchsorted(starts, times_s, side="right") - 1
    since = times_s - starts[np.maximum(phrase, 0)] - performance.vibrato_delay_s
    depth = performance.vibrato_cents * progress(np.maximum(since, 0.0), VIBRATO_FADE_S)
    wave = np.sin(2.0 * math.pi * performance.vibrato_hz * since)
    return np.where((phrase >= 0) & (since > 0.0), depth * wave, 0.0)


def f0_curve(times_s: np.ndarray, line: list[Run], performance: Performance) -> np.ndarray:
    """f0 (Hz): the notes' pitches with legato glides (smoothstep in pitch) and vibrato; held
    through releases and silences, the first note's before it.

    Shape: times_s [n_frames] -> [n_frames].
    """
    pitches = np.array([run.pitch for run in line], dtype=np.float64)
    midi = transitions(times_s, line, pitches, performance.glide_s, smooth=True)
    midi = midi + vibrato_cents(times_s, line, performance) / 100.0
    return midi_to_hz(torch.from_numpy(midi)).numpy()


def velocity_db(velocity: np.ndarray, statistics: DatasetStatistics | None) -> np.ndarray:
    """Velocity 1..127 -> loudness (dB): a quantile of the model's note loudness between
    ``VELOCITY_QUANTILES``, or ``NO_STATISTICS_DB`` (midi.pd's range) for a model without.

    Shape: any -> same.
    """
    fraction = (np.asarray(velocity, dtype=np.float64) - 1.0) / 126.0
    if statistics is None:
        low, high = NO_STATISTICS_DB
        return low + (high - low) * fraction
    low, high = VELOCITY_QUANTILES
    levels, quantiles = statistics.loudness_quantile_levels, statistics.loudness_quantiles
    return np.interp(low + (high - low) * fraction, levels, quantiles)


def floor_db(statistics: DatasetStatistics | None) -> float:
    """Where releases decay to: the model's quietest note loudness less the quiet of transfer
    (frames outside notes), not below the loudness feature's floor."""
    if statistics is None:
        return -DB_RANGE
    return max(min(statistics.loudness_quantiles) - Adjustments.quiet, -DB_RANGE)


def loudness_curve(
    times_s: np.ndarray,
    line: list[Run],
    statistics: DatasetStatistics | None,
    performance: Performance,
) -> np.ndarray:
    """Loudness (dB): each phrase rises from silence in amplitude (linearly over the attack,
    longer when softer) to its notes' levels, which legato notes reach over the attack time;
    after it, a release falls (linearly in dB) to the floor over ``release_s``.

    Shape: times_s [n_frames] -> [n_frames].
    """
    levels = velocity_db(np.array([run.velocity for run in line]), statistics)
    floor = floor_db(statistics)
    starts, ends, velocities = phrase_bounds(line)
    attacks = performance.attack_s * (SLOWEST_ATTACK - (SLOWEST_ATTACK - 1.0) * velocities / 127)

    def played(t: np.ndarray, phrase: np.ndarray) -> np.ndarray:
        rise = progress(t - starts[phrase], attacks[phrase])
        level = transitions(t, line, levels, performance.attack_s, smooth=False)
        return level + 20.0 * np.log10(np.maximum(rise, 1e-12))

    phrase = np.searchsorted(starts, times_s, side="right") - 1
    p = np.maximum(phrase, 0)
    end_db = np.maximum(played(ends, np.arange(len(starts))), floor)
    decay = progress(times_s - ends[p], performance.release_s)
    released = end_db[p] + (floor - end_db[p]) * decay
    loudness = np.where(times_s < ends[p], played(times_s, p), released)
    return np.where(phrase >= 0, np.maximum(loudness, floor), floor)


def render_controls(loaded: TrainedModel, f0_hz: np.ndarray, loudness_db: np.ndarray) -> np.ndarray:
    """The model's audio for frame-rate controls, rendered as transfer renders them.

    Shape: f0_hz, loudness_db [n_frames] -> [n_frames * hop].
    """
    f0, loudness = (torch.from_numpy(np.asarray(x, np.float32))[None] for x in (f0_hz, loudness_db))
    audio = render_in_blocks(
        loaded.model, f0, loudness, block_frames=round(BLOCK_SECONDS * loaded.frame_rate)
    )
    return audio[0, : len(f0_hz) * loaded.hop_size].numpy()


# ---- entry points ---------------------------------------------------------------------------
def play_midi(
    midi: str | os.PathLike | MidiFile,
    loaded: TrainedModel,
    performance: Performance | None = None,
    track: int | None = None,
    channel: int | None = None,
) -> PlayResult:
    """Play a MIDI file's line (or one ``track`` and/or ``channel``, numbered from 1) with
    ``loaded``'s instrument.

    Raises :class:`UserError` for a voice model, an unreadable file or a part without notes.
    Shape: -> result.audio [n_frames * hop], result.f0_hz, result.loudness_db [n_frames].
    """
    start = time.perf_counter()
    check_instrument(loaded)
    performance = performance or Performance()
    name = "the MIDI file" if isinstance(midi, MidiFile) else str(midi)
    if not isinstance(midi, MidiFile):
        midi = read_midi(midi)
    notes = part_notes(midi, split_tracks(midi), track, channel, name)
    line = highest_line(notes)
    end_s = max(tick_seconds(midi, [last_tick(midi)])[0], line[-1].end_s + performance.release_s)
    times_s = np.arange(math.ceil(end_s * loaded.frame_rate)) / loaded.frame_rate
    f0_hz = f0_curve(times_s, line, performance)
    lead_s = LOUDNESS_LEAD_FRAMES / loaded.frame_rate
    loudness_db = loudness_curve(times_s + lead_s, line, loaded.statistics, performance)
    return PlayResult(
        audio=render_controls(loaded, f0_hz, loudness_db),
        sample_rate=loaded.sample_rate,
        frame_rate=loaded.frame_rate,
        f0_hz=f0_hz,
        loudness_db=loudness_db,
        notes=notes,
        line=line,
        seconds=time.perf_counter() - start,
    )


def play_file(
    midi_path: str | os.PathLike,
    loaded: TrainedModel,
    output_path: str | os.PathLike,
    performance: Performance | None = None,
    track: int | None = None,
    channel: int | None = None,
) -> PlayResult:
    """:func:`play_midi`, written to ``output_path`` (atomically; format by extension)."""
    from .data.atomic import check_writable
    from .data.audio import write_audio

    check_writable(output_path)  # refuse before rendering, not after
    result = play_midi(midi_path, loaded, performance, track, channel)
    write_audio(output_path, result.audio, result.sample_rate)
    return result


def describe(result: PlayResult) -> str:
    """One line on what was played, for people."""
    tracks = numbered("track", {note.track + 1 for note in result.notes})
    channels = numbered("channel", {note.channel + 1 for note in result.notes})
    legato = sum(run.legato for run in result.line)
    return (
        f"{len(result.notes)} notes ({tracks}, {channels}) -> a line of {len(result.line)} "
        f"notes, {legato} of them legato"
    )
