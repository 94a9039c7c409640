"""Filtered noise synthesizer (DDSP ``synths.FilteredNoise``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..functional._checks import check_tensor
from ..functional.core import exp_sigmoid
from ..functional.filters import frequency_filter
from .base import Synthesizer

MAGNITUDES_SHAPE = "[batch, n_frames, n_bands]"


class FilteredNoise(Synthesizer):
    """Uniform white noise shaped by a time-varying linear-phase FIR filter.

    Each frame's ``n_bands`` magnitudes are the filter's gains from DC to
    Nyquist at the call's sample rate, so one processor serves any rate and any
    number of frames. ``window_size`` (taps) is clipped to ``2 * (n_bands - 1)``.
    Differences from DDSP: the output length follows the number of frames
    (``n_frames * sample_rate / frame_rate``, rounded) rather than a constructor
    ``n_samples``, the noise can come from a ``torch.Generator``, and the
    filter is centred (see :func:`torchddsp.functional.filters.fft_convolve`).
    Call as ``forward(magnitudes, sample_rate=None, n_samples=None, generator=None)``.
    Shape: magnitudes [batch, n_frames, n_bands] -> [batch, n_samples].
    """

    def __init__(
        self,
        sample_rate: float = 16000,
        frame_rate: float = 250,
        window_size: int = 257,
        scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = exp_sigmoid,
        initial_bias: float = -5.0,
    ):
        super().__init__(sample_rate, frame_rate)
        if window_size < 0:
            raise ValueError(f"window_size must be >= 0 (0: the full filter), found {window_size}")
        self.window_size = window_size
        self.scale_fn = scale_fn
        self.initial_bias = initial_bias

    def get_controls(
        self, magnitudes: torch.Tensor, sample_rate: float | None = None
    ) -> dict[str, torch.Tensor]:
        """Network outputs to filter gains: ``scale_fn(magnitudes + initial_bias)``.

        Without a ``scale_fn`` the magnitudes pass through unchanged (no bias).
        Shape: magnitudes [batch, n_frames, n_bands] -> same.
        """
        check_tensor(magnitudes, "magnitudes", 3, MAGNITUDES_SHAPE)
        if self.scale_fn is not None:
            magnitudes = self.scale_fn(magnitudes + self.initial_bias)
        return {"magnitudes": magnitudes}

    def get_signal(
        self,
        magnitudes: torch.Tensor,
        sample_rate: float | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Filter uniform noise in [-1, 1] by the per-frame gains.

        ``n_samples`` defaults to ``round(n_frames * sample_rate / frame_rate)``.
        Shape: magnitudes [batch, n_frames, n_bands] -> [batch, n_samples].
        """
        check_tensor(magnitudes, "magnitudes", 3, MAGNITUDES_SHAPE)
        batch, n_frames, _ = magnitudes.shape
        n_samples = self.n_samples_for(n_frames, self.rate(sample_rate), n_samples)
        noise = torch.rand(
            batch, n_samples, generator=generator, dtype=magnitudes.dtype, device=magnitudes.device
        )
        return frequency_filter(2.0 * noise - 1.0, magnitudes, window_size=self.window_size)
