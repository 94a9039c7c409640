"""Losses against a numpy transcription of DDSP's SpectralLoss, plus gradients and errors."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from torchddsp.losses import MelSpectralLoss, MultiScaleSpectralLoss, mean_difference


def noise(batch: int, n_samples: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Uniform noise in [-1, 1), the same for the same seed whatever the test order."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(-1.0, 1.0, (batch, n_samples))).to(dtype)


def numpy_mag(x: np.ndarray, n_fft: int, hop: int, padding: str = "same") -> np.ndarray:
    """|rfft| of periodic-Hann frames; 'same' pads the end, 'center' both sides."""
    if padding == "same":
        n_frames = math.ceil(x.shape[-1] / hop)
        x = np.pad(x, ((0, 0), (0, (n_frames - 1) * hop + n_fft - x.shape[-1])))
    else:
        x = np.pad(x, ((0, 0), (n_fft // 2, n_fft // 2)))
    starts = range(0, x.shape[-1] - n_fft + 1, hop)
    frames = np.stack([x[:, s : s + n_fft] for s in starts], axis=1)
    return np.abs(np.fft.rfft(frames * scipy.signal.get_window("hann", n_fft), axis=-1))


def numpy_loudness(x: np.ndarray, sample_rate: int, frame_rate: int = 250) -> np.ndarray:
    n_fft = 2048
    power = numpy_mag(x, n_fft, sample_rate // frame_rate, "center") ** 2
    with np.errstate(divide="ignore"):
        a_db = librosa.A_weighting(librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft))
    mean_power = np.mean(power * 10.0 ** (a_db / 10.0), axis=-1)
    return np.maximum(10.0 * np.log10(np.maximum(mean_power, 1e-20)), -80.0)


def numpy_ddsp_spectral_loss(target, value, fft_sizes, weights, loss_type, sample_rate=16000):
    """DDSP ``SpectralLoss.call`` written out with numpy."""

    def distance(a, b):
        return np.mean(np.abs(a - b)) if loss_type == "L1" else np.mean((a - b) ** 2)

    def log(m):
        return np.log(np.maximum(m, 1e-5))

    loss = 0.0
    for n_fft in fft_sizes:
        t, v = numpy_mag(target, n_fft, n_fft // 4), numpy_mag(value, n_fft, n_fft // 4)
        loss += weights.get("mag_weight", 1.0) * distance(t, v)
        loss += weights.get("delta_time_weight", 0.0) * distance(
            np.diff(t, axis=1), np.diff(v, axis=1)
        )
        loss += weights.get("delta_freq_weight", 0.0) * distance(
            np.diff(t, axis=2), np.diff(v, axis=2)
        )
        loss += weights.get("cumsum_freq_weight", 0.0) * distance(t.cumsum(2), v.cumsum(2))
        loss += weights.get("logmag_weight", 1.0) * distance(log(t), log(v))
    loudness_weight = weights.get("loudness_weight", 0.0)
    if loudness_weight:
        loss += loudness_weight * distance(
            numpy_loudness(target, sample_rate), numpy_loudness(value, sample_rate)
        )
    return loss


ALL_TERMS = {
    "mag_weight": 1.0,
    "delta_time_weight": 0.5,
    "delta_freq_weight": 0.25,
    "cumsum_freq_weight": 0.1,
    "logmag_weight": 2.0,
    "loudness_weight": 0.05,
}


@pytest.mark.parametrize("loss_type", ["L1", "L2"])
@pytest.mark.parametrize("weights", [{}, ALL_TERMS], ids=["defaults", "all_terms"])
def test_multiscale_loss_matches_numpy_ddsp(loss_type, weights):
    target, value = noise(2, 4000, seed=1), noise(2, 4000, seed=2) * 0.5
    sizes = (2048, 512, 64)
    loss_fn = MultiScaleSpectralLoss(sizes, loss_type=loss_type, **weights).double()
    expected = numpy_ddsp_spectral_loss(target.numpy(), value.numpy(), sizes, weights, loss_type)
    # Buffers are built in float32, so .double() carries float32-rounded windows.
    np.testing.assert_allclose(loss_fn(target, value).item(), expected, rtol=1e-7)


def test_loudness_term_at_44k_matches_numpy():
    target, value = noise(2, 4410, seed=1), noise(2, 4410, seed=2) * 0.1
    loss_fn = MultiScaleSpectralLoss(
        (256,),
        mag_weight=0.0,
        logmag_weight=0.0,
        loudness_weight=1.0,
        sample_rate=44100,
        loudness_frame_rate=100,
    ).double()
    expected = np.mean(
        np.abs(
            numpy_loudness(target.numpy(), 44100, 100) - numpy_loudness(value.numpy(), 44100, 100)
        )
    )
    np.testing.assert_allclose(loss_fn(target, value).item(), expected, rtol=1e-7)


def test_float32_loss_close_to_float64():
    target, value = noise(2, 3000, seed=1), noise(2, 3000, seed=2)
    loss_fn = MultiScaleSpectralLoss((512, 128))
    loss32 = loss_fn(target.float(), value.float())
    assert loss32.dtype == torch.float32
    np.testing.assert_allclose(loss32.item(), loss_fn.double()(target, value).item(), rtol=1e-5)


def test_identical_audio_gives_zero_and_loss_grows_with_error():
    target = noise(2, 2000)
    loss_fn = MultiScaleSpectralLoss((256, 64), loudness_weight=1.0).double()
    assert loss_fn(target, target).item() == 0.0
    near, far = loss_fn(target, target * 0.9), loss_fn(target, target * 0.1)
    assert 0.0 < near.item() < far.item()


def test_cosine_loss_is_scale_invariant():
    target = noise(2, 2000)
    loss_fn = MultiScaleSpectralLoss((256,), loss_type="cosine", logmag_weight=0.0).double()
    assert loss_fn(target, 3.0 * target).item() == pytest.approx(0.0, abs=1e-12)
    assert loss_fn(target, noise(2, 2000, seed=3)).item() > 0.01


def test_mean_difference_definitions():
    a, b = torch.tensor([[3.0, 4.0]]), torch.tensor([[0.0, 2.0]])
    assert mean_difference(a, b, "L1").item() == pytest.approx(2.5)
    assert mean_difference(a, b, "l2").item() == pytest.approx(6.5)
    assert mean_difference(a, b, "COSINE").item() == pytest.approx(1.0 - 8.0 / 10.0)


def test_mel_loss_matches_numpy():
    target, value = noise(2, 4000, seed=1), noise(2, 4000, seed=2) * 0.3
    loss_fn = MelSpectralLoss(16000, fft_sizes=(1024, 256), n_mels=(64, 16)).double()
    expected = 0.0
    for n_fft, n_mels in [(1024, 64), (256, 16)]:
        basis = librosa.filters.mel(
            sr=16000, n_fft=n_fft, n_mels=n_mels, htk=True, norm=None, dtype=np.float64
        ).T
        t = numpy_mag(target.numpy(), n_fft, n_fft // 4) @ basis
        v = numpy_mag(value.numpy(), n_fft, n_fft // 4) @ basis
        expected += np.mean(np.abs(np.log(np.maximum(t, 1e-5)) - np.log(np.maximum(v, 1e-5))))
    np.testing.assert_allclose(loss_fn(target, value).item(), expected, rtol=1e-7)


def test_gradcheck_losses():
    # These signals keep every magnitude well above safe_log's 1e-5 kink.
    target, value = noise(2, 96, seed=1), noise(2, 96, seed=2).requires_grad_()
    spectral_loss = MultiScaleSpectralLoss(
        (32, 16), **ALL_TERMS, sample_rate=1600, loudness_frame_rate=50, loudness_n_fft=64
    ).double()
    mel_loss = MelSpectralLoss(8000, (32, 16), n_mels=(8, 4)).double()
    assert torch.autograd.gradcheck(lambda v: spectral_loss(target, v), (value,))
    assert torch.autograd.gradcheck(lambda v: mel_loss(target, v), (value,))


@pytest.mark.parametrize("loss_cls", [MultiScaleSpectralLoss, MelSpectralLoss])
def test_eager_gradient_equals_gradient_through_the_whole_graph(loss_cls):
    # A target that needs a gradient forces the plain path: its gradient for
    # `value` is the reference for the eager path taken when only `value` does.
    target, value = noise(2, 4000, 1, torch.float32), noise(2, 4000, 2, torch.float32)
    loss_fn = loss_cls()
    eager_value = value.clone().requires_grad_()
    eager = loss_fn(target, eager_value)
    eager.backward()
    plain_target, plain_value = target.clone().requires_grad_(), value.clone().requires_grad_()
    plain = loss_fn(plain_target, plain_value)
    plain.backward()
    assert eager.grad_fn is not None and type(eager.grad_fn) is not type(plain.grad_fn)
    torch.testing.assert_close(eager, plain)
    torch.testing.assert_close(eager_value.grad, plain_value.grad)
    assert plain_target.grad is not None and plain_target.grad.abs().sum() > 0


@pytest.mark.parametrize("loss_cls", [MultiScaleSpectralLoss, MelSpectralLoss])
def test_loss_of_batch_is_mean_of_losses(loss_cls):
    target, value = noise(3, 3000, 1, torch.float32), noise(3, 3000, 2, torch.float32)
    loss_fn = loss_cls()
    looped = torch.stack([loss_fn(target[i : i + 1], value[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(loss_fn(target, value), looped.mean(), rtol=1e-5, atol=1e-6)


def test_buffers_follow_the_module_and_are_not_saved():
    loss_fn = MelSpectralLoss().double()
    assert all(buffer.dtype == torch.float64 for buffer in loss_fn.buffers())
    assert len(loss_fn.state_dict()) == 0
    assert len(MultiScaleSpectralLoss().state_dict()) == 0


def test_loss_errors_name_what_was_found():
    loss_fn = MultiScaleSpectralLoss((256,))
    with pytest.raises(ValueError, match=r"found \(2, 1000\) and \(2, 999\)"):
        loss_fn(torch.zeros(2, 1000), torch.zeros(2, 999))
    with pytest.raises(ValueError, match=r"found shape \(2, 1000, 1\)"):
        loss_fn(torch.zeros(2, 1000, 1), torch.zeros(2, 1000, 1))
    with pytest.raises(ValueError, match="found \\(torch.float32, cpu\\)"):
        loss_fn(
            torch.zeros(2, 1000, dtype=torch.float64), torch.zeros(2, 1000, dtype=torch.float64)
        )
    with pytest.raises(ValueError, match="found 'HUBER'"):
        MultiScaleSpectralLoss(loss_type="huber")
    with pytest.raises(ValueError, match="found 1.0"):
        MultiScaleSpectralLoss(overlap=1.0)
    with pytest.raises(ValueError, match="found frame_rate=250 Hz for sample_rate=44100 Hz"):
        MultiScaleSpectralLoss(loudness_weight=1.0, sample_rate=44100)
    with pytest.raises(ValueError, match="found 2"):
        MelSpectralLoss(fft_sizes=(1024, 512, 256), n_mels=(64, 32))
