"""YIN fundamental-frequency tracker (de Cheveigné & Kawahara, 2002), batched in torch.

Per frame of ``frame_size`` samples (mean removed):

1. difference function ``d(tau) = mean_j (x[j] - x[j + tau])^2`` over the
   ``frame_size - tau`` overlapping pairs, from one autocorrelation by rFFT for
   all frames at once. Unlike the original YIN (a fixed window followed by
   ``tau`` more samples) every lag sees the same samples, so a frame describes
   the audio centred on its sample whatever the pitch;
2. cumulative mean normalised difference ``d'(tau) = d(tau) tau / sum_{k<=tau} d(k)``;
3. among lags in ``[sample_rate / f0_max_hz, sample_rate / f0_min_hz]``, the
   minimum of the first valley of ``d'`` below ``min(d') + threshold``. On a
   clean tone (``min(d') ~ 0``) this is YIN's absolute threshold; measuring it
   from the deepest dip keeps a strong second harmonic (a dip at half the
   period, deep but not the deepest) from winning, and noisy frames (every dip
   shallow) from falling back to a sub-harmonic. 0.15 is tuned on FluidR3
   renders of violin, flute, trumpet, cello and tenor sax (0.1 gives more
   octave-down errors on the violin, 0.2 octave-up ones on the saxophone);
4. sub-sample lag: the vertex of a least-squares parabola fitted to ``d`` (not
   ``d'``, which its normaliser skews) around the chosen lag, over 3 points on
   a clean tone and up to a tenth of a period on noisy ones (the fit averages
   the noise out), then refined the same way on the valley at 2-4 times the
   period where it fits in the lags, which divides the error by that multiple;
   ``f0 = sample_rate / tau``, clipped to ``[f0_min_hz, f0_max_hz]``.

``confidence = 1 - d'`` at the chosen lag, clipped to [0, 1]: near 1 on a
clean periodic tone, near 0 on noise, 0 on silence. f0 is always defined
(DDSP/CREPE convention): unvoiced and silent frames get a best guess and a low
confidence, so threshold the confidence to decide voicing.

Framing: ``n_frames = n_samples // hop_size`` (a partial last hop gives no
frame), and frame ``i`` is centred on sample ``i * hop_size``: samples
``[i * hop_size - frame_size // 2, i * hop_size + frame_size - frame_size // 2)``,
zeros outside the signal. :meth:`Yin.forward_stream` gives the same frames
block by block, each ``latency_samples`` after its centre sample.

:class:`Yin` holds the validated sizes and is TorchScript-compatible (offline
and streaming), so a live model exports with it; :func:`yin` is its functional
entry point.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import scipy.fft
import torch
import torch.nn.functional as F
from torch import nn

from ..functional._checks import (
    check_positive,
    check_positive_int,
    check_stream_state,
    check_tensor,
)
from ..functional.spectral import take_ready_frames

AUDIO_SHAPE = "[batch, n_samples]"
# 40 Hz (below the double bass's E1 and the lowest sung notes) to 2 kHz (violin
# and flute up to about B6): CREPE's range, for music and voice. The default
# frame, two periods of f0_min_hz, is then 50 ms.
DEFAULT_F0_MIN_HZ = 40.0
DEFAULT_F0_MAX_HZ = 2000.0
DEFAULT_THRESHOLD = 0.15
# Samples per batch of frames: bounds the intermediates (tens of MB) for
# inputs of any length, in batches still large enough to be fast.
_CHUNK_ELEMENTS = 1 << 21
# Largest half-width of the parabola fit, as a fraction of the period.
_FIT_MAX_FRACTION = 0.1
# Largest multiple of the period refined on: small enough that the first
# estimate's error times it stays well under a sample.
_MAX_MULTIPLE = 4


def default_frame_size(sample_rate: float, f0_min_hz: float = DEFAULT_F0_MIN_HZ) -> int:
    """Frame holding two periods of ``f0_min_hz`` plus the interpolation's neighbour (even).

    Any size is fast: the FFT pads it to an efficient length.
    Shape: scalars -> int.
    """
    check_positive(sample_rate, "sample_rate")
    check_positive(f0_min_hz, "f0_min_hz")
    return 2 * _max_lag(sample_rate, f0_min_hz) + 2


def _fft_size(n: int) -> int:
    # Even and 5-smooth: odd lengths are several times slower in MKL's real FFT.
    return 2 * scipy.fft.next_fast_len(-(-n // 2), real=True)


def _max_lag(sample_rate: float, f0_min_hz: float) -> int:
    return math.ceil(sample_rate / f0_min_hz)


def difference_function(frames: torch.Tensor, max_lag: int) -> torch.Tensor:
    """YIN's ``d(tau)``, averaged over the ``frame_size - tau`` overlapping pairs.

    Shape: frames [..., frame_size] -> [..., max_lag + 1] (lags 0..max_lag).
    """
    # An FFT this long does not wrap lags up to max_lag around.
    return _difference(frames, max_lag, _fft_size(frames.shape[-1] + max_lag))


def _difference(frames: torch.Tensor, max_lag: int, n_fft: int) -> torch.Tensor:
    frame_size = frames.shape[-1]
    x = frames - frames.mean(-1, keepdim=True)  # exact for d, and spares float32 precision
    spectrum = torch.fft.rfft(x, n=n_fft)
    power = torch.view_as_real(spectrum).square().sum(-1)
    autocorrelation = torch.fft.irfft(power, n=n_fft)[..., : max_lag + 1]
    squares = x.square()
    total = squares.sum(-1, keepdim=True)
    # Energies of x[0 : N - tau] and x[tau : N] are total - last[tau] and total - first[tau].
    first = F.pad(squares[..., :max_lag].cumsum(-1), (1, 0))
    last = F.pad(squares[..., -max_lag:].flip(-1).cumsum(-1), (1, 0))
    overlap = torch.arange(frame_size, frame_size - max_lag - 1, -1, dtype=x.dtype, device=x.device)
    return ((2.0 * total - first - last - 2.0 * autocorrelation) / overlap).clamp_min(0.0)


def cumulative_mean_normalized_difference(difference: torch.Tensor) -> torch.Tensor:
    """YIN's ``d'(tau) = d(tau) tau / sum_{k=1..tau} d(k)``, with ``d'(0) = 1``.

    Lags where the running sum is still zero (silence) give ``d' = 1``: no evidence of a period.
    Shape: difference [..., n_lags] -> [..., n_lags].
    """
    lags = torch.arange(difference.shape[-1], dtype=difference.dtype, device=difference.device)
    running_sum = difference.cumsum(-1)
    energetic = running_sum > _smallest_normal(difference.dtype)
    normalised = difference * lags / torch.where(energetic, running_sum, 1.0)
    cmnd = torch.where(energetic, normalised, 1.0)
    cmnd[..., 0] = 1.0
    return cmnd


def _smallest_normal(dtype: torch.dtype) -> float:
    """``torch.finfo(dtype).tiny`` of float64, else of float32: torch.finfo does not script."""
    return 2.2250738585072014e-308 if dtype == torch.float64 else 1.1754943508222875e-38


def _choose_lag(
    difference: torch.Tensor,
    cmnd: torch.Tensor,
    min_lag: int,
    max_lag: int,
    threshold: float,
    max_multiple: int = _MAX_MULTIPLE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-sample lag and its ``d'`` for each frame (steps 3 and 4)."""
    lag = _first_valley_minimum(cmnd[..., min_lag : max_lag + 1], threshold) + min_lag
    value = cmnd.gather(-1, lag)
    window = _parabola_window(_fit_half_widths(lag, value), difference.dtype)
    period = lag + _parabola_vertex(difference, lag, window)
    # Refine on the valley at a multiple of the period: the same sub-sample
    # error, divided by the multiple (it matters for short periods).
    multiple = (max_lag / period).floor().clamp(1, max_multiple)
    guess = (period * multiple).round().long()
    nearby = (guess + torch.arange(-1, 2, device=guess.device)).clamp(1, max_lag)
    multiple_lag = nearby.gather(-1, difference.gather(-1, nearby).argmin(-1, keepdim=True))
    shift = _parabola_vertex(difference, multiple_lag, window)
    return ((multiple_lag + shift) / multiple).squeeze(-1), value.squeeze(-1)


def _first_valley_minimum(cmnd: torch.Tensor, threshold: float) -> torch.Tensor:
    """Index of the minimum of the first valley of ``d'`` below ``min(d') + threshold``.

    The valley runs from the first lag below that level until ``d'`` rises
    above ``min(d') + 2 threshold``: the hysteresis keeps noise ripples at its
    rim from closing it early, and taking its minimum rather than YIN's first
    local minimum keeps ripples on its slopes from winning.
    Shape: cmnd [..., n_lags] -> [..., 1].
    """
    deepest = cmnd.amin(-1, keepdim=True)
    below = cmnd <= deepest + threshold
    start = below.to(torch.uint8).argmax(-1, keepdim=True)  # first True; the deepest is below
    positions = torch.arange(cmnd.shape[-1], device=cmnd.device)
    # A True sentinel past the end: a valley running to the last lag ends there.
    rises = F.pad((cmnd > deepest + 2.0 * threshold) & (positions > start), (0, 1), value=True)
    end = rises.to(torch.uint8).argmax(-1, keepdim=True)
    in_valley = (positions >= start) & (positions < end)
    return torch.where(in_valley, cmnd, math.inf).argmin(-1, keepdim=True)


def _fit_half_widths(
    period: torch.Tensor, cmnd: torch.Tensor, max_fraction: float = _FIT_MAX_FRACTION
) -> torch.Tensor:
    """Half-width of the parabola fit: wider as ``d'`` says the frame is noisier.

    Three points are least biased on a clean tone's valley; noise calls for
    more points (``d'`` at the valley's floor grows with the noise). The
    half-width is the fraction ``d'`` of the period (a tenth at 10 dB SNR,
    where ``d' ~ 0.1``; one lag, i.e. three points, on clean tones), at most
    ``max_fraction`` of it: the valley is a fraction of a period wide,
    whichever multiple it is at.
    """
    widest = (period * max_fraction).floor().clamp_min(1)
    return torch.minimum((period * cmnd).round().clamp_min(1), widest).long()


class _ParabolaWindow(NamedTuple):
    """The weighted window of the parabola fit: what every fit with these half-widths shares."""

    offsets: torch.Tensor  # -widest..widest, int64 [n_offsets]
    k: torch.Tensor  # the offsets in the values' dtype, and their squares
    k_sq: torch.Tensor
    weights: torch.Tensor  # triangular, 0 beyond each frame's half-width [..., n_offsets]
    s0: torch.Tensor  # sum w and sum w k^2 [..., 1]
    s2: torch.Tensor
    determinant: torch.Tensor  # s0 s4 - s2^2 of the normal equations
    limit: torch.Tensor  # the half-width in the values' dtype


def _parabola_window(half_width: torch.Tensor, dtype: torch.dtype) -> _ParabolaWindow:
    widest = int(half_width.max())
    offsets = torch.arange(-widest, widest + 1, device=half_width.device)
    k = offsets.to(dtype)
    k_sq = k.square()  # integers: exact, as are their squares
    limit = half_width.to(dtype)
    weights = (1.0 - k.abs() / (limit + 1.0)).clamp_min(0.0)
    s0 = weights.sum(-1, keepdim=True)
    s2 = (weights * k_sq).sum(-1, keepdim=True)
    s4 = (weights * k_sq.square()).sum(-1, keepdim=True)
    return _ParabolaWindow(offsets, k, k_sq, weights, s0, s2, s0 * s4 - s2.square(), limit)


def _parabola_vertex(
    values: torch.Tensor, centre: torch.Tensor, window: _ParabolaWindow
) -> torch.Tensor:
    """Offset from ``centre`` of the least-squares parabola's minimum over ``centre +- half_width``.

    More points than YIN's three average out noise on the flat valleys of low
    f0s; the window is symmetric, so odd moments vanish. The offset is clipped
    to the window, and 0 where the fit is not convex.
    Shape: values [..., n_lags], centre [..., 1] -> [..., 1].
    """
    # Past either end of the lags, the edge value: a rare, slightly biased fit.
    positions = (centre + window.offsets).clamp(0, values.shape[-1] - 1)
    y = values.gather(-1, positions) * window.weights
    t0 = y.sum(-1, keepdim=True)
    t1 = (y * window.k).sum(-1, keepdim=True)
    t2 = (y * window.k_sq).sum(-1, keepdim=True)
    slope = t1 / window.s2
    curvature = (window.s0 * t2 - window.s2 * t0) / window.determinant
    convex = curvature > 0.0
    shift = -0.5 * slope / torch.where(convex, curvature, 1.0)
    return torch.where(convex, shift, 0.0).clamp(-window.limit, window.limit)


class Yin(nn.Module):
    """YIN tracker (see the module notes), offline and streaming; TorchScript-compatible.

    ``frame_size`` defaults to :func:`default_frame_size` (two periods of
    ``f0_min_hz``, e.g. 802 samples = 50 ms at 16 kHz); ``threshold`` is how far
    above the frame's deepest dip of ``d'`` an earlier dip may be and still win
    (YIN's absolute threshold when the deepest is ~0). f0 lies in
    ``[f0_min_hz, f0_max_hz]``. Computes in the audio's dtype (float32 or
    float64; float32 is fast and accurate to well under a cent).

    Streaming: the state is the tail of the (left zero-padded) signal that
    later frames still need, ``{"buffer": [batch, n_buffered]}``.
    :meth:`forward_stream` emits each frame as soon as its window is complete
    and its hop has arrived (:func:`~torchddsp.functional.spectral.take_ready_frames`):
    frame ``i`` comes out once ``i * hop_size + latency_samples`` samples have
    been fed. :meth:`flush` ends the signal and emits the remaining frames,
    zero-padded as offline. The frames of a whole stream are those of
    :meth:`forward` on the whole signal.
    """

    def __init__(
        self,
        sample_rate: float,
        hop_size: int,
        f0_min_hz: float = DEFAULT_F0_MIN_HZ,
        f0_max_hz: float = DEFAULT_F0_MAX_HZ,
        frame_size: int | None = None,
        threshold: float = DEFAULT_THRESHOLD,
    ) -> None:
        super().__init__()
        check_positive(sample_rate, "sample_rate")
        check_positive_int(hop_size, "hop_size")
        check_positive(f0_min_hz, "f0_min_hz")
        if not f0_min_hz < f0_max_hz <= sample_rate / 4.0:
            raise ValueError(
                f"need 0 < f0_min_hz < f0_max_hz <= sample_rate / 4 = {sample_rate / 4.0}, "
                f"found f0_min_hz={f0_min_hz}, f0_max_hz={f0_max_hz}"
            )
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in [0, 1], found {threshold}")
        max_lag = _max_lag(sample_rate, f0_min_hz)
        if frame_size is None:
            frame_size = default_frame_size(sample_rate, f0_min_hz)
        check_positive_int(frame_size, "frame_size")
        if frame_size < 2 * max_lag + 2:
            raise ValueError(
                f"frame_size must hold two periods of f0_min_hz={f0_min_hz} "
                f"(at least {2 * max_lag + 2} samples), found {frame_size}"
            )
        self.sample_rate = float(sample_rate)
        self.hop_size = hop_size
        self.frame_size = frame_size
        self.f0_min_hz = float(f0_min_hz)
        self.f0_max_hz = float(f0_max_hz)
        self.threshold = float(threshold)
        self.min_lag = math.floor(sample_rate / f0_max_hz)
        self.max_lag = max_lag
        # d is computed up to max_lag + 1: the parabola around max_lag needs its neighbour.
        self.fft_size = _fft_size(frame_size + max_lag + 1)
        self.chunk_elements = _CHUNK_ELEMENTS

    @property
    def latency_samples(self) -> int:
        """Samples after a frame's centre sample that must arrive before it is emitted."""
        return max(self.frame_size - self.frame_size // 2, self.hop_size)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f0 in Hz and confidence in [0, 1] of each frame; frame ``i`` centred on
        sample ``i * hop_size``, zeros outside the signal.

        Shape: audio [batch, n_samples] -> f0_hz, confidence [batch, n_samples // hop_size].
        """
        if not torch.jit.is_scripting():
            check_tensor(audio, "audio", 2, AUDIO_SHAPE)
        padded = F.pad(audio, (self.frame_size // 2, 0))
        frames, _ = take_ready_frames(padded, self.frame_size, self.hop_size, final=True)
        return self._track(frames)

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> dict[str, torch.Tensor]:
        """State before the first block: the left zero padding of frame 0.

        Shape: -> {"buffer": [batch_size, frame_size // 2]}.
        """
        if not torch.jit.is_scripting():
            check_positive_int(batch_size, "batch_size")
        return {"buffer": torch.zeros(batch_size, self.frame_size // 2, dtype=dtype, device=device)}

    @torch.jit.export
    def forward_stream(
        self, audio_block: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Feed a block of any length (0 too); get the frames it completes and the new state.

        Shape: audio_block [batch, n_block_samples] -> f0_hz, confidence
        [batch, n_completed_frames], state.
        """
        if not torch.jit.is_scripting():
            check_tensor(audio_block, "audio_block", 2, AUDIO_SHAPE)
            check_stream_state(state, "buffer", self.frame_size // 2, audio_block.shape[0])
        buffer = torch.cat([state["buffer"], audio_block], dim=-1)
        frames, rest = take_ready_frames(buffer, self.frame_size, self.hop_size)
        f0_hz, confidence = self._track(frames)
        return f0_hz, confidence, {"buffer": rest}

    @torch.jit.export
    def flush(self, state: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """End of signal: the frames not yet emitted, zero-padded past the end.

        Shape: state -> f0_hz, confidence [batch, n_last_frames].
        """
        if not torch.jit.is_scripting():
            check_stream_state(state, "buffer", self.frame_size // 2)
        frames, _ = take_ready_frames(state["buffer"], self.frame_size, self.hop_size, final=True)
        return self._track(frames)

    def _track(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """f0 and confidence of frames [batch, n_frames, frame_size], in chunks of bounded size."""
        batch_size, n_frames = frames.shape[0], frames.shape[1]
        if n_frames == 0:
            empty = frames.new_zeros([batch_size, 0])
            return empty, empty.clone()
        chunk = max(1, self.chunk_elements // (batch_size * 2 * self.frame_size))
        if n_frames <= chunk:
            return self._track_frames(frames)
        f0_parts: list[torch.Tensor] = []
        confidence_parts: list[torch.Tensor] = []
        for part in frames.split(chunk, dim=1):
            f0_hz, confidence = self._track_frames(part)
            f0_parts.append(f0_hz)
            confidence_parts.append(confidence)
        return torch.cat(f0_parts, dim=1), torch.cat(confidence_parts, dim=1)

    def _track_frames(self, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        difference = _difference(frames, self.max_lag + 1, self.fft_size)
        cmnd = cumulative_mean_normalized_difference(difference)
        lag, value = _choose_lag(difference, cmnd, self.min_lag, self.max_lag, self.threshold)
        f0_hz = (self.sample_rate / lag).clamp(self.f0_min_hz, self.f0_max_hz)
        return f0_hz, (1.0 - value).clamp(0.0, 1.0)


def yin(
    audio: torch.Tensor,
    sample_rate: float,
    hop_size: int,
    f0_min_hz: float = DEFAULT_F0_MIN_HZ,
    f0_max_hz: float = DEFAULT_F0_MAX_HZ,
    frame_size: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 in Hz and confidence in [0, 1] of each frame: :class:`Yin` (see there) in one call.

    Shape: audio [batch, n_samples] -> f0_hz, confidence [batch, n_samples // hop_size].
    """
    return Yin(sample_rate, hop_size, f0_min_hz, f0_max_hz, frame_size, threshold)(audio)
