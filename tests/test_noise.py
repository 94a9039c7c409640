import numpy as np
import pytest
import scipy.signal
import torch

from torchddsp.functional.core import exp_sigmoid
from torchddsp.functional.filters import frequency_filter
from torchddsp.functional.noise import indexed_noise, noise_key
from torchddsp.processors.noise import FilteredNoise

F64 = torch.float64


def test_get_controls_is_exp_sigmoid_of_biased_input():
    x = torch.randn(2, 5, 17, dtype=F64)
    torch.testing.assert_close(FilteredNoise().get_controls(x)["magnitudes"], exp_sigmoid(x - 5.0))
    custom = FilteredNoise(initial_bias=1.0).get_controls(x)["magnitudes"]
    torch.testing.assert_close(custom, exp_sigmoid(x + 1.0))
    assert torch.equal(FilteredNoise(scale_fn=None).get_controls(x)["magnitudes"], x)


@pytest.mark.parametrize("sample_rate", [16000, 22050, 44100, 48000])
def test_output_length_follows_frames_at_any_rate(sample_rate):
    synth = FilteredNoise(frame_rate=50)
    for n_frames in (1, 7, 20):
        out = synth(torch.randn(2, n_frames, 33), sample_rate=sample_rate)
        assert out.shape == (2, n_frames * sample_rate // 50)
        assert torch.isfinite(out).all()
    assert synth(torch.randn(1, 5, 33), n_samples=1000).shape == (1, 1000)


@pytest.mark.parametrize("n_frames", [4, 250, 1001])
def test_frame_rate_that_does_not_divide_the_sample_rate(n_frames):
    synth = FilteredNoise(frame_rate=250)
    out = synth(torch.randn(1, n_frames, 33), sample_rate=22050)
    assert out.shape == (1, round(n_frames * 88.2)) and torch.isfinite(out).all()
    assert synth(torch.randn(1, 4, 33), sample_rate=22050, n_samples=300).shape == (1, 300)


def test_generator_makes_noise_reproducible():
    synth, x = FilteredNoise(), torch.randn(2, 10, 65)
    first = synth(x, generator=torch.Generator().manual_seed(3))
    again = synth(x, generator=torch.Generator().manual_seed(3))
    other = synth(x, generator=torch.Generator().manual_seed(4))
    torch.testing.assert_close(first, again, rtol=0, atol=0)
    assert not torch.allclose(first, other)


def test_signal_is_uniform_noise_filtered_by_each_items_magnitudes():
    synth = FilteredNoise(window_size=65)
    magnitudes = torch.rand(3, 8, 33, dtype=F64)
    out = synth.get_signal(magnitudes, generator=torch.Generator().manual_seed(0))
    noise = 2 * torch.rand(3, 512, generator=torch.Generator().manual_seed(0), dtype=F64) - 1
    assert noise.min() >= -1 and noise.max() <= 1 and noise.mean().abs() < 0.1
    for i in range(3):
        expected = frequency_filter(noise[i : i + 1], magnitudes[i : i + 1], window_size=65)
        torch.testing.assert_close(out[i : i + 1], expected)


def test_eval_mode_filters_the_indexed_noise_and_training_draws_afresh():
    synth, magnitudes = FilteredNoise(window_size=65, seed=5), torch.rand(2, 8, 33, dtype=F64)
    noise = indexed_noise(0, 512, noise_key(5), dtype=F64).expand(2, -1)
    expected = frequency_filter(noise, magnitudes, window_size=65)
    torch.testing.assert_close(synth.eval().get_signal(magnitudes), expected, rtol=0, atol=0)
    synth.train()
    assert not torch.allclose(synth.get_signal(magnitudes), synth.get_signal(magnitudes))


def test_lowpass_noise_spectrum():
    magnitudes = torch.zeros(1, 40, 65, dtype=F64)
    magnitudes[..., :9] = 1.0  # below 1/8 of Nyquist
    out = FilteredNoise(scale_fn=None).get_signal(magnitudes, n_samples=16000)
    freqs, power = scipy.signal.welch(out[0].numpy(), nperseg=512)
    passband = power[(freqs > 0.01) & (freqs < 0.04)].mean()
    assert abs(10 * np.log10(passband / (2 / 3))) < 1.5  # one-sided PSD of uniform noise: 2/3
    assert np.all(power[freqs > 0.15] < 1e-3 * passband)


def test_gradcheck_wrt_network_outputs():
    synth = FilteredNoise(frame_rate=1000, window_size=9)
    x = torch.randn(1, 3, 5, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda m: synth(m, n_samples=24, generator=torch.Generator().manual_seed(0)), (x,)
    )


def test_errors_name_what_was_found():
    with pytest.raises(ValueError, match=r"magnitudes .*found shape \(2, 65\)"):
        FilteredNoise()(torch.randn(2, 65))
    with pytest.raises(ValueError, match=r"found shape \(2, 65\)"):
        FilteredNoise().get_signal(torch.randn(2, 65))
    with pytest.raises(ValueError, match="window_size must be >= 0.*found -1"):
        FilteredNoise(window_size=-1)
    with pytest.raises(ValueError, match="sample_rate must be positive, found 0"):
        FilteredNoise()(torch.randn(1, 2, 9), sample_rate=0)


# ---- indexed noise --------------------------------------------------------------------------


def _splitmix_reference(index: int, seed: int) -> float:
    """Sample ``index`` of indexed_noise, in exact integer arithmetic."""
    mask = (1 << 64) - 1

    def mix(z: int) -> int:
        z &= mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    word = mix(mix(seed) + (index + 1) * 0x9E3779B97F4A7C15)
    return (word >> 40) * 2.0**-23 - 1.0


def test_indexed_noise_is_splitmix64_of_the_sample_index():
    for start, seed in [(0, 0), (12345, 7), (10**12, 2**40 + 3), (5, -1)]:
        expected = [_splitmix_reference(start + i, seed) for i in range(4)]
        actual = indexed_noise(start, 4, noise_key(seed), dtype=torch.float64)
        assert actual.tolist() == expected


def test_indexed_noise_is_the_same_for_any_block_split():
    whole = indexed_noise(0, 20000, noise_key(3))
    bounds = np.sort(np.random.default_rng(1).integers(0, 20000, size=12)).tolist()
    edges = [0, *bounds, 20000]
    blocks = [
        indexed_noise(a, b - a, noise_key(3)) for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    assert torch.equal(torch.cat(blocks), whole)
    assert torch.equal(indexed_noise(0, 20000, noise_key(3), dtype=torch.float64).float(), whole)


def test_indexed_noise_is_uniform_white_noise():
    noise = indexed_noise(0, 1_000_000, noise_key(0), dtype=torch.float64)
    assert noise.min() >= -1.0 and noise.max() < 1.0
    assert abs(noise.mean().item()) < 3e-3  # standard error 6e-4
    assert abs(noise.var().item() - 1.0 / 3.0) < 3e-3  # standard error 3e-4
    lag_one = torch.corrcoef(torch.stack([noise[:-1], noise[1:]]))[0, 1].item()
    assert abs(lag_one) < 5e-3  # standard error 1e-3
    other = indexed_noise(0, 1_000_000, noise_key(1), dtype=torch.float64)
    assert abs(torch.corrcoef(torch.stack([noise, other]))[0, 1].item()) < 5e-3


def test_indexed_noise_rejects_negative_positions():
    with pytest.raises(ValueError, match="start=-1"):
        indexed_noise(-1, 10, noise_key(0))
