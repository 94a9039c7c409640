"""Statistics of the note frames of a prepared dataset's train split, as Magenta computes them.

Mean, spread and quantiles of pitch and loudness over the frames that are
confidently pitched and loud enough (Magenta's ``compute_dataset_statistics``);
the loudness quantiles drive the quantile mapping of timbre transfer.
"""

from __future__ import annotations

import numpy as np
import torch

from ..features import CONFIDENT
from ..functional.core import hz_to_midi
from .dataset import FEATURE_NAMES
from .examples import ExampleLayout, Source

NOTE_MIN_LOUDNESS_DB = -60.0  # Quieter frames are release tails and room noise, not notes.
PITCH_QUANTILE_LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
N_LOUDNESS_QUANTILES = 101  # 0, 1, ..., 100 %


def train_statistics(sources: list[Source], layout: ExampleLayout) -> dict:
    """Note-frame statistics over the frames the train examples cover, each once."""
    pitch, loudness, n_frames = [], [], 0
    for source in sources:
        if "train" not in source.regions:
            continue
        starts = layout.starts(*source.regions["train"])
        covered = slice(starts[0], starts[-1] + layout.example_frames)
        with np.load(source.cache_path) as cached:
            f0_hz, confidence, loudness_db = (cached[name][covered] for name in FEATURE_NAMES)
        notes = (confidence >= CONFIDENT) & (loudness_db > NOTE_MIN_LOUDNESS_DB)
        pitch.append(hz_to_midi(torch.from_numpy(f0_hz[notes])).numpy())
        loudness.append(loudness_db[notes])
        n_frames += len(confidence)
    return note_statistics(np.concatenate(pitch), np.concatenate(loudness), n_frames)


def note_statistics(pitch_midi: np.ndarray, loudness_db: np.ndarray, n_frames: int) -> dict:
    """Magenta-style statistics of note frames; values are None when there are none.

    Shape: pitch_midi, loudness_db [n_note_frames] -> dict.
    """
    pitch_midi, loudness_db = pitch_midi.astype(np.float64), loudness_db.astype(np.float64)
    loudness_levels = np.linspace(0.0, 1.0, N_LOUDNESS_QUANTILES)
    statistics = {
        "n_frames": n_frames,
        "n_note_frames": len(pitch_midi),
        "note_min_confidence": CONFIDENT,
        "note_min_loudness_db": NOTE_MIN_LOUDNESS_DB,
        "pitch_quantile_levels": list(PITCH_QUANTILE_LEVELS),
        "loudness_quantile_levels": loudness_levels.tolist(),
    }
    for name, values, levels in (
        ("pitch", pitch_midi, PITCH_QUANTILE_LEVELS),
        ("loudness", loudness_db, loudness_levels),
    ):
        some = len(values) > 0
        for stat in ("mean", "std", "min", "max"):
            statistics[f"{stat}_{name}"] = float(getattr(np, stat)(values)) if some else None
        statistics[f"{name}_quantiles"] = np.quantile(values, levels).tolist() if some else None
    return statistics
