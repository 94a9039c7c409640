"""Monophonic melodies an instrumentalist could play, for SoundFont rendering.

:func:`generate_melody` writes scales, phrases and breaths, legato and
detached notes, dynamics, vibrato and glides for a General MIDI
:class:`Instrument`; :func:`torchddsp.data.melody_midi.melody_to_midi` turns
the :class:`Melody` into MIDI.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import UserError
from ..functional.core import PITCH_CLASSES

BEND_RANGE = 2  # semitones; glides stay within it.
VOLUME = 100  # CC7, the GM default.
EXPRESSION_STEP_S = 0.02
MIN_MELODY_SECONDS = 2.0


@dataclass(frozen=True)
class Instrument:
    """A General MIDI instrument: ``program`` is 0-based (violin = GM 41 = 40).

    ``low``..``high`` is the playable MIDI range, ``tessitura`` where melodies
    mostly stay, ``vibrato`` whether players use it by default.
    """

    name: str
    program: int
    low: int
    high: int
    tessitura: tuple[int, int]
    vibrato: bool


INSTRUMENTS = {
    preset.name: preset
    for preset in (
        Instrument("violin", 40, 55, 100, (62, 88), True),
        Instrument("viola", 41, 48, 88, (55, 79), True),
        Instrument("cello", 42, 36, 76, (43, 69), True),
        Instrument("flute", 73, 60, 96, (67, 91), True),
        Instrument("oboe", 68, 58, 89, (62, 84), True),
        Instrument("clarinet", 71, 50, 91, (55, 84), False),
        Instrument("tenor_sax", 66, 44, 75, (50, 70), True),
        Instrument("trumpet", 56, 52, 82, (60, 77), False),
        Instrument("french_horn", 60, 41, 77, (48, 72), False),
        # FluidR3's choir samples are tuned up to ~40 cents off their MIDI pitch.
        Instrument("choir_aahs", 52, 48, 79, (55, 74), True),
    )
}


def get_instrument(instrument: str | Instrument) -> Instrument:
    """A preset by name (``tenor-sax`` and ``tenor_sax`` both work)."""
    if isinstance(instrument, Instrument):
        return instrument
    name = instrument.lower().replace("-", "_").replace(" ", "_")
    if name not in INSTRUMENTS:
        raise UserError(
            f"unknown instrument {instrument!r}: choose one of {', '.join(INSTRUMENTS)}"
        )
    return INSTRUMENTS[name]


@dataclass(frozen=True)
class Note:
    """One note of a melody, in seconds.

    Vibrato (``vibrato_cents`` peak deviation, 0 for none) starts
    ``vibrato_delay_s`` after the onset; a glide bends the last ``glide_s``
    seconds of the note to ``glide_to``, the next note's pitch.
    """

    pitch: int
    start_s: float
    end_s: float
    velocity: int
    vibrato_hz: float = 0.0
    vibrato_cents: float = 0.0
    vibrato_delay_s: float = 0.0
    glide_s: float = 0.0
    glide_to: int = 0


@dataclass(frozen=True)
class Melody:
    """A monophonic melody with its controller curves, ready to turn into MIDI.

    ``expression`` is a step curve of (time_s, CC11 value) points.
    """

    instrument: Instrument
    seconds: float
    tempo_bpm: float
    key: str
    notes: tuple[Note, ...]
    expression: tuple[tuple[float, int], ...]
    bend_range: int = BEND_RANGE
    volume: int = VOLUME

    def glide_spans(self) -> list[tuple[float, float]]:
        """(start_s, end_s) of each glide."""
        return [(n.end_s - n.glide_s, n.end_s) for n in self.notes if n.glide_s > 0]


MODES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
DURATION_BEATS = np.array([0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 4.0])
DURATION_WEIGHTS = np.array([0.10, 0.26, 0.06, 0.24, 0.08, 0.14, 0.06, 0.06])
PHRASE_BEATS = (4, 6, 8, 8, 12, 16)
STEPS = np.array([-2, -1, 0, 1, 2])  # in scale degrees
STEP_WEIGHTS = np.array([0.16, 0.34, 0.06, 0.30, 0.14])
LEAP_PROBABILITY = 0.1
INNER_REST_PROBABILITY = 0.06
ACCENT_PROBABILITY = 0.12
VIBRATO_PROBABILITY = 0.85
VIBRATO_MIN_S = 0.4  # Only notes at least this long get vibrato.
GLIDE_PROBABILITY = 0.25


def _scale_pitches(preset: Instrument, tonic: int, mode: str) -> np.ndarray:
    degrees = {(tonic + d) % 12 for d in MODES[mode]}
    return np.array([p for p in range(preset.low, preset.high + 1) if p % 12 in degrees])


def _step(rng: np.random.Generator, index: int, scale: np.ndarray, preset: Instrument) -> int:
    """A random-walk step on the scale, pulled back into the tessitura, inside the range."""
    if rng.random() < LEAP_PROBABILITY:
        step = int(rng.integers(3, 8)) * int(rng.choice((-1, 1)))
    else:
        step = int(rng.choice(STEPS, p=STEP_WEIGHTS))
    pitch = scale[index]
    if (pitch < preset.tessitura[0] and step < 0) or (pitch > preset.tessitura[1] and step > 0):
        step = -step
    return int(np.clip(index + step, 0, len(scale) - 1))


def _rhythm(rng: np.random.Generator, beats: float) -> list[float]:
    """Note durations in beats filling a phrase of ``beats``."""
    durations, total = [], 0.0
    while total < beats:
        duration = float(rng.choice(DURATION_BEATS, p=DURATION_WEIGHTS))
        duration = min(duration, beats - total)
        durations.append(duration)
        total += duration
    return durations


@dataclass
class _Phrase:
    """Notes of one phrase as (pitch, start_s, slot_s): each fills its slot until articulated."""

    slots: list[tuple[int, float, float]] = field(default_factory=list)
    level: float = 100.0  # CC11 around which the phrase's dynamics move.


def _phrase(rng, preset, scale, index, start_s, beat_s, end_s) -> tuple[_Phrase, int]:
    phrase, t = _Phrase(level=float(rng.uniform(70, 120))), start_s
    for beats in _rhythm(rng, float(rng.choice(PHRASE_BEATS))):
        slot_s = beats * beat_s
        if t + slot_s > end_s:
            break
        if phrase.slots and rng.random() < INNER_REST_PROBABILITY:
            t += slot_s  # A short breath inside the phrase.
            continue
        index = _step(rng, index, scale, preset)
        phrase.slots.append((int(scale[index]), t, slot_s))
        t += slot_s
    return phrase, index


def _note_end(rng, slot, following, legato_probability: float) -> float:
    """Legato notes reach (or overlap) the next onset; detached ones stop short."""
    pitch, start_s, slot_s = slot
    next_start = start_s + slot_s
    if following is None:
        return start_s + slot_s * float(rng.uniform(0.8, 1.0))
    if following[1] - next_start < 1e-9 and rng.random() < legato_probability:
        # A repeated key is re-articulated, never tied over: overlap only between keys.
        if following[0] != pitch and rng.random() < 0.5:
            return next_start + float(rng.uniform(0.01, 0.04))
        return next_start
    return start_s + max(0.06, slot_s * float(rng.uniform(0.45, 0.85)))


def _velocity(rng, level: float, accent: bool) -> int:
    velocity = 25 + 0.6 * level + rng.normal(0, 5) + (20 if accent else 0)
    return int(np.clip(round(velocity), 20, 127))


def _articulate(rng, phrase: _Phrase) -> tuple[list[Note], list[float]]:
    """Notes with ends and velocities, and the onsets of accented notes."""
    legato_probability = float(rng.uniform(0.2, 0.9))
    notes, accents = [], []
    for k, slot in enumerate(phrase.slots):
        following = phrase.slots[k + 1] if k + 1 < len(phrase.slots) else None
        end_s = _note_end(rng, slot, following, legato_probability)
        accent = bool(rng.random() < ACCENT_PROBABILITY)
        notes.append(Note(slot[0], slot[1], end_s, _velocity(rng, phrase.level, accent)))
        if accent:
            accents.append(slot[1])
    return notes, accents


def _swell(shape: str, u: np.ndarray) -> np.ndarray:
    """A dynamic shape over phrase position ``u`` in [0, 1], spanning about -0.5..0.5."""
    if shape == "crescendo":
        return u - 0.5
    if shape == "decrescendo":
        return 0.5 - u
    if shape == "hairpin":
        return np.sin(np.pi * u) - 0.5
    return np.zeros_like(u)


def _expression_curve(rng, level, start_s, end_s, accents) -> list[tuple[float, int]]:
    """CC11 over a phrase: flat, crescendo, decrescendo or hairpin, plus accent bumps."""
    times = np.arange(start_s, end_s, EXPRESSION_STEP_S)
    u = (times - start_s) / max(end_s - start_s, 1e-9)
    depth = float(rng.uniform(15, 40))
    shape = str(rng.choice(("flat", "crescendo", "decrescendo", "hairpin")))
    values = level + depth * _swell(shape, u)
    for onset in accents:
        values += np.where(times >= onset, 12 * np.exp(-np.clip(times - onset, 0, None) / 0.12), 0)
    return [
        (float(t), int(v)) for t, v in zip(times, np.clip(np.round(values), 40, 127), strict=True)
    ]


def _with_glide_and_vibrato(rng, note: Note, following: Note | None, preset) -> Note:
    interval = following.pitch - note.pitch if following else 0
    adjacent = following is not None and following.start_s == note.end_s
    can_glide = adjacent and 0 < abs(interval) <= BEND_RANGE and note.end_s - note.start_s >= 0.3
    if can_glide and rng.random() < GLIDE_PROBABILITY:
        glide_s = float(rng.uniform(0.12, min(0.4, 0.5 * (note.end_s - note.start_s))))
        note = replace(note, glide_s=glide_s, glide_to=following.pitch)
    steady_s = note.end_s - note.glide_s - note.start_s
    if not (preset.vibrato and steady_s >= VIBRATO_MIN_S and rng.random() < VIBRATO_PROBABILITY):
        return note
    return replace(
        note,
        vibrato_hz=float(rng.uniform(5.0, 6.0)),
        vibrato_cents=float(rng.uniform(20.0, 40.0)),
        vibrato_delay_s=float(rng.uniform(0.12, min(0.3, steady_s - 0.1))),
    )


def generate_melody(instrument: str | Instrument, seconds: float, seed: int) -> Melody:
    """A monophonic melody of ``seconds`` for ``instrument``, the same for the same seed.

    A random walk with occasional leaps on a random major or minor scale,
    inside the instrument's range and drawn to its tessitura; phrases of 4 to
    16 beats at a random tempo (60-144 bpm) with 16th- to whole-note
    durations, separated by breaths; legato (adjacent or overlapping) and
    detached notes; phrase dynamics (CC11) with accents (velocity and CC11);
    delayed 5-6 Hz vibrato of 20-40 cents on long notes where idiomatic;
    occasional slow glides to the next note.
    """
    preset = get_instrument(instrument)
    if not seconds >= MIN_MELODY_SECONDS:
        raise ValueError(f"a melody needs at least {MIN_MELODY_SECONDS} s, found {seconds}")
    rng = np.random.default_rng(seed)
    tempo_bpm = float(rng.uniform(60, 144))
    beat_s = 60.0 / tempo_bpm
    tonic, mode = int(rng.integers(12)), str(rng.choice(tuple(MODES)))
    scale = _scale_pitches(preset, tonic, mode)
    index = int(np.argmin(np.abs(scale - np.mean(preset.tessitura))))
    music_end_s = seconds - 0.5  # Room for the last release.
    notes, expression, t = [], [(0.0, 100)], float(rng.uniform(0.1, 0.4))
    while t + beat_s <= music_end_s:
        phrase, index = _phrase(rng, preset, scale, index, t, beat_s, music_end_s)
        if not phrase.slots:
            break
        phrase_notes, accents = _articulate(rng, phrase)
        end_s = phrase_notes[-1].end_s
        expression += _expression_curve(rng, phrase.level, t, end_s, accents)
        notes += phrase_notes
        t = end_s + max(0.25, float(rng.choice((0.5, 1.0, 1.5, 2.0))) * beat_s)
    notes = [
        _with_glide_and_vibrato(rng, note, notes[k + 1] if k + 1 < len(notes) else None, preset)
        for k, note in enumerate(notes)
    ]
    key = f"{PITCH_CLASSES[tonic]} {mode}"
    return Melody(preset, float(seconds), tempo_bpm, key, tuple(notes), tuple(expression))
