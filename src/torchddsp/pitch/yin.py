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
zeros outside the signal. :class:`YinStream` gives the same frames block by
block, each ``latency_samples`` after its centre sample.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import scipy.fft
import torch
import torch.nn.functional as F

from ..functional._checks import check_positive, check_tensor

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
# Half-width of the parabola fit, as a fraction of the period per unit of d'
# at the valley's floor (a tenth at 10 dB SNR, where d' ~ 0.1; one lag, i.e.
# three points, on clean tones), and at most a tenth of the period.
_FIT_SCALE = 1.0
_FIT_MAX_FRACTION = 0.1
# Largest multiple of the period refined on: small enough that the first
# estimate's error times it stays well under a sample.
_MAX_MULTIPLE = 4


def _check_size(value: object, name: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, found {value!r}")


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


@dataclass(frozen=True)
class _Lags:
    """Validated analysis sizes shared by the offline and streaming paths."""

    sample_rate: float
    hop_size: int
    frame_size: int
    min_lag: int
    max_lag: int
    f0_min_hz: float
    f0_max_hz: float
    threshold: float


def _resolve(
    sample_rate: float,
    hop_size: int,
    f0_min_hz: float,
    f0_max_hz: float,
    frame_size: int | None,
    threshold: float,
) -> _Lags:
    check_positive(sample_rate, "sample_rate")
    _check_size(hop_size, "hop_size")
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
    _check_size(frame_size, "frame_size")
    if frame_size < 2 * max_lag + 2:
        raise ValueError(
            f"frame_size must hold two periods of f0_min_hz={f0_min_hz} "
            f"(at least {2 * max_lag + 2} samples), found {frame_size}"
        )
    min_lag = math.floor(sample_rate / f0_max_hz)
    return _Lags(
        sample_rate, hop_size, frame_size, min_lag, max_lag, f0_min_hz, f0_max_hz, threshold
    )


def difference_function(frames: torch.Tensor, max_lag: int) -> torch.Tensor:
    """YIN's ``d(tau)``, averaged over the ``frame_size - tau`` overlapping pairs.

    Shape: frames [..., frame_size] -> [..., max_lag + 1] (lags 0..max_lag).
    """
    frame_size = frames.shape[-1]
    n_fft = _fft_size(frame_size + max_lag)  # no circular wrap of lags up to max_lag
    x = frames - frames.mean(-1, keepdim=True)  # exact for d, and spares float32 precision
    spectrum = torch.fft.rfft(x, n=n_fft)
    power = spectrum.real.square() + spectrum.imag.square()
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
    energetic = running_sum > torch.finfo(difference.dtype).tiny
    ones = torch.ones_like(difference)
    normalised = difference * lags / torch.where(energetic, running_sum, ones)
    cmnd = torch.where(energetic, normalised, ones)
    cmnd[..., 0] = 1.0
    return cmnd


def _choose_lag(
    difference: torch.Tensor, cmnd: torch.Tensor, lags: _Lags
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-sample lag and its ``d'`` for each frame (steps 3 and 4)."""
    index = _first_valley_minimum(cmnd[..., lags.min_lag : lags.max_lag + 1], lags.threshold)
    lag = index + lags.min_lag
    value = cmnd.gather(-1, lag)
    half_width = _fit_half_widths(lag, value)
    period = lag + _parabola_vertex(difference, lag, half_width)
    # Refine on the valley at a multiple of the period: the same sub-sample
    # error, divided by the multiple (it matters for short periods).
    multiple = (lags.max_lag / period).floor().clamp(1, _MAX_MULTIPLE)
    guess = (period * multiple).round().long()
    nearby = torch.cat([guess - 1, guess, guess + 1], dim=-1).clamp(1, lags.max_lag)
    multiple_lag = nearby.gather(-1, difference.gather(-1, nearby).argmin(-1, keepdim=True))
    shift = _parabola_vertex(difference, multiple_lag, half_width)
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
    return cmnd.masked_fill(~in_valley, math.inf).argmin(-1, keepdim=True)


def _fit_half_widths(period: torch.Tensor, cmnd: torch.Tensor) -> torch.Tensor:
    """Half-width of the parabola fit: wider as ``d'`` says the frame is noisier.

    Three points are least biased on a clean tone's valley; noise calls for
    more points (``d'`` at the valley's floor grows with the noise). The
    valley is a fraction of a period wide, whichever multiple it is at.
    """
    widest = (period * _FIT_MAX_FRACTION).floor().clamp_min(1)
    return torch.minimum((period * cmnd * _FIT_SCALE).round().clamp_min(1), widest).long()


def _parabola_vertex(
    values: torch.Tensor, centre: torch.Tensor, half_width: torch.Tensor
) -> torch.Tensor:
    """Offset from ``centre`` of the least-squares parabola's minimum over ``centre +- half_width``.

    More points than YIN's three average out noise on the flat valleys of low
    f0s; the window is symmetric, so odd moments vanish. The offset is clipped
    to the window, and 0 where the fit is not convex.
    Shape: values [..., n_lags], centre, half_width [..., 1] -> [..., 1].
    """
    widest = int(half_width.max())
    offsets = torch.arange(-widest, widest + 1, device=values.device)
    k = offsets.to(values.dtype)
    weights = (1.0 - k.abs() / (half_width.to(values.dtype) + 1.0)).clamp_min(0.0)
    # Past either end of the lags, the edge value: a rare, slightly biased fit.
    positions = (centre + offsets).clamp(0, values.shape[-1] - 1)
    y = values.gather(-1, positions) * weights
    s0, s2, s4 = ((weights * k**p).sum(-1, keepdim=True) for p in (0, 2, 4))
    t0, t1, t2 = ((y * k**p).sum(-1, keepdim=True) for p in (0, 1, 2))
    slope = t1 / s2
    curvature = (s0 * t2 - s2 * t0) / (s0 * s4 - s2.square())
    convex = curvature > 0.0
    shift = -0.5 * slope / torch.where(convex, curvature, torch.ones_like(curvature))
    limit = half_width.to(values.dtype)
    return torch.where(convex, shift, torch.zeros_like(shift)).clamp(-limit, limit)


def _track_frames(frames: torch.Tensor, lags: _Lags) -> tuple[torch.Tensor, torch.Tensor]:
    difference = difference_function(frames, lags.max_lag + 1)
    lag, value = _choose_lag(difference, cumulative_mean_normalized_difference(difference), lags)
    f0_hz = (lags.sample_rate / lag).clamp(lags.f0_min_hz, lags.f0_max_hz)
    return f0_hz, (1.0 - value).clamp(0.0, 1.0)


def _track_buffer(
    buffer: torch.Tensor, n_frames: int, lags: _Lags
) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 and confidence of the first ``n_frames`` frames of ``buffer``, zeros past its end."""
    if n_frames <= 0:
        empty = buffer.new_zeros(buffer.shape[0], 0)
        return empty, empty.clone()
    hop_size, frame_size = lags.hop_size, lags.frame_size
    right = max(0, (n_frames - 1) * hop_size + frame_size - buffer.shape[-1])
    frames = F.pad(buffer, (0, right)).unfold(-1, frame_size, hop_size)[:, :n_frames]
    chunk = max(1, _CHUNK_ELEMENTS // (buffer.shape[0] * 2 * frame_size))
    tracks = [_track_frames(part, lags) for part in frames.split(chunk, dim=1)]
    return torch.cat([t[0] for t in tracks], dim=1), torch.cat([t[1] for t in tracks], dim=1)


def yin(
    audio: torch.Tensor,
    sample_rate: float,
    hop_size: int,
    f0_min_hz: float = DEFAULT_F0_MIN_HZ,
    f0_max_hz: float = DEFAULT_F0_MAX_HZ,
    frame_size: int | None = None,
    threshold: float = DEFAULT_THRESHOLD,
) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 in Hz and confidence in [0, 1] of each frame, by YIN (see the module notes).

    ``frame_size`` defaults to :func:`default_frame_size` (two periods of
    ``f0_min_hz``, e.g. 802 samples = 50 ms at 16 kHz); ``threshold`` is how far
    above the frame's deepest dip of ``d'`` an earlier dip may be and still win
    (YIN's absolute threshold when the deepest is ~0). f0 lies in
    ``[f0_min_hz, f0_max_hz]``; frame ``i`` is centred on sample ``i * hop_size``,
    zeros outside the signal. Computes in the audio's dtype (float32 or float64;
    float32 is fast and accurate to well under a cent).
    Shape: audio [batch, n_samples] -> f0_hz, confidence [batch, n_samples // hop_size].
    """
    check_tensor(audio, "audio", 2, AUDIO_SHAPE)
    lags = _resolve(sample_rate, hop_size, f0_min_hz, f0_max_hz, frame_size, threshold)
    buffer = F.pad(audio, (lags.frame_size // 2, 0))
    return _track_buffer(buffer, audio.shape[-1] // hop_size, lags)


class YinStream:
    """:func:`yin` on audio that arrives in blocks, with explicit state.

    The state is the tail of the (left zero-padded) signal that later frames
    still need, ``[batch, n_buffered]``. :meth:`forward_stream` emits each frame
    as soon as its window is complete and its hop has arrived: frame ``i``
    (centred on sample ``i * hop_size``) comes out once ``i * hop_size +
    latency_samples`` samples have been fed. :meth:`flush` ends the signal and
    emits the remaining frames, zero-padded as offline. The frames emitted over
    a whole stream are exactly those of :func:`yin` on the whole signal.
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
        self._lags = _resolve(sample_rate, hop_size, f0_min_hz, f0_max_hz, frame_size, threshold)

    @property
    def hop_size(self) -> int:
        return self._lags.hop_size

    @property
    def frame_size(self) -> int:
        return self._lags.frame_size

    @property
    def latency_samples(self) -> int:
        """Samples after a frame's centre sample that must arrive before it is emitted."""
        return max(self.frame_size - self.frame_size // 2, self.hop_size)

    def init_state(
        self, batch_size: int, dtype: torch.dtype = torch.float32, device=None
    ) -> torch.Tensor:
        """State before the first block: the left zero padding of frame 0.

        Shape: -> [batch_size, frame_size // 2].
        """
        _check_size(batch_size, "batch_size")
        return torch.zeros(batch_size, self.frame_size // 2, dtype=dtype, device=device)

    def forward_stream(
        self, audio_block: torch.Tensor, state: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Feed a block of any length; get the frames it completes and the new state.

        Shape: audio_block [batch, n_block_samples], state [batch, n_buffered] ->
        f0_hz, confidence [batch, n_completed_frames], state [batch, n_buffered'].
        """
        check_tensor(audio_block, "audio_block", 2, AUDIO_SHAPE)
        self._check_state(state, audio_block.shape[0])
        buffer = torch.cat([state, audio_block], dim=-1)
        n_buffered, hop_size = buffer.shape[-1], self.hop_size
        n_frames = min(
            (n_buffered - self.frame_size) // hop_size + 1,
            (n_buffered - self.frame_size // 2) // hop_size,
        )
        f0_hz, confidence = _track_buffer(buffer, n_frames, self._lags)
        return f0_hz, confidence, buffer[:, max(0, n_frames) * hop_size :]

    def flush(self, state: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """End of signal: the frames not yet emitted, zero-padded past the end.

        Shape: state [batch, n_buffered] -> f0_hz, confidence [batch, n_last_frames].
        """
        self._check_state(state)
        n_frames = (state.shape[-1] - self.frame_size // 2) // self.hop_size
        return _track_buffer(state, n_frames, self._lags)

    def _check_state(self, state: object, batch_size: int | None = None) -> None:
        expected = f"[batch={batch_size or 'batch'}, >= {self.frame_size // 2}]"
        check_tensor(state, "state", 2, f"{expected} (from init_state)")
        wrong_batch = batch_size is not None and state.shape[0] != batch_size
        if wrong_batch or state.shape[-1] < self.frame_size // 2:
            raise ValueError(
                f"state must have shape {expected} (from init_state or forward_stream), "
                f"found {tuple(state.shape)}"
            )
