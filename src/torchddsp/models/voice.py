"""The voice autoencoder: what is said, how high and how loud, and who says it, kept apart.

- **Encoder.** The content code ``z`` [batch, n_frames, z_dims]: MFCCs (each
  frame's coefficients layer-normalised, so the code never waits for later
  audio and streams) through a GRU into a small bottleneck (``z_dims``, 8 by
  default). f0, its confidence (voicing) and A-weighted loudness are the
  usual features.
- **Controller.** :class:`RnnFcDecoder` maps f0, loudness and the content code
  together with voicing, gender and age (0 = male, 1 = female; age in years /
  100, see :mod:`torchddsp.voice.commonvoice`) to the synthesis controls.
- **Voice decoder.** The shipped ``voice`` DAG: a Rosenberg glottal source
  (amplitude, open and speed quotients) through a time-varying vocal tract
  filter, plus filtered noise (breath, fricatives), summed, through a
  trainable reverb.
- **Disentanglement.** Gender and age reach the controller as inputs, so the
  code need not carry them; the bottleneck leaves it little room to; and an
  adversary predicting them from the code's time average trains the encoder
  through gradient reversal (Ganin and Lempitsky 2015) to remove what is left.
  Instance normalisation over time would also strip the speaker's average
  envelope, but it needs the whole utterance and could not stream; the
  per-frame layer norm and the adversary do not.

Unlabelled examples (``has_gender`` / ``has_age`` false) train the
autoencoder with the middle value 0.5 as their condition and without the
adversary's term for that label.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..config import ModelConfig
from ..data.dataset import UNKNOWN_LABEL
from ..functional.spectral import frame_hop_size
from ..losses import MultiScaleSpectralLoss
from ..processors import ProcessorGroup
from .autoencoder import frame_feature, shipped_dag
from .decoder import RnnFcDecoder
from .encoder import MfccEncoder

CONDITIONS = ("f0_confidence", "gender", "age")
MFCC_FFT = 512  # the content code looks 16 ms ahead at 16 kHz, as the loudness does


def voice_controls(config: ModelConfig) -> dict[str, int]:
    """The controller's outputs, the voice DAG's raw inputs, and their sizes."""
    return {
        "glottal_amplitudes": 1,
        "open_quotient": 1,
        "speed_quotient": 1,
        "tract_magnitudes": config.n_tract_bands,
        "noise_magnitudes": config.n_noise_bands,
    }


def voice_synthesis_config(config: ModelConfig, sample_rate: int, frame_rate: int) -> dict:
    """The shipped ``voice`` DAG at these rates with ``config``'s reverb (none when 0)."""
    rates = {"sample_rate": sample_rate, "frame_rate": frame_rate}
    dag = shipped_dag(
        "voice",
        {
            "glottal": rates,
            "tract": rates,
            "noise": rates,
            "reverb": {"reverb_length": max(1, config.reverb_length)},
        },
    )
    if config.reverb_length == 0:
        dag["nodes"] = [node for node in dag["nodes"] if node["name"] != "reverb"]
        dag["output"] = "add/signal"
    return dag


class _ReverseGradient(torch.autograd.Function):
    """The identity forward; the gradient, negated, backward."""

    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -grad


class VoiceAutoencoder(nn.Module):
    """Content encoder, conditioned controller and source-filter voice decoder (module notes).

    Shape: features {audio [batch, n_frames * hop], f0_hz, f0_confidence,
    loudness_db [batch, n_frames], gender, age [batch] (optional),
    has_gender, has_age [batch] bool} -> outputs {audio_synth [batch,
    n_frames * hop], z [batch, n_frames, z_dims], the controls}.
    """

    __jit_unused_properties__ = ["stream_latency"]

    def __init__(self, model_config: ModelConfig, sample_rate: int, frame_rate: int):
        super().__init__()
        config = model_config
        self.config = config
        self.sample_rate = sample_rate
        self.frame_rate = frame_rate
        self.hop_size = frame_hop_size(sample_rate, frame_rate)
        self.encoder = MfccEncoder(
            sample_rate,
            frame_rate,
            config.z_dims,
            config.n_mfcc,
            config.encoder_gru_units,
            MFCC_FFT,
        )
        self.decoder = RnnFcDecoder(
            mlp_units=config.mlp_units,
            mlp_layers=config.mlp_layers,
            gru_units=config.gru_units,
            z_dims=config.z_dims + len(CONDITIONS),
            outputs=voice_controls(config),
        )
        self.synth = ProcessorGroup.from_config(
            voice_synthesis_config(config, sample_rate, frame_rate)
        )
        self.adversary = nn.Sequential(
            nn.Linear(config.z_dims, 64), nn.LeakyReLU(0.2), nn.Linear(64, 2)
        )
        self.spectral_loss = MultiScaleSpectralLoss(
            fft_sizes=config.fft_sizes,
            mag_weight=config.loss_mag_weight,
            logmag_weight=config.loss_logmag_weight,
            loudness_weight=config.loss_loudness_weight,
            sample_rate=sample_rate,
            loudness_frame_rate=frame_rate,
        )

    def n_samples(self, n_frames: int) -> int:
        return n_frames * self.hop_size

    @torch.jit.unused
    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Resynthesise, or convert when ``gender`` / ``age`` / ``f0_hz`` are changed.

        Shape: see the class.
        """
        f0_hz = frame_feature(features, "f0_hz")
        n_frames = f0_hz.shape[1]
        audio = features["audio"][:, : self.n_samples(n_frames)]
        z = self.encoder(audio, n_frames)
        raw, _ = self.decoder(
            f0_hz,
            frame_feature(features, "loudness_db"),
            torch.cat([z, self.conditions(features, n_frames)], -1),
        )
        dtype = self.decoder.dense_out.weight.dtype
        with torch.autocast(f0_hz.device.type, enabled=False):
            inputs = {name: value.to(dtype) for name, value in raw.items()}
            signals = self.synth.get_outputs({**inputs, "f0_hz": f0_hz.to(dtype)})
        return {"audio_synth": signals[self.synth.output], "z": z, **raw}

    @torch.jit.unused
    def conditions(self, features: Mapping[str, torch.Tensor], n_frames: int) -> torch.Tensor:
        """Voicing per frame, gender and age per example (0.5 when absent), as frames.

        Shape: -> [batch, n_frames, 3].
        """
        voicing = frame_feature(features, "f0_confidence")[:, :n_frames]
        labels = []
        for name in ("gender", "age"):
            value = features.get(name)
            if value is None:
                value = torch.full((voicing.shape[0],), UNKNOWN_LABEL, device=voicing.device)
            labels.append(value.to(voicing.dtype)[:, None, None].expand(-1, n_frames, 1))
        return torch.cat([voicing, *labels], -1)

    @torch.jit.unused
    def loss(
        self, features: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Multi-scale spectral loss, plus the adversary's (gradient-reversed into the encoder).

        Shape: -> {"spectral", "adversary", "total": scalars}.
        """
        synth = outputs["audio_synth"]
        target = features["audio"][:, : synth.shape[1]]
        with torch.autocast(synth.device.type, enabled=False):
            spectral = self.spectral_loss(target.to(synth.dtype), synth)
            adversary = self._adversary_loss(features, outputs["z"].float())
        total = spectral + self.config.adversary_weight * adversary
        return {"spectral": spectral, "adversary": adversary, "total": total}

    def _adversary_loss(self, features: Mapping[str, torch.Tensor], z: torch.Tensor):
        """How well gender (logistic) and age (squared error) can be read off the time-averaged
        code; the encoder gets this loss's gradient reversed."""
        prediction = self.adversary(_ReverseGradient.apply(z.mean(1)))
        zero = prediction.sum() * 0.0
        terms = [zero]
        if "gender" in features:
            known = features["has_gender"].bool()
            if known.any():
                target = features["gender"].to(prediction.dtype)[known]
                terms.append(
                    nn.functional.binary_cross_entropy_with_logits(prediction[known, 0], target)
                )
        if "age" in features:
            known = features["has_age"].bool()
            if known.any():
                target = features["age"].to(prediction.dtype)[known]
                age = torch.sigmoid(prediction[known, 1])
                terms.append(nn.functional.mse_loss(age, target))
        return torch.stack(terms).sum()
