"""A :class:`~torchddsp.data.melody.Melody` as a MIDI performance.

Tempo, program, pitch-bend range, volume and the expression curve set up two
channels; vibrato and glides become pitch-bend curves sampled at 200 Hz.
"""

from __future__ import annotations

import numpy as np

from .melody import Melody, Note
from .midi import (
    BEND_MAX,
    CC_EXPRESSION,
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
    seconds_to_ticks,
)

TICKS_PER_QUARTER = 960
BEND_STEP_S = 0.005  # Pitch-bend curves are sent at 200 Hz.
VIBRATO_FADE_S = 0.25
CHANNELS = (0, 1)  # Melody notes alternate between these MIDI channels.


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
