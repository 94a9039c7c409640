"""Uploads: size limits enforced while the bytes arrive, then the content checked.

The page sends a file as the raw request body (no multipart parsing to trust),
the browser's file name in the query string for messages only. A file is kept
only if it is what its kind says, judged by its content: audio that soundfile
reads (WAV, FLAC, OGG, MP3, ...), or a MIDI file that parses.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from ..errors import UserError

MB = 2**20
MIN_SECONDS = 0.1  # what transfer and convert accept


@dataclass(frozen=True)
class UploadLimits:
    """Largest file of each kind, in bytes."""

    audio: int = 50 * MB  # an input to transfer or convert
    recording: int = 200 * MB  # a training recording (a long take)
    midi: int = 1 * MB

    def of(self, kind: object) -> int:
        if kind not in ("audio", "recording", "midi"):
            raise UserError("unknown upload kind: send audio, recording or midi")
        return getattr(self, kind)


class TooLarge(UserError):
    """An upload over its limit (HTTP 413)."""


def display_name(name: str | None) -> str:
    """The browser's file name, reduced to something safe to echo: no folders, no controls."""
    base = re.split(r"[\\/]", name or "")[-1]
    cleaned = "".join(c for c in base if c.isprintable()).strip()[:80]
    return cleaned or "the file"


def check_declared_size(name: str, declared: str | None, limit: int) -> None:
    """Refuse at once a body whose Content-Length is over the limit."""
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise TooLarge(_too_large(name, int(declared), limit))


async def save_limited(chunks: AsyncIterator[bytes], path: Path, name: str, limit: int) -> int:
    """Write the body to ``path``, stopping (and deleting it) once it passes ``limit``."""
    size = 0
    try:
        with open(path, "wb") as file:
            async for chunk in chunks:
                size += len(chunk)
                if size > limit:
                    raise TooLarge(_too_large(name, size, limit, at_least=True))
                file.write(chunk)
    except BaseException:
        path.unlink(missing_ok=True)
        raise
    return size


def check_upload(path: Path, name: str, kind: str) -> dict:
    """What the page shows of a valid upload; a UserError naming the file if not valid."""
    if path.stat().st_size == 0:
        raise UserError(f"{name} is empty: choose a file with something in it")
    return check_midi(path, name) if kind == "midi" else check_audio(path, name)


def check_audio(path: Path, name: str) -> dict:
    try:
        info = sf.info(str(path))
    except (sf.LibsndfileError, RuntimeError, TypeError):
        raise UserError(
            f"{name} is not an audio file this app can read: use WAV, FLAC, OGG or MP3"
        ) from None
    if info.duration < MIN_SECONDS:
        raise UserError(f"{name} is too short ({info.duration:.2f} s): give at least 0.1 s")
    return {"seconds": info.duration, "sample_rate": info.samplerate, "channels": info.channels}


def check_midi(path: Path, name: str) -> dict:
    from ..data.midi import NOTE_ON, parse_midi

    data = path.read_bytes()
    if not data.startswith(b"MThd"):
        raise UserError(f"{name} is not a MIDI file (.mid): it lacks the MIDI header")
    try:
        midi = parse_midi(data)
    except ValueError as err:
        raise UserError(f"{name} is not a readable MIDI file ({err})") from None
    notes = sum(event.kind == NOTE_ON and event.value > 0 for event in midi.events)
    if not notes:
        raise UserError(f"{name} has no notes to play")
    return {"notes": notes, "tracks": midi.n_tracks}


def _too_large(name: str, size: int, limit: int, at_least: bool = False) -> str:
    more = "over " if at_least else ""
    return f"{name} is {more}{size / MB:.1f} MB, more than the {limit / MB:g} MB this app accepts"
