"""Time-varying FIR filtering: FFT convolution, filter design, modulated delay.

Follows Magenta's ``ddsp.core`` (``fft_convolve``, ``frequency_impulse_response``,
``sinc_impulse_response``, ``variable_length_delay``). Where DDSP is off by a
sample or two, this module is exact instead, and says so in the docstring:

- windows are symmetric about the centre tap, so designed filters are exactly
  linear phase, with their peak at tap ``ir_size // 2``;
- the default delay compensation is that same ``ir_size // 2``, so ``'same'``
  output is aligned with its input (DDSP crops ``(ir_size - 1) // 2 - 1``);
- time-varying filters take any audio length: frame i covers samples
  ``[i * n_samples // n_frames, (i + 1) * n_samples // n_frames)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_positive, check_same_leading, check_tensor

PADDINGS = ("same", "valid")


def fft_convolve(
    audio: torch.Tensor,
    impulse_response: torch.Tensor,
    padding: str = "same",
    delay_compensation: int = -1,
) -> torch.Tensor:
    """Filter audio with one impulse response, or a time-varying series of them.

    Impulse response i filters frame i of the audio, samples ``[i * n_samples
    // n_ir_frames, (i + 1) * n_samples // n_ir_frames)``, through an FFT of the
    next power of two ``>= frame_size + ir_size - 1``; the filtered frames are
    overlap-added. The output then starts ``delay_compensation`` samples into
    the full linear convolution (negative: ``ir_size // 2``, the delay of the
    linear-phase filters designed here) and is ``n_samples`` long for
    ``'same'`` or ``n_samples + ir_size - 1`` for ``'valid'``; ``'valid'`` with
    ``delay_compensation=0`` is the full convolution.

    Differences from DDSP: frames follow the controls' timeline for any length
    (DDSP cuts frames of ``ceil(n_samples / n_ir_frames)`` samples, which drift
    when the length is not a multiple of the number of frames, and raises when
    they do not fit; for multiples both are identical); the default delay
    compensation is ``ir_size // 2`` rather than ``(ir_size - 1) // 2 - 1``
    (exact alignment for our centred filters); an impulse-response batch of 1
    is broadcast without copying it.

    Shape: audio [batch, n_samples], impulse_response [batch or 1, n_ir_frames,
    ir_size] or [batch or 1, ir_size] -> [batch, n_samples] ('same') or
    [batch, n_samples + ir_size - 1] ('valid').
    """
    if not torch.jit.is_scripting():
        _check_convolution(audio, impulse_response, padding)
    ir = impulse_response if impulse_response.dim() == 3 else impulse_response[:, None, :]
    batch, n_samples = audio.shape
    n_ir_frames, ir_size = ir.shape[1], ir.shape[2]
    frame_size = math.ceil(n_samples / n_ir_frames)
    segment_size = frame_size + ir_size - 1
    fft_size = _next_power_of_two(segment_size)
    ir_spectrum = torch.fft.rfft(ir, n=fft_size)
    if n_samples % n_ir_frames == 0:
        frames = audio.reshape(batch, n_ir_frames, frame_size)
        segments = _filter_segments(frames, ir_spectrum, fft_size, segment_size)
        full = _overlap_add(segments, frame_size)
    else:
        starts, frames = _uneven_frames(audio, n_ir_frames, frame_size)
        segments = _filter_segments(frames, ir_spectrum, fft_size, segment_size)
        full = _overlap_add_at(segments, starts, n_samples + segment_size - 1)
    delay = ir_size // 2 if delay_compensation < 0 else int(delay_compensation)
    length = n_samples if padding == "same" else n_samples + ir_size - 1
    return _crop(full, delay, length)


def _check_convolution(audio: object, impulse_response: object, padding: str) -> None:
    check_tensor(audio, "audio", 2, "[batch, n_samples]")
    ir_shapes = "[batch, n_ir_frames, ir_size] or [batch, ir_size]"
    check_tensor(impulse_response, "impulse_response", (2, 3), ir_shapes)
    check_choice(padding, "padding", PADDINGS)
    batch, n_samples = audio.shape
    ir_batch, n_ir_frames, ir_size = (
        impulse_response.shape if impulse_response.ndim == 3 else impulse_response[:, None].shape
    )
    if ir_batch not in (1, batch):
        raise ValueError(
            f"impulse_response batch must be 1 or the audio batch {batch}, found {ir_batch}"
        )
    check_positive(n_samples, "audio n_samples")
    check_positive(n_ir_frames, "impulse_response n_ir_frames")
    check_positive(ir_size, "impulse_response ir_size")


def _filter_segments(
    frames: torch.Tensor, ir_spectrum: torch.Tensor, fft_size: int, segment_size: int
) -> torch.Tensor:
    spectrum = torch.fft.rfft(frames, n=fft_size) * ir_spectrum
    return torch.fft.irfft(spectrum, n=fft_size)[..., :segment_size]


def _next_power_of_two(n: int) -> int:
    size = 1
    while size < n:
        size *= 2
    return size


def _overlap_add(segments: torch.Tensor, hop_size: int) -> torch.Tensor:
    """Sum segments [batch, n_frames, size] placed every ``hop_size`` samples."""
    batch, n_frames, size = segments.shape
    if n_frames == 1:
        return segments[:, 0]
    # Cut each segment into n_chunks hops; chunk k of frame i lands on hop i + k. Laying the
    # chunks out as n_chunks rows of (n_frames + n_chunks) hops and re-reading them with a row
    # stride one hop shorter shifts row k right by k hops, so one sum overlap-adds every frame
    # (no loop over frames, deterministic, and a cheaper backward than F.fold's im2col).
    n_chunks = math.ceil(size / hop_size)
    chunks = F.pad(segments, (0, n_chunks * hop_size - size))
    chunks = chunks.reshape(batch, n_frames, n_chunks, hop_size).transpose(1, 2)
    rows = F.pad(chunks, (0, 0, 0, n_chunks)).reshape(batch, -1)
    row_size = (n_frames + n_chunks - 1) * hop_size
    skewed = rows[:, : n_chunks * row_size].reshape(batch, n_chunks, row_size)
    return skewed.sum(1)[:, : (n_frames - 1) * hop_size + size]


def _uneven_frames(
    audio: torch.Tensor, n_frames: int, frame_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames of ``floor`` / ``ceil(n_samples / n_frames)`` samples, zero-padded to ``frame_size``.

    Shape: audio [batch, n_samples] -> (starts [n_frames], frames [batch, n_frames, frame_size]).
    """
    n_samples = audio.shape[1]
    bounds = torch.arange(n_frames + 1, device=audio.device) * n_samples // n_frames
    index = bounds[:-1, None] + torch.arange(frame_size, device=audio.device)
    inside = index < bounds[1:, None]
    frames = F.pad(audio, (0, frame_size))[:, index] * inside
    return bounds[:-1], frames


def _overlap_add_at(segments: torch.Tensor, starts: torch.Tensor, n_out: int) -> torch.Tensor:
    """Sum segments [batch, n_frames, size], segment i placed at sample ``starts[i]``."""
    batch, _, size = segments.shape
    positions = (starts[:, None] + torch.arange(size, device=starts.device)).flatten()
    return segments.new_zeros(batch, n_out).index_add(1, positions, segments.reshape(batch, -1))


def _crop(signal: torch.Tensor, start: int, length: int) -> torch.Tensor:
    """``signal[:, start:start + length]``, zero-extended past the end."""
    missing = start + length - signal.shape[-1]
    if missing > 0:
        signal = F.pad(signal, (0, missing))
    return signal[:, start : start + length]


def overlap_add_filter(
    audio: torch.Tensor, impulse_responses: torch.Tensor, tail: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """One block of a streaming time-varying FIR filter (no delay compensation).

    Filters each hop of ``audio`` by its impulse response (as
    :func:`fft_convolve`) and adds the previous block's ``tail`` onto the
    start. Returns the samples of the full convolution that no later block
    changes, and the new tail (the block's overhang, still to be added to).
    Shape: audio [batch, n_frames * hop], impulse_responses [batch or 1,
    n_frames, ir_size], tail [batch, ir_size - 1] -> ([batch, n_frames * hop],
    [batch, ir_size - 1]).
    """
    full = fft_convolve(audio, impulse_responses, padding="valid", delay_compensation=0)
    overlap = tail.shape[-1]
    full = torch.cat([full[:, :overlap] + tail, full[:, overlap:]], dim=1)
    n_samples = audio.shape[1]
    return full[:, :n_samples], full[:, n_samples:]


def centered_hann_window(
    window_size: int, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """Hann window peaking at, and symmetric about, tap ``window_size // 2``.

    Even sizes give the periodic Hann window (DDSP's ``tf.signal.hann_window``,
    whose tap 0 is the only zero); odd sizes the periodic window one longer
    without its leading zero. Either way the filters it tapers are exactly
    linear phase with a delay of ``window_size // 2`` taps.
    Shape: -> [window_size].
    """
    if not torch.jit.is_scripting():
        check_positive(window_size, "window_size")
    if window_size % 2 == 0:
        return torch.hann_window(window_size, periodic=True, dtype=dtype, device=device)
    return torch.hann_window(window_size + 1, periodic=True, dtype=dtype, device=device)[1:]


def frequency_impulse_response(magnitudes: torch.Tensor, window_size: int = 0) -> torch.Tensor:
    """Linear-phase FIR filters from frequency responses (frequency sampling).

    ``magnitudes[..., k]`` is the gain at ``k / (n_freqs - 1)`` of Nyquist. The
    zero-phase impulse response ``irfft(magnitudes)`` (``ir_size = 2 * (n_freqs
    - 1)`` taps) is delayed by ``window_size // 2``, cropped to ``window_size``
    taps and tapered by :func:`centered_hann_window`. ``window_size <= 0`` or
    larger than ``ir_size`` means ``ir_size``; in that default case the result is
    identical to DDSP's. For a smaller window DDSP's crop is off by one (even
    windows lose a tap, the peak sits one tap early and the last two taps are
    zero); here the peak is at the centre tap and every window size is kept.

    Shape: magnitudes [batch, n_frames, n_freqs] or [batch, n_freqs] ->
    [batch, n_frames, window_size] or [batch, window_size].
    """
    if not torch.jit.is_scripting():
        shapes = "[batch, n_frames, n_freqs] or [batch, n_freqs]"
        check_tensor(magnitudes, "magnitudes", (2, 3), shapes)
        if magnitudes.shape[-1] < 2:
            raise ValueError(
                "magnitudes needs 2 frequencies or more (DC, Nyquist), "
                f"found {magnitudes.shape[-1]}"
            )
    zero_phase = torch.fft.irfft(magnitudes, dim=-1)
    ir_size = zero_phase.shape[-1]
    if window_size <= 0 or window_size > ir_size:
        window_size = ir_size
    centered = torch.roll(zero_phase, window_size // 2, dims=-1)[..., :window_size]
    return centered * centered_hann_window(window_size, magnitudes.dtype, magnitudes.device)


def frequency_filter(
    audio: torch.Tensor, magnitudes: torch.Tensor, window_size: int = 0, padding: str = "same"
) -> torch.Tensor:
    """Time-varying linear-phase filtering by frame-rate frequency responses.

    :func:`frequency_impulse_response` followed by :func:`fft_convolve`; response
    i filters samples ``[i * n_samples // n_frames, (i + 1) * n_samples // n_frames)``.
    Shape: audio [batch, n_samples], magnitudes [batch, n_frames, n_freqs] or
    [batch, n_freqs] -> [batch, n_samples] ('same') or [batch, n_samples +
    ir_size - 1] ('valid').
    """
    impulse_response = frequency_impulse_response(magnitudes, window_size=window_size)
    return fft_convolve(audio, impulse_response, padding=padding)


def sinc_impulse_response(
    cutoff_frequency: torch.Tensor | float,
    window_size: int = 512,
    sample_rate: float | None = None,
    high_pass: bool = False,
) -> torch.Tensor:
    """Windowed-sinc low-pass (or high-pass) filters, normalised to unit DC gain.

    ``cutoff_frequency`` is in Hz when ``sample_rate`` is given, otherwise a
    fraction of Nyquist in [0, 1]. The filter has ``window_size // 2 * 2 + 1``
    taps, tapered by a symmetric Hamming window (DDSP uses the periodic one,
    half a tap off centre; symmetric keeps the filter exactly linear phase).
    A high-pass is a centred delta minus the low-pass.

    Shape: cutoff_frequency [batch, n_frames, 1] -> [batch, n_frames, n_taps];
    a scalar -> [1, 1, n_taps].
    """
    if not isinstance(cutoff_frequency, torch.Tensor):
        cutoff_frequency = torch.tensor(float(cutoff_frequency), dtype=torch.get_default_dtype())
    check_tensor(cutoff_frequency, "cutoff_frequency", (0, 3), "[batch, n_frames, 1] or a scalar")
    if cutoff_frequency.ndim == 0:
        cutoff_frequency = cutoff_frequency.reshape(1, 1, 1)
    if cutoff_frequency.shape[-1] != 1:
        raise ValueError(
            "cutoff_frequency must have shape [batch, n_frames, 1], "
            f"found shape {tuple(cutoff_frequency.shape)}"
        )
    check_positive(window_size, "window_size")
    if sample_rate is not None:
        check_positive(sample_rate, "sample_rate")
        cutoff_frequency = cutoff_frequency * (2.0 / sample_rate)
    half_size = window_size // 2
    dtype, device = cutoff_frequency.dtype, cutoff_frequency.device
    taps = torch.arange(-half_size, half_size + 1, dtype=dtype, device=device)
    window = torch.hamming_window(2 * half_size + 1, periodic=False, dtype=dtype, device=device)
    impulse_response = torch.sinc(cutoff_frequency * taps) * window
    impulse_response = impulse_response / impulse_response.sum(-1, keepdim=True).abs()
    if high_pass:
        return (taps == 0).to(dtype) - impulse_response
    return impulse_response


def sinc_filter(
    audio: torch.Tensor,
    cutoff_frequency: torch.Tensor | float,
    window_size: int = 512,
    sample_rate: float | None = None,
    padding: str = "same",
    high_pass: bool = False,
) -> torch.Tensor:
    """Filter audio by (time-varying) windowed-sinc low- or high-pass filters.

    :func:`sinc_impulse_response` followed by :func:`fft_convolve`.
    Shape: audio [batch, n_samples], cutoff_frequency [batch, n_frames, 1] or a
    scalar -> [batch, n_samples] ('same') or [batch, n_samples + n_taps - 1].
    """
    impulse_response = sinc_impulse_response(
        cutoff_frequency, window_size=window_size, sample_rate=sample_rate, high_pass=high_pass
    )
    return fft_convolve(audio, impulse_response, padding=padding)


def variable_length_delay(
    audio: torch.Tensor, phase: torch.Tensor, max_length: int = 512
) -> torch.Tensor:
    """Delay audio by a time-varying fractional number of samples.

    ``out[t] = audio[t - d]`` with ``d = phase[t] * max_length`` (phase clipped
    to [0, 1]), linearly interpolated between neighbouring samples, and zero
    before the start of the audio. For vibrato, chorus and flanging.
    Differences from DDSP's ``variable_length_delay(phase, audio, max_length)``:
    audio comes first as in the other filters here, and delays between
    ``max_length - 1`` and ``max_length`` read the past sample instead of
    wrapping round to the current one (DDSP reuses its wavetable lookup).

    Shape: audio [batch, n_samples], phase [batch, n_samples] or
    [batch, n_samples, 1] -> [batch, n_samples].
    """
    if not torch.jit.is_scripting():
        _check_delay_inputs(audio, phase, max_length)
    if phase.dim() == 3:
        phase = phase[..., 0]
    delay = phase.clamp(0.0, 1.0) * max_length
    whole = delay.detach().floor().clamp_max(max_length - 1)
    fraction = delay - whole
    time = torch.arange(audio.shape[1], device=audio.device)
    # Indices into the audio padded by max_length zeros in front: never negative.
    index = time + max_length - whole.long()
    padded = F.pad(audio, (max_length, 0))
    current = padded.gather(1, index)
    previous = padded.gather(1, index - 1)
    return (1.0 - fraction) * current + fraction * previous


def _check_delay_inputs(audio: object, phase: object, max_length: int) -> None:
    check_tensor(audio, "audio", 2, "[batch, n_samples]")
    check_tensor(phase, "phase", (2, 3), "[batch, n_samples] or [batch, n_samples, 1]")
    if phase.ndim == 3 and phase.shape[-1] != 1:
        found = tuple(phase.shape)
        raise ValueError(f"phase must have shape [batch, n_samples, 1], found shape {found}")
    check_same_leading(audio, phase if phase.ndim == 2 else phase[..., 0], "audio", "phase", 2)
    check_positive(max_length, "max_length")
