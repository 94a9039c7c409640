import math

import numpy as np
import pytest
import torch

from torchddsp.functional import core
from torchddsp.functional.sources import (
    frequencies_sigmoid,
    glottal_pulse_synthesis,
    sinusoidal_synthesis,
    wavetable_synthesis,
)
from torchddsp.processors.sources import GlottalSource, Sinusoidal, Wavetable

from conftest import assert_batched_equals_looped

# Independent numpy oracles ---------------------------------------------------------------------


def _np_frame_position(n_frames, n_samples):
    return np.arange(n_samples) * n_frames / n_samples


def _np_linear(frames, n_samples):
    """Linear interpolation between frames, last frame held: [n_frames, ch] -> [n_samples, ch]."""
    position = _np_frame_position(len(frames), n_samples)
    grid = np.arange(len(frames))
    return np.stack([np.interp(position, grid, frames[:, c]) for c in range(frames.shape[1])], -1)


def _np_window(frames, n_samples):
    """Overlap-added Hann windows of two hops = raised-cosine crossfade between frames."""
    position = _np_frame_position(len(frames), n_samples)
    index = np.floor(position)
    warped = index + 0.5 - 0.5 * np.cos(np.pi * (position - index))
    grid = np.arange(len(frames))
    return np.stack([np.interp(warped, grid, frames[:, c]) for c in range(frames.shape[1])], -1)


def _np_ddsp_wavetable(f0, amplitudes, tables, n_samples, sample_rate):
    """DDSP core.wavetable_synthesis: exclusive cumsum in cycles, relu-weighted lookup."""
    f_env = _np_linear(f0, n_samples)[:, 0]
    a_env = _np_window(amplitudes, n_samples)[:, 0]
    tables = (
        _np_linear(tables, n_samples)
        if tables.ndim == 2
        else np.broadcast_to(tables, (n_samples, len(tables)))
    )
    velocity = f_env / sample_rate
    phase = np.concatenate([[0.0], np.cumsum(velocity)[:-1]]) % 1.0
    extended = np.concatenate([tables, tables[:, :1]], axis=-1)
    grid = np.linspace(0.0, 1.0, extended.shape[-1])
    weights = np.maximum(1.0 - np.abs(phase[:, None] - grid) * (extended.shape[-1] - 1), 0.0)
    return a_env * (weights * extended).sum(-1)


def _np_rosenberg(cycle, oq, sq, derivative):
    """Rosenberg type-C pulse; derivative normalised by the closing-phase peak pi / (2 tn)."""
    tp = oq * sq / (1 + sq)
    tn = oq - tp
    if not derivative:
        opening = 0.5 * (1 - np.cos(np.pi * cycle / tp))
        closing = np.cos(np.pi * (cycle - tp) / (2 * tn))
    else:
        peak = np.pi / (2 * tn)
        opening = np.pi / (2 * tp) * np.sin(np.pi * cycle / tp) / peak
        closing = -np.pi / (2 * tn) * np.sin(np.pi * (cycle - tp) / (2 * tn)) / peak
    return np.where(cycle < tp, opening, np.where(cycle < oq, closing, 0.0))


def _np_glottal(f0, amplitudes, oq, sq, n_samples, sample_rate, derivative, initial_phase=0.0):
    f_env, oq_env, sq_env = _np_linear(np.concatenate([f0, oq, sq], -1), n_samples).T
    phase = initial_phase + np.cumsum(2 * np.pi * f_env / sample_rate)
    cycle = np.mod(phase, 2 * np.pi) / (2 * np.pi)
    pulse = _np_rosenberg(cycle, oq_env, sq_env, derivative)
    return _np_window(amplitudes, n_samples)[:, 0] * pulse


def _rand(*shape, low=0.0, high=1.0, dtype=torch.float64):
    return low + (high - low) * torch.rand(*shape, dtype=dtype)


def _glottal_controls(batch, n_frames, f0_range=(100.0, 400.0)):
    return (
        _rand(batch, n_frames, 1, low=f0_range[0], high=f0_range[1]),
        _rand(batch, n_frames, 1, low=0.2, high=1.0),
        _rand(batch, n_frames, 1, low=0.4, high=0.8),
        _rand(batch, n_frames, 1, low=1.0, high=3.0),
    )


# Sinusoidal ------------------------------------------------------------------------------------


@pytest.mark.parametrize("sample_rate", [16000, 44100])
def test_sinusoidal_matches_numpy_sum_of_sines(sample_rate):
    n_frames, n_samples = 12, 12 * 147
    freqs = _rand(1, n_frames, 5, low=30.0, high=0.45 * sample_rate)
    amps = _rand(1, n_frames, 5)
    audio, final_phase = sinusoidal_synthesis(freqs, amps, n_samples, sample_rate)
    f_env = _np_linear(freqs[0].numpy(), n_samples)
    phase = np.cumsum(2 * np.pi * f_env / sample_rate, axis=0)
    expected = (_np_window(amps[0].numpy(), n_samples) * np.sin(phase)).sum(-1)
    np.testing.assert_allclose(audio[0].numpy(), expected, atol=1e-9)
    np.testing.assert_allclose(final_phase[0].numpy(), np.mod(phase[-1], 2 * np.pi), atol=1e-9)


def test_sinusoidal_float32_second_at_44k_stays_accurate():
    sample_rate, n_frames = 44100, 100
    freqs = _rand(1, n_frames, 4, low=100.0, high=15000.0).float().double()
    amps = _rand(1, n_frames, 4).float().double()
    audio, _ = sinusoidal_synthesis(freqs.float(), amps.float(), sample_rate, sample_rate)
    phase = np.cumsum(2 * np.pi * _np_linear(freqs[0].numpy(), sample_rate) / sample_rate, axis=0)
    expected = (_np_window(amps[0].numpy(), sample_rate) * np.sin(phase)).sum(-1)
    assert audio.dtype == torch.float32  # float32 frequency envelopes: ~1e-4 rad after 1 s
    np.testing.assert_allclose(audio[0].numpy(), expected, atol=1e-3)


def test_sinusoidal_linear_amplitudes_and_uneven_length():
    freqs, amps = _rand(1, 7, 3, low=50.0, high=3000.0), _rand(1, 7, 3)
    n_samples = 1000  # not a multiple of 7
    audio, _ = sinusoidal_synthesis(freqs, amps, n_samples, 16000, amp_resample_method="linear")
    phase = np.cumsum(2 * np.pi * _np_linear(freqs[0].numpy(), n_samples) / 16000, axis=0)
    expected = (_np_linear(amps[0].numpy(), n_samples) * np.sin(phase)).sum(-1)
    np.testing.assert_allclose(audio[0].numpy(), expected, atol=1e-9)


# Wavetable -------------------------------------------------------------------------------------


def test_wavetable_sine_table_is_a_sine_at_the_phase():
    sample_rate, n_frames, n_samples = 16000, 10, 1600
    table = torch.sin(torch.arange(2048, dtype=torch.float64) * (2 * math.pi / 2048))[None]
    f0 = _rand(1, n_frames, 1, low=100.0, high=2000.0)
    amps = _rand(1, n_frames, 1)
    start = torch.tensor([[0.3]], dtype=torch.float64)
    audio, final_phase = wavetable_synthesis(f0, amps, table, n_samples, sample_rate, start)
    steps = 2 * np.pi * _np_linear(f0[0].numpy(), n_samples)[:, 0] / sample_rate
    phase = 0.3 + np.concatenate([[0.0], np.cumsum(steps)[:-1]])  # starts at the initial phase
    expected = _np_window(amps[0].numpy(), n_samples)[:, 0] * np.sin(phase)
    np.testing.assert_allclose(audio[0].numpy(), expected, atol=2e-6)
    np.testing.assert_allclose(final_phase.item(), np.mod(0.3 + steps.sum(), 2 * np.pi), atol=1e-9)


@pytest.mark.parametrize("table_frames", [None, 1, 3, 6])
@pytest.mark.parametrize("n_samples", [6 * 40, 250])
def test_wavetable_matches_numpy_ddsp_formula(table_frames, n_samples):
    sample_rate, n_frames, n_wavetable = 16000, 6, 16
    f0 = _rand(2, n_frames, 1, low=200.0, high=3000.0)
    amps = _rand(2, n_frames, 1)
    shape = (2, n_wavetable) if table_frames is None else (2, table_frames, n_wavetable)
    tables = _rand(*shape, low=-1.0, high=1.0)
    audio, _ = wavetable_synthesis(f0, amps, tables, n_samples, sample_rate)
    for b in range(2):
        table = tables[b].numpy() if table_frames != 1 else tables[b, 0].numpy()
        expected = _np_ddsp_wavetable(f0[b].numpy(), amps[b].numpy(), table, n_samples, sample_rate)
        np.testing.assert_allclose(audio[b].numpy(), expected, atol=1e-12)


# Glottal pulse ---------------------------------------------------------------------------------


@pytest.mark.parametrize("derivative", [True, False])
@pytest.mark.parametrize("sample_rate", [16000, 44100])
def test_glottal_pulse_matches_numpy_rosenberg(derivative, sample_rate):
    f0, amps, oq, sq = _glottal_controls(1, 8)
    n_samples = 8 * 200
    start = torch.tensor([[1.0]], dtype=torch.float64)
    audio, final_phase = glottal_pulse_synthesis(
        f0, amps, oq, sq, n_samples, sample_rate, derivative, antialias=False, initial_phase=start
    )
    expected = _np_glottal(
        *(x[0].numpy() for x in (f0, amps, oq, sq)),
        n_samples,
        sample_rate,
        derivative,
        initial_phase=1.0,
    )
    np.testing.assert_allclose(audio[0].numpy(), expected, atol=1e-9)
    steps = 2 * np.pi * _np_linear(f0[0].numpy(), n_samples).sum() / sample_rate
    np.testing.assert_allclose(final_phase.item(), np.mod(1.0 + steps, 2 * np.pi), atol=1e-9)


def _constant(value, n_frames=10):
    return torch.full((1, n_frames, 1), value, dtype=torch.float64)


def _steady_pulse(f0_hz, sample_rate, n_samples, oq=0.6, sq=2.0, **kwargs):
    audio, _ = glottal_pulse_synthesis(
        _constant(f0_hz),
        _constant(1.0),
        _constant(oq),
        _constant(sq),
        n_samples,
        sample_rate,
        **kwargs,
    )
    return audio[0].numpy()


def test_glottal_derivative_is_the_scaled_time_derivative_of_the_flow():
    sample_rate, f0_hz, oq, sq = 16000, 100.0, 0.6, 2.0
    flow = _steady_pulse(f0_hz, sample_rate, 1600, oq, sq, derivative=False, antialias=False)
    slope = _steady_pulse(f0_hz, sample_rate, 1600, oq, sq, derivative=True, antialias=False)
    step = f0_hz / sample_rate  # cycles per sample
    central = (flow[2:] - flow[:-2]) / (2 * step) * (2 * oq / (1 + sq)) / np.pi
    cycle = np.mod(np.arange(1, 1599) + 1, sample_rate / f0_hz) * step
    breakpoints = np.array([0.0, oq * sq / (1 + sq), oq, 1.0])  # kinks and the closure jump
    smooth = np.abs(cycle[:, None] - breakpoints).min(-1) > 2 * step
    np.testing.assert_allclose(slope[1:-1][smooth], central[smooth], atol=1e-3)


@pytest.mark.parametrize(("f0_hz", "sample_rate"), [(220.0, 16000), (317.0, 44100)])
def test_glottal_period_is_one_over_f0(f0_hz, sample_rate):
    audio = _steady_pulse(f0_hz, sample_rate, sample_rate // 2)
    period = sample_rate / f0_hz
    lags = np.arange(int(0.5 * period), int(1.5 * period))
    correlation = np.fft.irfft(np.abs(np.fft.rfft(audio, 2 * len(audio))) ** 2)
    assert abs(lags[int(np.argmax(correlation[lags]))] - period) <= 1.0


@pytest.mark.parametrize("open_quotient", [0.4, 0.7])
def test_glottal_open_quotient_sets_the_open_fraction(open_quotient):
    flow = _steady_pulse(100.0, 16000, 16000, oq=open_quotient, derivative=False, antialias=False)
    assert flow.min() >= 0.0 and flow.max() == pytest.approx(1.0, abs=1e-3)
    assert np.mean(flow > 0.0) == pytest.approx(open_quotient, abs=0.01)


def test_glottal_antialiasing_only_touches_samples_next_to_closure():
    sample_rate, f0_hz, oq = 16000, 230.0, 0.6
    for derivative in (True, False):
        naive = _steady_pulse(f0_hz, sample_rate, 4000, oq, derivative=derivative, antialias=False)
        smooth = _steady_pulse(f0_hz, sample_rate, 4000, oq, derivative=derivative)
        step = f0_hz / sample_rate
        since = np.mod(np.arange(1, 4001) * step - oq, 1.0)
        near = (since < step) | (since > 1 - step)
        np.testing.assert_allclose(smooth[~near], naive[~near], atol=1e-12)
        assert np.abs(smooth[near] - naive[near]).max() > 1e-3


def _alias_energy(audio, f0_hz, sample_rate):
    spectrum = np.abs(np.fft.rfft(audio * np.hanning(len(audio)))) ** 2
    freqs = np.fft.rfftfreq(len(audio), 1 / sample_rate)
    harmonics = np.arange(1, int(sample_rate / 2 / f0_hz) + 1) * f0_hz
    off_harmonic = np.min(np.abs(freqs[:, None] - harmonics), axis=1) > 20.0
    return spectrum[off_harmonic & (freqs > 20.0)].sum()


@pytest.mark.parametrize(("derivative", "max_db"), [(True, -10.0), (False, -6.0)])
def test_glottal_antialiasing_reduces_aliases(derivative, max_db):
    sample_rate, f0_hz = 16000, 1046.5
    naive = _steady_pulse(f0_hz, sample_rate, sample_rate, derivative=derivative, antialias=False)
    smooth = _steady_pulse(f0_hz, sample_rate, sample_rate, derivative=derivative)
    ratio = _alias_energy(smooth, f0_hz, sample_rate) / _alias_energy(naive, f0_hz, sample_rate)
    assert 10 * np.log10(ratio) < max_db


def test_glottal_zero_f0_gives_finite_gradients():
    f0 = torch.zeros(1, 4, 1, dtype=torch.float64, requires_grad=True)
    amps, oq, sq = _constant(1.0, 4), _constant(0.6, 4), _constant(2.0, 4)
    audio, _ = glottal_pulse_synthesis(f0, amps, oq, sq, 40, 16000)
    audio.sum().backward()
    assert torch.isfinite(audio).all() and torch.isfinite(f0.grad).all()


# Streaming, gradients, batching, errors ------------------------------------------------------


def _two_blocks(render, frame_controls, split, hop):
    """Render at once and as two blocks with the phase carried (boundary frames held equal)."""
    held = []
    for x in frame_controls:
        x = x.clone()
        x[:, split] = x[:, split - 1]  # one-shot interpolation across the cut then equals a hold
        held.append(x)
    whole, _ = render(held, held[0].shape[1] * hop, None)
    first, phase = render([x[:, :split] for x in held], split * hop, None)
    second, _ = render([x[:, split:] for x in held], (held[0].shape[1] - split) * hop, phase)
    return whole, torch.cat([first, second], dim=1)


def _sinusoidal(controls, n, phase):
    return sinusoidal_synthesis(*controls, n, 16000, initial_phase=phase)


def _wavetable(controls, n, phase):
    return wavetable_synthesis(*controls, n, 16000, initial_phase=phase)


def _static_wavetable(table):
    return lambda controls, n, phase: wavetable_synthesis(*controls, table, n, 16000, phase)


def _glottal(derivative):
    return lambda controls, n, phase: glottal_pulse_synthesis(
        *controls, n, 16000, derivative, initial_phase=phase
    )


@pytest.mark.parametrize(
    "source", ["sinusoidal", "wavetable", "static_wavetable", "glottal", "glottal_flow"]
)
def test_two_blocks_with_phase_carried_equal_one_shot(source):
    n_frames, hop, split = 10, 160, 4
    f0 = _rand(2, n_frames, 1, low=100.0, high=900.0)
    amps = _rand(2, n_frames, 1)
    renders = {
        "sinusoidal": (
            _sinusoidal,
            [_rand(2, n_frames, 3, low=50.0, high=7000.0), _rand(2, n_frames, 3)],
        ),
        "wavetable": (_wavetable, [f0, amps, _rand(2, n_frames, 32, low=-1.0, high=1.0)]),
        "static_wavetable": (_static_wavetable(_rand(2, 32, low=-1.0, high=1.0)), [f0, amps]),
        "glottal": (_glottal(True), list(_glottal_controls(2, n_frames))),
        "glottal_flow": (_glottal(False), list(_glottal_controls(2, n_frames))),
    }
    render, controls = renders[source]
    whole, blocks = _two_blocks(render, controls, split, hop)
    torch.testing.assert_close(blocks, whole, atol=1e-9, rtol=0)


def test_gradcheck_sinusoidal():
    freqs = _rand(2, 3, 2, low=5.0, high=40.0).requires_grad_()
    amps = _rand(2, 3, 2).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda f, a: sinusoidal_synthesis(f, a, 12, 100)[0], (freqs, amps)
    )


@pytest.mark.parametrize("table_shape", [(2, 6), (2, 3, 6)])
def test_gradcheck_wavetable(table_shape):
    f0 = _rand(2, 3, 1, low=5.0, high=30.0).requires_grad_()
    amps = _rand(2, 3, 1).requires_grad_()
    tables = _rand(*table_shape, low=-1.0, high=1.0).requires_grad_()
    assert torch.autograd.gradcheck(
        lambda f, a, w: wavetable_synthesis(f, a, w, 12, 100)[0], (f0, amps, tables)
    )


@pytest.mark.parametrize("derivative", [True, False])
@pytest.mark.parametrize("antialias", [True, False])
def test_gradcheck_glottal(derivative, antialias):
    controls = tuple(x.requires_grad_() for x in _glottal_controls(2, 3, f0_range=(5.0, 20.0)))

    def render(*x):
        return glottal_pulse_synthesis(*x, 12, 100, derivative, antialias)[0]

    assert torch.autograd.gradcheck(render, controls)


def test_batched_equals_looped():
    f0, amps, oq, sq = _glottal_controls(3, 5)
    freqs = _rand(3, 5, 4, low=50.0, high=5000.0)
    tables = _rand(3, 5, 16, low=-1.0, high=1.0)
    assert_batched_equals_looped(
        lambda f, a: sinusoidal_synthesis(f, a, 500, 16000)[0], freqs, amps.expand(-1, -1, 4)
    )
    assert_batched_equals_looped(
        lambda f, a, w: wavetable_synthesis(f, a, w, 500, 16000)[0], f0, amps, tables
    )
    assert_batched_equals_looped(
        lambda f, a, w: wavetable_synthesis(f, a, w, 500, 16000)[0], f0, amps, tables[:, 0]
    )
    assert_batched_equals_looped(
        lambda *x: glottal_pulse_synthesis(*x, 500, 16000)[0], f0, amps, oq, sq
    )


def test_errors_name_what_was_found():
    good = torch.ones(2, 3, 1)
    with pytest.raises(ValueError, match=r"frequencies must have shape .*found shape \(2, 3\)"):
        sinusoidal_synthesis(torch.ones(2, 3), torch.ones(2, 3), 30, 16000)
    with pytest.raises(ValueError, match=r"found shapes \(2, 3, 2\) and \(2, 3, 1\)"):
        sinusoidal_synthesis(torch.ones(2, 3, 2), good, 30, 16000)
    with pytest.raises(ValueError, match=r"initial_phase must have shape \[2, 2\]"):
        sinusoidal_synthesis(
            torch.ones(2, 3, 2), torch.ones(2, 3, 2), 30, 16000, initial_phase=torch.zeros(2, 1)
        )
    with pytest.raises(
        ValueError,
        match=r"frequencies must have shape \[batch, n_frames, 1\], "
        r"found \(2, 3, 2\)",
    ):
        wavetable_synthesis(torch.ones(2, 3, 2), good, torch.ones(2, 8), 30, 16000)
    with pytest.raises(ValueError, match=r"wavetables must have shape .*found shape \(2, 1, 3, 8"):
        wavetable_synthesis(good, good, torch.ones(2, 1, 3, 8), 30, 16000)
    with pytest.raises(ValueError, match=r"found shapes \(2, 3, 1\) and \(1, 8\)"):
        wavetable_synthesis(good, good, torch.ones(1, 8), 30, 16000)
    with pytest.raises(ValueError, match=r"f0_hz and open_quotient .*\(2, 3, 1\) and \(2, 4, 1\)"):
        glottal_pulse_synthesis(good, good, torch.ones(2, 4, 1), good, 30, 16000)
    with pytest.raises(ValueError, match=r"speed_quotient must be a torch.Tensor .*found float"):
        glottal_pulse_synthesis(good, good, good, 2.0, 30, 16000)
    with pytest.raises(ValueError, match=r"wavetables must be a torch.Tensor .*found list"):
        wavetable_synthesis(good, good, [0.0, 1.0], 30, 16000)


# Processors ------------------------------------------------------------------------------------


def test_frequencies_sigmoid_is_log_spaced():
    x = torch.tensor([-40.0, 0.0, 40.0], dtype=torch.float64)
    hz = frequencies_sigmoid(x, hz_min=20.0, hz_max=8000.0)
    np.testing.assert_allclose(hz.numpy(), [20.0, math.sqrt(20.0 * 8000.0), 8000.0], rtol=1e-9)
    midi = core.hz_to_midi(frequencies_sigmoid(torch.linspace(-3, 3, 7, dtype=torch.float64)))
    np.testing.assert_allclose(
        np.diff(midi.numpy())
        / np.diff(torch.sigmoid(torch.linspace(-3, 3, 7, dtype=torch.float64)).numpy()),
        12 * np.log2(400.0),
        rtol=1e-9,
    )
    with pytest.raises(ValueError, match="hz_max must exceed hz_min"):
        frequencies_sigmoid(x, hz_min=100.0, hz_max=50.0)


def _processor_inputs(name, n_frames):
    f0 = _rand(2, n_frames, 1, low=100.0, high=500.0, dtype=torch.float32)
    raw = torch.randn(2, n_frames, 1)
    return {
        "sinusoidal": (
            Sinusoidal(frame_rate=50),
            (torch.randn(2, n_frames, 4), torch.randn(2, n_frames, 4)),
        ),
        "wavetable": (Wavetable(frame_rate=50), (raw, f0, torch.randn(2, n_frames, 64))),
        "learned_wavetable": (Wavetable(frame_rate=50, n_wavetable=64), (raw, f0)),
        "glottal": (GlottalSource(frame_rate=50), (raw, f0, raw, raw)),
    }[name]


@pytest.mark.parametrize("name", ["sinusoidal", "wavetable", "learned_wavetable", "glottal"])
def test_processors_render_any_rate_without_rebuilding(name):
    processor, inputs = _processor_inputs(name, n_frames=10)
    for sample_rate in (16000, 22050, 44100, 48000):
        audio = processor(*inputs, sample_rate=sample_rate)
        assert audio.shape == (2, 10 * sample_rate // 50)
        assert torch.isfinite(audio).all()
    assert processor(*inputs, n_samples=1000).shape == (2, 1000)


def test_sinusoidal_controls_follow_ddsp():
    raw_amps, raw_freqs = torch.randn(1, 5, 6), torch.randn(1, 5, 6) * 3
    controls = Sinusoidal(sample_rate=8000).get_controls(raw_amps, raw_freqs)
    frequencies = frequencies_sigmoid(raw_freqs)
    torch.testing.assert_close(controls["frequencies"], frequencies)
    expected = torch.where(frequencies >= 4000, 0.0, core.exp_sigmoid(raw_amps))
    torch.testing.assert_close(controls["amplitudes"], expected)
    at_48k = Sinusoidal(sample_rate=8000).get_controls(raw_amps, raw_freqs, sample_rate=48000)
    torch.testing.assert_close(at_48k["amplitudes"], core.exp_sigmoid(raw_amps))
    plain = Sinusoidal(amp_scale_fn=None, freq_scale_fn=None).get_controls(
        raw_amps.abs(), raw_freqs.abs()
    )
    torch.testing.assert_close(plain["frequencies"], raw_freqs.abs())


def test_wavetable_controls_and_learnable_table():
    raw, f0 = torch.randn(2, 5, 1), torch.full((2, 5, 1), 250.0)
    tables = torch.randn(2, 5, 32)
    controls = Wavetable().get_controls(raw, f0, tables)
    torch.testing.assert_close(controls["amplitudes"], core.exp_sigmoid(raw))
    torch.testing.assert_close(controls["wavetables"], torch.tanh(tables))
    synth = Wavetable(n_wavetable=256)
    audio = synth(torch.full((2, 5, 1), 3.0), f0)
    amplitude = core.exp_sigmoid(torch.tensor(3.0)).item()
    expected = amplitude * np.sin(2 * np.pi * 250.0 * np.arange(audio.shape[1]) / 16000)
    np.testing.assert_allclose(audio[0].detach().numpy(), expected, atol=1e-3)
    audio.square().sum().backward()
    assert synth.wavetable.grad is not None and synth.wavetable.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="wavetables must be left out, found a tensor of shape"):
        synth.get_controls(raw, f0, tables)
    with pytest.raises(ValueError, match="wavetables must be given"):
        Wavetable().get_controls(raw, f0)
    with pytest.raises(
        ValueError,
        match=r"f0_hz must have shape \[batch, n_frames, 1\], found "
        r"\(2, 5, 32\)",
    ):
        Wavetable().get_controls(raw, tables, f0)  # DDSP's argument order
    with pytest.raises(ValueError, match="n_wavetable must be at least 2, found 1"):
        Wavetable(n_wavetable=1)


def test_glottal_source_controls_map_into_ranges():
    raw = torch.tensor([[[-50.0], [0.0], [50.0]]])
    f0 = torch.full((1, 3, 1), 200.0)
    controls = GlottalSource().get_controls(raw, f0, raw, raw)
    torch.testing.assert_close(controls["open_quotient"][0, :, 0], torch.tensor([0.3, 0.6, 0.9]))
    torch.testing.assert_close(controls["speed_quotient"][0, :, 0], torch.tensor([1.0, 2.5, 4.0]))
    torch.testing.assert_close(controls["amplitudes"], core.exp_sigmoid(raw))
    assert controls["f0_hz"] is f0
    with pytest.raises(ValueError, match=r"open_quotient_range must satisfy .*found \(0.5, 1.2\)"):
        GlottalSource(open_quotient_range=(0.5, 1.2))
    with pytest.raises(ValueError, match=r"f0_hz must have shape \[batch, n_frames, 1\]"):
        GlottalSource().get_controls(raw, torch.ones(1, 3), raw, raw)


def test_processor_signal_equals_functional():
    f0, amps, oq, sq = (x.float() for x in _glottal_controls(1, 4))
    audio = GlottalSource(derivative=False).get_signal(amps, f0, oq, sq, sample_rate=8000)
    expected, _ = glottal_pulse_synthesis(f0, amps, oq, sq, 4 * 32, 8000, derivative=False)
    torch.testing.assert_close(audio, expected)
