"""Oscillators: phase accumulation, sinusoid banks and harmonic synthesis.

Phase is accumulated in float64 and wrapped to [0, 2*pi), so minutes of audio
stay in tune in float32. ``harmonic_synthesis`` never holds a
[batch, n_samples, n_harmonics] tensor: it renders hop-sized chunks of frames
with a custom autograd function whose backward recomputes the sinusoids.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_positive, check_same_leading, check_single_channel, check_tensor
from .core import interpolation_weights, remove_above_nyquist, resample_frames

TWO_PI = 2.0 * math.pi
_CHUNK_ELEMENTS = {"cpu": 1 << 18, "cuda": 1 << 24}  # cache-sized on CPU, large on GPU


def accumulate_phase(
    frequencies_hz: torch.Tensor,
    sample_rate: float,
    initial_phase: torch.Tensor | None = None,
    final_samples: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Running phase of audio-rate frequencies, wrapped to [0, 2*pi).

    ``phase[t] = initial_phase + 2*pi * sum(frequencies_hz[:t + 1]) / sample_rate``
    (inclusive sum, as DDSP's oscillator bank). The sum runs in float64; the
    returned phase has the input's dtype and the final phase is float64, to be
    passed as ``initial_phase`` of the next block when streaming. The final
    phase is taken after ``final_samples`` samples (default: all of them), for
    a block whose last samples will be rendered again by the next one.

    Shape: frequencies_hz [batch, n_samples] or [batch, n_samples, n_oscillators],
    initial_phase [batch, 1] or [batch, n_oscillators]
    -> (phase like frequencies_hz, final_phase like initial_phase).
    """
    check_tensor(frequencies_hz, "frequencies_hz", (2, 3), "[batch, n_samples(, n_oscillators)]")
    check_positive(sample_rate, "sample_rate")
    phase = torch.cumsum(frequencies_hz.double() * (TWO_PI / sample_rate), dim=1)
    if initial_phase is not None:
        expected = (
            frequencies_hz.shape[0],
            1 if frequencies_hz.ndim == 2 else frequencies_hz.shape[2],
        )
        if tuple(initial_phase.shape) != expected:
            raise ValueError(
                f"initial_phase must have shape {list(expected)}, "
                f"found {tuple(initial_phase.shape)}"
            )
        start = initial_phase.double()
        phase = phase + (start if frequencies_hz.ndim == 2 else start[:, None])
    phase = torch.remainder(phase, TWO_PI)
    n_samples = frequencies_hz.shape[1]
    final_samples = n_samples if final_samples is None else final_samples
    if not 1 <= final_samples <= n_samples:
        raise ValueError(f"final_samples must be within [1, {n_samples}], found {final_samples}")
    final_phase = phase[:, final_samples - 1].reshape(frequencies_hz.shape[0], -1)
    return phase.to(frequencies_hz.dtype), final_phase


def oscillator_bank(
    frequency_envelopes: torch.Tensor,
    amplitude_envelopes: torch.Tensor,
    sample_rate: float,
    sum_sinusoids: bool = True,
    initial_phase: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of free sinusoids given audio-rate frequency and amplitude envelopes.

    Components at or above Nyquist are silenced sample by sample.
    Shape: frequency_envelopes, amplitude_envelopes [batch, n_samples, n_sinusoids],
    initial_phase [batch, n_sinusoids] -> (audio [batch, n_samples] or
    [batch, n_samples, n_sinusoids] if not sum_sinusoids, final_phase [batch, n_sinusoids]).
    """
    check_tensor(frequency_envelopes, "frequency_envelopes", 3, "[batch, n_samples, n_sinusoids]")
    check_tensor(amplitude_envelopes, "amplitude_envelopes", 3, "[batch, n_samples, n_sinusoids]")
    check_same_leading(
        frequency_envelopes, amplitude_envelopes, "frequency_envelopes", "amplitude_envelopes", 3
    )
    amplitudes = remove_above_nyquist(frequency_envelopes, amplitude_envelopes, sample_rate)
    phase, final_phase = accumulate_phase(frequency_envelopes, sample_rate, initial_phase)
    audio = amplitudes * torch.sin(phase)
    return (audio.sum(-1) if sum_sinusoids else audio), final_phase


def _frames_per_chunk(batch: int, hop: int, n_harmonics: int, device: torch.device) -> int:
    budget = _CHUNK_ELEMENTS.get(device.type, _CHUNK_ELEMENTS["cuda"])
    return max(1, budget // max(1, batch * hop * n_harmonics))


def _masked_harmonics(phase, f0_hz, numbers, nyquist, fn):
    """fn(k * phase) for harmonics k, zero where k * f0 reaches Nyquist: [..., hop, H]."""
    waves = fn(phase[..., None] * numbers)
    return waves.masked_fill_(f0_hz[..., None] * numbers >= nyquist, 0.0)


class _HarmonicSum(torch.autograd.Function):
    """y[n, r] = sum_k (w_this[r] A[n, k] + w_next[r] A[n + 1, k]) sin(k phase[n, r]).

    Inputs are frame-shaped: phase and f0_hz [batch, n_frames, hop],
    amplitudes [batch, n_frames + 1, n_harmonics] (last frame repeated).
    """

    @staticmethod
    def forward(ctx, phase, f0_hz, amplitudes, w_this, w_next, nyquist):
        ctx.save_for_backward(phase, f0_hz, amplitudes, w_this, w_next)
        ctx.nyquist = nyquist
        numbers = _harmonic_numbers(amplitudes)
        out = torch.empty_like(phase)
        for lo, hi in _chunks(phase, amplitudes):
            sines = _masked_harmonics(phase[:, lo:hi], f0_hz[:, lo:hi], numbers, nyquist, torch.sin)
            pair = torch.matmul(sines, _frame_pairs(amplitudes, lo, hi))
            out[:, lo:hi] = pair[..., 0] * w_this + pair[..., 1] * w_next
        return out

    @staticmethod
    def backward(ctx, grad_out):
        phase, f0_hz, amplitudes, w_this, w_next = ctx.saved_tensors
        want_phase, _, want_amplitudes = ctx.needs_input_grad[:3]
        numbers = _harmonic_numbers(amplitudes)
        grad_phase = torch.empty_like(phase) if want_phase else None
        grad_amplitudes = torch.zeros_like(amplitudes) if want_amplitudes else None
        for lo, hi in _chunks(phase, amplitudes):
            g = grad_out[:, lo:hi]
            if want_amplitudes:
                sines = _masked_harmonics(
                    phase[:, lo:hi], f0_hz[:, lo:hi], numbers, ctx.nyquist, torch.sin
                )
                weighted = torch.stack([g * w_this, g * w_next], dim=-1)
                pair = torch.matmul(sines.transpose(-1, -2), weighted)
                grad_amplitudes[:, lo:hi] += pair[..., 0]
                grad_amplitudes[:, lo + 1 : hi + 1] += pair[..., 1]
            if want_phase:
                slopes = (
                    _masked_harmonics(
                        phase[:, lo:hi], f0_hz[:, lo:hi], numbers, ctx.nyquist, torch.cos
                    )
                    * numbers
                )
                pair = torch.matmul(slopes, _frame_pairs(amplitudes, lo, hi))
                grad_phase[:, lo:hi] = g * (pair[..., 0] * w_this + pair[..., 1] * w_next)
        return grad_phase, None, grad_amplitudes, None, None, None


def _harmonic_numbers(amplitudes: torch.Tensor) -> torch.Tensor:
    return torch.arange(
        1, amplitudes.shape[-1] + 1, dtype=amplitudes.dtype, device=amplitudes.device
    )


def _chunks(phase: torch.Tensor, amplitudes: torch.Tensor):
    batch, n_frames, hop = phase.shape
    step = _frames_per_chunk(batch, hop, amplitudes.shape[-1], phase.device)
    return ((lo, min(lo + step, n_frames)) for lo in range(0, n_frames, step))


def _frame_pairs(amplitudes: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Amplitudes of frames n and n+1 side by side: [batch, hi - lo, n_harmonics, 2]."""
    return torch.stack([amplitudes[:, lo:hi], amplitudes[:, lo + 1 : hi + 1]], dim=-1)


def harmonic_synthesis(
    frequencies: torch.Tensor,
    amplitudes: torch.Tensor,
    harmonic_distribution: torch.Tensor,
    n_samples: int,
    sample_rate: float,
    amp_resample_method: str = "window",
    initial_phase: torch.Tensor | None = None,
    final_samples: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Render a harmonic oscillator from frame-rate f0, amplitude and distribution.

    Semantics of DDSP ``core.harmonic_synthesis``: harmonic k has frequency
    ``k * f0`` (f0 upsampled linearly), amplitude ``amplitudes *
    harmonic_distribution[..., k]`` upsampled with ``amp_resample_method``, and
    is silenced wherever ``k * f0`` reaches Nyquist. The phase starts from
    ``initial_phase`` (radians of the fundamental, default 0) and the final
    phase is returned for the next block.

    Shape: frequencies [batch, n_frames, 1], amplitudes [batch, n_frames, 1],
    harmonic_distribution [batch, n_frames, n_harmonics], initial_phase [batch, 1]
    -> (audio [batch, n_samples], final_phase [batch, 1] float64).
    """
    check_single_channel(frequencies, "frequencies")
    check_single_channel(amplitudes, "amplitudes")
    check_tensor(
        harmonic_distribution, "harmonic_distribution", 3, "[batch, n_frames, n_harmonics]"
    )
    check_same_leading(
        frequencies, harmonic_distribution, "frequencies", "harmonic_distribution", 2
    )
    check_same_leading(amplitudes, harmonic_distribution, "amplitudes", "harmonic_distribution", 2)
    check_positive(sample_rate, "sample_rate")
    batch, n_frames, _ = harmonic_distribution.shape
    f0_audio = resample_frames(frequencies, n_samples, "linear")[..., 0]
    phase, final_phase = accumulate_phase(f0_audio, sample_rate, initial_phase, final_samples)
    harmonic_amplitudes = amplitudes * harmonic_distribution
    if n_samples % n_frames == 0:
        hop = n_samples // n_frames
        weights = interpolation_weights(hop, amp_resample_method, phase.dtype, phase.device)
        frame_amplitudes = torch.cat([harmonic_amplitudes, harmonic_amplitudes[:, -1:]], dim=1)
    else:  # Uneven hop: interpolate amplitudes at audio rate, one "frame" per sample.
        hop, n_frames = 1, n_samples
        envelopes = resample_frames(harmonic_amplitudes, n_samples, amp_resample_method)
        frame_amplitudes = torch.cat([envelopes, envelopes[:, -1:]], dim=1)
        weights = (
            torch.ones(1, dtype=phase.dtype, device=phase.device),
            torch.zeros(1, dtype=phase.dtype, device=phase.device),
        )
    frame_shape = (batch, n_frames, hop)
    audio = _HarmonicSum.apply(
        phase.reshape(frame_shape),
        f0_audio.reshape(frame_shape),
        frame_amplitudes,
        *weights,
        sample_rate / 2.0,
    )
    return audio.reshape(batch, n_samples), final_phase
