"""Sound sources beyond the harmonic oscillator: free sinusoids, wavetables, glottal pulses.

All three take frame-rate controls, render ``n_samples`` at ``sample_rate`` and
stream: each returns its final phase (radians, float64), and rendering a signal
in blocks with the phase carried equals rendering it at once.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_positive, check_same_leading, check_single_channel, check_tensor
from .core import resample_frames
from .oscillators import accumulate_phase, oscillator_bank


def frequencies_sigmoid(
    x: torch.Tensor, hz_min: float = 20.0, hz_max: float = 8000.0
) -> torch.Tensor:
    """Network outputs to frequencies spaced logarithmically in [hz_min, hz_max].

    ``hz_min * (hz_max / hz_min) ** sigmoid(x)``: DDSP's ``frequencies_sigmoid``
    with ``depth=1`` (a sigmoid over a MIDI, i.e. log-frequency, range).
    Computed in float64: float32 ``pow`` can round a value differently by its
    position in a vectorised loop, and a last-bit frequency difference between
    two ways of blocking the same frames would integrate into phase drift.
    Shape: any -> same.
    """
    if not torch.jit.is_scripting():
        check_positive(hz_min, "hz_min")
        if not hz_max > hz_min:
            raise ValueError(f"hz_max must exceed hz_min, found hz_min={hz_min}, hz_max={hz_max}")
    exponent = torch.sigmoid(x.double())
    return (hz_min * torch.pow(hz_max / hz_min, exponent)).to(x.dtype)


def sinusoidal_synthesis(
    frequencies: torch.Tensor,
    amplitudes: torch.Tensor,
    n_samples: int,
    sample_rate: float,
    amp_resample_method: str = "window",
    initial_phase: torch.Tensor | None = None,
    final_samples: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sum of free-frequency sinusoids from frame-rate frequencies and amplitudes.

    Semantics of DDSP ``synths.Sinusoidal``: frequencies are upsampled
    linearly, amplitudes with ``amp_resample_method``, and each sinusoid is
    silenced wherever it reaches Nyquist. The final phase is taken after
    ``final_samples`` samples (default all).

    Shape: frequencies, amplitudes [batch, n_frames, n_sinusoids], initial_phase
    [batch, n_sinusoids] -> (audio [batch, n_samples], final_phase [batch, n_sinusoids] float64).
    """
    if not torch.jit.is_scripting():
        check_tensor(frequencies, "frequencies", 3, "[batch, n_frames, n_sinusoids]")
        check_tensor(amplitudes, "amplitudes", 3, "[batch, n_frames, n_sinusoids]")
        check_same_leading(frequencies, amplitudes, "frequencies", "amplitudes", 3)
    frequency_envelopes = resample_frames(frequencies, n_samples, "linear")
    amplitude_envelopes = resample_frames(amplitudes, n_samples, amp_resample_method)
    return oscillator_bank(
        frequency_envelopes,
        amplitude_envelopes,
        sample_rate,
        initial_phase=initial_phase,
        final_samples=final_samples,
    )


def _exclusive_phase(
    frequencies_hz: torch.Tensor,
    sample_rate: float,
    initial_phase: torch.Tensor | None,
    final_samples: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Phase before each sample's advance (DDSP's exclusive cumsum), via accumulate_phase;
    the final phase is after the advance of sample ``final_samples - 1`` (default the last).

    Shape: frequencies_hz [batch, n_samples] -> (phase [batch, n_samples], final_phase [batch, 1]).
    """
    last = frequencies_hz.shape[1] if final_samples is None else final_samples
    delayed = F.pad(frequencies_hz[:, :-1], (1, 0))
    phase, before_last = accumulate_phase(delayed, sample_rate, initial_phase, last)
    last_step = frequencies_hz[:, last - 1 : last].double() * (2.0 * math.pi / sample_rate)
    return phase, torch.remainder(before_last + last_step, 2.0 * math.pi)


def _linear_lookup(
    tables: torch.Tensor, frame: torch.Tensor, position: torch.Tensor
) -> torch.Tensor:
    """Periodic linear interpolation of ``tables[b, frame, position]`` by gathering two neighbours.

    Shape: tables [batch, n_table_frames, n_wavetable], frame (long) and position
    (in table samples, [0, n_wavetable]) [batch, n_samples] -> [batch, n_samples].
    """
    n_wavetable = tables.shape[-1]
    flat = tables.reshape(tables.shape[0], -1)
    floor = position.floor()
    frac = position - floor
    left = floor.long().remainder(n_wavetable)  # position == n_wavetable wraps to sample 0
    right = (left + 1).remainder(n_wavetable)  # DDSP appends the first sample to the table
    base = frame * n_wavetable
    return (1.0 - frac) * flat.gather(1, base + left) + frac * flat.gather(1, base + right)


def _wavetable_wave(tables: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """Look up (and crossfade linearly between) wavetable frames at the oscillator phase.

    Looking up both neighbouring frames and interpolating equals looking up the
    linearly resampled table, without holding [batch, n_samples, n_wavetable].
    Shape: tables [batch, n_table_frames, n_wavetable], phase [batch, n_samples]
    -> [batch, n_samples].
    """
    batch, n_table_frames, n_wavetable = tables.shape
    position = phase * (n_wavetable / (2.0 * math.pi))
    if n_table_frames == 1:
        return _linear_lookup(tables, torch.zeros_like(position, dtype=torch.long), position)
    numbers = torch.arange(n_table_frames, dtype=torch.float64, device=tables.device)
    # Each sample's fractional frame number, exactly as resample_frames places it.
    frame_position = resample_frames(numbers[None, :, None], phase.shape[1], "linear")[0, :, 0]
    frame = frame_position.floor()
    weight_next = (frame_position - frame).to(phase.dtype)
    frame = frame.long().expand(batch, -1)
    padded = torch.cat([tables, tables[:, -1:]], dim=1)
    this = _linear_lookup(padded, frame, position)
    following = _linear_lookup(padded, frame + 1, position)
    return this + weight_next * (following - this)


def wavetable_synthesis(
    frequencies: torch.Tensor,
    amplitudes: torch.Tensor,
    wavetables: torch.Tensor,
    n_samples: int,
    sample_rate: float,
    initial_phase: torch.Tensor | None = None,
    final_samples: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monophonic wavetable oscillator (DDSP ``core.wavetable_synthesis``).

    Each wavetable holds one cycle; it is read with periodic linear
    interpolation (sample 0 follows the last one) at the phase, which starts at
    ``initial_phase`` (radians; cycle position = phase / 2pi) on the first
    sample and advances by ``f / sample_rate`` cycles per sample. Amplitudes
    are upsampled with Hann windows, frequencies linearly, and time-varying
    wavetables linearly from their own number of frames to ``n_samples``. The
    final phase is taken after ``final_samples`` samples (default all).

    Shape: frequencies, amplitudes [batch, n_frames, 1], wavetables
    [batch, n_wavetable] or [batch, n_table_frames, n_wavetable], initial_phase
    [batch, 1] -> (audio [batch, n_samples], final_phase [batch, 1] float64).
    """
    if not torch.jit.is_scripting():
        _check_wavetable_inputs(frequencies, amplitudes, wavetables)
    tables = wavetables if wavetables.dim() == 3 else wavetables[:, None]
    amplitude_envelope = resample_frames(amplitudes, n_samples, "window")[..., 0]
    frequency_envelope = resample_frames(frequencies, n_samples, "linear")[..., 0]
    phase, final_phase = _exclusive_phase(
        frequency_envelope, sample_rate, initial_phase, final_samples
    )
    return amplitude_envelope * _wavetable_wave(tables, phase), final_phase


def _check_wavetable_inputs(frequencies: object, amplitudes: object, wavetables: object) -> None:
    check_single_channel(frequencies, "frequencies")
    check_single_channel(amplitudes, "amplitudes")
    check_tensor(
        wavetables,
        "wavetables",
        (2, 3),
        "[batch, n_wavetable] or [batch, n_table_frames, n_wavetable]",
    )
    check_same_leading(frequencies, amplitudes, "frequencies", "amplitudes", 2)
    check_same_leading(frequencies, wavetables, "frequencies", "wavetables", 1)
    if wavetables.shape[-1] == 0 or (wavetables.ndim == 3 and wavetables.shape[1] == 0):
        raise ValueError(f"wavetables must not be empty, found shape {tuple(wavetables.shape)}")


def _rosenberg_pulse(
    cycle: torch.Tensor, rise: torch.Tensor, fall: torch.Tensor, derivative: bool
) -> torch.Tensor:
    """Rosenberg glottal flow (peak 1), or its derivative scaled so closure peaks at -1.

    Flow ``0.5 (1 - cos(pi x / rise))`` while opening, ``cos(pi (x - rise) /
    (2 fall))`` while closing, 0 when closed (x, rise, fall in cycles).
    Shape: all [batch, n_samples] -> [batch, n_samples].
    """
    closing_angle = (0.5 * math.pi) * (cycle - rise) / fall
    if derivative:  # d(flow)/d(cycle) * 2 fall / pi
        opening_wave = (fall / rise) * torch.sin(math.pi * cycle / rise)
        closing_wave = -torch.sin(closing_angle)
    else:
        opening_wave = 0.5 - 0.5 * torch.cos(math.pi * cycle / rise)
        closing_wave = torch.cos(closing_angle)
    closed = torch.zeros_like(cycle)
    return torch.where(
        cycle < rise, opening_wave, torch.where(cycle < rise + fall, closing_wave, closed)
    )


def _closure_residual(
    cycle: torch.Tensor,
    open_quotient: torch.Tensor,
    fall: torch.Tensor,
    step: torch.Tensor,
    derivative: bool,
) -> torch.Tensor:
    """Two-sample polyBLEP (derivative: step of +1) or polyBLAMP (flow: corner) at closure.

    The pulse's only discontinuity is at glottal closure; this residual turns
    it into a band-limited step or corner. ``step`` is cycles per sample.
    Shape: all [batch, n_samples] -> [batch, n_samples].
    """
    since = torch.remainder(cycle - open_quotient, 1.0)  # cycles since the last closure
    step = step.clamp_min(1e-6)  # keeps the residual finite (and its grads) at f0 = 0
    after = 1.0 - (since / step).clamp_max(1.0)  # 1 - samples since closure, floored at 0
    before = 1.0 + ((since - 1.0) / step).clamp_min(-1.0)  # 1 - samples until closure
    if derivative:
        return 0.5 * (before.square() - after.square())
    slope_change = (0.5 * math.pi) * step / fall  # flow per sample, from falling to flat
    return slope_change * (before.pow(3) + after.pow(3)) / 6.0


def glottal_pulse_synthesis(
    f0_hz: torch.Tensor,
    amplitudes: torch.Tensor,
    open_quotient: torch.Tensor,
    speed_quotient: torch.Tensor,
    n_samples: int,
    sample_rate: float,
    derivative: bool = True,
    antialias: bool = True,
    initial_phase: torch.Tensor | None = None,
    final_samples: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rosenberg glottal pulse train, the excitation of a source-filter voice.

    Per period (cycle position x = phase / 2pi, phase accumulated as in
    :func:`~torchddsp.functional.oscillators.accumulate_phase`) the glottis is
    open for ``open_quotient`` of the period (0 < oq <= 1), opening for
    ``tp = oq * sq / (1 + sq)`` and closing for ``tn = oq - tp``, where
    ``speed_quotient`` sq = tp / tn > 0 (Rosenberg's type-C pulse):
    flow = 0.5 (1 - cos(pi x / tp)) while opening, cos(pi (x - tp) / (2 tn))
    while closing, 0 while closed. Flow peaks at 1; with ``derivative`` (the
    usual excitation, zero mean) the flow derivative is scaled so that its
    closure peak is -1. Amplitudes multiply the pulse (Hann-window upsampled);
    f0, oq and sq are upsampled linearly.

    Not band-limited: the closure is a step (derivative) or corner (flow) that
    aliases. ``antialias`` adds a two-sample polyBLEP / polyBLAMP residual at
    each closure, which removes most of that aliasing at negligible cost;
    the smooth parts' harmonics above Nyquist still fold back, weakly. The
    final phase is taken after ``final_samples`` samples (default all).

    Shape: f0_hz, amplitudes, open_quotient, speed_quotient [batch, n_frames, 1],
    initial_phase [batch, 1] -> (audio [batch, n_samples], final_phase [batch, 1] float64).
    """
    if not torch.jit.is_scripting():
        controls = {
            "f0_hz": f0_hz,
            "amplitudes": amplitudes,
            "open_quotient": open_quotient,
            "speed_quotient": speed_quotient,
        }
        for name, x in controls.items():
            check_single_channel(x, name)
            check_same_leading(f0_hz, x, "f0_hz", name, 2)
    amplitude_envelope = resample_frames(amplitudes, n_samples, "window")[..., 0]
    shape_controls = torch.cat([f0_hz, open_quotient, speed_quotient], dim=-1)
    f0_envelope, oq, sq = resample_frames(shape_controls, n_samples, "linear").unbind(-1)
    phase, final_phase = accumulate_phase(f0_envelope, sample_rate, initial_phase, final_samples)
    cycle = phase / (2.0 * math.pi)
    fall = oq / (1.0 + sq)
    pulse = _rosenberg_pulse(cycle, oq - fall, fall, derivative)
    if antialias:
        pulse = pulse + _closure_residual(cycle, oq, fall, f0_envelope / sample_rate, derivative)
    return amplitude_envelope * pulse, final_phase
