"""A small Standard MIDI File writer and reader (no dependency).

Covers what SoundFont rendering needs: note on/off, pitch bend (with its
range set by RPN 0), control change (CC7 volume, CC11 expression, ...),
program change and tempo. The writer produces format-0 files; the reader
accepts formats 0 and 1 and skips everything else (sysex, other meta events,
aftertouch) by length.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import UserError
from .atomic import write_bytes_atomic

NOTE_ON = "note_on"
NOTE_OFF = "note_off"
CONTROL_CHANGE = "control_change"
PROGRAM_CHANGE = "program_change"
PITCH_BEND = "pitch_bend"
TEMPO = "tempo"
EVENT_KINDS = (NOTE_ON, NOTE_OFF, CONTROL_CHANGE, PROGRAM_CHANGE, PITCH_BEND, TEMPO)

CC_DATA_ENTRY = 6
CC_VOLUME = 7
CC_EXPRESSION = 11
CC_DATA_ENTRY_FINE = 38
CC_RPN_LSB = 100
CC_RPN_MSB = 101

BEND_MAX = 8191  # Pitch bend is 14-bit, centred at 0: -8192 .. 8191.
DEFAULT_TEMPO_US = 500_000  # 120 bpm until a tempo event says otherwise.

_STATUS = {NOTE_OFF: 0x80, NOTE_ON: 0x90, CONTROL_CHANGE: 0xB0, PROGRAM_CHANGE: 0xC0}
_DATA_BYTES = {0x80: 2, 0x90: 2, 0xA0: 2, 0xB0: 2, 0xC0: 1, 0xD0: 1, 0xE0: 2}


@dataclass(frozen=True)
class MidiEvent:
    """One MIDI event at an absolute time in ticks.

    ``number`` and ``value`` by kind: note_on / note_off: note, velocity;
    control_change: controller, value; program_change: program, unused;
    pitch_bend: unused, bend in -8192..8191; tempo: unused, microseconds per
    quarter note. ``track``: the file's track it came from, numbered from 0 (the
    writer puts every event in one track).
    """

    tick: int
    kind: str
    channel: int = 0
    number: int = 0
    value: int = 0
    track: int = 0


@dataclass(frozen=True)
class MidiFile:
    """Events merged across tracks in time order, the time division, and where the song ends.

    ``end_tick`` is the end-of-track marker (the latest one across tracks); a
    player keeps running until then, through release tails.
    """

    ticks_per_quarter: int
    events: list[MidiEvent]
    end_tick: int = 0
    n_tracks: int = 1


def bend_range_events(tick: int, channel: int, semitones: int) -> list[MidiEvent]:
    """RPN 0 (pitch bend range) set to whole ``semitones``, then the null RPN.

    Whole semitones only: FluidSynth ignores the cents byte. The null RPN stops
    later data-entry controllers from changing the range.
    """
    if not isinstance(semitones, int) or not 1 <= semitones <= 24:
        raise ValueError(
            f"bend range must be a whole number of semitones in 1..24, found {semitones!r}"
        )
    controls = [
        (CC_RPN_MSB, 0),
        (CC_RPN_LSB, 0),
        (CC_DATA_ENTRY, semitones),
        (CC_DATA_ENTRY_FINE, 0),
        (CC_RPN_MSB, 127),
        (CC_RPN_LSB, 127),
    ]
    return [MidiEvent(tick, CONTROL_CHANGE, channel, cc, value) for cc, value in controls]


def seconds_to_ticks(seconds: float, ticks_per_quarter: int, tempo_us: int) -> int:
    """Time in seconds to ticks at a constant tempo (microseconds per quarter)."""
    return round(seconds * 1e6 * ticks_per_quarter / tempo_us)


def tick_seconds(midi: MidiFile, ticks: list[int]) -> list[float]:
    """Times in seconds of ascending ``ticks``, following the tempo changes of ``midi``."""
    tempos = [e for e in midi.events if e.kind == TEMPO]
    seconds, last_tick, elapsed, tempo_us, t = [], 0, 0.0, DEFAULT_TEMPO_US, 0
    for tick in ticks:
        while t < len(tempos) and tempos[t].tick <= tick:
            elapsed += (tempos[t].tick - last_tick) * tempo_us / (1e6 * midi.ticks_per_quarter)
            last_tick, tempo_us, t = tempos[t].tick, tempos[t].value, t + 1
        seconds.append(elapsed + (tick - last_tick) * tempo_us / (1e6 * midi.ticks_per_quarter))
    return seconds


def last_tick(midi: MidiFile) -> int:
    """The later of the end-of-track marker and the last event."""
    return max([midi.end_tick] + [e.tick for e in midi.events])


def _variable_length(value: int) -> bytes:
    groups = [value & 0x7F]
    value >>= 7
    while value:
        groups.append((value & 0x7F) | 0x80)
        value >>= 7
    return bytes(reversed(groups))


def _event_bytes(event: MidiEvent) -> bytes:
    if not 0 <= event.channel <= 15:
        raise ValueError(f"MIDI channel must be within 0..15, found {event.channel}")
    if event.kind == TEMPO:
        return b"\xff\x51\x03" + event.value.to_bytes(3, "big")
    if event.kind == PITCH_BEND:
        raw = max(-8192, min(BEND_MAX, event.value)) + 8192
        return bytes([0xE0 | event.channel, raw & 0x7F, raw >> 7])
    if event.kind not in _STATUS:
        raise ValueError(f"unknown MIDI event kind {event.kind!r}; expected one of {EVENT_KINDS}")
    status = bytes([_STATUS[event.kind] | event.channel, event.number & 0x7F])
    return status if event.kind == PROGRAM_CHANGE else status + bytes([event.value & 0x7F])


def midi_bytes(midi: MidiFile) -> bytes:
    """``midi`` as a format-0 Standard MIDI File.

    Events are sorted by tick, keeping their given order within a tick; the
    end-of-track marker sits at :func:`last_tick`.
    """
    track, previous = bytearray(), 0
    for event in sorted(midi.events, key=lambda e: e.tick):
        if event.tick < 0:
            raise ValueError(f"MIDI event tick must be >= 0, found {event.tick}")
        track += _variable_length(event.tick - previous) + _event_bytes(event)
        previous = event.tick
    track += _variable_length(last_tick(midi) - previous) + b"\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, midi.ticks_per_quarter)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def write_midi(path: str | os.PathLike, midi: MidiFile) -> Path:
    """Write ``midi`` as a format-0 MIDI file, atomically."""
    return write_bytes_atomic(path, midi_bytes(midi))


class _Reader:
    """A cursor over one track's bytes."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            raise ValueError("track ends in the middle of an event")
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise ValueError("track ends in the middle of an event")
        self.pos += n
        return self.data[self.pos - n : self.pos]

    def variable_length(self) -> int:
        value = 0
        for _ in range(4):
            b = self.byte()
            value = (value << 7) | (b & 0x7F)
            if not b & 0x80:
                return value
        raise ValueError("variable-length quantity longer than 4 bytes")


def _channel_event(tick: int, status: int, data: bytes) -> MidiEvent | None:
    kind, channel = status & 0xF0, status & 0x0F
    if kind == 0x90 and data[1] > 0:
        return MidiEvent(tick, NOTE_ON, channel, data[0], data[1])
    if kind in (0x80, 0x90):  # note_on with velocity 0 is a note_off.
        return MidiEvent(tick, NOTE_OFF, channel, data[0], data[1] if kind == 0x80 else 0)
    if kind == 0xB0:
        return MidiEvent(tick, CONTROL_CHANGE, channel, data[0], data[1])
    if kind == 0xC0:
        return MidiEvent(tick, PROGRAM_CHANGE, channel, data[0])
    if kind == 0xE0:
        return MidiEvent(tick, PITCH_BEND, channel, 0, (data[0] | data[1] << 7) - 8192)
    return None  # aftertouch


def _track_events(data: bytes) -> tuple[list[MidiEvent], int]:
    """The events of one track and the tick where it ends."""
    reader, events, tick, running = _Reader(data), [], 0, 0
    while reader.pos < len(data):
        tick += reader.variable_length()
        status = reader.byte()
        if status == 0xFF:
            meta, payload = reader.byte(), reader.take(reader.variable_length())
            if meta == 0x2F:
                break
            if meta == 0x51 and len(payload) == 3:
                events.append(MidiEvent(tick, TEMPO, value=int.from_bytes(payload, "big")))
            continue
        if status in (0xF0, 0xF7):
            reader.take(reader.variable_length())
            continue
        if status < 0x80:  # running status: this byte is the first data byte.
            if not running:
                raise ValueError("data byte without a status byte")
            reader.pos -= 1
            status = running
        elif status >= 0xF0:
            raise ValueError(f"unexpected system message 0x{status:02x} in a track")
        running = status
        event = _channel_event(tick, status, reader.take(_DATA_BYTES[status & 0xF0]))
        if event is not None:
            events.append(event)
    return events, tick


def _chunks(data: bytes):
    pos = 0
    while pos + 8 <= len(data):
        name, length = data[pos : pos + 4], struct.unpack(">I", data[pos + 4 : pos + 8])[0]
        if pos + 8 + length > len(data):
            raise ValueError(f"{name.decode('latin-1')} chunk runs past the end of the file")
        yield name, data[pos + 8 : pos + 8 + length]
        pos += 8 + length


def parse_midi(data: bytes) -> MidiFile:
    """Parse Standard MIDI File bytes; raises ``ValueError`` when they are not one."""
    chunks = list(_chunks(data))
    if not chunks or chunks[0][0] != b"MThd" or len(chunks[0][1]) < 6:
        raise ValueError("no MThd header")
    file_format, _, division = struct.unpack(">HHH", chunks[0][1][:6])
    if file_format not in (0, 1):
        raise ValueError(f"MIDI format {file_format} is not supported (only 0 and 1)")
    if division & 0x8000:
        raise ValueError("SMPTE time division is not supported")
    tracks = [_track_events(body) for name, body in chunks[1:] if name == b"MTrk"]
    events = [replace(event, track=k) for k, (track, _) in enumerate(tracks) for event in track]
    end_tick = max((end for _, end in tracks), default=0)
    # Stable sort: within a tick, track order then file order, as players do.
    return MidiFile(division, sorted(events, key=lambda e: e.tick), end_tick, len(tracks))


def read_midi(path: str | os.PathLike) -> MidiFile:
    """Read a MIDI file; a missing or malformed file raises :class:`UserError`."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such MIDI file")
    if path.stat().st_size == 0:
        raise UserError(f"{path}: the file is empty, not a MIDI file")
    try:
        return parse_midi(path.read_bytes())
    except ValueError as err:
        raise UserError(f"{path}: not a readable MIDI file ({err})") from None
