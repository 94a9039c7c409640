"""DDSP's solo-instrument autoencoder: (f0, loudness[, audio]) -> controls -> audio; its loss."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import resources

import torch
import yaml
from torch import nn

from ..config import ModelConfig
from ..functional._checks import check_tensor
from ..functional.spectral import frame_hop_size
from ..losses import MultiScaleSpectralLoss
from ..processors import ProcessorGroup
from .decoder import RnnFcDecoder
from .encoder import MfccEncoder


def synthesis_config(model_config: ModelConfig, sample_rate: int, frame_rate: int) -> dict:
    """The shipped DAG ``harmonic_noise_reverb`` (``harmonic_noise`` without reverb)
    with the rates, resampling and reverb length of ``model_config``.

    For :meth:`ProcessorGroup.from_config`; its inputs are the decoder's raw
    controls and ``f0_hz``.
    """
    name = "harmonic_noise_reverb" if model_config.reverb_length > 0 else "harmonic_noise"
    # The packaged file itself: read_yaml would prefer a same-named file in the working directory.
    folder = resources.files("torchddsp.processors").joinpath("configs")
    dag = yaml.safe_load(folder.joinpath(f"{name}.yaml").read_text(encoding="utf-8"))
    rates = {"sample_rate": sample_rate, "frame_rate": frame_rate}
    args = {
        "harmonic": {**rates, "amp_resample_method": model_config.amp_resample_method},
        "noise": rates,
        "reverb": {"reverb_length": model_config.reverb_length},
    }
    for node in dag["nodes"]:
        node.setdefault("args", {}).update(args.get(node["name"], {}))
    return dag


class Autoencoder(nn.Module):
    """DDSP's autoencoder: optional :class:`MfccEncoder`, :class:`RnnFcDecoder`,
    harmonic + filtered noise (+ trainable reverb) synthesis, spectral loss.

    The harmonic oscillator plays the input ``f0_hz``; the network predicts
    loudness, spectral shape and noise. Synthesis and loss run in the
    parameters' dtype even under autocast (float16 phases and spectra lose
    pitch and range); only the networks use mixed precision.

    Shape: features {f0_hz [batch, n_frames] or [batch, n_frames, 1],
    loudness_db (same), audio [batch, n_frames * hop] (for z_dims > 0 and
    the loss)} -> outputs {audio_synth, harmonic, noise [batch, n_frames * hop],
    amplitudes [batch, n_frames, 1], harmonic_distribution [batch, n_frames,
    n_harmonics], noise_magnitudes [batch, n_frames, n_noise_bands], f0_hz
    [batch, n_frames, 1], z [batch, n_frames, z_dims] when z_dims > 0}, with
    ``hop = sample_rate / frame_rate``.
    """

    def __init__(self, model_config: ModelConfig, sample_rate: int, frame_rate: int):
        super().__init__()
        config = model_config
        self.config = config
        self.sample_rate = sample_rate
        self.frame_rate = frame_rate
        self.hop_size = frame_hop_size(sample_rate, frame_rate)
        self.encoder = None
        if config.z_dims > 0:
            self.encoder = MfccEncoder(
                sample_rate, frame_rate, config.z_dims, config.n_mfcc, config.encoder_gru_units
            )
        self.decoder = RnnFcDecoder(
            config.n_harmonics,
            config.n_noise_bands,
            config.mlp_units,
            config.mlp_layers,
            config.gru_units,
            config.z_dims,
        )
        self.synth = ProcessorGroup.from_config(synthesis_config(config, sample_rate, frame_rate))
        self.spectral_loss = MultiScaleSpectralLoss(
            fft_sizes=config.fft_sizes,
            mag_weight=config.loss_mag_weight,
            logmag_weight=config.loss_logmag_weight,
            loudness_weight=config.loss_loudness_weight,
            sample_rate=sample_rate,
            loudness_frame_rate=frame_rate,
        )

    def n_samples(self, n_frames: int) -> int:
        """Audio samples rendered for ``n_frames`` frames of controls."""
        return n_frames * self.hop_size

    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Render audio from f0 and loudness (and the audio's MFCCs when z_dims > 0).

        Shape: see the class.
        """
        f0_hz = _frame_feature(features, "f0_hz")
        loudness_db = _frame_feature(features, "loudness_db")
        z = None
        if self.encoder is not None:
            z = self.encoder(self._audio(features, f0_hz.shape[1]), f0_hz.shape[1])
        raw, _ = self.decoder(f0_hz, loudness_db, z)
        outputs = self._synthesize({**raw, "f0_hz": f0_hz})
        return outputs if z is None else {**outputs, "z": z}

    def loss(
        self, features: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Multi-scale spectral loss between ``features["audio"]`` and ``outputs["audio_synth"]``.

        Shape: -> {"spectral": scalar, "total": scalar}.
        """
        synth = outputs["audio_synth"]
        n_frames = _frame_feature(features, "f0_hz").shape[1]
        target = self._audio(features, n_frames)
        with torch.autocast(synth.device.type, enabled=False):
            spectral = self.spectral_loss(target.to(synth.dtype), synth)
        return {"spectral": spectral, "total": spectral}

    def _synthesize(self, controls: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        dtype = self.decoder.dense_out.weight.dtype
        device_type = controls["f0_hz"].device.type
        with torch.autocast(device_type, enabled=False):
            signals = self.synth.get_outputs({k: v.to(dtype) for k, v in controls.items()})
        return {
            "audio_synth": signals[self.synth.output],
            "harmonic": signals["harmonic/signal"],
            "noise": signals["noise/signal"],
            "amplitudes": signals["harmonic/controls/amplitudes"],
            "harmonic_distribution": signals["harmonic/controls/harmonic_distribution"],
            "noise_magnitudes": signals["noise/controls/magnitudes"],
            "f0_hz": controls["f0_hz"],
        }

    def _audio(self, features: Mapping[str, torch.Tensor], n_frames: int) -> torch.Tensor:
        if "audio" not in features:
            raise ValueError(
                f"features must include 'audio' [batch, n_samples] (for the loss and z_dims > 0), "
                f"found keys {sorted(features)}"
            )
        audio = features["audio"]
        check_tensor(audio, "audio", 2, "[batch, n_samples]")
        expected = self.n_samples(n_frames)
        if audio.shape[1] != expected:
            raise ValueError(
                f"audio must have n_frames * hop = {n_frames} * {self.hop_size} = {expected} "
                f"samples to match f0_hz, found shape {tuple(audio.shape)}"
            )
        return audio


def _frame_feature(features: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    """A frame-rate feature as [batch, n_frames, 1]."""
    if key not in features:
        raise ValueError(
            f"features must include {key!r} [batch, n_frames], found keys {sorted(features)}"
        )
    value = features[key]
    check_tensor(value, key, (2, 3), "[batch, n_frames] or [batch, n_frames, 1]")
    return value.unsqueeze(-1) if value.ndim == 2 else value
