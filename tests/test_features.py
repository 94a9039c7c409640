import numpy as np
import pytest
import soundfile as sf
import torch

from torchddsp.errors import UserError
from torchddsp.features import compute_features, file_features, pad_to_hop, save_features


def _switching_tone(sample_rate, switch_sample, seconds=1.0):
    """220 Hz at -6 dBFS until switch_sample, then 330 Hz: the switch time is exact."""
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    f0 = np.where(np.arange(len(t)) < switch_sample, 220.0, 330.0)
    phase = 2 * np.pi * np.cumsum(f0) / sample_rate
    return torch.tensor(0.5 * np.sin(phase), dtype=torch.float32)[None], f0


@pytest.mark.parametrize("sample_rate", [16000, 48000])
@pytest.mark.parametrize("frame_rate", [50, 100, 250])
def test_frame_count_and_alignment_are_exact(sample_rate, frame_rate):
    hop = sample_rate // frame_rate
    switch_frame = frame_rate // 2
    audio, _ = _switching_tone(sample_rate, switch_frame * hop)
    features = compute_features(audio, sample_rate, frame_rate)
    n_frames = audio.shape[1] // hop
    assert all(value.shape == (1, n_frames) for value in features.values())
    f0 = features["f0_hz"][0].numpy()
    # Frames whose analysis window straddles the switch may hold either pitch.
    margin = int(np.ceil(0.04 * frame_rate))
    np.testing.assert_allclose(f0[2 : switch_frame - margin], 220.0, rtol=0.006)
    np.testing.assert_allclose(f0[switch_frame + margin : -2], 330.0, rtol=0.006)


def test_loudness_frames_are_centred_on_their_sample():
    sample_rate, frame_rate = 16000, 100
    hop = sample_rate // frame_rate
    audio = torch.zeros(1, sample_rate)
    onset = 40 * hop
    audio[0, onset:] = 0.5 * torch.sin(
        2 * torch.pi * 440 * torch.arange(sample_rate - onset) / 16000
    )
    loudness = compute_features(audio, sample_rate, frame_rate)["loudness_db"][0]
    window = 512 // 2  # the loudness FFT half-width
    assert loudness[: (onset - window) // hop].max() == -80.0  # windows wholly before the onset
    assert loudness[(onset + window) // hop + 1 :].min() > -30.0


def test_rates_and_lengths_that_do_not_divide_are_refused():
    with pytest.raises(ValueError, match="250"):
        compute_features(torch.zeros(1, 22050), 22050, 250)
    with pytest.raises(ValueError, match="found 16001"):
        compute_features(torch.zeros(1, 16001), 16000, 100)
    assert pad_to_hop(torch.zeros(2, 16001), 160).shape == (2, 16160)


@pytest.mark.parametrize("extension", ["wav", "flac", "ogg"])
def test_file_features_any_format_rate_and_channels(tmp_path, extension):
    sample_rate = 44100
    t = np.arange(sample_rate) / sample_rate
    stereo = np.stack(
        [0.4 * np.sin(2 * np.pi * 261.63 * t), 0.2 * np.sin(2 * np.pi * 261.63 * t)], 1
    )
    path = tmp_path / f"tone.{extension}"
    sf.write(path, stereo, sample_rate)
    audio, rate, features = file_features(path, frame_rate=100)
    assert rate == sample_rate and audio.shape == (sample_rate,)
    assert features["f0_hz"].shape == (100,)
    assert abs(np.median(features["f0_hz"][5:-5].numpy()) - 261.63) < 1.0


def test_file_features_refuses_silence_short_and_corrupt_files(tmp_path):
    sf.write(tmp_path / "silent.wav", np.zeros(16000), 16000)
    with pytest.raises(UserError, match="silent"):
        file_features(tmp_path / "silent.wav")
    sf.write(tmp_path / "short.wav", np.full(800, 0.1), 16000)
    with pytest.raises(UserError, match="too short"):
        file_features(tmp_path / "short.wav")
    (tmp_path / "bad.wav").write_bytes(b"not audio at all")
    with pytest.raises(UserError, match="not a readable audio file"):
        file_features(tmp_path / "bad.wav")


def test_odd_sample_rate_is_resampled_to_16k(tmp_path):
    t = np.arange(11025) / 11025
    sf.write(tmp_path / "odd.wav", 0.3 * np.sin(2 * np.pi * 330 * t), 11025)
    audio, rate, features = file_features(tmp_path / "odd.wav", frame_rate=100)
    assert rate == 16000 and features["f0_hz"].shape == (100,)


@pytest.mark.parametrize("extension", ["npz", "csv"])
def test_save_features_round_trip(tmp_path, extension):
    features = {
        "f0_hz": torch.tensor([220.0, 221.0]),
        "f0_confidence": torch.tensor([0.9, 0.8]),
        "loudness_db": torch.tensor([-20.0, -21.0]),
    }
    path = tmp_path / f"f.{extension}"
    save_features(path, features, frame_rate=100)
    if extension == "npz":
        data = np.load(path)
        np.testing.assert_allclose(data["time_s"], [0.0, 0.01])
        np.testing.assert_allclose(data["f0_hz"], [220.0, 221.0])
    else:
        rows = np.genfromtxt(path, delimiter=",", names=True)
        np.testing.assert_allclose(rows["loudness_db"], [-20.0, -21.0])
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary left behind
