"""Fundamental-frequency (f0) trackers: ``f0_hz`` and ``confidence`` per frame."""

from .crepe import (
    Crepe,
    FoldedCrepe,
    crepe,
    crepe_activations,
    decode_activations,
    local_average_cents,
    normalize_frames,
)
from .viterbi import BandedTransition, crepe_transition, viterbi_decode
from .yin import (
    Yin,
    cumulative_mean_normalized_difference,
    default_frame_size,
    difference_function,
    yin,
)

__all__ = [
    "BandedTransition",
    "Crepe",
    "FoldedCrepe",
    "crepe",
    "crepe_activations",
    "crepe_transition",
    "decode_activations",
    "local_average_cents",
    "normalize_frames",
    "viterbi_decode",
    "Yin",
    "cumulative_mean_normalized_difference",
    "default_frame_size",
    "difference_function",
    "yin",
]
