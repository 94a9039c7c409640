"""Spectral ops against numpy/scipy framing, librosa (mel, MFCC, A-weighting) and closed forms."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from torchddsp.functional import spectral
from torchddsp.functional.core import DB_RANGE

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def noise(batch: int, n_samples: int, seed: int = 0, dtype=torch.float64) -> torch.Tensor:
    """Uniform noise in [-1, 1), the same for the same seed whatever the test order."""
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.uniform(-1.0, 1.0, (batch, n_samples))).to(dtype)


def numpy_frames(x: np.ndarray, frame_size: int, hop: int, padding: str) -> np.ndarray:
    """Frames [batch, n_frames, frame_size] by explicit zero padding and slicing."""
    n = x.shape[-1]
    if padding == "center":
        x = np.pad(x, ((0, 0), (frame_size // 2, frame_size // 2)))
    elif padding == "same":
        n_frames = math.ceil(n / hop)
        x = np.pad(x, ((0, 0), (0, max(0, (n_frames - 1) * hop + frame_size - n))))
    starts = range(0, x.shape[-1] - frame_size + 1, hop)
    return np.stack([x[:, s : s + frame_size] for s in starts], axis=1)


def numpy_stft(x: np.ndarray, n_fft: int, hop: int, padding: str) -> np.ndarray:
    window = scipy.signal.get_window("hann", n_fft)  # periodic
    return np.fft.rfft(numpy_frames(x, n_fft, hop, padding) * window, axis=-1)


def librosa_a_weighting(frequencies, min_db=-80.0):
    with np.errstate(divide="ignore"):  # log10(0) at DC, floored by min_db
        return librosa.A_weighting(frequencies, min_db=min_db)


def numpy_loudness(
    x, sample_rate, frame_rate, n_fft, range_db=DB_RANGE, ref_db=0.0, padding="center"
):
    power = np.abs(numpy_stft(x, n_fft, sample_rate // frame_rate, padding)) ** 2
    bins_hz = librosa.fft_frequencies(sr=sample_rate, n_fft=n_fft)
    weighting = 10.0 ** (librosa_a_weighting(bins_hz) / 10.0)
    mean_power = np.mean(power * weighting, axis=-1)
    return np.maximum(10.0 * np.log10(np.maximum(mean_power, 1e-20)) - ref_db, -range_db)


# ---- framing and STFT ----------------------------------------------------------------------


@pytest.mark.parametrize(("frame_size", "hop"), [(512, 160), (801, 160), (256, 1024), (7, 7)])
def test_take_ready_frames_gives_each_center_frame_once_its_window_and_hop_are_in(frame_size, hop):
    """Fed a sample at a time, frame i (centred on sample i * hop) comes out once samples up to
    i * hop + max(frame_size - frame_size // 2, hop) are in; with the final flush, the frames
    are the first n_samples // hop of 'center' framing."""
    n_samples = 5 * hop + frame_size + 3
    x = noise(2, n_samples)
    expected = numpy_frames(x.numpy(), frame_size, hop, "center")[:, : n_samples // hop]
    latency = max(frame_size - frame_size // 2, hop)
    buffer, pieces = torch.zeros(2, frame_size // 2, dtype=x.dtype), []
    for n_in in range(1, n_samples + 1):
        buffer = torch.cat([buffer, x[:, n_in - 1 : n_in]], dim=1)
        frames, buffer = spectral.take_ready_frames(buffer, frame_size, hop)
        pieces.append(frames)
        assert sum(p.shape[1] for p in pieces) == max(0, (n_in - latency) // hop + 1)
    pieces.append(spectral.take_ready_frames(buffer, frame_size, hop, final=True)[0])
    np.testing.assert_array_equal(torch.cat(pieces, dim=1).numpy(), expected)


@pytest.mark.parametrize("padding", spectral.PADDINGS)
@pytest.mark.parametrize(("n_fft", "hop"), [(256, 64), (64, 16), (100, 30), (32, 48)])
def test_stft_matches_numpy_framing(padding, n_fft, hop):
    x = noise(3, 1001)
    expected = numpy_stft(x.numpy(), n_fft, hop, padding)
    got = spectral.stft(x, n_fft, hop, padding)
    assert got.dtype == torch.complex128
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-10, atol=1e-10)


def test_stft_center_matches_librosa():
    x = noise(1, 4000)
    expected = librosa.stft(x.numpy()[0], n_fft=512, hop_length=128, pad_mode="constant").T
    np.testing.assert_allclose(spectral.stft(x, 512)[0].numpy(), expected, atol=1e-9)


def test_stft_float32_close_to_float64():
    x = noise(2, 3000)
    got = spectral.magnitude(x.float(), 256)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), spectral.magnitude(x, 256).numpy(), atol=2e-4)


@pytest.mark.parametrize("n_samples", [1024, 1000, 64000, 1023])
@pytest.mark.parametrize("hop", [64, 100, 256])
def test_frame_counts(n_samples, hop):
    x = torch.zeros(1, n_samples)
    assert spectral.stft(x, 512, hop, "center").shape[1] == n_samples // hop + 1
    assert spectral.stft(x, 512, hop, "same").shape[1] == math.ceil(n_samples / hop)
    assert spectral.stft(x, 512, hop, "valid").shape[1] == (n_samples - 512) // hop + 1
    for padding in spectral.PADDINGS:
        expected = spectral.frame_count(n_samples, 512, hop, padding)
        assert spectral.frame(x, 512, hop, padding).shape == (1, expected, 512)


def test_stft_default_hop_is_quarter_window():
    assert spectral.stft(torch.zeros(2, 1024), 256).shape == (2, 1024 // 64 + 1, 129)


def test_stft_accepts_window_tensor():
    x = noise(2, 500)
    window = torch.from_numpy(np.hamming(64))
    expected = np.fft.rfft(numpy_frames(x.numpy(), 64, 16, "same") * np.hamming(64), axis=-1)
    np.testing.assert_allclose(
        spectral.stft(x, 64, 16, "same", window).numpy(), expected, atol=1e-10
    )


@pytest.mark.parametrize("device", DEVICES)
def test_stft_runs_on_device_of_audio(device):
    x = noise(2, 2000, dtype=torch.float32).to(device)
    assert spectral.magnitude(x, 256).device.type == device
    assert spectral.compute_loudness(x, 16000, 250).device.type == device


# ---- mel, MFCC, A-weighting ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_rate", "n_fft", "n_mels", "fmin", "fmax"),
    [
        (16000, 2048, 128, 0.0, None),
        (22050, 1024, 80, 30.0, 8000.0),
        (44100, 1000, 40, 0.0, 20000.0),
    ],
)
def test_mel_filterbank_matches_librosa_htk(sample_rate, n_fft, n_mels, fmin, fmax):
    expected = librosa.filters.mel(
        sr=sample_rate,
        n_fft=n_fft,
        n_mels=n_mels,
        fmin=fmin,
        fmax=fmax,
        htk=True,
        norm=None,
        dtype=np.float64,
    )
    got = spectral.mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax, dtype=torch.float64)
    assert got.shape == (n_fft // 2 + 1, n_mels)
    np.testing.assert_allclose(got.numpy(), expected.T, atol=1e-10)


def test_mel_spectrogram_matches_librosa():
    x = noise(2, 8000)
    got = spectral.mel_spectrogram(x, 16000, n_fft=1024, hop_size=160, n_mels=64, fmax=7600.0)
    for i in range(2):
        expected = librosa.feature.melspectrogram(
            y=x[i].numpy(),
            sr=16000,
            n_fft=1024,
            hop_length=160,
            n_mels=64,
            fmax=7600.0,
            pad_mode="constant",
            htk=True,
            norm=None,
        )
        np.testing.assert_allclose(got[i].numpy(), expected.T, rtol=1e-6)  # float32 basis


def test_log_mel_is_safe_log_of_magnitude_mel():
    x = torch.cat([noise(1, 4000), torch.zeros(1, 4000)])
    mel = spectral.mel_spectrogram(x, 16000, 512, n_mels=40, power=1.0)
    log_mel = spectral.log_mel_spectrogram(x, 16000, 512, n_mels=40, power=1.0)
    np.testing.assert_allclose(log_mel.numpy(), np.log(np.maximum(mel.numpy(), 1e-5)), atol=1e-12)
    assert torch.all(log_mel[1] == math.log(1e-5))


def test_mfcc_matches_librosa():
    x = noise(2, 6000)
    got = spectral.mfcc(x, 22050, n_mfcc=20, n_fft=1024, hop_size=256, n_mels=64)
    for i in range(2):
        mel = librosa.feature.melspectrogram(
            y=x[i].numpy(),
            sr=22050,
            n_fft=1024,
            hop_length=256,
            n_mels=64,
            pad_mode="constant",
            htk=True,
            norm=None,
        )
        expected = librosa.feature.mfcc(
            S=librosa.power_to_db(mel, top_db=None), n_mfcc=20, dct_type=2, norm="ortho"
        )
        np.testing.assert_allclose(got[i].numpy(), expected.T, atol=1e-5)  # float32 basis


def test_dct_matrix_matches_scipy():
    x = np.random.default_rng(0).normal(size=(5, 32))
    expected = scipy.fft.dct(x, type=2, norm="ortho")[:, :12]
    got = torch.from_numpy(x) @ spectral.dct_matrix(32, 12, torch.float64)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-12)


@pytest.mark.parametrize("min_db", [-80.0, None])
def test_a_weighting_matches_librosa(min_db):
    frequencies = np.concatenate([[0.0, 1.0, 10.0], np.geomspace(20.0, 24000.0, 200)])
    expected = librosa_a_weighting(frequencies, min_db=min_db)
    got = spectral.a_weighting_db(torch.from_numpy(frequencies), min_db=min_db)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-10)
    assert abs(spectral.a_weighting_db(torch.tensor(1000.0, dtype=torch.float64))) < 0.01


# ---- loudness and power --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sample_rate", "frame_rate", "n_fft", "padding"),
    [
        (16000, 250, 512, "center"),
        (22050, 50, 2048, "same"),
        (44100, 100, 1024, "valid"),
        (48000, 250, 512, "center"),
    ],
)
def test_loudness_matches_numpy(sample_rate, frame_rate, n_fft, padding):
    x = noise(2, sample_rate // 4) * torch.linspace(0.0, 1.0, sample_rate // 4, dtype=torch.float64)
    expected = numpy_loudness(x.numpy(), sample_rate, frame_rate, n_fft, padding=padding)
    got = spectral.compute_loudness(x, sample_rate, frame_rate, n_fft, padding=padding)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-8)
    hop = sample_rate // frame_rate
    expected_frames = {"center": x.shape[1] // hop + 1, "same": math.ceil(x.shape[1] / hop)}
    if padding in expected_frames:
        assert got.shape == (2, expected_frames[padding])


@pytest.mark.parametrize("n_fft", [512, 2048])
def test_loudness_of_full_scale_sine(n_fft):
    # A bin-centred sine of amplitude 1 puts |X|^2 = (N/4)^2 in its bin and (N/8)^2 in
    # each neighbour (periodic Hann), averaged over N/2 + 1 bins.
    sample_rate, f0 = 16000, 1000.0
    t = torch.arange(sample_rate, dtype=torch.float64) / sample_rate
    sine = torch.sin(2 * math.pi * f0 * t)[None]
    bin_hz = sample_rate / n_fft
    w = 10.0 ** (librosa.A_weighting([f0 - bin_hz, f0, f0 + bin_hz]) / 10.0)
    power = (n_fft / 4) ** 2 * w[1] + (n_fft / 8) ** 2 * (w[0] + w[2])
    expected_db = 10.0 * math.log10(power / (n_fft // 2 + 1))
    loudness = spectral.compute_loudness(sine, sample_rate, 250, n_fft)
    middle = loudness[0, 50:-50]
    np.testing.assert_allclose(middle.numpy(), expected_db, atol=1e-6)
    assert expected_db == pytest.approx(19.8 if n_fft == 512 else 25.8, abs=0.1)


def test_loudness_silence_and_doubling():
    x = noise(1, 16000)
    silence = spectral.compute_loudness(torch.zeros(2, 16000), 16000, 250, range_db=100.0)
    assert torch.all(silence == -100.0)
    doubled = spectral.compute_loudness(2 * x, 16000, 250) - spectral.compute_loudness(
        x, 16000, 250
    )
    np.testing.assert_allclose(doubled.numpy(), 20 * math.log10(2.0), atol=1e-9)
    shifted = spectral.compute_loudness(x, 16000, 250, ref_db=20.7)
    np.testing.assert_allclose((spectral.compute_loudness(x, 16000, 250) - shifted).numpy(), 20.7)


def test_power_and_rms_match_numpy():
    x = noise(2, 4410)
    frames = numpy_frames(x.numpy(), 1024, 441, "center")
    rms = np.sqrt(np.mean(frames**2, axis=-1))
    got_rms = spectral.compute_rms_energy(x, 44100, 100, frame_size=1024)
    np.testing.assert_allclose(got_rms.numpy(), rms, atol=1e-12)
    got_db = spectral.compute_power(x, 44100, 100, frame_size=1024)
    np.testing.assert_allclose(got_db.numpy(), np.maximum(20 * np.log10(rms), -DB_RANGE), atol=1e-9)


# ---- gradients and batching ----------------------------------------------------------------


def test_gradcheck_magnitude_loudness_power():
    x = noise(2, 64).requires_grad_()
    assert torch.autograd.gradcheck(lambda a: spectral.magnitude(a, 16, 4, "same"), (x,))
    assert torch.autograd.gradcheck(lambda a: spectral.compute_loudness(a, 800, 50, 32), (x,))
    assert torch.autograd.gradcheck(lambda a: spectral.compute_power(a, 800, 50, 32), (x,))
    assert torch.autograd.gradcheck(
        lambda a: spectral.log_mel_spectrogram(a, 800, 32, 8, n_mels=6), (x,)
    )


BATCHED_FUNCTIONS = {
    "stft": lambda a: spectral.stft(a, 128, 32, "same"),
    "mel": lambda a: spectral.mel_spectrogram(a, 16000, 256, n_mels=20),
    "log_mel": lambda a: spectral.log_mel_spectrogram(a, 16000, 256, n_mels=20),
    "mfcc": lambda a: spectral.mfcc(a, 16000, 13, 256, n_mels=20),
    "loudness": lambda a: spectral.compute_loudness(a, 16000, 250),
    "power": lambda a: spectral.compute_power(a, 16000, 250),
    "rms": lambda a: spectral.compute_rms_energy(a, 16000, 250),
}


@pytest.mark.parametrize("name", sorted(BATCHED_FUNCTIONS))
def test_batched_equals_looped(name):
    fn = BATCHED_FUNCTIONS[name]
    x = noise(3, 2000, dtype=torch.float32)
    looped = torch.cat([fn(x[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(fn(x), looped, rtol=1e-5, atol=1e-5)


# ---- errors --------------------------------------------------------------------------------


def test_bad_audio_shape_names_the_shape():
    with pytest.raises(ValueError, match=r"found shape \(2, 100, 1\)"):
        spectral.stft(torch.zeros(2, 100, 1), 64)
    with pytest.raises(ValueError, match=r"found shape \(100,\)"):
        spectral.compute_loudness(torch.zeros(100), 16000, 250)
    with pytest.raises(ValueError, match="found dtype torch.int64"):
        spectral.magnitude(torch.zeros(1, 100, dtype=torch.long), 64)


def test_bad_arguments_name_what_was_found():
    x = torch.zeros(1, 1000)
    with pytest.raises(ValueError, match="found frame_rate=300 Hz for sample_rate=16000 Hz"):
        spectral.compute_loudness(x, 16000, 300)
    with pytest.raises(ValueError, match="found 'reflect'"):
        spectral.stft(x, 64, padding="reflect")
    with pytest.raises(ValueError, match="found 'hamming'"):
        spectral.stft(x, 64, window="hamming")
    with pytest.raises(ValueError, match=r"found \(32,\)"):
        spectral.stft(x, 64, window=torch.ones(32))
    with pytest.raises(ValueError, match="found 64.0"):
        spectral.stft(x, 64.0)
    with pytest.raises(ValueError, match="found n_samples=1000"):
        spectral.stft(x, 2048, padding="valid")
    with pytest.raises(ValueError, match="found fmin=900, fmax=800"):
        spectral.mel_filterbank(16000, 512, 40, fmin=900, fmax=800)
    with pytest.raises(ValueError, match="found 50"):
        spectral.mfcc(x, 16000, n_mfcc=50, n_fft=256, n_mels=40)


def test_warp_frequencies_moves_a_peak_by_the_factor():
    from torchddsp.functional.spectral import warp_frequencies

    power = torch.zeros(2, 3, 257)
    power[..., 40] = 1.0
    warped = warp_frequencies(power, torch.tensor([1.25, 0.8]))
    assert warped[0, 0].argmax() == 50 and warped[1, 0].argmax() == 32
    unchanged = warp_frequencies(power, torch.tensor([1.0, 1.0]))
    torch.testing.assert_close(unchanged, power, rtol=0, atol=0)
    assert warp_frequencies(power, torch.tensor([0.5, 1.0]))[0, 0, 129:].abs().max() == 0
    per_frame = warp_frequencies(power, torch.tensor([[1.25, 1.0, 0.8], [1.0, 1.0, 1.0]]))
    assert per_frame[0].argmax(-1).tolist() == [50, 40, 32]
    held = warp_frequencies(power + 2.0, torch.tensor([0.5, 1.0]), hold_edge=True)
    assert torch.equal(held[0, 0, 129:], torch.full((128,), 2.0))
