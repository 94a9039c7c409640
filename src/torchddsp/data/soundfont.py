"""Training material from General MIDI SoundFonts, with exact f0 ground truth.

:func:`generate_melody` writes monophonic melodies an instrumentalist could
play (scales, phrases and breaths, legato and detached notes, dynamics,
vibrato, glides); :func:`render` plays a melody or a MIDI file through the
``fluidsynth`` command (reverb and chorus off, so the audio is the dry
instrument) and saves frame-rate ground truth next to the audio;
:func:`render_dataset` renders many minutes, resumably.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from tqdm import tqdm

from ..errors import UserError
from ..functional.core import midi_to_hz
from ..functional.spectral import frame_hop_size
from .atomic import write_bytes_atomic
from .audio import load_audio, write_audio
from .midi import (
    BEND_MAX,
    CC_DATA_ENTRY,
    CC_EXPRESSION,
    CC_RPN_LSB,
    CC_RPN_MSB,
    CC_VOLUME,
    CONTROL_CHANGE,
    NOTE_OFF,
    NOTE_ON,
    PITCH_BEND,
    PROGRAM_CHANGE,
    TEMPO,
    MidiEvent,
    MidiFile,
    bend_range_events,
    last_tick,
    read_midi,
    seconds_to_ticks,
    tick_seconds,
    write_midi,
)

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
DEFAULT_GAIN = 2.0  # FluidSynth master gain: FluidR3 melodies then peak around 0.15-0.65.
DEFAULT_FRAME_RATE = 250
DEFAULT_CLIP_SECONDS = (30.0, 60.0)

# FluidSynth synthesises at 44.1-96 kHz (events land on 64-sample blocks, so
# a high rate means fine timing), then soxr resamples to the asked rate.
SYNTH_RATE_RANGE = (44100, 96000)
# Measured (FluidSynth 2.3): an event sounds on the block after the one its
# time falls in, 64 to 128 samples late; trimming the middle, 96, leaves
# +-0.75 ms at 44.1 kHz.
FLUIDSYNTH_LATENCY_SAMPLES = 96
# Settings that make renders reproducible and dry: no reverb/chorus, float
# output (no dither), one core (fixed mixing order), sample-clock timing.
FLUIDSYNTH_SETTINGS = (
    "synth.reverb.active=0",
    "synth.chorus.active=0",
    "synth.cpu-cores=1",
    "synth.lock-memory=0",
    "audio.period-size=64",
    "audio.file.format=float",
    "player.timing-source=sample",
)

ATTACK_S = 0.06  # Frames this soon after a note-on are not "sustained".
RELEASE_TAIL_S = 1.0  # Audio kept after the end of a MIDI file, for release tails.
SILENCE_DB = -120.0  # loudness_expression where no note is held.
TICKS_PER_QUARTER = 960
BEND_RANGE = 2  # semitones; glides stay within it.
VOLUME = 100  # CC7, the GM default.
BEND_STEP_S = 0.005  # Pitch-bend curves are sent at 200 Hz.
EXPRESSION_STEP_S = 0.02
MIN_MELODY_SECONDS = 2.0
CHANNELS = (0, 1)  # Melody notes alternate between these MIDI channels.


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


# ---------------------------------------------------------------- melodies

MODES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")
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
VIBRATO_FADE_S = 0.25
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


# ---------------------------------------------------------------- MIDI


def _bend_curve(note: Note) -> list[tuple[float, float]]:
    """(time_s, semitones) pitch-bend points of one note: unbent at onset, vibrato, glide.

    The bend then stays where it ends, so the release keeps the note's last pitch.
    """
    glide_start_s = note.end_s - note.glide_s
    points = [(note.start_s, 0.0)]
    if note.vibrato_cents > 0:
        begin_s = note.start_s + note.vibrato_delay_s
        times = np.arange(begin_s, glide_start_s, BEND_STEP_S)
        fade = np.clip((times - begin_s) / VIBRATO_FADE_S, 0.0, 1.0)
        depth = note.vibrato_cents / 100.0 * fade
        wave = depth * np.sin(2 * np.pi * note.vibrato_hz * (times - begin_s))
        points += zip(times, wave, strict=True)
    if note.glide_s > 0:
        times = np.arange(glide_start_s, note.end_s, BEND_STEP_S)
        u = (times - glide_start_s) / note.glide_s
        smooth = u * u * (3 - 2 * u)
        points += zip(times, (note.glide_to - note.pitch) * smooth, strict=True)
    return [(float(t), float(v)) for t, v in points]


def _channel_setup(melody: Melody, channel: int) -> list[MidiEvent]:
    return [
        MidiEvent(0, PROGRAM_CHANGE, channel, melody.instrument.program),
        *bend_range_events(0, channel, melody.bend_range),
        MidiEvent(0, CONTROL_CHANGE, channel, CC_VOLUME, melody.volume),
    ]


def melody_to_midi(melody: Melody) -> MidiFile:
    """The melody as MIDI: tempo, program, bend range (RPN 0), CC7, CC11 curve, bends, notes.

    Successive notes alternate between channels 0 and 1 (same settings), so
    each note bends alone: a glide or vibrato never moves the previous note's
    release tail, and overlapping legato notes keep their own pitch.
    """
    tempo_us = round(60e6 / melody.tempo_bpm)

    def tick(seconds: float) -> int:
        return seconds_to_ticks(seconds, TICKS_PER_QUARTER, tempo_us)

    setup = [MidiEvent(0, TEMPO, value=tempo_us)]
    setup += [event for channel in CHANNELS for event in _channel_setup(melody, channel)]
    # Within a tick: note-offs, then controllers, then note-ons.
    timed = [
        (tick(t), 1, MidiEvent(tick(t), CONTROL_CHANGE, channel, CC_EXPRESSION, value))
        for t, value in melody.expression
        for channel in CHANNELS
    ]
    for k, note in enumerate(melody.notes):
        channel = CHANNELS[k % len(CHANNELS)]
        for t, semitones in _bend_curve(note):
            value = round(semitones / melody.bend_range * 8192)
            bend = MidiEvent(tick(t), PITCH_BEND, channel, value=max(-8192, min(BEND_MAX, value)))
            timed.append((bend.tick, 1, bend))
        on, off = tick(note.start_s), tick(note.end_s)
        timed.append((on, 2, MidiEvent(on, NOTE_ON, channel, note.pitch, note.velocity)))
        timed.append((off, 0, MidiEvent(off, NOTE_OFF, channel, note.pitch, 64)))
    timed.sort(key=lambda item: item[:2])
    events = setup + _without_repeats([event for _, _, event in timed])
    return MidiFile(TICKS_PER_QUARTER, events, tick(melody.seconds))


def _without_repeats(events: list[MidiEvent]) -> list[MidiEvent]:
    """Drop controller and bend events that resend the value already in place."""
    kept, current = [], {}
    for event in events:
        if event.kind in (PITCH_BEND, CONTROL_CHANGE):
            key = (event.kind, event.channel, event.number)
            if current.get(key) == event.value:
                continue
            current[key] = event.value
        kept.append(event)
    return kept


# ---------------------------------------------------------------- ground truth


@dataclass
class _Channel:
    bend: int = 0
    bend_range: int = 2
    rpn: tuple[int, int] = (127, 127)
    volume: int = 100
    expression: int = 127


def _apply_control(state: _Channel, number: int, value: int) -> None:
    if number == CC_RPN_MSB:
        state.rpn = (value, state.rpn[1])
    elif number == CC_RPN_LSB:
        state.rpn = (state.rpn[0], value)
    elif number == CC_DATA_ENTRY and state.rpn == (0, 0):
        state.bend_range = value
    elif number == CC_VOLUME:
        state.volume = value
    elif number == CC_EXPRESSION:
        state.expression = value


def _gain_db(*values: int) -> float:
    """Gain of MIDI volume, expression and velocity: 40 log10(v / 127) dB each.

    FluidSynth (SoundFont default modulators) follows this curve exactly (measured).
    """
    if min(values) <= 0:
        return SILENCE_DB
    return max(SILENCE_DB, sum(40.0 * math.log10(v / 127.0) for v in values))


def _snapshots(midi: MidiFile) -> dict[str, np.ndarray]:
    """The sounding note, its bend, onset and gain after each distinct event time."""
    channels = [_Channel() for _ in range(16)]
    held: list[tuple[int, int, int, float]] = []  # (channel, note, velocity, onset_s), last on top
    rows = {
        "time_s": [-math.inf],
        "note": [0],
        "bend": [0.0],
        "onset_s": [0.0],
        "gain": [SILENCE_DB],
    }
    times = tick_seconds(midi, [e.tick for e in midi.events])
    for event, time_s in zip(midi.events, times, strict=True):
        state = channels[event.channel]
        if event.kind == NOTE_ON:
            held.append((event.channel, event.number, event.value, time_s))
        elif event.kind == NOTE_OFF:
            held = [h for h in held if (h[0], h[1]) != (event.channel, event.number)]
        elif event.kind == PITCH_BEND:
            state.bend = event.value
        elif event.kind == CONTROL_CHANGE:
            _apply_control(state, event.number, event.value)
        channel, note, velocity, onset_s = held[-1] if held else (0, 0, 0, 0.0)
        sounding = channels[channel]
        if rows["time_s"][-1] == time_s:  # Keep the state after the last event of a tick.
            for column in rows.values():
                column.pop()
        rows["time_s"].append(time_s)
        rows["note"].append(note)
        rows["bend"].append(sounding.bend / 8192 * sounding.bend_range if note else 0.0)
        rows["onset_s"].append(onset_s)
        rows["gain"].append(_gain_db(sounding.volume, sounding.expression, velocity))
    return {name: np.array(column) for name, column in rows.items()}


def ground_truth(
    midi: MidiFile,
    n_samples: int,
    sample_rate: int,
    frame_rate: int = DEFAULT_FRAME_RATE,
    glides: Sequence[tuple[float, float]] = (),
) -> dict[str, np.ndarray]:
    """Frame-rate truth of a monophonic MIDI performance (the latest held note sounds).

    As in :mod:`torchddsp.features`, frame i describes the audio centred on
    sample ``i * hop`` (time ``i / frame_rate``) and ``n_frames = n_samples //
    hop``. Arrays: ``f0_hz`` (note + pitch bend,
    0 where no note is held), ``note`` (MIDI number or 0), ``sustained`` (held,
    at least ``ATTACK_S`` after the note-on, outside ``glides``),
    ``loudness_expression`` (dB gain of CC7, CC11 and velocity, ``SILENCE_DB``
    where no note is held).
    Shape: -> each [n_frames].
    """
    hop = frame_hop_size(sample_rate, frame_rate)
    times = np.arange(n_samples // hop) / frame_rate
    rows = _snapshots(midi)
    k = np.searchsorted(rows["time_s"], times, side="right") - 1
    note, bend = rows["note"][k], rows["bend"][k]
    pitch = torch.from_numpy((note + bend).astype(np.float64))
    f0_hz = np.where(note > 0, midi_to_hz(pitch).numpy(), 0.0)
    in_glide = np.zeros(times.shape, dtype=bool)
    for start_s, end_s in glides:
        in_glide |= (times >= start_s) & (times < end_s)
    sustained = (note > 0) & (times - rows["onset_s"][k] >= ATTACK_S) & ~in_glide
    return {
        "f0_hz": f0_hz,
        "note": note.astype(np.int16),
        "sustained": sustained,
        "loudness_expression": rows["gain"][k].astype(np.float32),
    }


# ---------------------------------------------------------------- rendering


@dataclass(frozen=True)
class Rendering:
    """What :func:`render` wrote."""

    audio_path: Path
    truth_path: Path
    midi_path: Path | None
    seconds: float
    peak: float


def fluidsynth_binary() -> str:
    """The ``fluidsynth`` executable on PATH."""
    binary = shutil.which("fluidsynth")
    if binary is None:
        raise UserError(
            "fluidsynth not found: install it (Debian/Ubuntu: apt-get install fluidsynth)"
        )
    return binary


def check_soundfont(path: str | os.PathLike | None) -> Path:
    """``path`` (default FluidR3 GM) if it is a SoundFont file."""
    path = DEFAULT_SOUNDFONT if path is None else Path(path)
    if not path.is_file():
        raise UserError(
            f"SoundFont {path} not found: install it (Debian/Ubuntu: apt-get install "
            "fluid-soundfont-gm) or pass --soundfont PATH"
        )
    with open(path, "rb") as file:
        header = file.read(12)
    if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise UserError(f"{path}: not a SoundFont (.sf2/.sf3) file; pass --soundfont PATH")
    return path


def _run_fluidsynth(
    binary: str, soundfont: Path, midi_path: Path, wav_path: Path, rate: int, gain: float
) -> None:
    settings = [arg for setting in FLUIDSYNTH_SETTINGS for arg in ("-o", setting)]
    command = [binary, "-n", "-i", "-q", *settings, "-g", f"{gain:g}", "-r", str(rate)]
    command += ["-T", "wav", "-F", str(wav_path), str(soundfont), str(midi_path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    # FluidSynth exits 0 even when it cannot load the SoundFont: read its messages.
    problems = [
        line.strip()
        for line in result.stderr.splitlines()
        if "error" in line.lower() or line.startswith("Failed")
    ]
    if result.returncode != 0 or problems or not wav_path.is_file():
        detail = problems[0] if problems else f"exit status {result.returncode}"
        raise UserError(f"fluidsynth failed with SoundFont {soundfont}: {detail}")


def synthesize(
    midi: MidiFile, n_samples: int, sample_rate: int, soundfont: Path, gain: float
) -> np.ndarray:
    """Mono audio of ``midi`` by FluidSynth, aligned with MIDI time (latency removed).

    Shape: -> [n_samples].
    """
    if not 0 < gain <= 10:
        raise ValueError(f"gain must be within (0, 10] (FluidSynth's range), found {gain}")
    binary = fluidsynth_binary()
    synth_rate = min(max(sample_rate, SYNTH_RATE_RANGE[0]), SYNTH_RATE_RANGE[1])
    with tempfile.TemporaryDirectory(prefix="torchddsp-render-") as tmp:
        midi_path, wav_path = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        write_midi(midi_path, midi)
        _run_fluidsynth(binary, soundfont, midi_path, wav_path, synth_rate, gain)
        audio, _ = load_audio(wav_path, sample_rate)
    latency = round(FLUIDSYNTH_LATENCY_SAMPLES * sample_rate / synth_rate)
    audio = audio[latency : latency + n_samples]
    return np.pad(audio, (0, n_samples - len(audio)))


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


def _check_settings(manifest_path: Path, settings: dict) -> None:
    """Resuming into a folder rendered with other settings would mix two datasets."""
    if not manifest_path.is_file():
        return
    previous = json.loads(manifest_path.read_text()).get("settings") or {}
    changed = [
        f"{k} {previous.get(k)!r}, not {v!r}" for k, v in settings.items() if previous.get(k) != v
    ]
    if changed:
        raise UserError(
            f"{manifest_path.parent} holds a dataset rendered with other settings "
            f"({'; '.join(changed)}): use another --out folder or delete it"
        )


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
    _check_settings(manifest_path, settings)
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
