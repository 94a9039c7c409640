"""Spectral transforms and audio features: STFT, mel, MFCC, loudness, power.

Frames are time-major, ``[batch, n_frames, ...]``, as in DDSP. Windows are
periodic Hann (the default of ``tf.signal.stft`` and ``scipy.signal.get_window``),
built on the audio's device and dtype, or passed in by a module that holds them
as buffers. Filterbanks and weightings are computed in float64 on the host (MPS
has no float64), then cast and copied. Framing pads with zeros:

- ``center``: ``frame_size // 2`` on both sides, frame ``n`` is centred on
  sample ``n * hop_size``; ``n_frames = n_samples // hop_size + 1`` (even
  ``frame_size``).
- ``same``: zeros at the end only (``tf.signal.stft(pad_end=True)``);
  ``n_frames = ceil(n_samples / hop_size)``.
- ``valid``: no padding; ``n_frames = (n_samples - frame_size) // hop_size + 1``.

A stream cuts the ``center`` frames block by block with :func:`take_ready_frames`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_positive, check_positive_int, check_tensor
from .core import DB_RANGE, hz_to_mel, mel_to_hz, power_to_db, safe_log

PADDINGS = ("center", "same", "valid")
WINDOWS = ("hann",)
AUDIO_SHAPE = "[batch, n_samples]"
# IEC 61672 A-weighting poles (Hz), as librosa.A_weighting; +2 dB makes A(1 kHz) ~ 0 dB.
_A_WEIGHTING_POLES_HZ = (12194.217, 20.598997, 107.65265, 737.86223)
_A_WEIGHTING_OFFSET_DB = 2.0


def _pad_amounts(n_samples: int, frame_size: int, hop_size: int, padding: str) -> tuple[int, int]:
    if padding == "center":
        return frame_size // 2, frame_size // 2
    if padding == "same":
        n_frames = -(-n_samples // hop_size)
        # Negative when hop_size > frame_size: the unseen tail is cropped.
        return 0, (n_frames - 1) * hop_size + frame_size - n_samples
    return 0, 0


def frame_count(n_samples: int, frame_size: int, hop_size: int, padding: str = "center") -> int:
    """Number of frames :func:`frame` gives for ``n_samples`` (may be < 1 if too short).

    Shape: scalars -> int.
    """
    check_positive_int(frame_size, "frame_size")
    check_positive_int(hop_size, "hop_size")
    check_choice(padding, "padding", PADDINGS)
    left, right = _pad_amounts(n_samples, frame_size, hop_size, padding)
    return (n_samples + left + right - frame_size) // hop_size + 1


def frame(
    audio: torch.Tensor, frame_size: int, hop_size: int, padding: str = "center"
) -> torch.Tensor:
    """Zero-pad ``audio`` as ``padding`` says and cut it into overlapping frames.

    The result is a strided view of the padded audio (no copy).
    Shape: audio [batch, n_samples] -> [batch, n_frames, frame_size].
    """
    check_tensor(audio, "audio", 2, AUDIO_SHAPE)
    n_frames = frame_count(audio.shape[-1], frame_size, hop_size, padding)
    if n_frames < 1:
        raise ValueError(
            f"audio is too short for one {padding!r} frame of {frame_size} samples, "
            f"found n_samples={audio.shape[-1]}"
        )
    left, right = _pad_amounts(audio.shape[-1], frame_size, hop_size, padding)
    return F.pad(audio, (left, right)).unfold(-1, frame_size, hop_size)


def take_ready_frames(
    buffer: torch.Tensor, frame_size: int, hop_size: int, final: bool = False
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``'center'`` frames a stream's buffer completes, and the buffer left for the next.

    ``buffer`` starts where the window of the next frame to emit starts: at
    first the ``frame_size // 2`` zeros of the left padding, then the samples
    as they arrive. Buffer frame ``j`` (centred on buffer sample ``j * hop_size
    + frame_size // 2``) is ready once its window is complete and its hop has
    arrived, so a stream emits exactly the ``n_samples // hop_size`` frames of
    the offline analysis, each as soon as it can. ``final=True`` ends the
    signal: every frame whose hop has arrived is ready, zeros past the end.
    TorchScript-compatible.
    Shape: buffer [batch, n_buffered] -> frames [batch, n_ready, frame_size]
    (a view), rest [batch, n_buffered - n_ready * hop_size].
    """
    n_buffered = buffer.shape[-1]
    n_ready = (n_buffered - frame_size // 2) // hop_size
    if not final:
        n_ready = min(n_ready, (n_buffered - frame_size) // hop_size + 1)
    if n_ready <= 0:
        return buffer.new_zeros(buffer.shape[0], 0, frame_size), buffer
    missing = (n_ready - 1) * hop_size + frame_size - n_buffered  # > 0 only when final
    padded = F.pad(buffer, (0, missing)) if missing > 0 else buffer
    frames = padded.unfold(-1, frame_size, hop_size).narrow(1, 0, n_ready)
    used = n_ready * hop_size
    return frames, buffer.narrow(1, used, n_buffered - used)


def samples_to_next_frame(n_buffered: int, frame_size: int, hop_size: int) -> int:
    """Samples a stream's buffer (as :func:`take_ready_frames` keeps it) still needs before
    its next frame is ready: its window complete and its hop arrived. TorchScript-compatible.
    """
    return max(0, max(frame_size, frame_size // 2 + hop_size) - n_buffered)


def hann_window(n_fft: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """Periodic Hann window, ``0.5 - 0.5 cos(2 pi n / n_fft)``.

    Shape: -> [n_fft].
    """
    check_positive_int(n_fft, "n_fft")
    return torch.hann_window(n_fft, periodic=True, dtype=dtype, device=device)


def _resolve_window(window: str | torch.Tensor, n_fft: int, audio: torch.Tensor) -> torch.Tensor:
    if isinstance(window, str):
        check_choice(window, "window", WINDOWS)
        return hann_window(n_fft, audio.dtype, audio.device)
    check_tensor(window, "window", 1, f"[n_fft={n_fft}]")
    if window.shape[0] != n_fft:
        raise ValueError(f"window must have shape [n_fft={n_fft}], found {tuple(window.shape)}")
    if window.dtype != audio.dtype or window.device != audio.device:
        raise ValueError(
            f"window must match audio's dtype and device ({audio.dtype}, {audio.device}), "
            f"found ({window.dtype}, {window.device})"
        )
    return window


def stft(
    audio: torch.Tensor,
    n_fft: int,
    hop_size: int | None = None,
    padding: str = "center",
    window: str | torch.Tensor = "hann",
) -> torch.Tensor:
    """Short-time Fourier transform, unnormalised: ``rfft(frame * window)``.

    ``hop_size`` defaults to ``n_fft // 4`` (DDSP's overlap of 0.75). ``window``
    is ``'hann'`` (periodic) or a tensor of ``n_fft`` values on the audio's
    dtype and device.
    Shape: audio [batch, n_samples] -> complex [batch, n_frames, n_fft // 2 + 1].
    """
    check_positive_int(n_fft, "n_fft")
    hop_size = n_fft // 4 if hop_size is None else hop_size
    frames = frame(audio, n_fft, hop_size, padding)
    return torch.fft.rfft(frames * _resolve_window(window, n_fft, audio), dim=-1)


def magnitude(
    audio: torch.Tensor,
    n_fft: int,
    hop_size: int | None = None,
    padding: str = "center",
    window: str | torch.Tensor = "hann",
) -> torch.Tensor:
    """Magnitude of :func:`stft`, ``|stft|``.

    Shape: audio [batch, n_samples] -> [batch, n_frames, n_fft // 2 + 1].
    """
    return stft(audio, n_fft, hop_size, padding, window).abs()


def _power(spectrum: torch.Tensor) -> torch.Tensor:
    # re^2 + im^2 rather than |z|^2: no square root, so finite gradients at z = 0.
    return torch.view_as_real(spectrum).square().sum(-1)


def fft_frequencies(
    sample_rate: float, n_fft: int, dtype: torch.dtype = torch.float64, device=None
) -> torch.Tensor:
    """Centre frequency of each rFFT bin, ``k * sample_rate / n_fft``.

    Shape: -> [n_fft // 2 + 1].
    """
    check_positive(sample_rate, "sample_rate")
    check_positive_int(n_fft, "n_fft")
    return torch.arange(n_fft // 2 + 1, dtype=dtype, device=device) * (sample_rate / n_fft)


def a_weighting_db(frequencies_hz: torch.Tensor, min_db: float | None = -80.0) -> torch.Tensor:
    """IEC 61672 A-weighting in dB (0 dB near 1 kHz), floored at ``min_db``.

    Same formula and floor as ``librosa.A_weighting``; 0 Hz gives ``min_db``.
    Shape: any -> same.
    """
    f_sq = frequencies_hz.square()
    p0, p1, p2, p3 = (pole**2 for pole in _A_WEIGHTING_POLES_HZ)
    weights = _A_WEIGHTING_OFFSET_DB + 20.0 * (
        math.log10(p0)
        + 2.0 * torch.log10(f_sq)
        - torch.log10(f_sq + p0)
        - torch.log10(f_sq + p1)
        - 0.5 * torch.log10(f_sq + p2)
        - 0.5 * torch.log10(f_sq + p3)
    )
    return weights if min_db is None else weights.clamp_min(min_db)


def mel_filterbank(
    sample_rate: float,
    n_fft: int,
    n_mels: int,
    fmin: float = 0.0,
    fmax: float | None = None,
    dtype: torch.dtype = torch.float32,
    device=None,
) -> torch.Tensor:
    """Triangular filters evenly spaced on the HTK mel scale, peak 1, unnormalised.

    Equals ``librosa.filters.mel(sr, n_fft, n_mels, fmin, fmax, htk=True,
    norm=None).T``; ``fmax`` defaults to Nyquist. Multiply a spectrogram
    ``[..., n_bins]`` by it on the right.
    Shape: -> [n_fft // 2 + 1, n_mels].
    """
    check_positive(sample_rate, "sample_rate")
    check_positive_int(n_mels, "n_mels")
    fmax = sample_rate / 2.0 if fmax is None else fmax
    if not 0.0 <= fmin < fmax:
        raise ValueError(f"mel filters need 0 <= fmin < fmax, found fmin={fmin}, fmax={fmax}")
    bins_hz = fft_frequencies(sample_rate, n_fft)[:, None]
    mel_range = hz_to_mel(torch.tensor([fmin, fmax], dtype=torch.float64)).tolist()
    edges_hz = mel_to_hz(torch.linspace(*mel_range, n_mels + 2, dtype=torch.float64))
    lower, centre, upper = edges_hz[:-2], edges_hz[1:-1], edges_hz[2:]
    rising = (bins_hz - lower) / (centre - lower)
    falling = (upper - bins_hz) / (upper - centre)
    return torch.minimum(rising, falling).clamp_min(0.0).to(device=device, dtype=dtype)


def mel_spectrogram(
    audio: torch.Tensor,
    sample_rate: float,
    n_fft: int = 2048,
    hop_size: int | None = None,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    power: float = 2.0,
    padding: str = "center",
    window: str | torch.Tensor = "hann",
) -> torch.Tensor:
    """``|stft| ** power`` through :func:`mel_filterbank` (power 2: librosa's default,
    power 1: DDSP's ``compute_mel`` of magnitudes).

    Shape: audio [batch, n_samples] -> [batch, n_frames, n_mels].
    """
    check_positive(power, "power")
    spectrum = stft(audio, n_fft, hop_size, padding, window)
    spec = _power(spectrum) if power == 2.0 else spectrum.abs().pow(power)
    return spec @ mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, audio.dtype, audio.device)


def log_mel_spectrogram(
    audio: torch.Tensor,
    sample_rate: float,
    n_fft: int = 2048,
    hop_size: int | None = None,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    power: float = 2.0,
    padding: str = "center",
    window: str | torch.Tensor = "hann",
    eps: float = 1e-5,
) -> torch.Tensor:
    """Natural log of :func:`mel_spectrogram`, values below ``eps`` set to ``eps``
    (``core.safe_log``, as DDSP's ``compute_logmel``).

    Shape: audio [batch, n_samples] -> [batch, n_frames, n_mels].
    """
    mel = mel_spectrogram(
        audio, sample_rate, n_fft, hop_size, n_mels, fmin, fmax, power, padding, window
    )
    return safe_log(mel, eps)


def dct_matrix(
    n_in: int, n_out: int, dtype: torch.dtype = torch.float32, device=None
) -> torch.Tensor:
    """Orthonormal DCT-II basis (``scipy.fft.dct(type=2, norm='ortho')``), first ``n_out``.

    Shape: -> [n_in, n_out]; ``x @ dct_matrix`` transforms the last axis of x.
    """
    check_positive_int(n_in, "n_in")
    check_positive_int(n_out, "n_out")
    n = torch.arange(n_in, dtype=torch.float64)[:, None]
    k = torch.arange(n_out, dtype=torch.float64)
    basis = torch.cos(math.pi * k * (2.0 * n + 1.0) / (2.0 * n_in)) * math.sqrt(2.0 / n_in)
    basis[:, 0] /= math.sqrt(2.0)
    return basis.to(device=device, dtype=dtype)


def mfcc(
    audio: torch.Tensor,
    sample_rate: float,
    n_mfcc: int = 13,
    n_fft: int = 2048,
    hop_size: int | None = None,
    n_mels: int = 128,
    fmin: float = 0.0,
    fmax: float | None = None,
    padding: str = "center",
    window: str | torch.Tensor = "hann",
) -> torch.Tensor:
    """Mel-frequency cepstral coefficients, librosa's definition.

    ``dct_ii_ortho(10 * log10(max(mel_power, 1e-10)))[..., :n_mfcc]`` with
    ``mel_power`` = :func:`mel_spectrogram` (power 2), i.e.
    ``librosa.feature.mfcc(S=librosa.power_to_db(mel_power, top_db=None))``.
    No ``top_db`` clipping: librosa's is relative to the maximum of the whole
    input, which would couple the examples of a batch.
    Shape: audio [batch, n_samples] -> [batch, n_frames, n_mfcc].
    """
    check_positive_int(n_mfcc, "n_mfcc")
    if n_mfcc > n_mels:
        raise ValueError(f"n_mfcc must be at most n_mels={n_mels}, found {n_mfcc}")
    hop_size = n_fft // 4 if hop_size is None else hop_size
    fmax = sample_rate / 2.0 if fmax is None else fmax
    return frames_mfcc(
        frame(audio, n_fft, hop_size, padding),
        _resolve_window(window, n_fft, audio),
        mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, audio.dtype, audio.device),
        dct_matrix(n_mels, n_mfcc, audio.dtype, audio.device),
    )


def frames_mfcc(
    frames: torch.Tensor, window: torch.Tensor, mel_basis: torch.Tensor, dct_basis: torch.Tensor
) -> torch.Tensor:
    """:func:`mfcc` of frames already cut (a stream's, from :func:`take_ready_frames`), with
    the window, :func:`mel_filterbank` and :func:`dct_matrix` given. TorchScript-compatible.

    Shape: frames [batch, n_frames, n_fft] -> [batch, n_frames, n_mfcc].
    """
    return power_mfcc(frames_power(frames, window), mel_basis, dct_basis)


def frames_power(frames: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Power spectrum of windowed frames. TorchScript-compatible.

    Shape: frames [batch, n_frames, n_fft] -> [batch, n_frames, n_fft // 2 + 1].
    """
    return _power(torch.fft.rfft(frames * window, dim=-1))


def power_mfcc(
    power: torch.Tensor, mel_basis: torch.Tensor, dct_basis: torch.Tensor
) -> torch.Tensor:
    """MFCCs of a power spectrum (:func:`mfcc`'s last steps). TorchScript-compatible.

    Shape: power [..., n_bins] -> [..., n_mfcc].
    """
    return power_to_db(power @ mel_basis, range_db=math.inf, amin=1e-10) @ dct_basis


def warp_frequencies(
    power: torch.Tensor, factor: torch.Tensor, hold_edge: bool = False
) -> torch.Tensor:
    """A spectrum with every frequency multiplied by ``factor`` (vocal tract length
    perturbation: a factor above 1 raises the formants, as a shorter vocal tract does).
    Bin ``k`` takes the linear interpolation at bin ``k / factor``; beyond Nyquist, zero,
    or the last bin's value with ``hold_edge`` (for values that are not power: logits).

    Shape: power [batch, n_frames, n_bins], factor [batch] (per example) or [batch,
    n_frames] (per frame) -> [batch, n_frames, n_bins].
    """
    n_bins = power.shape[-1]
    per_frame = factor[:, None] if factor.dim() == 1 else factor
    bins = torch.arange(n_bins, device=power.device, dtype=power.dtype)
    source = (bins / per_frame[..., None]).expand(power.shape)
    low = source.floor().clamp(max=n_bins - 1)
    index = low.long()
    above = (index + 1).clamp(max=n_bins - 1)
    warped = torch.lerp(power.gather(-1, index), power.gather(-1, above), source - low)
    if hold_edge:
        return warped
    return torch.where(source <= n_bins - 1, warped, torch.zeros_like(warped))


def frame_hop_size(sample_rate: float, frame_rate: float) -> int:
    """Samples per frame, ``sample_rate / frame_rate``, which must be a whole number.

    Shape: scalars -> int.
    """
    check_positive(sample_rate, "sample_rate")
    check_positive(frame_rate, "frame_rate")
    if sample_rate % frame_rate != 0:
        raise ValueError(
            f"frame_rate must divide sample_rate evenly, found frame_rate={frame_rate} Hz for "
            f"sample_rate={sample_rate} Hz (e.g. 250 Hz suits 16 kHz and 48 kHz, 50 or 100 Hz "
            f"suit 22.05 kHz and 44.1 kHz)"
        )
    return int(sample_rate // frame_rate)


def compute_loudness(
    audio: torch.Tensor,
    sample_rate: float,
    frame_rate: float,
    n_fft: int = 512,
    range_db: float = DB_RANGE,
    ref_db: float = 0.0,
    padding: str = "center",
    window: str | torch.Tensor = "hann",
) -> torch.Tensor:
    """A-weighted power in dB per frame, DDSP v3's ``spectral_ops.compute_loudness``.

    With ``S = stft(audio, n_fft, hop=sample_rate // frame_rate, padding)``
    (periodic Hann, unnormalised) and ``A(f)`` = :func:`a_weighting_db` (-80 dB
    floor) at the bin frequencies ``k * sample_rate / n_fft``::

        loudness_db = max(10 log10(max(mean_k(|S_k|^2 10^(A(f_k) / 10)), 1e-20))
                          - ref_db, -range_db)

    Defaults are DDSP v3's (``n_fft=512``, ``range_db=80``, ``ref_db=0``); a
    full-scale sine at 1 kHz reads about +19.8 dB with ``n_fft=512``, +25.8 dB
    with 2048. ``frame_rate`` must divide ``sample_rate``.
    Shape: audio [batch, n_samples] -> [batch, n_frames].
    """
    check_positive_int(n_fft, "n_fft")
    frames = frame(audio, n_fft, frame_hop_size(sample_rate, frame_rate), padding)
    weights = loudness_weights(sample_rate, n_fft, audio.dtype, audio.device)
    window = _resolve_window(window, n_fft, audio)
    return frames_loudness_db(frames, window, weights, ref_db, range_db)


def loudness_weights(
    sample_rate: float, n_fft: int, dtype: torch.dtype = torch.float32, device=None
) -> torch.Tensor:
    """A-weighting as power gains over the number of bins: ``power @ weights`` is the
    mean A-weighted power of :func:`compute_loudness`.

    Shape: -> [n_fft // 2 + 1].
    """
    weighting_db = a_weighting_db(fft_frequencies(sample_rate, n_fft))
    weights = torch.pow(10.0, weighting_db / 10.0) / weighting_db.shape[0]
    return weights.to(device=device, dtype=dtype)


def frames_loudness_db(
    frames: torch.Tensor,
    window: torch.Tensor,
    weights: torch.Tensor,
    ref_db: float = 0.0,
    range_db: float = DB_RANGE,
) -> torch.Tensor:
    """The kernel of :func:`compute_loudness` on frames already cut: A-weighted power in dB.

    ``weights`` from :func:`loudness_weights`. TorchScript-compatible.
    Shape: frames [..., n_fft], window [n_fft], weights [n_fft // 2 + 1] -> [...].
    """
    if frames.numel() == 0:  # MKL's FFT refuses empty batches; a stream often has no frame yet
        return frames.new_zeros(frames.shape[:-1])
    power = _power(torch.fft.rfft(frames * window, dim=-1))
    return power_to_db(power @ weights, ref_db=ref_db, range_db=range_db)


def compute_rms_energy(
    audio: torch.Tensor,
    sample_rate: float,
    frame_rate: float,
    frame_size: int = 512,
    padding: str = "center",
) -> torch.Tensor:
    """Root mean square of each (unwindowed) frame, DDSP's ``compute_rms_energy``.

    Its gradient is infinite on silent frames; train on :func:`compute_power`.

    Shape: audio [batch, n_samples] -> [batch, n_frames].
    """
    return _mean_square(audio, sample_rate, frame_rate, frame_size, padding).sqrt()


def compute_power(
    audio: torch.Tensor,
    sample_rate: float,
    frame_rate: float,
    frame_size: int = 512,
    ref_db: float = 0.0,
    range_db: float = DB_RANGE,
    padding: str = "center",
) -> torch.Tensor:
    """Frame power in dB, ``max(10 log10(mean(frame^2)) - ref_db, -range_db)``.

    Equals DDSP's ``compute_power`` (``amplitude_to_db`` of the RMS) but skips the
    square root, so silent frames have finite gradients.
    Shape: audio [batch, n_samples] -> [batch, n_frames].
    """
    mean_square = _mean_square(audio, sample_rate, frame_rate, frame_size, padding)
    return power_to_db(mean_square, ref_db=ref_db, range_db=range_db)


def _mean_square(
    audio: torch.Tensor, sample_rate: float, frame_rate: float, frame_size: int, padding: str
) -> torch.Tensor:
    hop_size = frame_hop_size(sample_rate, frame_rate)
    return frame(audio, frame_size, hop_size, padding).square().mean(-1)
