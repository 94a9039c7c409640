"""YIN f0 tracker against the known f0 of numpy-synthesised tones, and its contracts."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from torchddsp.pitch import (
    cumulative_mean_normalized_difference,
    default_frame_size,
    difference_function,
    yin,
)
from torchddsp.pitch.yin import Yin

from conftest import assert_batched_equals_looped

# The package exports the function under the module's name; this is the module.
yin_module = importlib.import_module("torchddsp.pitch.yin")


def tone(
    f0_hz: float, sample_rate: int, n_samples: int, harmonics=(1.0,), phase: float = 0.3
) -> np.ndarray:
    """Sum of harmonics k * f0 with the given amplitudes (float64)."""
    t = np.arange(n_samples) / sample_rate
    return sum(
        a * np.sin(2.0 * np.pi * k * f0_hz * t + k * phase)
        for k, a in enumerate(harmonics, start=1)
    )


def sawtooth(f0_hz: float, sample_rate: int, n_samples: int) -> np.ndarray:
    """Band-limited sawtooth: harmonics 1/k up to Nyquist."""
    return tone(
        f0_hz, sample_rate, n_samples, [1.0 / k for k in range(1, 1 + int(sample_rate / 2 / f0_hz))]
    )


def as_audio(*signals: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(signals)).float()


def interior(n_frames: int, n_samples: int, frame_size: int, hop_size: int) -> np.ndarray:
    """Frames whose whole window lies inside the signal."""
    centres = np.arange(n_frames) * hop_size
    return (centres - frame_size // 2 >= 0) & (centres + frame_size - frame_size // 2 <= n_samples)


def cents_error(f0_hz: torch.Tensor, reference_hz: float) -> np.ndarray:
    return 1200.0 * np.log2(f0_hz.double().numpy() / reference_hz)


def track_interior(audio: torch.Tensor, sample_rate: int, hop_size: int):
    """yin with its defaults, on the frames away from the edges."""
    f0, confidence = yin(audio, sample_rate, hop_size)
    keep = interior(f0.shape[-1], audio.shape[-1], default_frame_size(sample_rate), hop_size)
    return f0[:, keep], confidence[:, keep]


# ---- accuracy on synthetic tones ----------------------------------------------------------


@pytest.mark.parametrize("sample_rate", [16000, 44100])
def test_sines_within_10_cents_with_high_confidence(sample_rate):
    f0s = [55.0, 110.0, 220.0, 440.0, 880.0, 1500.0]
    audio = as_audio(*(tone(f, sample_rate, sample_rate // 4) for f in f0s))
    f0, confidence = track_interior(audio, sample_rate, sample_rate // 100)
    for row, f in enumerate(f0s):
        assert np.abs(cents_error(f0[row], f)).max() < 10.0, f
    assert confidence.min() > 0.9


@pytest.mark.parametrize("sample_rate", [16000, 44100])
def test_sawtooth_within_10_cents(sample_rate):
    f0s = [65.4, 196.0, 523.3, 1000.0, 1500.0]
    audio = as_audio(*(sawtooth(f, sample_rate, sample_rate // 4) for f in f0s))
    f0, confidence = track_interior(audio, sample_rate, sample_rate // 100)
    for row, f in enumerate(f0s):
        assert np.abs(cents_error(f0[row], f)).max() < 10.0, f
    assert confidence.min() > 0.9


def test_sine_in_white_noise_at_10_db_snr_within_10_cents():
    sample_rate, n_samples = 16000, 8000
    rng = np.random.default_rng(1)
    f0s = [110.0, 220.0, 440.0, 880.0]
    noise_std = np.sqrt(0.5 / 10.0)  # sine power 0.5, 10 dB below
    audio = as_audio(
        *(tone(f, sample_rate, n_samples) + noise_std * rng.standard_normal(n_samples) for f in f0s)
    )
    f0, confidence = track_interior(audio, sample_rate, 160)
    for row, f in enumerate(f0s):
        assert np.abs(cents_error(f0[row], f)).max() < 10.0, f
    assert confidence.min() > 0.8  # 1 - d' ~ 1 - noise / (signal + noise)


@pytest.mark.parametrize("second_to_first", [2.0, 3.0])
def test_strong_second_harmonic_is_not_an_octave_up(second_to_first):
    sample_rate = 16000
    audio = as_audio(
        *(tone(f, sample_rate, 8000, (1.0, second_to_first, 0.5)) for f in (98.0, 220.0, 440.0))
    )
    f0, _ = track_interior(audio, sample_rate, 160)
    for row, f in enumerate((98.0, 220.0, 440.0)):
        assert np.abs(cents_error(f0[row], f)).max() < 10.0, f


def test_missing_fundamental_gives_the_fundamental():
    """Harmonics 2-5 only: the period, hence the pitch, is still the fundamental's."""
    sample_rate = 16000
    audio = as_audio(tone(150.0, sample_rate, 8000, (0.0, 1.0, 0.8, 0.6, 0.4)))
    f0, _ = track_interior(audio, sample_rate, 160)
    assert np.abs(cents_error(f0[0], 150.0)).max() < 10.0


def test_confidence_low_on_white_noise_and_zero_on_silence():
    rng = np.random.default_rng(2)
    noise = as_audio(rng.standard_normal(16000), rng.uniform(-1.0, 1.0, 16000))
    _, confidence = yin(noise, 16000, 160)
    assert confidence.max() < 0.5
    f0, confidence = yin(torch.zeros(1, 4000), 16000, 160)
    assert torch.all(confidence == 0.0)
    assert torch.all((f0 >= 40.0) & (f0 <= 2000.0))


def test_f0_stays_in_range_and_float64_is_supported():
    audio = torch.from_numpy(tone(30.0, 16000, 8000)[None])  # below f0_min_hz
    f0, confidence = yin(audio, 16000, 160, f0_min_hz=40.0, f0_max_hz=1000.0)
    assert f0.dtype == confidence.dtype == torch.float64
    assert torch.all((f0 >= 40.0) & (f0 <= 1000.0))
    assert torch.all((confidence >= 0.0) & (confidence <= 1.0))


# ---- the difference function against its definition -------------------------------------


def test_difference_and_normalised_difference_match_their_definitions():
    rng = np.random.default_rng(3)
    frames = rng.standard_normal((2, 3, 64))
    max_lag = 20
    d = difference_function(torch.from_numpy(frames), max_lag).numpy()
    expected = np.stack(
        [
            np.mean((frames[..., : 64 - tau] - frames[..., tau:]) ** 2, axis=-1)
            for tau in range(max_lag + 1)
        ],
        axis=-1,
    )
    np.testing.assert_allclose(d, expected, rtol=1e-10, atol=1e-12)
    cmnd = cumulative_mean_normalized_difference(torch.from_numpy(d)).numpy()
    taus = np.arange(1, max_lag + 1)
    np.testing.assert_allclose(
        cmnd[..., 1:], d[..., 1:] * taus / np.cumsum(d[..., 1:], axis=-1), rtol=1e-10
    )
    np.testing.assert_array_equal(cmnd[..., 0], 1.0)


# ---- framing and alignment -----------------------------------------------------------------


@pytest.mark.parametrize("sample_rate", [16000, 48000])
@pytest.mark.parametrize("frame_rate", [50, 100, 250])
def test_frame_count_and_alignment_of_a_pitch_switch(sample_rate, frame_rate):
    """220 Hz then 330 Hz from sample k * hop: frame i centred on sample i * hop.

    Only frames whose window straddles the switch may report either pitch.
    """
    hop_size = sample_rate // frame_rate
    frame_size = default_frame_size(sample_rate)
    n_samples = sample_rate // 2 + hop_size // 3  # a partial last hop gives no frame
    switch = (n_samples // hop_size // 2) * hop_size
    t = np.arange(n_samples) / sample_rate
    signal = np.where(
        np.arange(n_samples) < switch, np.sin(2 * np.pi * 220.0 * t), np.sin(2 * np.pi * 330.0 * t)
    )
    f0, _ = yin(as_audio(signal), sample_rate, hop_size)
    assert f0.shape == (1, n_samples // hop_size)
    starts = np.arange(f0.shape[-1]) * hop_size - frame_size // 2
    before = starts + frame_size <= switch
    after = starts >= switch
    assert before.any() and after.any()
    cents = cents_error(f0[0], 220.0)
    assert np.abs(cents[before]).max() < 50.0
    assert np.abs(cents[after] - 1200.0 * np.log2(1.5)).max() < 50.0


@pytest.mark.parametrize("sample_rate", [16000, 48000])
@pytest.mark.parametrize("frame_rate", [50, 100, 250])
def test_frame_i_analyses_the_zero_padded_window_centred_on_sample_i_hop(sample_rate, frame_rate):
    """Each frame equals yin on its window cut out in numpy (zeros outside the signal).

    A window of even length N is frame 1 of its own analysis with hop N / 2.
    """
    hop_size = sample_rate // frame_rate
    frame_size = default_frame_size(sample_rate)
    n_samples = sample_rate // 4 + hop_size // 2
    t = np.arange(n_samples) / sample_rate
    signal = np.sin(2 * np.pi * (200.0 * t + 30.0 * t**2))  # a glide: every window differs
    padded = np.pad(signal, (frame_size, frame_size))
    windows = [
        padded[frame_size + i * hop_size - frame_size // 2 :][:frame_size]
        for i in range(n_samples // hop_size)
    ]
    f0, confidence = yin(as_audio(signal), sample_rate, hop_size)
    f0_alone, confidence_alone = yin(as_audio(*windows), sample_rate, frame_size // 2)
    torch.testing.assert_close(f0[0], f0_alone[:, 1], rtol=2e-4, atol=0.0)
    torch.testing.assert_close(confidence[0], confidence_alone[:, 1], rtol=0.0, atol=1e-5)


def test_short_input_gives_no_frames():
    f0, confidence = yin(torch.zeros(3, 159), 16000, 160)
    assert f0.shape == confidence.shape == (3, 0)


def test_default_frame_size_holds_two_periods_of_f0_min():
    for sample_rate in (16000, 22050, 44100, 48000):
        size = default_frame_size(sample_rate, 40.0)
        assert size >= 2 * sample_rate / 40.0 and size % 2 == 0


# ---- batching, chunking, streaming -------------------------------------------------------


def test_batched_equals_looped():
    rng = np.random.default_rng(4)
    audio = as_audio(
        sawtooth(110.0, 16000, 6000), rng.standard_normal(6000), tone(700.0, 16000, 6000)
    )

    def log_f0_and_confidence(a: torch.Tensor) -> torch.Tensor:
        # log f0: relative to f0, as FFT rounding moves noise frames' f0 by ~1e-4.
        f0, confidence = yin(a, 16000, 128)
        return torch.stack([f0.log(), confidence], dim=-1)

    assert_batched_equals_looped(log_f0_and_confidence, audio, atol=2e-4)


def test_chunking_over_frames_does_not_change_the_result(monkeypatch):
    audio = as_audio(sawtooth(220.0, 16000, 16000), tone(300.0, 16000, 16000))
    whole = yin(audio, 16000, 160)
    monkeypatch.setattr(yin_module, "_CHUNK_ELEMENTS", 20_000)  # a dozen frames per chunk
    chunked = yin(audio, 16000, 160)
    for a, b in zip(whole, chunked, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def stream_in_random_blocks(stream, audio: torch.Tensor, rng, max_block: int, latency: int):
    """``stream``'s frames for ``audio`` fed in random blocks (0 to max_block samples), then
    flushed; checks that each frame comes out as soon as its last sample is in."""
    state = stream.init_state(audio.shape[0])
    pieces, position = [], 0
    while position < audio.shape[-1]:
        block = audio[:, position : position + int(rng.integers(0, max_block))]
        position += block.shape[-1]
        f0, confidence, state = stream.forward_stream(block, state)
        pieces.append((f0, confidence))
        # Frame i is out as soon as i * hop + latency samples are in, and not before.
        n_out = sum(p[0].shape[-1] for p in pieces)
        assert n_out == max(0, (position - latency) // stream.hop_size + 1)
    pieces.append(stream.flush(state))
    return tuple(torch.cat(parts, dim=-1) for parts in zip(*pieces, strict=True))


@pytest.mark.parametrize(
    ("sample_rate", "hop_size"), [(16000, 160), (16000, 1024), (44100, 441), (22050, 64)]
)
def test_streaming_in_random_blocks_equals_offline(sample_rate, hop_size):
    rng = np.random.default_rng(hop_size)
    n_samples = sample_rate // 2 + 77
    audio = as_audio(
        sawtooth(180.0, sample_rate, n_samples) + 0.1 * rng.standard_normal(n_samples),
        rng.standard_normal(n_samples),
    )
    offline = yin(audio, sample_rate, hop_size)
    stream = Yin(sample_rate, hop_size)
    f0, confidence = stream_in_random_blocks(
        stream, audio, rng, 2 * stream.frame_size, stream.latency_samples
    )
    # The FFT rounds differently for other batch shapes; on the flat valleys of
    # noise frames that moves the fitted lag by up to ~1e-4 (0.2 cent).
    torch.testing.assert_close(f0, offline[0], rtol=2e-4, atol=0.0)
    torch.testing.assert_close(confidence, offline[1], rtol=0.0, atol=1e-5)


def test_stream_latency_is_half_a_frame_or_a_hop():
    assert Yin(16000, 160).latency_samples == default_frame_size(16000) // 2
    assert Yin(16000, 2048).latency_samples == 2048


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_scripted_equals_eager_offline_and_streaming():
    """What a TorchScript export of a live model runs is what the tests above check."""
    rng = np.random.default_rng(5)
    audio = as_audio(sawtooth(150.0, 16000, 6000), rng.standard_normal(6000))
    eager = Yin(16000, 160, f0_min_hz=65.0)
    scripted = torch.jit.script(eager)
    for a, b in zip(scripted(audio), eager(audio), strict=True):
        torch.testing.assert_close(a, b, rtol=0.0, atol=0.0)
    # A scripted module's properties are methods to TorchScript, not Python attributes.
    latency = eager.latency_samples
    streamed = [
        stream_in_random_blocks(stream, audio, np.random.default_rng(6), 900, latency)
        for stream in (scripted, eager)
    ]
    for a, b in zip(*streamed, strict=True):
        torch.testing.assert_close(a, b, rtol=0.0, atol=0.0)


# ---- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("audio", "kwargs", "message"),
    [
        (torch.zeros(800), {}, r"audio must have shape \[batch, n_samples\], found shape \(800,\)"),
        (torch.zeros(1, 1, 800), {}, r"found shape \(1, 1, 800\)"),
        (np.zeros((1, 800)), {}, r"found ndarray"),
        (torch.zeros(1, 800, dtype=torch.int16), {}, r"found dtype torch.int16"),
        (torch.zeros(1, 800), {"hop_size": 0}, r"hop_size must be a positive integer, found 0"),
        (
            torch.zeros(1, 800),
            {"hop_size": 160.0},
            r"hop_size must be a positive integer, found 160.0",
        ),
        (torch.zeros(1, 800), {"sample_rate": -1}, r"sample_rate must be positive, found -1"),
        (
            torch.zeros(1, 800),
            {"f0_min_hz": 500.0, "f0_max_hz": 400.0},
            r"found f0_min_hz=500.0, f0_max_hz=400.0",
        ),
        (torch.zeros(1, 800), {"f0_max_hz": 5000.0}, r"sample_rate / 4 = 4000.0.*f0_max_hz=5000.0"),
        (torch.zeros(1, 800), {"frame_size": 512}, r"at least 802 samples\), found 512"),
        (torch.zeros(1, 800), {"threshold": 1.5}, r"threshold must be in \[0, 1\], found 1.5"),
    ],
)
def test_bad_arguments_raise_naming_what_was_found(audio, kwargs, message):
    arguments = {"sample_rate": 16000, "hop_size": 160, **kwargs}
    with pytest.raises(ValueError, match=message):
        yin(audio, **arguments)


def test_bad_stream_state_raises_naming_what_was_found():
    stream = Yin(16000, 160)
    state = stream.init_state(2)
    with pytest.raises(
        ValueError,
        match=r"state\['buffer'\] must have shape \[batch=3, >= 401\].*found \(2, 401\)",
    ):
        stream.forward_stream(torch.zeros(3, 100), state)
    with pytest.raises(ValueError, match=r"found \(2, 10\)"):
        stream.flush({"buffer": state["buffer"][:, :10]})
    with pytest.raises(ValueError, match=r"state must be the dict from init_state, found Tensor"):
        stream.flush(state["buffer"])
    with pytest.raises(ValueError, match=r"audio_block must have shape.*found shape \(100,\)"):
        stream.forward_stream(torch.zeros(100), state)
    with pytest.raises(ValueError, match=r"batch_size must be a positive integer, found 0"):
        stream.init_state(0)
