import math

import pytest
import torch

from torchddsp.config import ModelConfig
from torchddsp.functional.spectral import compute_loudness
from torchddsp.models import Autoencoder, RnnFcDecoder, synthesis_config

TINY = ModelConfig(
    n_harmonics=8,
    n_noise_bands=9,
    reverb_length=1000,
    mlp_units=16,
    mlp_layers=2,
    gru_units=16,
    n_mfcc=13,
    encoder_gru_units=16,
    fft_sizes=(256, 64),
)


def _features(batch: int, n_frames: int, hop: int, f0_hz: float = 220.0) -> dict:
    return {
        "f0_hz": torch.full((batch, n_frames), f0_hz),
        "loudness_db": torch.linspace(-60.0, -20.0, n_frames).repeat(batch, 1),
        "audio": 0.1 * torch.randn(batch, n_frames * hop),
    }


def _tiny(**changes) -> ModelConfig:
    return ModelConfig(**{**TINY.__dict__, **changes})


def test_decoder_output_shapes_and_hidden_state():
    decoder = RnnFcDecoder(
        n_harmonics=10, n_noise_bands=9, mlp_units=16, mlp_layers=2, gru_units=12
    )
    f0_hz, loudness_db = torch.full((3, 20, 1), 440.0), torch.full((3, 20, 1), -30.0)
    outputs, hidden = decoder(f0_hz, loudness_db)
    assert outputs["amplitudes"].shape == (3, 20, 1)
    assert outputs["harmonic_distribution"].shape == (3, 20, 10)
    assert outputs["noise_magnitudes"].shape == (3, 20, 9)
    assert hidden.shape == (1, 3, 12)
    assert all(torch.isfinite(value).all() for value in outputs.values())


def test_decoder_in_two_blocks_with_carried_state_equals_one_call():
    decoder = RnnFcDecoder(n_harmonics=6, n_noise_bands=5, mlp_units=16, mlp_layers=2, gru_units=12)
    f0_hz = 200.0 + 300.0 * torch.rand(2, 30, 1)
    loudness_db = -70.0 + 60.0 * torch.rand(2, 30, 1)
    whole, whole_hidden = decoder(f0_hz, loudness_db)
    first, hidden = decoder(f0_hz[:, :13], loudness_db[:, :13])
    second, hidden = decoder(f0_hz[:, 13:], loudness_db[:, 13:], hidden=hidden)
    for key, value in whole.items():
        torch.testing.assert_close(torch.cat([first[key], second[key]], dim=1), value)
    torch.testing.assert_close(hidden, whole_hidden)


def test_decoder_rejects_a_z_it_was_not_built_for():
    f0_hz = torch.full((1, 5, 1), 220.0)
    with pytest.raises(ValueError, match="z_dims=0"):
        RnnFcDecoder(mlp_units=8, gru_units=8)(f0_hz, f0_hz, z=torch.zeros(1, 5, 3))
    with pytest.raises(ValueError, match="z must have shape"):
        RnnFcDecoder(mlp_units=8, gru_units=8, z_dims=4)(f0_hz, f0_hz, z=torch.zeros(1, 5, 3))


@pytest.mark.parametrize("sample_rate", [16000, 48000])
def test_autoencoder_renders_hop_samples_per_frame_and_learns_everywhere(sample_rate):
    model = Autoencoder(TINY, sample_rate, frame_rate=250)
    hop = sample_rate // 250
    assert model.n_samples(40) == 40 * hop
    features = _features(2, 40, hop)
    outputs = model(features)
    for key in ("audio_synth", "harmonic", "noise"):
        assert outputs[key].shape == (2, 40 * hop)
    losses = model.loss(features, outputs)
    assert torch.isfinite(losses["total"]) and set(losses) == {"spectral", "total"}
    losses["total"].backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_autoencoder_controls_are_in_range():
    model = Autoencoder(TINY, 16000, 250)
    outputs = model(_features(2, 30, 64, f0_hz=1500.0))  # harmonics 6-8 above Nyquist
    amplitudes = outputs["amplitudes"]
    assert amplitudes.shape == (2, 30, 1) and (amplitudes > 0).all() and (amplitudes <= 2).all()
    distribution = outputs["harmonic_distribution"]
    assert distribution.shape == (2, 30, 8) and (distribution >= 0).all()
    assert (distribution[..., 5:] == 0).all()
    torch.testing.assert_close(distribution.sum(-1), torch.ones(2, 30))
    magnitudes = outputs["noise_magnitudes"]
    assert magnitudes.shape == (2, 30, 9) and (magnitudes > 0).all() and (magnitudes <= 2).all()
    assert outputs["f0_hz"].shape == (2, 30, 1)


def test_autoencoder_accepts_features_with_a_channel_axis():
    model = Autoencoder(TINY, 16000, 250)
    features = _features(1, 25, 64)
    with_channel = {**features, "f0_hz": features["f0_hz"][..., None]}
    with_channel["loudness_db"] = features["loudness_db"][..., None]
    torch.testing.assert_close(model(features)["harmonic"], model(with_channel)["harmonic"])


def test_autoencoder_without_reverb_and_its_synthesis_config():
    assert "reverb" not in [
        node["name"] for node in synthesis_config(_tiny(reverb_length=0), 16000, 250)["nodes"]
    ]
    model = Autoencoder(_tiny(reverb_length=0), 16000, 250)
    outputs = model(_features(1, 10, 64))
    torch.testing.assert_close(outputs["audio_synth"], outputs["harmonic"] + outputs["noise"])
    assert Autoencoder(TINY, 16000, 250).synth.processors["reverb"].ir.shape == (1000,)


def test_autoencoder_with_z_encoder():
    model = Autoencoder(_tiny(z_dims=4), 16000, 250)
    features = _features(2, 30, 64)
    outputs = model(features)
    assert outputs["z"].shape == (2, 30, 4)
    model.loss(features, outputs)["total"].backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.encoder.parameters())
    with pytest.raises(ValueError, match="'audio'"):
        model({"f0_hz": features["f0_hz"], "loudness_db": features["loudness_db"]})
    with pytest.raises(ValueError, match="1920 samples"):
        model({**features, "audio": features["audio"][:, :-1]})


def test_synthesis_and_loss_stay_float32_under_autocast():
    model = Autoencoder(TINY, 16000, 250)
    features = _features(2, 20, 64)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        outputs = model(features)
        loss = model.loss(features, outputs)["total"]
    assert outputs["audio_synth"].dtype == torch.float32 and torch.isfinite(loss)


def test_tiny_model_overfits_one_harmonic_example():
    sample_rate, frame_rate, n_frames = 16000, 100, 50
    t = torch.arange(n_frames * 160) / sample_rate
    envelope = torch.linspace(0.2, 0.6, t.shape[0])
    audio = envelope * sum(
        math.pow(0.5, k) * torch.sin(2 * math.pi * 220.0 * (k + 1) * t) for k in range(3)
    )
    features = {
        "f0_hz": torch.full((1, n_frames), 220.0),
        "loudness_db": compute_loudness(audio[None], sample_rate, frame_rate)[:, :n_frames],
        "audio": audio[None],
    }
    config = _tiny(reverb_length=0, mlp_units=32, mlp_layers=1, gru_units=32, fft_sizes=(512, 128))
    model = Autoencoder(config, sample_rate, frame_rate)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(40):
        loss = model.loss(features, model(features))["total"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-5:]) < 0.35 * losses[0]
