import numpy as np
import pytest
import torch

from torchddsp.functional import core
from torchddsp.functional.oscillators import accumulate_phase, harmonic_synthesis, oscillator_bank
from torchddsp.processors.harmonic import Harmonic

from conftest import assert_batched_equals_looped


def _numpy_harmonic(f0, amplitudes, distribution, n_samples, sample_rate, method):
    """Explicit sum of sines: per-harmonic frequency and amplitude envelopes, cumsum phase."""
    n_harmonics = distribution.shape[-1]
    numbers = np.arange(1, n_harmonics + 1)
    freq_env = core.resample_frames(torch.tensor(f0 * numbers)[None], n_samples, "linear")[
        0
    ].numpy()
    amp_env = core.resample_frames(
        torch.tensor(amplitudes * distribution)[None], n_samples, method
    )[0].numpy()
    amp_env[freq_env >= sample_rate / 2] = 0.0
    phase = np.cumsum(2 * np.pi * freq_env / sample_rate, axis=0)
    return (amp_env * np.sin(phase)).sum(-1)


def _random_controls(batch, n_frames, n_harmonics, dtype=torch.float64):
    f0 = 100 + 900 * torch.rand(batch, n_frames, 1, dtype=dtype)
    amplitudes = torch.rand(batch, n_frames, 1, dtype=dtype)
    distribution = torch.rand(batch, n_frames, n_harmonics, dtype=dtype)
    return f0, amplitudes, distribution


@pytest.mark.parametrize("sample_rate", [16000, 22050, 44100, 48000])
@pytest.mark.parametrize("method", ["window", "linear", "nearest"])
def test_harmonic_synthesis_matches_sum_of_sines(sample_rate, method):
    f0, amps, dist = _random_controls(2, 9, 30)
    n_samples = 9 * 64
    audio, _ = harmonic_synthesis(f0, amps, dist, n_samples, sample_rate, method)
    for b in range(2):
        expected = _numpy_harmonic(
            f0[b].numpy(), amps[b].numpy(), dist[b].numpy(), n_samples, sample_rate, method
        )
        np.testing.assert_allclose(audio[b].numpy(), expected, atol=1e-9)


def test_harmonic_synthesis_uneven_length_and_float32():
    f0, amps, dist = _random_controls(1, 7, 12, torch.float32)
    audio, _ = harmonic_synthesis(f0, amps, dist, 701, 16000, "window")
    expected = _numpy_harmonic(
        f0[0].double().numpy(),
        amps[0].double().numpy(),
        dist[0].double().numpy(),
        701,
        16000,
        "window",
    )
    assert audio.dtype == torch.float32 and audio.shape == (1, 701)
    np.testing.assert_allclose(audio[0].numpy(), expected, atol=1e-4)


def test_harmonics_at_or_above_nyquist_are_silent():
    f0 = torch.full((1, 4, 1), 3000.0, dtype=torch.float64)
    dist = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(1, 4, 3)  # only 9 kHz
    audio, _ = harmonic_synthesis(f0, torch.ones(1, 4, 1, dtype=torch.float64), dist, 256, 16000)
    assert audio.abs().max().item() == 0.0


def test_two_blocks_with_phase_carried_equal_one_block():
    f0 = torch.full((2, 8, 1), 440.0, dtype=torch.float64)
    amps, dist = torch.rand(2, 8, 1, dtype=torch.float64), torch.rand(2, 8, 5, dtype=torch.float64)
    whole, _ = harmonic_synthesis(f0, amps, dist, 512, 16000, "nearest")
    first, phase = harmonic_synthesis(f0[:, :4], amps[:, :4], dist[:, :4], 256, 16000, "nearest")
    second, _ = harmonic_synthesis(
        f0[:, 4:], amps[:, 4:], dist[:, 4:], 256, 16000, "nearest", initial_phase=phase
    )
    torch.testing.assert_close(torch.cat([first, second], 1), whole)


def test_ten_minutes_of_float32_stays_in_phase():
    sample_rate, seconds, frame_rate = 16000, 600, 250
    n_frames = seconds * frame_rate
    f0 = torch.full((1, n_frames, 1), 440.0)
    dist = torch.tensor([1.0, 0.5, 0.25]).expand(1, n_frames, 3)
    audio, _ = harmonic_synthesis(
        f0, torch.ones(1, n_frames, 1), dist, sample_rate * seconds, sample_rate
    )
    t = np.arange(sample_rate * seconds - sample_rate, sample_rate * seconds, dtype=np.float64) + 1
    base = 2 * np.pi * 440.0 * t / sample_rate
    expected = sum(w * np.sin(k * base) for k, w in ((1, 1.0), (2, 0.5), (3, 0.25)))
    assert np.abs(audio[0, -sample_rate:].numpy() - expected).max() < 1e-3


def test_harmonic_synthesis_gradcheck():
    f0, amps, dist = _random_controls(2, 4, 6)
    inputs = tuple(x.requires_grad_() for x in (f0, amps, dist))
    for method, n_samples in (("window", 32), ("linear", 30), ("nearest", 32)):
        assert torch.autograd.gradcheck(
            lambda f, a, d, m=method, n=n_samples: harmonic_synthesis(f, a, d, n, 8000, m)[0],
            inputs,
        )


def test_harmonic_synthesis_batched_equals_looped():
    f0, amps, dist = _random_controls(3, 10, 8)
    assert_batched_equals_looped(
        lambda f, a, d: harmonic_synthesis(f, a, d, 640, 16000)[0], f0, amps, dist, atol=1e-10
    )


def test_harmonic_synthesis_errors():
    f0, amps, dist = _random_controls(1, 4, 6)
    with pytest.raises(ValueError, match=r"frequencies must have shape .*found shape \(4, 1\)"):
        harmonic_synthesis(f0[0], amps, dist, 64, 16000)
    with pytest.raises(
        ValueError, match=r"amplitudes must have shape \[batch, n_frames, 1\], found"
    ):
        harmonic_synthesis(f0, dist, dist, 64, 16000)
    with pytest.raises(ValueError, match=r"found shapes \(1, 4, 1\) and \(1, 3, 6\)"):
        harmonic_synthesis(f0, amps, dist[:, :3], 64, 16000)
    with pytest.raises(ValueError, match="sample_rate must be positive, found 0"):
        harmonic_synthesis(f0, amps, dist, 64, 0)
    with pytest.raises(ValueError, match=r"initial_phase must have shape \[1, 1\], found \(1,\)"):
        harmonic_synthesis(f0, amps, dist, 64, 16000, initial_phase=torch.zeros(1))


def test_oscillator_bank_matches_numpy_and_silences_above_nyquist():
    freqs = torch.tensor([100.0, 2500.0, 9000.0], dtype=torch.float64).expand(2, 400, 3)
    amps = torch.rand(2, 400, 3, dtype=torch.float64)
    audio, final = oscillator_bank(freqs, amps, 16000)
    phase = np.cumsum(2 * np.pi * freqs[0].numpy() / 16000, axis=0)
    expected = (amps.numpy()[..., :2] * np.sin(phase[:, :2])).sum(-1)
    np.testing.assert_allclose(audio.numpy(), expected, atol=1e-10)
    np.testing.assert_allclose(final[0].numpy(), np.mod(phase[-1], 2 * np.pi), atol=1e-9)
    per_sine, _ = oscillator_bank(freqs, amps, 16000, sum_sinusoids=False)
    assert per_sine.shape == (2, 400, 3)


def test_oscillator_bank_gradcheck_and_batching():
    freqs = (100 + 1000 * torch.rand(2, 16, 3, dtype=torch.float64)).requires_grad_()
    amps = torch.rand(2, 16, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda f, a: oscillator_bank(f, a, 8000)[0], (freqs, amps))
    assert_batched_equals_looped(
        lambda f, a: oscillator_bank(f, a, 8000)[0], freqs.detach(), amps.detach()
    )


def test_accumulate_phase_errors():
    with pytest.raises(ValueError, match=r"found shape \(5,\)"):
        accumulate_phase(torch.ones(5), 16000)


def test_harmonic_processor_controls_follow_ddsp():
    raw_amp, raw_dist = torch.randn(1, 3, 1), torch.randn(1, 3, 4)
    f0 = torch.tensor([[[500.0], [2500.0], [5000.0]]])
    synth = Harmonic(sample_rate=16000, frame_rate=250)
    controls = synth.get_controls(raw_amp, raw_dist, f0)
    scaled = core.exp_sigmoid(raw_dist)
    scaled = torch.where(f0 * torch.arange(1, 5) >= 8000, 0.0, scaled)
    torch.testing.assert_close(controls["amplitudes"], core.exp_sigmoid(raw_amp))
    torch.testing.assert_close(
        controls["harmonic_distribution"], scaled / scaled.sum(-1, keepdim=True)
    )


@pytest.mark.parametrize("sample_rate", [16000, 22050, 44100, 48000])
def test_harmonic_processor_any_rate_and_length_without_rebuilding(sample_rate):
    synth = Harmonic(sample_rate=16000, frame_rate=50)
    for n_frames in (1, 7, 50):
        f0 = torch.full((2, n_frames, 1), 220.0)
        audio = synth(
            torch.zeros(2, n_frames, 1), torch.zeros(2, n_frames, 10), f0, sample_rate=sample_rate
        )
        assert audio.shape == (2, n_frames * sample_rate // 50)
        assert torch.isfinite(audio).all()
