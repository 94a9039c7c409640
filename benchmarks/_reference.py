"""Textbook implementations the benchmarks compare against.

Harmonic synthesis as most ports write it: every envelope upsampled to audio
rate per harmonic, phases by a cumulative sum at audio rate, a
[batch, n_samples, n_harmonics] sine tensor, summed.
"""

from __future__ import annotations

import math

import torch

from torchddsp.functional.core import resample_frames


def straightforward_harmonic(
    f0_hz, amplitudes, harmonic_distribution, n_samples, sample_rate, amp_resample_method="window"
):
    """Shape: f0_hz, amplitudes [batch, n_frames, 1], harmonic_distribution
    [batch, n_frames, n_harmonics] -> [batch, n_samples]."""
    n_harmonics = harmonic_distribution.shape[-1]
    numbers = torch.arange(1, n_harmonics + 1, device=f0_hz.device, dtype=f0_hz.dtype)
    freq_env = resample_frames(f0_hz * numbers, n_samples, "linear")
    amp_env = resample_frames(amplitudes * harmonic_distribution, n_samples, amp_resample_method)
    amp_env = torch.where(freq_env >= sample_rate / 2, 0.0, amp_env)
    phases = torch.cumsum(freq_env * (2 * math.pi / sample_rate), dim=1)
    return (amp_env * torch.sin(phases)).sum(-1)
