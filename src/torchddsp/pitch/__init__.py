"""Fundamental-frequency (f0) trackers: ``f0_hz`` and ``confidence`` per frame."""

from .yin import (
    YinStream,
    cumulative_mean_normalized_difference,
    default_frame_size,
    difference_function,
    yin,
)

__all__ = [
    "YinStream",
    "cumulative_mean_normalized_difference",
    "default_frame_size",
    "difference_function",
    "yin",
]
