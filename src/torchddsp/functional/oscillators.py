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
from .core import (
    interpolation_weights,
    remove_above_nyquist,
    resample_frames,
)


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
    if not torch.jit.is_scripting():
        _check_phase_inputs(frequencies_hz, sample_rate, initial_phase, final_samples)
    n_samples = frequencies_hz.shape[1]
    final_samples = n_samples if final_samples is None else final_samples
    phase = torch.cumsum(frequencies_hz.double() * (2.0 * math.pi / sample_rate), dim=1)
    if initial_phase is not None:
        start = initial_phase.double()
        phase = phase + (start if frequencies_hz.dim() == 2 else start[:, None])
    phase = torch.remainder(phase, 2.0 * math.pi)
    final_phase = phase[:, final_samples - 1].reshape(frequencies_hz.shape[0], -1)
    return phase.to(frequencies_hz.dtype), final_phase


def _check_phase_inputs(
    frequencies_hz: object, sample_rate: float, initial_phase: object, final_samples: int | None
) -> None:
    check_tensor(frequencies_hz, "frequencies_hz", (2, 3), "[batch, n_samples(, n_oscillators)]")
    check_positive(sample_rate, "sample_rate")
    batch, n_samples = frequencies_hz.shape[:2]
    if initial_phase is not None:
        expected = (batch, 1 if frequencies_hz.ndim == 2 else frequencies_hz.shape[2])
        if tuple(initial_phase.shape) != expected:
            raise ValueError(
                f"initial_phase must have shape {list(expected)}, "
                f"found {tuple(initial_phase.shape)}"
            )
    if final_samples is not None and not 1 <= final_samples <= n_samples:
        raise ValueError(f"final_samples must be within [1, {n_samples}], found {final_samples}")


def oscillator_bank(
    frequency_envelopes: torch.Tensor,
    amplitude_envelopes: torch.Tensor,
    sample_rate: float,
    sum_sinusoids: bool = True,
    initial_phase: torch.Tensor | None = None,
    final_samples: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of free sinusoids given audio-rate frequency and amplitude envelopes.

    Components at or above Nyquist are silenced sample by sample. The final
    phase is taken after ``final_samples`` samples (default all), as in
    :func:`accumulate_phase`.
    Shape: frequency_envelopes, amplitude_envelopes [batch, n_samples, n_sinusoids],
    initial_phase [batch, n_sinusoids] -> (audio [batch, n_samples] or
    [batch, n_samples, n_sinusoids] if not sum_sinusoids, final_phase [batch, n_sinusoids]).
    """
    if not torch.jit.is_scripting():
        shape = "[batch, n_samples, n_sinusoids]"
        check_tensor(frequency_envelopes, "frequency_envelopes", 3, shape)
        check_tensor(amplitude_envelopes, "amplitude_envelopes", 3, shape)
        check_same_leading(
            frequency_envelopes,
            amplitude_envelopes,
            "frequency_envelopes",
            "amplitude_envelopes",
            3,
        )
    amplitudes = remove_above_nyquist(frequency_envelopes, amplitude_envelopes, sample_rate)
    phase, final_phase = accumulate_phase(
        frequency_envelopes, sample_rate, initial_phase, final_samples
    )
    audio = amplitudes * torch.sin(phase)
    return (audio.sum(-1) if sum_sinusoids else audio), final_phase


def _frames_per_chunk(batch: int, hop: int, n_harmonics: int, device: torch.device) -> int:
    budget = (1 << 18) if device.type == "cpu" else (1 << 24)  # cache-sized on CPU, large on GPU
    return max(1, budget // max(1, batch * hop * n_harmonics))


def _masked_harmonics(
    waves: torch.Tensor, f0_hz: torch.Tensor, numbers: torch.Tensor, nyquist: float
) -> torch.Tensor:
    """Zero the harmonics k whose frequency k * f0 reaches Nyquist: [..., hop, H]."""
    return waves.masked_fill_(f0_hz[..., None] * numbers >= nyquist, 0.0)


def _harmonic_sines(
    phase: torch.Tensor, f0_hz: torch.Tensor, numbers: torch.Tensor, nyquist: float
):
    return _masked_harmonics(torch.sin(phase[..., None] * numbers), f0_hz, numbers, nyquist)


def _frame_pairs(amplitudes: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """Amplitudes of frames n and n+1 side by side: [batch, hi - lo, n_harmonics, 2]."""
    return torch.stack([amplitudes[:, lo:hi], amplitudes[:, lo + 1 : hi + 1]], dim=-1)


def _harmonic_numbers(amplitudes: torch.Tensor) -> torch.Tensor:
    return torch.arange(
        1, amplitudes.shape[-1] + 1, dtype=amplitudes.dtype, device=amplitudes.device
    )


def harmonic_sum(
    phase: torch.Tensor,
    f0_hz: torch.Tensor,
    amplitudes: torch.Tensor,
    w_this: torch.Tensor,
    w_next: torch.Tensor,
    nyquist: float,
) -> torch.Tensor:
    """y[n, r] = sum_k (w_this[r] A[n, k] + w_next[r] A[n + 1, k]) sin(k phase[n, r]).

    The forward kernel of harmonic synthesis, chunk by chunk of frames so that
    no [batch, n_samples, n_harmonics] tensor is held.
    Shape: phase, f0_hz [batch, n_frames, hop], amplitudes [batch, n_frames + 1,
    n_harmonics], w_this, w_next [hop] -> [batch, n_frames, hop].
    """
    batch, n_frames, hop = phase.shape
    numbers = _harmonic_numbers(amplitudes)
    step = _frames_per_chunk(batch, hop, amplitudes.shape[-1], phase.device)
    out = torch.empty_like(phase)
    for lo in range(0, n_frames, step):
        hi = min(lo + step, n_frames)
        sines = _harmonic_sines(phase[:, lo:hi], f0_hz[:, lo:hi], numbers, nyquist)
        pair = torch.matmul(sines, _frame_pairs(amplitudes, lo, hi))
        out[:, lo:hi] = pair[..., 0] * w_this + pair[..., 1] * w_next
    return out


class _HarmonicSum(torch.autograd.Function):
    """:func:`harmonic_sum` with a backward that recomputes the sinusoids chunk by chunk."""

    @staticmethod
    def forward(ctx, phase, f0_hz, amplitudes, w_this, w_next, nyquist):
        ctx.save_for_backward(phase, f0_hz, amplitudes, w_this, w_next)
        ctx.nyquist = nyquist
        return harmonic_sum(phase, f0_hz, amplitudes, w_this, w_next, nyquist)

    @staticmethod
    def backward(ctx, grad_out):
        phase, f0_hz, amplitudes, w_this, w_next = ctx.saved_tensors
        want_phase, _, want_amplitudes = ctx.needs_input_grad[:3]
        numbers = _harmonic_numbers(amplitudes)
        grad_phase = torch.empty_like(phase) if want_phase else None
        grad_amplitudes = torch.zeros_like(amplitudes) if want_amplitudes else None
        batch, n_frames, hop = phase.shape
        step = _frames_per_chunk(batch, hop, amplitudes.shape[-1], phase.device)
        for lo in range(0, n_frames, step):
            hi = min(lo + step, n_frames)
            g = grad_out[:, lo:hi]
            if want_amplitudes:
                sines = _harmonic_sines(phase[:, lo:hi], f0_hz[:, lo:hi], numbers, ctx.nyquist)
                weighted = torch.stack([g * w_this, g * w_next], dim=-1)
                pair = torch.matmul(sines.transpose(-1, -2), weighted)
                grad_amplitudes[:, lo:hi] += pair[..., 0]
                grad_amplitudes[:, lo + 1 : hi + 1] += pair[..., 1]
            if want_phase:
                cosines = torch.cos(phase[:, lo:hi, :, None] * numbers)
                slopes = _masked_harmonics(cosines, f0_hz[:, lo:hi], numbers, ctx.nyquist)
                pair = torch.matmul(slopes * numbers, _frame_pairs(amplitudes, lo, hi))
                grad_phase[:, lo:hi] = g * (pair[..., 0] * w_this + pair[..., 1] * w_next)
        return grad_phase, None, grad_amplitudes, None, None, None


def _harmonic_sum_autograd(
    phase: torch.Tensor,
    f0_hz: torch.Tensor,
    amplitudes: torch.Tensor,
    w_this: torch.Tensor,
    w_next: torch.Tensor,
    nyquist: float,
) -> torch.Tensor:
    if torch.jit.is_scripting():  # inference only: TorchScript has no custom autograd
        return harmonic_sum(phase, f0_hz, amplitudes, w_this, w_next, nyquist)
    else:
        return _HarmonicSum.apply(phase, f0_hz, amplitudes, w_this, w_next, nyquist)


def harmonic_frames(
    f0_hz: torch.Tensor,
    amplitudes: torch.Tensor,
    harmonic_distribution: torch.Tensor,
    hop_size: int,
    sample_rate: float,
    amp_resample_method: str = "window",
    initial_phase: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The hops between consecutive frames of a harmonic oscillator.

    Hop n (``hop_size`` samples) mixes frames n and n + 1: f0 linearly,
    amplitudes with ``amp_resample_method``, as :func:`harmonic_synthesis`.
    Offline synthesis holds the last frame; streaming passes the next frame
    once it is known, so both run this kernel.

    Shape: f0_hz, amplitudes [batch, n_frames + 1, 1], harmonic_distribution
    [batch, n_frames + 1, n_harmonics], initial_phase [batch, 1] ->
    (audio [batch, n_frames * hop_size], final_phase [batch, 1] float64).
    """
    dtype, device = f0_hz.dtype, f0_hz.device
    return render_harmonic_frames(
        f0_hz,
        amplitudes * harmonic_distribution,
        sample_rate,
        interpolation_weights(hop_size, "linear", dtype, device),
        interpolation_weights(hop_size, amp_resample_method, dtype, device),
        initial_phase,
    )


def render_harmonic_frames(
    f0_hz: torch.Tensor,
    harmonic_amplitudes: torch.Tensor,
    sample_rate: float,
    f0_weights: tuple[torch.Tensor, torch.Tensor],
    amp_weights: tuple[torch.Tensor, torch.Tensor],
    initial_phase: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`harmonic_frames` with the amplitudes already multiplied out and the
    interpolation weights (:func:`~torchddsp.functional.core.interpolation_weights`
    of f0, linear, and of the amplitudes) computed once, as a stream keeps them.

    Shape: f0_hz [batch, n_frames + 1, 1], harmonic_amplitudes [batch,
    n_frames + 1, n_harmonics], weights ([hop], [hop]) -> as harmonic_frames.
    """
    batch, n_frames = f0_hz.shape[0], f0_hz.shape[1] - 1
    hop_size = f0_weights[0].shape[0]
    f0 = f0_hz[..., 0]
    f0_frames = f0_weights[0] * f0[:, :-1, None] + f0_weights[1] * f0[:, 1:, None]
    f0_audio = f0_frames.reshape(batch, n_frames * hop_size)
    phase, final_phase = accumulate_phase(f0_audio, sample_rate, initial_phase)
    audio = _harmonic_sum_autograd(
        phase.reshape(f0_frames.shape),
        f0_frames,
        harmonic_amplitudes,
        amp_weights[0],
        amp_weights[1],
        sample_rate / 2.0,
    )
    return audio.reshape(batch, n_frames * hop_size), final_phase


def harmonic_synthesis(
    frequencies: torch.Tensor,
    amplitudes: torch.Tensor,
    harmonic_distribution: torch.Tensor,
    n_samples: int,
    sample_rate: float,
    amp_resample_method: str = "window",
    initial_phase: torch.Tensor | None = None,
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
    n_frames = harmonic_distribution.shape[1]
    if n_samples % n_frames == 0:  # the last frame held for its own hop
        held = [torch.cat([x, x[:, -1:]], dim=1) for x in (frequencies, amplitudes)]
        distribution = torch.cat([harmonic_distribution, harmonic_distribution[:, -1:]], dim=1)
        return harmonic_frames(
            held[0],
            held[1],
            distribution,
            n_samples // n_frames,
            sample_rate,
            amp_resample_method,
            initial_phase,
        )
    # Uneven hop: interpolate at audio rate, one "frame" per sample.
    f0_audio = resample_frames(frequencies, n_samples, "linear")
    envelopes = resample_frames(amplitudes * harmonic_distribution, n_samples, amp_resample_method)
    held = torch.cat([f0_audio, f0_audio[:, -1:]], dim=1)
    ones = torch.ones_like(held)
    envelopes = torch.cat([envelopes, envelopes[:, -1:]], dim=1)
    return harmonic_frames(held, ones, envelopes, 1, sample_rate, "nearest", initial_phase)
