"""Spectral reconstruction losses: DDSP's multi-scale spectral loss and a log-mel loss.

Both compare ``target_audio`` with ``audio`` through magnitude spectrograms at
several FFT sizes, framed as DDSP's ``compute_mag`` (periodic Hann, zeros
padded at the end, ``hop = n_fft * (1 - overlap)``). Windows and filterbanks
are non-persistent buffers: move the module with ``.to(device, dtype)`` once;
``forward`` never moves anything and refuses audio of another dtype or device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from .functional._checks import check_choice, check_positive, check_tensor
from .functional.core import safe_log
from .functional.spectral import (
    AUDIO_SHAPE,
    compute_loudness,
    frame_hop_size,
    hann_window,
    magnitude,
    mel_filterbank,
)

LOSS_TYPES = ("L1", "L2", "COSINE")
# What each term of MultiScaleSpectralLoss compares, from [batch, n_frames, n_bins].
_SPECTRAL_VIEWS = {
    "mag": lambda mag: mag,
    "delta_time": lambda mag: torch.diff(mag, dim=1),
    "delta_freq": lambda mag: torch.diff(mag, dim=2),
    "cumsum_freq": lambda mag: torch.cumsum(mag, dim=2),
    "logmag": safe_log,
}


def mean_difference(
    target: torch.Tensor, value: torch.Tensor, loss_type: str = "L1"
) -> torch.Tensor:
    """Mean distance between two tensors, DDSP's ``losses.mean_difference``.

    ``L1``: ``mean(|target - value|)``; ``L2``: ``mean((target - value) ** 2)``;
    ``COSINE``: ``mean(1 - cos(target, value))`` along the last axis. DDSP's
    cosine assumes unit-norm inputs; this one normalises them.
    ``loss_type`` is case-insensitive.
    Shape: target and value alike -> scalar.
    """
    loss_type = loss_type.upper()
    check_choice(loss_type, "loss_type", LOSS_TYPES)
    if loss_type == "L1":
        return F.l1_loss(value, target)  # fused mean(|target - value|)
    if loss_type == "L2":
        return F.mse_loss(value, target)
    return (1.0 - F.cosine_similarity(target, value, dim=-1)).mean()


def sum_of_terms(
    target_audio: torch.Tensor,
    audio: torch.Tensor,
    terms: Sequence[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]],
) -> torch.Tensor:
    """``sum(term(target_audio, audio) for term in terms)``, each term a scalar.

    When only ``audio`` needs a gradient, each term's gradient with respect to
    it is taken as soon as the term is computed, and the term's spectrograms
    are freed: backward then holds one audio-sized tensor instead of every
    scale's spectra (a third of a training step's peak memory). Such a loss
    supports one backward pass, not gradients of gradients.

    Shape: target_audio, audio [batch, n_samples] -> scalar.
    """
    eager = torch.is_grad_enabled() and audio.requires_grad and not target_audio.requires_grad
    if not eager:
        return torch.stack([term(target_audio, audio) for term in terms]).sum()
    return _EagerGradientSum.apply(audio, target_audio, terms)


class _EagerGradientSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, audio, target_audio, terms):
        total, grad = audio.new_zeros(()), torch.zeros_like(audio)
        for term in terms:
            with torch.enable_grad():
                leaf = audio.detach().requires_grad_()
                value = term(target_audio, leaf)
                grad += torch.autograd.grad(value, leaf)[0]
            total += value.detach()
        ctx.save_for_backward(grad)
        return total

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_output):
        (grad,) = ctx.saved_tensors
        return grad_output * grad, None, None


def _check_audio_pair(target_audio: torch.Tensor, audio: torch.Tensor) -> None:
    check_tensor(target_audio, "target_audio", 2, AUDIO_SHAPE)
    check_tensor(audio, "audio", 2, AUDIO_SHAPE)
    if target_audio.shape != audio.shape:
        raise ValueError(
            f"target_audio and audio must have the same shape, found "
            f"{tuple(target_audio.shape)} and {tuple(audio.shape)}"
        )


def _hop_sizes(fft_sizes: Sequence[int], overlap: float) -> list[int]:
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), found {overlap}")
    if len(fft_sizes) == 0:
        raise ValueError("fft_sizes must name at least one FFT size, found none")
    hops = [round(n_fft * (1.0 - overlap)) for n_fft in fft_sizes]
    if min(hops) < 1:
        raise ValueError(f"overlap {overlap} leaves no hop for fft_sizes {tuple(fft_sizes)}")
    return hops


class MultiScaleSpectralLoss(nn.Module):
    """DDSP's ``SpectralLoss``: weighted distances between magnitude spectrograms.

    For each FFT size, with ``M`` the target's and ``M'`` the output's magnitudes
    ``[batch, n_frames, n_bins]`` and ``d`` = :func:`mean_difference`::

        mag_weight * d(M, M') + delta_time_weight * d(diff_t M, diff_t M')
        + delta_freq_weight * d(diff_f M, diff_f M') + cumsum_freq_weight *
        d(cumsum_f M, cumsum_f M') + logmag_weight * d(log M, log M')

    summed over sizes, plus ``loudness_weight * d(L, L')`` with ``L`` =
    ``compute_loudness(n_fft=2048, frame_rate=250)`` at ``sample_rate``.
    ``log`` is ``safe_log`` (inputs below 1e-5 set to 1e-5). Defaults weight
    magnitudes and log magnitudes 1 each, as DDSP's training configs.

    Shape: target_audio [batch, n_samples], audio [batch, n_samples] -> scalar.
    """

    def __init__(
        self,
        fft_sizes: Sequence[int] = (2048, 1024, 512, 256, 128, 64),
        overlap: float = 0.75,
        loss_type: str = "L1",
        mag_weight: float = 1.0,
        delta_time_weight: float = 0.0,
        delta_freq_weight: float = 0.0,
        cumsum_freq_weight: float = 0.0,
        logmag_weight: float = 1.0,
        loudness_weight: float = 0.0,
        sample_rate: float = 16000,
        loudness_frame_rate: float = 250,
        loudness_n_fft: int = 2048,
    ):
        super().__init__()
        self.loss_type = loss_type.upper()
        check_choice(self.loss_type, "loss_type", LOSS_TYPES)
        self.fft_sizes = tuple(fft_sizes)
        self.hop_sizes = _hop_sizes(self.fft_sizes, overlap)
        self.weights = {
            "mag": mag_weight,
            "delta_time": delta_time_weight,
            "delta_freq": delta_freq_weight,
            "cumsum_freq": cumsum_freq_weight,
            "logmag": logmag_weight,
        }
        self.loudness_weight = loudness_weight
        self.sample_rate = sample_rate
        self.loudness_frame_rate = loudness_frame_rate
        if loudness_weight > 0:
            frame_hop_size(sample_rate, loudness_frame_rate)  # fail now, not in training
        for i, n_fft in enumerate(self.fft_sizes):
            self.register_buffer(f"window_{i}", hann_window(n_fft), persistent=False)
        self.register_buffer("loudness_window", hann_window(loudness_n_fft), persistent=False)

    @torch.jit.unused  # training only; lets a model holding it export its streaming methods
    def forward(self, target_audio: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Loss summed over FFT sizes and terms.

        Shape: target_audio [batch, n_samples], audio [batch, n_samples] -> scalar.
        """
        _check_audio_pair(target_audio, audio)
        terms = [partial(self._scale_loss, i) for i in range(len(self.fft_sizes))]
        if self.loudness_weight > 0:
            terms.append(self._loudness_loss)
        return sum_of_terms(target_audio, audio, terms)

    def _scale_loss(self, index: int, target_audio: torch.Tensor, audio: torch.Tensor):
        n_fft, hop_size = self.fft_sizes[index], self.hop_sizes[index]
        window = getattr(self, f"window_{index}")
        target_mag = magnitude(target_audio, n_fft, hop_size, "same", window)
        value_mag = magnitude(audio, n_fft, hop_size, "same", window)
        loss = target_mag.new_zeros(())
        for name, weight in self.weights.items():
            if weight > 0:
                view = _SPECTRAL_VIEWS[name]
                loss = loss + weight * mean_difference(
                    view(target_mag), view(value_mag), self.loss_type
                )
        return loss

    def _loudness_loss(self, target_audio: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        return self.loudness_weight * mean_difference(
            self._loudness(target_audio), self._loudness(audio), self.loss_type
        )

    def _loudness(self, audio: torch.Tensor) -> torch.Tensor:
        n_fft = self.loudness_window.shape[0]
        return compute_loudness(
            audio, self.sample_rate, self.loudness_frame_rate, n_fft, window=self.loudness_window
        )


class MelSpectralLoss(nn.Module):
    """Multi-resolution log-mel loss: ``sum_s d(log mel_s(target), log mel_s(audio))``.

    ``mel_s`` is the magnitude spectrogram at FFT size ``s`` through an HTK mel
    filterbank of ``n_mels`` bands (DDSP's ``compute_logmel``, magnitudes not
    power); ``log`` is ``safe_log`` with ``eps``; ``d`` is :func:`mean_difference`.
    ``n_mels`` is one count for all sizes or one per size.

    Shape: target_audio [batch, n_samples], audio [batch, n_samples] -> scalar.
    """

    def __init__(
        self,
        sample_rate: float = 16000,
        fft_sizes: Sequence[int] = (2048, 1024, 512),
        n_mels: int | Sequence[int] = (128, 64, 32),
        overlap: float = 0.75,
        fmin: float = 0.0,
        fmax: float | None = None,
        loss_type: str = "L1",
        eps: float = 1e-5,
    ):
        super().__init__()
        check_positive(eps, "eps")
        self.loss_type = loss_type.upper()
        check_choice(self.loss_type, "loss_type", LOSS_TYPES)
        self.fft_sizes = tuple(fft_sizes)
        self.hop_sizes = _hop_sizes(self.fft_sizes, overlap)
        mels = [n_mels] * len(self.fft_sizes) if isinstance(n_mels, int) else list(n_mels)
        if len(mels) != len(self.fft_sizes):
            raise ValueError(
                f"n_mels must be one count or one per FFT size ({len(self.fft_sizes)}), "
                f"found {len(mels)}"
            )
        self.eps = eps
        for i, (n_fft, bands) in enumerate(zip(self.fft_sizes, mels, strict=True)):
            self.register_buffer(f"window_{i}", hann_window(n_fft), persistent=False)
            filterbank = mel_filterbank(sample_rate, n_fft, bands, fmin, fmax)
            self.register_buffer(f"filterbank_{i}", filterbank, persistent=False)

    @torch.jit.unused  # training only; lets a model holding it export its streaming methods
    def forward(self, target_audio: torch.Tensor, audio: torch.Tensor) -> torch.Tensor:
        """Loss summed over FFT sizes.

        Shape: target_audio [batch, n_samples], audio [batch, n_samples] -> scalar.
        """
        _check_audio_pair(target_audio, audio)
        terms = [partial(self._scale_loss, i) for i in range(len(self.fft_sizes))]
        return sum_of_terms(target_audio, audio, terms)

    def _scale_loss(self, index: int, target_audio: torch.Tensor, audio: torch.Tensor):
        target_mel = self._log_mel(target_audio, index)
        return mean_difference(target_mel, self._log_mel(audio, index), self.loss_type)

    def _log_mel(self, audio: torch.Tensor, i: int) -> torch.Tensor:
        window = getattr(self, f"window_{i}")
        mag = magnitude(audio, self.fft_sizes[i], self.hop_sizes[i], "same", window)
        return safe_log(mag @ getattr(self, f"filterbank_{i}"), self.eps)
