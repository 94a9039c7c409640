import numpy as np
import pytest
import scipy.signal
import torch

from torchddsp.functional.core import exp_sigmoid
from torchddsp.functional.filters import frequency_filter
from torchddsp.processors.effects import (
    ExpDecayReverb,
    FilteredNoiseReverb,
    FIRFilter,
    ModDelay,
    Reverb,
)

from conftest import assert_batched_equals_looped

F64 = torch.float64


def numpy_reverb(audio, ir, add_dry=True):
    ir = np.concatenate([[0.0], ir[1:]])
    wet = scipy.signal.fftconvolve(audio, ir)[: len(audio)]
    return wet + audio if add_dry else wet


# Reverb ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("add_dry", [True, False])
def test_reverb_with_given_ir_matches_scipy(add_dry):
    audio, ir = torch.randn(3, 500, dtype=F64), torch.randn(3, 300, dtype=F64) * 0.1
    out = Reverb(trainable=False, add_dry=add_dry)(audio, ir)
    for a, h, o in zip(audio.numpy(), ir.numpy(), out.numpy(), strict=True):
        np.testing.assert_allclose(o, numpy_reverb(a, h, add_dry), atol=1e-10)
    longer = Reverb(trainable=False)(audio[:, :100], ir)  # IR longer than the audio
    assert longer.shape == (3, 100)
    expected = numpy_reverb(audio[0, :100].numpy(), ir[0].numpy())
    np.testing.assert_allclose(longer[0].numpy(), expected, atol=1e-10)


def test_trainable_reverb_learns_one_ir_for_the_batch():
    reverb = Reverb(reverb_length=256)
    assert reverb.ir.shape == (256,) and reverb.ir.abs().max() < 1e-4
    with torch.no_grad():
        reverb.ir.normal_()
    audio = torch.randn(4, 1000)
    out = reverb(audio)
    for a, o in zip(audio.numpy(), out.detach().numpy(), strict=True):
        np.testing.assert_allclose(o, numpy_reverb(a, reverb.ir.detach().numpy()), atol=1e-4)
    out.square().sum().backward()
    assert reverb.ir.grad[0] == 0 and reverb.ir.grad[1:].abs().sum() > 0  # first tap masked


def test_reverb_gradcheck_batch_and_sample_rate_independence():
    audio, ir = torch.randn(3, 64, dtype=F64), torch.randn(3, 16, dtype=F64)
    reverb = Reverb(trainable=False)
    assert_batched_equals_looped(reverb, audio, ir, atol=1e-12)
    torch.testing.assert_close(reverb(audio, ir, sample_rate=44100), reverb(audio, ir))
    inputs = (audio[:1, :20].requires_grad_(), ir[:1, :8].requires_grad_())
    assert torch.autograd.gradcheck(reverb, inputs)


def test_reverb_errors_name_what_was_found():
    with pytest.raises(ValueError, match=r"trainable=False\) needs ir as input, found none for ir"):
        Reverb(trainable=False)(torch.randn(1, 10))
    with pytest.raises(ValueError, match=r"trainable=True\) learns ir, found ir passed in"):
        Reverb()(torch.randn(1, 10), torch.randn(1, 5))
    with pytest.raises(ValueError, match=r"ir must have shape .*found shape \(1, 5, 1\)"):
        Reverb(trainable=False)(torch.randn(1, 10), torch.randn(1, 5, 1))
    with pytest.raises(ValueError, match=r"audio must have shape .*found shape \(10,\)"):
        Reverb()(torch.randn(10))
    with pytest.raises(ValueError, match="reverb_length must be positive, found 0"):
        Reverb(reverb_length=0)


# ExpDecayReverb ----------------------------------------------------------------------------------


def test_exp_decay_ir_formula_and_fixed_noise():
    reverb = ExpDecayReverb(reverb_length=1000, trainable=False).double()
    noise = reverb.noise.numpy()
    assert noise.min() >= -1 and noise.max() <= 1 and "noise" in reverb.state_dict()
    gain, decay = torch.tensor([[0.5], [-1.0]], dtype=F64), torch.tensor([[1.0], [3.0]], dtype=F64)
    audio = torch.randn(2, 2000, dtype=F64)
    controls = reverb.get_controls(audio, gain, decay)
    time = np.linspace(0, 1, 1000)
    expected = exp_sigmoid(gain).numpy() * np.exp(-(2 + np.exp(decay.numpy())) * time) * noise
    np.testing.assert_allclose(controls["ir"].numpy(), expected, atol=1e-12)
    out = reverb(audio, gain, decay)
    for a, h, o in zip(audio.numpy(), expected, out.numpy(), strict=True):
        np.testing.assert_allclose(o, numpy_reverb(a, h), atol=1e-10)
    torch.testing.assert_close(reverb(audio, gain, decay), out)  # same noise every call


def test_trainable_exp_decay_reverb_parameters_and_gradcheck():
    reverb = ExpDecayReverb(reverb_length=500)
    assert reverb.gain.item() == 2.0 and reverb.decay.item() == 4.0
    out = reverb(torch.randn(3, 800))
    assert out.shape == (3, 800)
    out.sum().backward()
    assert reverb.gain.grad is not None and reverb.decay.grad is not None
    small = ExpDecayReverb(reverb_length=12, trainable=False).double()
    inputs = tuple(torch.randn(2, 1, dtype=F64).requires_grad_() for _ in range(2))
    audio = torch.randn(2, 30, dtype=F64)
    assert torch.autograd.gradcheck(lambda g, d: small(audio, g, d), inputs)


def test_exp_decay_reverb_errors():
    with pytest.raises(ValueError, match="needs gain, decay as input, found none for decay"):
        ExpDecayReverb(trainable=False)(torch.randn(1, 10), torch.randn(1, 1))
    with pytest.raises(ValueError, match=r"decay must have shape \[batch, 1\], found shape \(1,\)"):
        ExpDecayReverb(trainable=False)(torch.randn(1, 10), torch.randn(1, 1), torch.randn(1))


# FilteredNoiseReverb -----------------------------------------------------------------------------


def test_filtered_noise_reverb_ir_is_filtered_fixed_noise():
    reverb = FilteredNoiseReverb(800, window_size=33, n_frames=10, trainable=False).double()
    magnitudes = torch.randn(2, 10, 17, dtype=F64)
    audio = torch.randn(2, 1200, dtype=F64)
    ir = reverb.get_controls(audio, magnitudes)["ir"]
    noise = reverb.noise.expand(2, -1)
    expected = frequency_filter(noise, exp_sigmoid(magnitudes - 3.0), window_size=33)
    torch.testing.assert_close(ir, expected)
    out = reverb(audio, magnitudes)
    for a, h, o in zip(audio.numpy(), ir.numpy(), out.numpy(), strict=True):
        np.testing.assert_allclose(o, numpy_reverb(a, h), atol=1e-10)


def test_trainable_filtered_noise_reverb():
    reverb = FilteredNoiseReverb(reverb_length=480, n_frames=10, n_freq_bands=20)
    assert reverb.magnitudes.shape == (10, 20)
    out = reverb(torch.randn(2, 1000))
    assert out.shape == (2, 1000)
    out.sum().backward()
    assert reverb.magnitudes.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="learns magnitudes, found magnitudes passed in"):
        reverb(torch.randn(1, 10), torch.randn(1, 10, 20))
    with pytest.raises(ValueError, match=r"magnitudes must have shape .*found shape \(10, 20\)"):
        FilteredNoiseReverb(trainable=False)(torch.randn(1, 10), torch.randn(10, 20))


# FIRFilter ---------------------------------------------------------------------------------------


def test_fir_filter_is_frequency_filter_of_scaled_magnitudes():
    audio, magnitudes = torch.randn(2, 400, dtype=F64), torch.randn(2, 8, 33, dtype=F64)
    out = FIRFilter(window_size=31)(audio, magnitudes)
    expected = frequency_filter(audio, exp_sigmoid(magnitudes), window_size=31)
    torch.testing.assert_close(out, expected)
    flat = FIRFilter(scale_fn=None)(audio, torch.ones(2, 8, 33, dtype=F64))
    torch.testing.assert_close(flat, audio)  # a flat response keeps the audio, aligned


def test_fir_filter_gradcheck_batch_and_errors():
    audio, magnitudes = torch.randn(3, 40, dtype=F64), torch.randn(3, 4, 9, dtype=F64)
    fir = FIRFilter(window_size=9)
    assert_batched_equals_looped(fir, audio, magnitudes, atol=1e-12)
    inputs = (audio[:1].requires_grad_(), magnitudes[:1].requires_grad_())
    assert torch.autograd.gradcheck(fir, inputs)
    with pytest.raises(ValueError, match=r"magnitudes must have shape .*found shape \(3, 9\)"):
        fir(audio, magnitudes[:, 0])


# ModDelay ----------------------------------------------------------------------------------------


def delayed(audio, n_samples):
    return np.concatenate([np.zeros(n_samples), audio[: len(audio) - n_samples]])


@pytest.mark.parametrize(
    ("sample_rate", "phase", "delay_ms"),
    [(16000, 0.5, 15), (32000, 0.5, 15), (16000, 1.0, 25), (16000, 0.0, 5)],
)
def test_mod_delay_constant_phase_is_a_shift(sample_rate, phase, delay_ms):
    audio = torch.randn(2, 2000, dtype=F64)
    gain = torch.full((2, 10, 1), 0.5, dtype=F64)
    phases = torch.full((2, 10, 1), phase, dtype=F64)
    effect = ModDelay(gain_scale_fn=None, phase_scale_fn=None)
    out = effect(audio, gain, phases, sample_rate=sample_rate)
    shift = delay_ms * sample_rate // 1000
    for a, o in zip(audio.numpy(), out.numpy(), strict=True):
        np.testing.assert_allclose(o, a + 0.5 * delayed(a, shift), atol=1e-12)


def test_mod_delay_controls_and_audio_rate_modulation():
    effect = ModDelay(add_dry=False)
    gain, phase = torch.randn(2, 300, 1, dtype=F64), torch.randn(2, 300, 1, dtype=F64)
    audio = torch.randn(2, 300, dtype=F64)
    controls = effect.get_controls(audio, gain, phase)
    torch.testing.assert_close(controls["gain"], exp_sigmoid(gain))
    torch.testing.assert_close(controls["phase"], torch.sigmoid(phase))
    out = effect(audio, gain, phase).numpy()
    delay = 16 * (15 + 10 * (2 * torch.sigmoid(phase[..., 0]).numpy() - 1))  # samples at 16 kHz
    time = np.arange(300)
    gains = exp_sigmoid(gain[..., 0]).numpy()
    for a, d, g, o in zip(audio.numpy(), delay, gains, out, strict=True):
        padded = np.concatenate([[0.0], a])
        expected = g * np.interp(time - d, np.arange(-1, 300), padded, left=0.0)
        np.testing.assert_allclose(o, expected, atol=1e-12)


def test_mod_delay_gradcheck_batch_and_errors():
    effect = ModDelay(center_ms=1.0, depth_ms=0.5)
    audio = torch.randn(3, 48, dtype=F64)
    gain, phase = torch.randn(3, 4, 1, dtype=F64), torch.randn(3, 4, 1, dtype=F64)
    assert_batched_equals_looped(effect, audio, gain, phase, atol=1e-12)
    inputs = (audio[:1].requires_grad_(), gain[:1].requires_grad_(), phase[:1].requires_grad_())
    assert torch.autograd.gradcheck(effect, inputs)
    with pytest.raises(ValueError, match=r"phase must have shape .*found shape \(3, 4, 2\)"):
        effect(audio, gain, phase.expand(3, 4, 2))
    with pytest.raises(ValueError, match=r"found shapes \(3, 48\) and \(2, 4, 1\)"):
        effect(audio, gain[:2], phase)
    with pytest.raises(ValueError, match="depth_ms must be in .*found 20"):
        ModDelay(center_ms=10, depth_ms=20)
    with pytest.raises(ValueError, match="sample_rate must be positive, found -1"):
        effect(audio, gain, phase, sample_rate=-1)
