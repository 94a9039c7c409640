import numpy as np
import pytest
import soundfile as sf
import torch

from torchddsp.errors import UserError
from torchddsp.features import (
    FeatureStream,
    LoudnessStream,
    compute_features,
    file_features,
    pad_to_hop,
    remove_f0_spikes,
    save_features,
)
from torchddsp.functional.spectral import compute_loudness
from torchddsp.pitch.yin import DEFAULT_F0_MIN_HZ, yin

NO_JIT_WARNING = "ignore:`torch.jit.script` is deprecated:DeprecationWarning"


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


def _track(*segments):
    """Concatenated (hz, n_frames) segments as [1, n_frames]."""
    return torch.cat([torch.full((n,), float(hz)) for hz, n in segments])[None]


@pytest.mark.parametrize("frame_rate", [100, 250])
def test_remove_f0_spikes_replaces_a_transition_subharmonic(frame_rate):
    # FluidR3 violin, 615 -> 778 Hz: YIN reports 154 Hz (615 / 4) for 40 ms.
    spike = round(0.04 * frame_rate)
    f0 = _track((615, 30), (154, spike), (778, 30))
    repaired = remove_f0_spikes(f0, frame_rate)
    assert set(repaired[0].tolist()) <= {615.0, 778.0}
    torch.testing.assert_close(repaired[:, :30], f0[:, :30])
    torch.testing.assert_close(repaired[:, -30:], f0[:, -30:])


def test_remove_f0_spikes_keeps_vibrato_glides_and_short_notes():
    frame_rate = 250
    t = torch.arange(500) / frame_rate
    vibrato = 440 * 2 ** (0.5 / 12 * torch.sin(2 * torch.pi * 6 * t))  # +-50 cents at 6 Hz
    glide = 220 * 2 ** (2 * t)  # two octaves in a second
    note = _track((440, 100), (660, round(0.05 * frame_rate)), (440, 100))  # a 50 ms note
    for f0 in (vibrato[None], glide[None], note):
        torch.testing.assert_close(remove_f0_spikes(f0, frame_rate), f0)


def test_features_of_two_overlapping_notes_have_no_subharmonic():
    # The mixture of 600 and 800 Hz repeats at 200 Hz; the offline features follow the notes.
    sample_rate, frame_rate = 16000, 100
    t = np.arange(sample_rate) / sample_rate
    fade = np.clip((t - 0.48) / 0.04, 0, 1)
    audio = (1 - fade) * np.sin(2 * np.pi * 600 * t) + fade * np.sin(2 * np.pi * 800 * t)
    features = compute_features(torch.from_numpy(0.5 * audio)[None], sample_rate, frame_rate)
    f0 = features["f0_hz"][0]
    semitones_to_nearest = (
        torch.stack([12 * torch.log2(f0 / hz).abs() for hz in (600.0, 800.0)]).min(0).values
    )
    assert semitones_to_nearest.max() < 1.0


# ---- streaming ----------------------------------------------------------------------------


def _live_signal(sample_rate, seconds=1.5):
    """Every kind of frame: a harmonic tone on a rising glide, silence, a noise burst, the
    tone over noise, silence; and, as the second item, the same backwards."""
    rng = np.random.default_rng(7)
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    phase = 2 * np.pi * np.cumsum(110.0 * 4.0 ** (t / seconds)) / sample_rate
    tone = sum(0.3 / k * np.sin(k * phase) for k in range(1, 6))
    noise = 0.2 * rng.standard_normal(len(t))
    parts = [(0.0, 0.5, tone), (0.6, 0.8, noise), (0.8, 1.2, tone + 0.3 * noise)]
    signal = sum(np.where((t >= start) & (t < end), x, 0.0) for start, end, x in parts)
    return torch.tensor(np.stack([signal, signal[::-1]]), dtype=torch.float32)


def _stream_in_random_blocks(stream, audio, latency, hop, seed=0):
    """Outputs of forward_stream over log-uniform random blocks of 0 to 4096 samples, then
    flush, concatenated; checks that frame i is out once i * hop + latency samples are in."""
    rng = np.random.default_rng(seed)
    state = stream.init_state(audio.shape[0])
    pieces, position = [], 0
    while position < audio.shape[1]:
        size = 0 if rng.random() < 0.05 else int(2.0 ** rng.uniform(0.0, 12.0))
        block = audio[:, position : position + size]
        position += block.shape[1]
        *outputs, state = stream.forward_stream(block, state)
        pieces.append(outputs)
        n_out = sum(p[0].shape[1] for p in pieces)
        assert n_out == max(0, (position - latency) // hop + 1)
    flushed = stream.flush(state)
    pieces.append(list(flushed) if isinstance(flushed, tuple) else [flushed])
    return [torch.cat(parts, dim=1) for parts in zip(*pieces, strict=True)]


@pytest.mark.parametrize(
    ("sample_rate", "frame_rate", "n_fft"),
    [(16000, 100, 512), (22050, 50, 2048), (44100, 100, 1024), (48000, 50, 512)],
)
def test_loudness_stream_equals_offline_center_frames(sample_rate, frame_rate, n_fft):
    hop = sample_rate // frame_rate
    audio = _live_signal(sample_rate)
    stream = LoudnessStream(sample_rate, frame_rate, n_fft)
    (streamed,) = _stream_in_random_blocks(stream, audio, stream.latency_samples, hop)
    offline = compute_loudness(audio, sample_rate, frame_rate, n_fft, padding="center")
    expected = offline[:, : audio.shape[1] // hop]
    torch.testing.assert_close(streamed, expected, rtol=0.0, atol=1e-5)
    torch.testing.assert_close(stream(audio), expected, rtol=0.0, atol=1e-5)
    assert stream.latency_samples == max(n_fft // 2, hop)


@pytest.mark.parametrize(
    ("sample_rate", "frame_rate", "f0_min_hz"),
    [(16000, 100, 65.0), (16000, 250, DEFAULT_F0_MIN_HZ), (48000, 50, DEFAULT_F0_MIN_HZ)],
)
def test_feature_stream_equals_offline_features_before_spike_removal(
    sample_rate, frame_rate, f0_min_hz
):
    hop = sample_rate // frame_rate
    audio = _live_signal(sample_rate)
    stream = FeatureStream(sample_rate, frame_rate, f0_min_hz)
    f0_hz, confidence, loudness_db = _stream_in_random_blocks(
        stream, audio, stream.latency_samples, hop
    )
    offline = compute_features(audio, sample_rate, frame_rate)
    expected_f0_hz, expected_confidence = yin(audio, sample_rate, hop, f0_min_hz)
    expected_loudness_db = offline["loudness_db"]
    # The FFT rounds differently for other batch shapes: on the flat valleys of noise
    # frames that moves YIN's fitted lag by up to ~1e-4 (0.2 cent).
    torch.testing.assert_close(f0_hz, expected_f0_hz, rtol=2e-4, atol=0.0)
    torch.testing.assert_close(confidence, expected_confidence, rtol=0.0, atol=1e-5)
    torch.testing.assert_close(loudness_db, expected_loudness_db, rtol=0.0, atol=1e-5)
    if f0_min_hz == DEFAULT_F0_MIN_HZ:  # compute_features' own YIN
        torch.testing.assert_close(confidence, offline["f0_confidence"], rtol=0.0, atol=1e-5)
    offline_f0_hz, offline_confidence, offline_loudness_db = stream(audio)
    torch.testing.assert_close(offline_f0_hz, expected_f0_hz, rtol=0.0, atol=0.0)
    torch.testing.assert_close(offline_confidence, expected_confidence, rtol=0.0, atol=0.0)
    torch.testing.assert_close(offline_loudness_db, expected_loudness_db, rtol=0.0, atol=1e-5)


def test_feature_stream_latency_is_the_later_of_yin_and_loudness():
    assert FeatureStream(16000, 100, f0_min_hz=65.0).latency_samples == 512 // 2
    assert FeatureStream(16000, 100).latency_samples == 802 // 2  # YIN's 50 ms frame
    assert FeatureStream(48000, 50, f0_min_hz=200.0).latency_samples == 48000 // 50  # a hop


@pytest.mark.filterwarnings(NO_JIT_WARNING)
def test_scripted_feature_stream_equals_eager():
    sample_rate, frame_rate = 16000, 100
    audio = _live_signal(sample_rate, seconds=0.5)
    eager = FeatureStream(sample_rate, frame_rate, f0_min_hz=65.0)
    scripted = torch.jit.script(eager)
    # A scripted module's properties are methods to TorchScript, not Python attributes.
    streamed = [
        _stream_in_random_blocks(stream, audio, eager.latency_samples, 160, seed=3)
        for stream in (scripted, eager)
    ]
    for got, expected in zip(*streamed, strict=True):
        torch.testing.assert_close(got, expected, rtol=0.0, atol=0.0)
    for got, expected in zip(scripted(audio), eager(audio), strict=True):
        torch.testing.assert_close(got, expected, rtol=0.0, atol=0.0)


def test_feature_stream_bad_state_names_what_was_found():
    stream = FeatureStream(16000, 100)
    state = stream.init_state(2)
    with pytest.raises(ValueError, match=r"state\['yin_buffer'\] must have shape \[batch=3"):
        stream.forward_stream(torch.zeros(3, 100), state)
    state.pop("loudness_buffer")
    with pytest.raises(ValueError, match=r"state\['loudness_buffer'\] must be a torch.Tensor"):
        stream.flush(state)
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer, found 2.0"):
        LoudnessStream(16000, 100).init_state(2.0)
