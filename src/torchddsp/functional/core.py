"""Unit conversions, scalings and frame-rate -> audio-rate resampling.

Definitions follow Magenta's ``ddsp.core`` so that models and controls mean the
same thing in both libraries.
"""

from __future__ import annotations

import math

import torch

from ._checks import check_choice, check_positive, check_tensor

F0_RANGE = 127.0  # MIDI notes spanned by the scaled f0 feature.
DB_RANGE = 80.0  # dB spanned by the scaled loudness feature.
RESAMPLE_METHODS = ("nearest", "linear", "window")
PITCH_CLASSES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def _as_tensor(x: torch.Tensor | float) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x
    if torch.jit.is_scripting():  # TorchScript has no default dtype
        return torch.tensor(x, dtype=torch.float32)
    else:
        return torch.as_tensor(x, dtype=torch.get_default_dtype())


def midi_to_hz(notes: torch.Tensor | float, midi_zero_silence: bool = False) -> torch.Tensor:
    """MIDI note number to Hz (A4 = 69 = 440 Hz); optionally note 0 -> 0 Hz.

    Shape: any -> same.
    """
    notes = _as_tensor(notes)
    hz = 440.0 * torch.pow(2.0, (notes - 69.0) / 12.0)
    return torch.where(notes == 0.0, torch.zeros_like(hz), hz) if midi_zero_silence else hz


def note_name(midi: float) -> str:
    """A MIDI pitch for people: ``note_name(64.03) == "E4 +3 cents"``."""
    number = round(midi)
    cents = round(100 * (midi - number))
    return f"{PITCH_CLASSES[number % 12]}{number // 12 - 1} {cents:+d} cents"


def hz_to_midi(frequencies: torch.Tensor | float) -> torch.Tensor:
    """Hz to MIDI note number; 0 Hz and below map to note 0.

    Shape: any -> same.
    """
    frequencies = _as_tensor(frequencies)
    positive = frequencies > 0.0
    safe = torch.where(positive, frequencies, torch.ones_like(frequencies))
    notes = 12.0 * (torch.log2(safe) - math.log(440.0) / math.log(2.0)) + 69.0
    return torch.where(positive, notes, torch.zeros_like(notes))


def cents_apart(f0_hz: torch.Tensor, reference_hz: torch.Tensor) -> torch.Tensor:
    """Absolute pitch difference in cents (float64). Shape: broadcastable -> broadcast."""
    return 100.0 * (hz_to_midi(f0_hz.double()) - hz_to_midi(reference_hz.double())).abs()


def power_to_db(
    power: torch.Tensor, ref_db: float = 0.0, range_db: float = DB_RANGE, amin: float = 1e-20
) -> torch.Tensor:
    """Power to decibels relative to ``ref_db``, floored at ``-range_db``.

    Shape: any -> same.
    """
    db = 10.0 * torch.log10(power.clamp_min(amin)) - ref_db
    return db.clamp_min(-range_db)


def amplitude_to_db(
    amplitude: torch.Tensor, ref_db: float = 0.0, range_db: float = DB_RANGE, amin: float = 1e-20
) -> torch.Tensor:
    """Amplitude (linear) to decibels: ``power_to_db(amplitude ** 2)``.

    Shape: any -> same.
    """
    return power_to_db(amplitude.square(), ref_db=ref_db, range_db=range_db, amin=amin)


def db_to_amplitude(db: torch.Tensor | float) -> torch.Tensor:
    """Decibels to linear amplitude, ``10 ** (db / 20)``.

    Shape: any -> same.
    """
    return torch.pow(10.0, _as_tensor(db) / 20.0)


def db_to_power(db: torch.Tensor | float) -> torch.Tensor:
    """Decibels to linear power, ``10 ** (db / 10)``.

    Shape: any -> same.
    """
    return torch.pow(10.0, _as_tensor(db) / 10.0)


def exp_sigmoid(
    x: torch.Tensor, exponent: float = 10.0, max_value: float = 2.0, threshold: float = 1e-7
) -> torch.Tensor:
    """DDSP's positive scaling: ``max_value * sigmoid(x) ** ln(exponent) + threshold``.

    Its slope in log space matches a decibel-like perception of amplitude.
    Shape: any -> same.
    """
    return max_value * torch.sigmoid(x).pow(math.log(exponent)) + threshold


def unscaled(x: torch.Tensor) -> torch.Tensor:
    """The identity: the scaling of a processor built with ``scale_fn=None``.

    Shape: any -> same.
    """
    return x


def safe_log(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Natural log with inputs below ``eps`` replaced by ``eps`` (no -inf, finite grads).

    Shape: any -> same.
    """
    return torch.log(x.clamp_min(eps))


def safe_divide(
    numerator: torch.Tensor, denominator: torch.Tensor, eps: float = 1e-7
) -> torch.Tensor:
    """Division that treats a zero denominator as ``eps``.

    Shape: broadcastable -> broadcast.
    """
    return numerator / torch.where(
        denominator == 0.0, torch.full_like(denominator, eps), denominator
    )


def hz_to_mel(frequencies: torch.Tensor | float) -> torch.Tensor:
    """Hz to mel on the HTK scale, ``1127 ln(1 + f / 700)`` (as DDSP).

    Shape: any -> same.
    """
    return 1127.0 * torch.log1p(_as_tensor(frequencies) / 700.0)


def mel_to_hz(mels: torch.Tensor | float) -> torch.Tensor:
    """Mel (HTK scale) to Hz, the inverse of :func:`hz_to_mel`.

    Shape: any -> same.
    """
    return 700.0 * torch.expm1(_as_tensor(mels) / 1127.0)


def scale_f0_hz(f0_hz: torch.Tensor, f0_range: float = F0_RANGE) -> torch.Tensor:
    """f0 in Hz to MIDI / 127, the network input scaling of DDSP.

    Shape: any -> same.
    """
    return hz_to_midi(f0_hz) / f0_range


def unscale_f0_hz(f0_scaled: torch.Tensor, f0_range: float = F0_RANGE) -> torch.Tensor:
    """Inverse of :func:`scale_f0_hz`.

    Shape: any -> same.
    """
    return midi_to_hz(f0_scaled * f0_range)


def scale_db(db: torch.Tensor, range_db: float = DB_RANGE) -> torch.Tensor:
    """Loudness in dB to ``db / 80 + 1`` (0 dB -> 1, -80 dB -> 0), as DDSP.

    Shape: any -> same.
    """
    return db / range_db + 1.0


def unscale_db(db_scaled: torch.Tensor, range_db: float = DB_RANGE) -> torch.Tensor:
    """Inverse of :func:`scale_db`.

    Shape: any -> same.
    """
    return (db_scaled - 1.0) * range_db


def harmonic_frequencies(f0_hz: torch.Tensor, n_harmonics: int) -> torch.Tensor:
    """Frequencies of harmonics 1..n_harmonics.

    Shape: f0_hz [..., 1] -> [..., n_harmonics].
    """
    numbers = torch.arange(1, n_harmonics + 1, dtype=f0_hz.dtype, device=f0_hz.device)
    return f0_hz * numbers


def remove_above_nyquist(
    frequencies: torch.Tensor, amplitudes: torch.Tensor, sample_rate: float
) -> torch.Tensor:
    """Zero the amplitudes of components at or above Nyquist.

    Shape: frequencies and amplitudes broadcastable -> amplitudes' shape.
    """
    return torch.where(frequencies >= sample_rate / 2.0, torch.zeros_like(amplitudes), amplitudes)


def normalize_harmonics(
    harmonic_distribution: torch.Tensor,
    f0_hz: torch.Tensor | None = None,
    sample_rate: float | None = None,
) -> torch.Tensor:
    """Band-limit (when f0 and sample rate are given) and normalise to sum 1.

    Shape: harmonic_distribution [batch, n_frames, n_harmonics], f0_hz
    [batch, n_frames, 1] -> [batch, n_frames, n_harmonics].
    """
    if f0_hz is not None and sample_rate is not None:
        freqs = harmonic_frequencies(f0_hz, harmonic_distribution.shape[-1])
        harmonic_distribution = remove_above_nyquist(freqs, harmonic_distribution, sample_rate)
    return safe_divide(harmonic_distribution, harmonic_distribution.sum(-1, keepdim=True))


def interpolation_weights(
    hop_size: int,
    method: str,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights of frame n and frame n+1 for the samples of hop n.

    Every method reconstructs sample ``n * hop_size + r`` as
    ``w_this[r] * x[n] + w_next[r] * x[n + 1]`` (the last frame is held), so
    audio-rate envelopes never need to be materialised.

    - nearest: frame n (TF ``resize`` nearest, no corner alignment)
    - linear: straight line from frame n to n+1 (TF ``resize`` bilinear)
    - window: overlapping Hann windows of ``2 * hop_size`` at ``hop_size``
      (DDSP ``upsample_with_windows``), i.e. a raised-cosine crossfade.

    Shape: -> ([hop_size], [hop_size]).
    """
    if not torch.jit.is_scripting():
        check_choice(method, "method", RESAMPLE_METHODS)
        check_positive(hop_size, "hop_size")
    fraction = torch.arange(hop_size, dtype=torch.float64, device=device) / hop_size
    w_next = _next_frame_weight(fraction, method)
    return (1.0 - w_next).to(dtype), w_next.to(dtype)


def frames_to_samples(frames: torch.Tensor, hop_size: int, method: str = "linear") -> torch.Tensor:
    """Audio-rate values between consecutive frames: hop n mixes frames n and n + 1.

    The building block of :func:`resample_frames` (which holds the last frame
    for its own hop) and of streaming, where the next frame is already known.
    Shape: frames [batch, n_frames + 1, channels] -> [batch, n_frames * hop_size, channels].
    """
    w_this, w_next = interpolation_weights(hop_size, method, frames.dtype, frames.device)
    mixed = w_this[:, None] * frames[:, :-1, None] + w_next[:, None] * frames[:, 1:, None]
    return mixed.reshape(frames.shape[0], -1, frames.shape[2])


def _next_frame_weight(fraction: torch.Tensor, method: str) -> torch.Tensor:
    """Weight of frame n+1 at a fractional position between frames n and n+1."""
    if method == "nearest":
        return torch.zeros_like(fraction)
    if method == "linear":
        return fraction
    return 0.5 - 0.5 * torch.cos(math.pi * fraction)


def resample_frames(x: torch.Tensor, n_samples: int, method: str = "linear") -> torch.Tensor:
    """Upsample frame-rate controls to ``n_samples`` (audio rate).

    Sample t sits at frame position ``t * n_frames / n_samples`` and mixes the
    two frames around it with the method's weights, so any length works; when
    ``n_samples`` is a multiple of ``n_frames``, ``window`` equals DDSP's
    overlap-added Hann windows exactly (DDSP allows only that case).
    Shape: x [batch, n_frames, channels] -> [batch, n_samples, channels].
    """
    if not torch.jit.is_scripting():
        check_tensor(x, "x", 3, "[batch, n_frames, channels]")
        check_choice(method, "method", RESAMPLE_METHODS)
        check_positive(n_samples, "n_samples")
        if x.shape[1] == 0:
            raise ValueError("x must have at least one frame, found 0")
    n_frames = x.shape[1]
    padded = torch.cat([x, x[:, -1:]], dim=1)
    if n_samples % n_frames == 0:
        return frames_to_samples(padded, n_samples // n_frames, method)
    position = torch.arange(n_samples, dtype=torch.float64, device=x.device) * (
        n_frames / n_samples
    )
    index = position.floor().long().clamp_max(n_frames - 1)
    w_next = _next_frame_weight(position - index, method).to(x.dtype)[:, None]
    return (1.0 - w_next) * padded[:, index] + w_next * padded[:, index + 1]
