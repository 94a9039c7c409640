import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from torchddsp.functional import core

from conftest import assert_batched_equals_looped


def test_midi_hz_round_trip_against_formula():
    notes = np.array([21.0, 60.0, 69.0, 108.0, 33.3])
    hz = core.midi_to_hz(torch.tensor(notes)).numpy()
    np.testing.assert_allclose(hz, 440.0 * 2 ** ((notes - 69) / 12), rtol=1e-12)
    np.testing.assert_allclose(core.hz_to_midi(torch.tensor(hz)).numpy(), notes, rtol=1e-12)


def test_midi_zero_silence_and_nonpositive_hz():
    assert core.midi_to_hz(torch.tensor([0.0]), midi_zero_silence=True).item() == 0.0
    f = torch.tensor([0.0, -3.0, 440.0], requires_grad=True)
    notes = core.hz_to_midi(f)
    assert notes[:2].tolist() == [0.0, 0.0] and notes[2].item() == pytest.approx(69.0)
    notes.sum().backward()
    assert torch.isfinite(f.grad).all()


def test_decibels_against_numpy():
    amp = np.array([1e-12, 1e-3, 0.5, 1.0, 2.0])
    db = core.amplitude_to_db(torch.tensor(amp), range_db=80.0).numpy()
    np.testing.assert_allclose(db, np.maximum(20 * np.log10(amp), -80.0), rtol=1e-12)
    np.testing.assert_allclose(core.db_to_amplitude(torch.tensor(db[1:])).numpy(), amp[1:])
    power = core.db_to_power(torch.tensor([-10.0, 0.0, 3.0])).numpy()
    np.testing.assert_allclose(power, 10 ** (np.array([-10.0, 0.0, 3.0]) / 10))
    np.testing.assert_allclose(
        core.power_to_db(torch.tensor(power), ref_db=3.0).numpy(), [-13.0, -3.0, 0.0], atol=1e-12
    )


def test_exp_sigmoid_formula():
    x = np.linspace(-10, 10, 41)
    expected = 2.0 * (1 / (1 + np.exp(-x))) ** np.log(10.0) + 1e-7
    np.testing.assert_allclose(core.exp_sigmoid(torch.tensor(x)).numpy(), expected, rtol=1e-12)
    custom = core.exp_sigmoid(torch.tensor(x), exponent=3.0, max_value=5.0, threshold=0.1)
    np.testing.assert_allclose(custom.numpy(), 5 * (1 / (1 + np.exp(-x))) ** np.log(3.0) + 0.1)


def test_mel_scale_matches_librosa_htk():
    hz = np.array([0.0, 100.0, 1000.0, 8000.0, 20000.0])
    mel = core.hz_to_mel(torch.tensor(hz)).numpy()
    # librosa's HTK constant is 2595 log10(1 + f/700), the same curve as 1127 ln(1 + f/700).
    np.testing.assert_allclose(mel, librosa.hz_to_mel(hz, htk=True), rtol=1e-4)
    np.testing.assert_allclose(core.mel_to_hz(torch.tensor(mel)).numpy(), hz, atol=1e-9)


def test_unit_scalings():
    f0 = torch.tensor([55.0, 440.0, 1760.0], dtype=torch.float64)
    np.testing.assert_allclose(
        core.scale_f0_hz(f0).numpy(), (12 * np.log2(f0.numpy() / 440) + 69) / 127
    )
    torch.testing.assert_close(core.unscale_f0_hz(core.scale_f0_hz(f0)), f0)
    db = torch.tensor([-80.0, -40.0, 0.0], dtype=torch.float64)
    np.testing.assert_allclose(core.scale_db(db).numpy(), [0.0, 0.5, 1.0])
    torch.testing.assert_close(core.unscale_db(core.scale_db(db)), db)


def test_normalize_harmonics_removes_above_nyquist():
    dist = torch.ones(1, 2, 4, dtype=torch.float64)
    f0 = torch.tensor([[[1000.0], [3000.0]]], dtype=torch.float64)
    out = core.normalize_harmonics(dist, f0, sample_rate=16000).numpy()
    np.testing.assert_allclose(out[0, 0], [0.25] * 4)  # 4 kHz < 8 kHz Nyquist
    np.testing.assert_allclose(out[0, 1], [0.5, 0.5, 0.0, 0.0])  # 9 and 12 kHz removed


def _numpy_linear(x, n_samples):
    """TF resize (bilinear, no corner alignment): position t * n_frames / n_samples."""
    position = np.arange(n_samples) * x.shape[0] / n_samples
    return np.stack(
        [np.interp(position, np.arange(x.shape[0]), x[:, c]) for c in range(x.shape[1])], -1
    )


def _numpy_window(x, n_samples):
    """DDSP upsample_with_windows, written as an explicit overlap-add loop."""
    x = np.concatenate([x, x[-1:]], 0)
    hop = n_samples // (x.shape[0] - 1)
    window = scipy.signal.get_window("hann", 2 * hop, fftbins=True)
    out = np.zeros((hop * (x.shape[0] + 1), x.shape[1]))
    for i, frame in enumerate(x):
        out[i * hop : i * hop + 2 * hop] += window[:, None] * frame[None]
    return out[hop:-hop]


@pytest.mark.parametrize("n_frames,n_samples", [(10, 640), (7, 700), (10, 333)])
def test_resample_linear_and_nearest_against_numpy(n_frames, n_samples):
    x = np.random.randn(n_frames, 3)
    xt = torch.tensor(x)[None]
    lin = core.resample_frames(xt, n_samples, "linear")[0].numpy()
    np.testing.assert_allclose(lin, _numpy_linear(x, n_samples), atol=1e-12)
    near = core.resample_frames(xt, n_samples, "nearest")[0].numpy()
    index = np.floor(np.arange(n_samples) * n_frames / n_samples).astype(int)
    np.testing.assert_allclose(near, x[index])


def test_resample_window_at_uneven_length_is_a_raised_cosine_crossfade():
    x = np.random.randn(6, 2)
    out = core.resample_frames(torch.tensor(x)[None], 101, "window")[0].numpy()
    position = np.arange(101) * 6 / 101
    index = np.floor(position).astype(int)
    w_next = 0.5 - 0.5 * np.cos(np.pi * (position - index))[:, None]
    padded = np.concatenate([x, x[-1:]])
    np.testing.assert_allclose(out, (1 - w_next) * padded[index] + w_next * padded[index + 1])


@pytest.mark.parametrize("n_frames,hop", [(5, 64), (12, 7), (1, 16)])
def test_resample_window_against_overlap_add(n_frames, hop):
    x = np.random.randn(n_frames, 2)
    out = core.resample_frames(torch.tensor(x)[None], n_frames * hop, "window")[0].numpy()
    np.testing.assert_allclose(out, _numpy_window(x, n_frames * hop), atol=1e-12)


def test_resample_gradcheck_and_batching():
    x = torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)
    for method in core.RESAMPLE_METHODS:
        assert torch.autograd.gradcheck(lambda v, m=method: core.resample_frames(v, 20, m), (x,))
        assert_batched_equals_looped(lambda v, m=method: core.resample_frames(v, 20, m), x.detach())
    assert torch.autograd.gradcheck(lambda v: core.resample_frames(v, 19, "window"), (x,))


def test_resample_errors_name_what_was_found():
    with pytest.raises(ValueError, match=r"found shape \(4, 3\)"):
        core.resample_frames(torch.randn(4, 3), 16)
    with pytest.raises(ValueError, match="'cubic'"):
        core.resample_frames(torch.randn(1, 4, 3), 16, "cubic")
    with pytest.raises(ValueError, match="found 0"):
        core.resample_frames(torch.randn(1, 4, 3), 0)
