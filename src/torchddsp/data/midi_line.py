"""A MIDI file's melody as one monophonic line: the notes of one part (a track and/or a
channel, never the drums), then the highest-note rule where they overlap, with legato
handovers and chords. :mod:`torchddsp.play` turns the line into a model's controls.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import NamedTuple

import numpy as np

from ..errors import UserError
from .midi import NOTE_OFF, NOTE_ON, MidiEvent, MidiFile, last_tick, tick_seconds

DRUM_CHANNEL = 9  # General MIDI's channel 10, numbered from 0 as in MidiEvent
# An earlier note that ends at most this long after a later one starts hands over to it at its
# onset: a monophonic legato overlap, not a second voice to weigh by the highest-note rule.
LEGATO_OVERLAP_S = 0.1
CHORD_SPREAD_S = 0.03  # notes struck this close together make one chord


@dataclass(frozen=True)
class Note:
    """A note of the MIDI file, in seconds; ``channel`` and ``track`` numbered from 0."""

    start_s: float
    end_s: float
    pitch: int
    velocity: int
    channel: int
    track: int


@dataclass(frozen=True)
class Run:
    """A stretch of the line where one note sounds; ``legato``: joined to the run before it
    (a glide, no new attack)."""

    start_s: float
    end_s: float
    pitch: int
    velocity: int
    legato: bool


# ---- the notes of one part ------------------------------------------------------------------
def split_tracks(midi: MidiFile) -> list[list[MidiEvent]]:
    """The events of each of the file's tracks, in time order."""
    return [[event for event in midi.events if event.track == k] for k in range(midi.n_tracks)]


class TickNote(NamedTuple):
    """A note as the file has it: ticks, and ``channel`` and ``track`` numbered from 0."""

    start_tick: int
    end_tick: int
    pitch: int
    velocity: int
    channel: int
    track: int


def track_notes(events: list[MidiEvent], track: int, end_tick: int) -> list[TickNote]:
    """The notes of one track's ``events``, its index ``track``.

    A note-on of a key that is still sounding ends the earlier note there (and a
    note-off at that same tick belongs to the earlier note); a note still on at
    the end lasts until ``end_tick``.
    """
    sounding: dict[tuple[int, int], MidiEvent] = {}
    notes = []

    def close(on: MidiEvent, tick: int) -> None:
        if tick > on.tick:
            notes.append(TickNote(on.tick, tick, on.number, on.value, on.channel, track))

    for event in events:
        key = (event.channel, event.number)
        if event.kind == NOTE_ON:
            if key in sounding:
                close(sounding.pop(key), event.tick)
            sounding[key] = event
        elif event.kind == NOTE_OFF and key in sounding and sounding[key].tick < event.tick:
            close(sounding.pop(key), event.tick)
    for on in sounding.values():
        close(on, end_tick)
    return notes


def part_notes(
    midi: MidiFile,
    tracks: list[list[MidiEvent]],
    track: int | None = None,
    channel: int | None = None,
    name: str = "the MIDI file",
) -> list[Note]:
    """The notes of one track and/or channel (numbered from 1, as sequencers show them; None:
    all), without the drums (channel 10), sorted by onset. Times follow ``midi``'s tempo map.

    Raises :class:`UserError` naming ``name`` when the part has no notes to play.
    """
    if track is not None and not 1 <= track <= len(tracks):
        raise UserError(f"{name}: no track {track}; it has tracks 1..{len(tracks)}")
    if channel is not None and not 1 <= channel <= 16:
        raise UserError(f"channel must be within 1..16, found {channel}")
    if channel == DRUM_CHANNEL + 1:
        raise UserError(f"channel {channel} holds General MIDI drums: choose a melodic channel")
    end_tick = last_tick(midi)
    found = [note for k, events in enumerate(tracks) for note in track_notes(events, k, end_tick)]
    melodic = [note for note in found if note.channel != DRUM_CHANNEL]
    chosen = [
        note
        for note in melodic
        if (track is None or note.track == track - 1)
        and (channel is None or note.channel == channel - 1)
    ]
    if not chosen:
        raise UserError(_no_notes_message(name, found, melodic, track, channel))
    ticks = sorted({tick for note in chosen for tick in (note.start_tick, note.end_tick)})
    seconds = dict(zip(ticks, tick_seconds(midi, ticks), strict=True))
    notes = [
        Note(seconds[n.start_tick], seconds[n.end_tick], n.pitch, n.velocity, n.channel, n.track)
        for n in chosen
    ]
    return sorted(notes, key=lambda note: (note.start_s, note.pitch))


def _no_notes_message(
    name: str,
    found: list[TickNote],
    melodic: list[TickNote],
    track: int | None,
    channel: int | None,
) -> str:
    if not found:
        return f"{name}: no notes to play"
    if not melodic:
        return f"{name}: only drum notes (channel 10); play needs a melodic part"
    part = " ".join(
        f"{kind} {number}" for kind, number in (("track", track), ("channel", channel)) if number
    )
    tracks = numbered("track", {note.track + 1 for note in melodic})
    channels = numbered("channel", {note.channel + 1 for note in melodic})
    return f"{name}: {part} has no melodic notes; they are on {tracks}, {channels}"


def numbered(kind: str, numbers: set[int]) -> str:
    """``track 1`` or ``tracks 1, 3``."""
    return f"{kind}{'s' if len(numbers) > 1 else ''} {', '.join(map(str, sorted(numbers)))}"


# ---- one line: the highest-note rule --------------------------------------------------------
def handover_ends(notes: list[Note]) -> list[float]:
    """When each note stops counting as held: its end, or the onset of a later note that
    outlasts it when they overlap by at most ``LEGATO_OVERLAP_S`` (a legato line hands over
    on time, whichever note is higher). ``notes`` sorted by onset."""
    ends = []
    for k, note in enumerate(notes):
        end_s = note.end_s
        for later in notes[k + 1 :]:
            if later.start_s >= note.end_s:
                break
            hands_over = later.start_s > note.start_s and later.end_s >= note.end_s
            if hands_over and note.end_s - later.start_s <= LEGATO_OVERLAP_S:
                end_s = min(end_s, later.start_s)
        ends.append(end_s)
    return ends


def highest_line(notes: list[Note]) -> list[Run]:
    """The line the notes make when the highest held note sounds (the latest on a tie).

    A note is held until its end or its legato handover (:func:`handover_ends`).
    A change of note is legato when the note before has not ended at the change,
    or the new note was already held (the top note let go of, a lower one sounds).
    A higher note struck within ``CHORD_SPREAD_S`` of the sounding one's start, while
    that is held, takes its place: a rolled or humanised chord sounds its top note
    from its first onset, without a glide up to it.
    """
    ends = handover_ends(notes)
    changes = sorted(
        [(end_s, False, k) for k, end_s in enumerate(ends)]
        + [(note.start_s, True, k) for k, note in enumerate(notes)]
    )
    held: set[int] = set()
    runs: list[Run] = []
    current = None
    for index, (time_s, is_on, k) in enumerate(changes):
        if is_on:
            held.add(k)
        else:
            held.discard(k)
        if index + 1 < len(changes) and changes[index + 1][0] == time_s:
            continue  # every change at this time first
        top = max(held, key=lambda i: (notes[i].pitch, notes[i].start_s), default=None)
        if top == current:
            continue
        before = notes[current] if current is not None else None
        after = notes[top] if top is not None else None
        _change_note(runs, before, after, ends[top] if top is not None else 0.0, time_s)
        current = top
    return runs


def _change_note(
    runs: list[Run], before: Note | None, after: Note | None, after_end_s: float, time_s: float
) -> None:
    """Update ``runs`` as the sounding note changes from ``before`` to ``after`` (None: none)."""
    still_held = before is not None and before.end_s > time_s
    if after is None:
        runs[-1] = replace(runs[-1], end_s=time_s)
    elif still_held and after.start_s == time_s and time_s - runs[-1].start_s < CHORD_SPREAD_S:
        runs[-1] = replace(runs[-1], end_s=after_end_s, pitch=after.pitch, velocity=after.velocity)
    else:
        if before is not None:
            runs[-1] = replace(runs[-1], end_s=time_s)
        legato = still_held or (before is not None and after.start_s < time_s)
        runs.append(Run(time_s, after_end_s, after.pitch, after.velocity, legato))


def phrase_bounds(line: list[Run]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Start, end (seconds) and first velocity of each phrase: a run and the legato runs after it.

    Shape: -> each [n_phrases].
    """
    firsts = [k for k, run in enumerate(line) if not run.legato]
    lasts = [k - 1 for k in firsts[1:]] + [len(line) - 1]
    return (
        np.array([line[k].start_s for k in firsts]),
        np.array([line[k].end_s for k in lasts]),
        np.array([line[k].velocity for k in firsts]),
    )
