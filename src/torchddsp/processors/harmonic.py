"""Harmonic oscillator processor (DDSP ``synths.Harmonic``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..functional._checks import check_same_leading, check_tensor
from ..functional.core import exp_sigmoid, normalize_harmonics
from ..functional.oscillators import harmonic_synthesis
from .base import Synthesizer


class Harmonic(Synthesizer):
    """Additive harmonic synthesizer driven by f0, loudness and a spectral shape.

    ``get_controls`` scales amplitude and distribution with ``scale_fn``
    (default :func:`exp_sigmoid`), removes harmonics at or above Nyquist when
    ``normalize_below_nyquist`` and normalises the distribution to sum 1.
    Shape: amplitudes [batch, n_frames, 1], harmonic_distribution
    [batch, n_frames, n_harmonics], f0_hz [batch, n_frames, 1] -> audio [batch, n_samples].
    """

    def __init__(
        self,
        sample_rate: float = 16000,
        frame_rate: float = 250,
        scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = exp_sigmoid,
        normalize_below_nyquist: bool = True,
        amp_resample_method: str = "window",
    ):
        super().__init__(sample_rate, frame_rate)
        self.scale_fn = scale_fn
        self.normalize_below_nyquist = normalize_below_nyquist
        self.amp_resample_method = amp_resample_method

    def get_controls(
        self,
        amplitudes: torch.Tensor,
        harmonic_distribution: torch.Tensor,
        f0_hz: torch.Tensor,
        sample_rate: float | None = None,
    ) -> dict[str, torch.Tensor]:
        check_tensor(amplitudes, "amplitudes", 3, "[batch, n_frames, 1]")
        check_tensor(
            harmonic_distribution, "harmonic_distribution", 3, "[batch, n_frames, n_harmonics]"
        )
        check_tensor(f0_hz, "f0_hz", 3, "[batch, n_frames, 1]")
        check_same_leading(f0_hz, harmonic_distribution, "f0_hz", "harmonic_distribution", 2)
        if self.scale_fn is not None:
            amplitudes = self.scale_fn(amplitudes)
            harmonic_distribution = self.scale_fn(harmonic_distribution)
        nyquist_rate = self.rate(sample_rate) if self.normalize_below_nyquist else None
        harmonic_distribution = normalize_harmonics(harmonic_distribution, f0_hz, nyquist_rate)
        return {
            "amplitudes": amplitudes,
            "harmonic_distribution": harmonic_distribution,
            "f0_hz": f0_hz,
        }

    def get_signal(
        self,
        amplitudes: torch.Tensor,
        harmonic_distribution: torch.Tensor,
        f0_hz: torch.Tensor,
        sample_rate: float | None = None,
        n_samples: int | None = None,
    ) -> torch.Tensor:
        rate = self.rate(sample_rate)
        length = self.n_samples_for(f0_hz.shape[1], rate, n_samples)
        audio, _ = harmonic_synthesis(
            f0_hz, amplitudes, harmonic_distribution, length, rate, self.amp_resample_method
        )
        return audio
