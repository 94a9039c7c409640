"""Reading and writing audio files: any format soundfile reads, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ..errors import UserError, warn
from .atomic import atomic_output


def load_audio(path: str | os.PathLike, sample_rate: int | None = None) -> tuple[np.ndarray, int]:
    """Read an audio file as mono float32, resampled to ``sample_rate`` if given.

    Channels are averaged; NaN or infinite samples (a corrupt or clipped
    float file) become silence, with a warning saying where. Raises
    :class:`UserError` for a missing or unreadable file.
    Shape: -> ([n_samples], sample_rate).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such audio file")
    try:
        audio, file_rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        raise UserError(f"{path}: not a readable audio file ({err})") from None
    audio = _silence_non_finite(audio.mean(axis=1), file_rate, path)
    if sample_rate is not None and sample_rate != file_rate:
        audio = soxr.resample(audio, file_rate, sample_rate, quality="HQ").astype(np.float32)
        file_rate = sample_rate
    return audio, file_rate


def _silence_non_finite(audio: np.ndarray, sample_rate: int, path: Path) -> np.ndarray:
    """Non-finite samples set to zero: one would poison every filter and feature after it."""
    bad = ~np.isfinite(audio)
    if bad.any():
        first = np.flatnonzero(bad)[0] / sample_rate
        warn(f"{path}: {bad.sum()} NaN or infinite samples (the first at {first:.3f} s) set to 0")
        audio = np.where(bad, np.float32(0.0), audio)
    return audio


def write_audio(path: str | os.PathLike, audio: np.ndarray, sample_rate: int) -> Path:
    """Write mono or [n_samples, channels] audio atomically (temporary file, then rename).

    The format follows the extension (wav, flac, ogg); wav is 16-bit PCM.
    Shape: audio [n_samples] or [n_samples, channels].
    """
    path = Path(path)
    suffix = path.suffix.lower() or ".wav"
    subtype = "PCM_16" if suffix == ".wav" else None
    with atomic_output(path) as tmp:
        sf.write(
            str(tmp),
            np.clip(audio, -1.0, 1.0),
            int(sample_rate),
            subtype=subtype,
            format=suffix.lstrip(".").upper(),
        )
    return path
