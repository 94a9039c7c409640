"""The voice autoencoder: what is said, how high and how loud, and who says it, kept apart.

- **Encoder.** The content code ``z`` [batch, n_frames, z_dims]: MFCCs (each
  frame's coefficients layer-normalised, so the code never waits for later
  audio and streams) through a GRU into a small bottleneck (``z_dims``, 8 by
  default). f0, its confidence (voicing) and A-weighted loudness are the
  usual features.
- **Controller.** :class:`RnnFcDecoder` maps loudness and the content code
  together with voicing, gender and age (0 = male, 1 = female; age in years /
  100, see :mod:`torchddsp.voice.commonvoice`) to the synthesis controls. It
  does not hear f0, which only drives the glottal source: in the training
  data pitch and gender go together, and a controller that heard f0 would
  read the speaker's gender off it (a pitch shift would then change the
  vocal tract, and the gender control would matter less).
- **Voice decoder.** The shipped ``voice`` DAG: a Rosenberg glottal source
  (amplitude, open and speed quotients) through a time-varying vocal tract
  filter, plus filtered noise (breath, fricatives), summed, through a
  trainable reverb.
- **Disentanglement.** Gender and age reach the controller as inputs, so the
  code need not carry them, and three things keep it from doing so anyway:
  the bottleneck leaves it little room; information perturbation: in
  training the encoder hears each example with its frequencies scaled by a
  random factor (up to ``content_warp``, 1.2: vocal tract length
  perturbation), so the formant positions that tell a man from a woman or a
  child are noise to the code while the phones survive, and the controller
  must take them from the conditions to rebuild the original; and an
  adversary predicting gender and age from the code's time average trains the
  encoder through gradient reversal (Ganin and Lempitsky 2015) to remove what
  is left. Instance normalisation over time would also strip the speaker's
  average envelope, but it needs the whole utterance and could not stream.
- **Attribute estimator.** A small head reads gender and age off the mean
  and spread of the input's normalised MFCCs over voiced frames (trained on
  detached inputs: it teaches nothing to the rest); offline conversion uses
  it for the controls left unchanged, so that no change is a resynthesis.

Unlabelled examples (``has_gender`` / ``has_age`` false) train the
autoencoder with the middle value 0.5 as their condition and without the
attribute terms for that label.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import nn

from ..config import ModelConfig
from ..data.dataset import UNKNOWN_LABEL
from ..functional.spectral import frame_hop_size, warp_frequencies
from ..processors import ProcessorGroup
from ..voice.commonvoice import AGE_VALUES
from .autoencoder import frame_feature, shipped_dag, spectral_loss_of, synthesize_in
from .decoder import RnnFcDecoder
from .encoder import MfccEncoder

CONDITIONS = ("f0_confidence", "gender", "age")
MFCC_FFT = 512  # the content code looks 16 ms ahead at 16 kHz, as the loudness does
GROWN_TRACT_AGE = 0.20  # the child formant ratio fades out from the child age to this age
SCALED_CONTROLS = ("tract_magnitudes", "noise_magnitudes")  # the filters of the vocal tract


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


def childness(age: torch.Tensor, child_age: float, grown_age: float) -> torch.Tensor:
    """How much of a child's vocal tract (and voice) an age means: 1 up to ``child_age``,
    0 from ``grown_age`` on, linear between. TorchScript-compatible.

    Shape: any -> same.
    """
    return ((grown_age - age) / (grown_age - child_age)).clamp(0.0, 1.0)


def attribute_head(in_features: int) -> nn.Sequential:
    """A small MLP predicting (gender logit, age logit)."""
    return nn.Sequential(nn.Linear(in_features, 64), nn.LeakyReLU(0.2), nn.Linear(64, 2))


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
        self.n_frame_channels = 2 + len(CONDITIONS)  # f0, loudness and the conditions
        self.female_log_ratio = math.log(config.female_formant_ratio)
        self.child_log_ratio = math.log(config.child_formant_ratio)
        self.child_ages = (AGE_VALUES["child"], GROWN_TRACT_AGE)
        self.scaled_controls = list(SCALED_CONTROLS)
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
            hears_f0=False,
        )
        self.synth = ProcessorGroup.from_config(
            voice_synthesis_config(config, sample_rate, frame_rate)
        )
        self.adversary = attribute_head(config.z_dims)
        self.estimator = attribute_head(2 * config.n_mfcc)
        self.spectral_loss = spectral_loss_of(config, sample_rate, frame_rate)

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
        z = self.encoder(audio, n_frames, self._training_warp(audio))
        conditions = self.conditions(features, n_frames)
        raw, _ = self.decoder(
            f0_hz, frame_feature(features, "loudness_db"), torch.cat([z, conditions], -1)
        )
        raw = self.scale_tract(raw, conditions[..., 1], conditions[..., 2])
        dtype = self.decoder.dense_out.weight.dtype
        signals = synthesize_in(self.synth, {**raw, "f0_hz": f0_hz}, dtype)
        return {"audio_synth": signals[self.synth.output], "z": z, **raw}

    @torch.jit.unused
    def _training_warp(self, audio: torch.Tensor) -> torch.Tensor | None:
        """Per-example frequency scales, log-uniform within ``content_warp`` (training only)."""
        if not self.training or self.config.content_warp == 1:
            return None
        spread = math.log(self.config.content_warp)
        uniform = torch.rand(audio.shape[0], device=audio.device, dtype=torch.float64)
        return torch.exp((2 * uniform - 1) * spread).to(audio.dtype)

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Stream state: the synthesis nodes', the decoder's, the encoder's, and the frames
        that wait for their partner (key ``queue``: content codes or features)."""
        if not torch.jit.is_scripting():
            self._check_streamable()
        state = self.synth.init_state(batch_size, dtype, device)
        state["decoder"] = self.decoder.init_state(batch_size, dtype, device)
        state["encoder"] = self.encoder.init_state(batch_size, dtype, device)
        empty = torch.zeros(batch_size, 0, 1, dtype=dtype, device=device)
        state["queue"] = {
            "z": empty.expand(-1, -1, self.encoder.dense_out.out_features).clone(),
            "frames": empty.expand(-1, -1, self.n_frame_channels).clone(),
        }
        return state

    @torch.jit.export
    def forward_stream(
        self,
        audio: torch.Tensor,
        frames: torch.Tensor,
        state: dict[str, dict[str, torch.Tensor]],
        final: bool = False,
        gains: dict[str, torch.Tensor] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
        """Render as the source audio and its frames arrive, in blocks of any size.

        ``audio`` is the new source audio at the model's rate (the content code's
        input); ``frames`` the new frames of f0 (Hz, shifted or not), loudness
        (dB), voicing, gender and age. A frame renders once both its code and
        its features are in, so the blocks join into :meth:`forward`'s output;
        ``final`` ends the stream (the code's last frames see zeros past the end).
        Returns the signals by ``<node>/signal``, the DAG's output under ``audio``.
        Shape: audio [batch, n_new_samples], frames [batch, n_new_frames, 5] ->
        {key [batch, n_out]}.
        """
        state = state.copy()
        z, state["encoder"] = self.encoder.forward_stream(audio, state["encoder"], final)
        queue = state["queue"]
        z = torch.cat([queue["z"], z], 1)
        frames = torch.cat([queue["frames"], frames], 1)
        n = min(z.shape[1], frames.shape[1])
        state["queue"] = {"z": z[:, n:], "frames": frames[:, n:]}
        frames, z = frames[:, :n], z[:, :n]
        f0_hz = frames[..., :1]
        raw, state["decoder"] = self.decoder.forward_stream(
            f0_hz, frames[..., 1:2], state["decoder"], torch.cat([z, frames[..., 2:]], -1)
        )
        raw = self.scale_tract(raw, frames[..., 3], frames[..., 4])
        raw["f0_hz"] = f0_hz
        signals, new_state = self.synth.forward_stream(raw, state, final, gains)
        signals["audio"] = signals[self.synth.output]
        for name in ("decoder", "encoder", "queue"):
            new_state[name] = state[name]
        return signals, new_state

    def tract_length_scale(self, gender: torch.Tensor, age: torch.Tensor) -> torch.Tensor:
        """The formant scale of a vocal tract of this gender and age against an adult man's:
        ``female_formant_ratio`` at gender 1 (log-linear between), ``child_formant_ratio``
        for a child of either gender, fading out by age 0.20 as the tract grows.

        Shape: gender, age [batch, n_frames] -> [batch, n_frames].
        """
        child_age, grown_age = self.child_ages
        adult = gender * self.female_log_ratio
        child = torch.full_like(adult, self.child_log_ratio)
        return torch.exp(torch.lerp(adult, child, childness(age, child_age, grown_age)))

    def scale_tract(
        self, raw: dict[str, torch.Tensor], gender: torch.Tensor, age: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The controller draws the vocal tract's filters for an adult man's tract; this
        scales them in frequency to the tract of ``gender`` and ``age``
        (:meth:`tract_length_scale`), so those controls move the formants.

        Shape: raw {name: [batch, n_frames, n_bands]}, gender, age [batch, n_frames] -> raw.
        """
        if self.female_log_ratio == 0.0 and self.child_log_ratio == 0.0:
            return raw
        scale = self.tract_length_scale(gender, age)
        scaled = dict(raw)
        for name in self.scaled_controls:
            scaled[name] = warp_frequencies(raw[name], scale.to(raw[name].dtype), hold_edge=True)
        return scaled

    @property
    def stream_latency(self) -> int:
        """Samples the streamed audio lags behind the frames pushed in."""
        return self.synth.stream_lag({**self.decoder.output_sizes, "f0_hz": 1})

    def _check_streamable(self) -> None:
        clashes = {"decoder", "encoder", "queue"} & set(self.synth.processors)
        if clashes:
            raise ValueError(f"synthesis node names clash with the stream's: {sorted(clashes)}")

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
        """Multi-scale spectral loss, plus the adversary's (gradient-reversed into the encoder)
        and the attribute estimator's (on detached MFCC statistics: it trains only itself).

        Shape: -> {"spectral", "adversary", "estimator", "total": scalars}.
        """
        synth = outputs["audio_synth"]
        target = features["audio"][:, : synth.shape[1]]
        with torch.autocast(synth.device.type, enabled=False):
            spectral = self.spectral_loss(target.to(synth.dtype), synth)
            z = outputs["z"].float()
            adversary = self._attribute_loss(
                features, self.adversary(_ReverseGradient.apply(z.mean(1)))
            )
            statistics = self.voice_statistics(target, frame_feature(features, "f0_confidence"))
            estimator = self._attribute_loss(features, self.estimator(statistics.detach()))
        total = spectral + self.config.adversary_weight * adversary + estimator
        return {
            "spectral": spectral,
            "adversary": adversary,
            "estimator": estimator,
            "total": total,
        }

    @torch.jit.unused
    def estimate_attributes(self, audio: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
        """Gender (0 male .. 1 female) and age (years / 100) of each utterance, as the
        estimator reads them off its voiced frames' MFCC statistics.

        Shape: audio [batch, n_frames * hop], voicing [batch, n_frames] -> [batch, 2].
        """
        return torch.sigmoid(self.estimator(self.voice_statistics(audio, voicing[..., None])))

    @torch.jit.unused
    def voice_statistics(self, audio: torch.Tensor, voicing: torch.Tensor) -> torch.Tensor:
        """Mean and standard deviation over time of normalised MFCCs, frames weighted by
        their voicing (what a voice sounds like, whatever it says).

        Shape: audio [batch, n_frames * hop], voicing [batch, n_frames, 1] -> [batch, 2 * n_mfcc].
        """
        mfccs = self.encoder.mfccs(audio)[:, : voicing.shape[1]]
        mfccs = nn.functional.layer_norm(mfccs, mfccs.shape[-1:])
        weights = voicing.float() / voicing.float().sum(1, keepdim=True).clamp_min(1e-3)
        mean = (weights * mfccs).sum(1)
        variance = (weights * (mfccs - mean[:, None]).square()).sum(1)
        return torch.cat([mean, variance.clamp_min(1e-8).sqrt()], -1)

    def _attribute_loss(
        self, features: Mapping[str, torch.Tensor], prediction: torch.Tensor
    ) -> torch.Tensor:
        """Gender (logistic) and age (squared error of the sigmoid) of the examples whose
        labels are known; zero for unlabelled ones."""
        terms = [prediction.sum() * 0.0]
        for index, name in enumerate(("gender", "age")):
            if name not in features:
                continue
            known = features[f"has_{name}"].bool()
            if not known.any():
                continue
            target = features[name].to(prediction.dtype)[known]
            guess = prediction[known, index]
            if name == "gender":
                terms.append(nn.functional.binary_cross_entropy_with_logits(guess, target))
            else:
                terms.append(nn.functional.mse_loss(torch.sigmoid(guess), target))
        return torch.stack(terms).sum()
