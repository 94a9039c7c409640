"""Frame-rate ground truth of a monophonic MIDI performance, as FluidSynth plays it.

The sounding note (the latest held), its pitch bend and its gain (CC7, CC11
and velocity on FluidSynth's curve) are tracked event by event, then sampled
on the frame grid of :mod:`torchddsp.features`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ..functional.core import midi_to_hz
from ..functional.spectral import frame_hop_size
from .midi import (
    CC_DATA_ENTRY,
    CC_EXPRESSION,
    CC_RPN_LSB,
    CC_RPN_MSB,
    CC_VOLUME,
    CONTROL_CHANGE,
    NOTE_OFF,
    NOTE_ON,
    PITCH_BEND,
    MidiFile,
    tick_seconds,
)

DEFAULT_FRAME_RATE = 250
ATTACK_S = 0.06  # Frames this soon after a note-on are not "sustained".
SILENCE_DB = -120.0  # loudness_expression where no note is held.


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
