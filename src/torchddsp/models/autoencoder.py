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


def shipped_dag(name: str, node_args: Mapping[str, dict]) -> dict:
    """A DAG config shipped in ``torchddsp/processors/configs``, with ``node_args`` merged into
    its nodes' args (by node name). For :meth:`ProcessorGroup.from_config`."""
    # The packaged file itself: read_yaml would prefer a same-named file in the working directory.
    folder = resources.files("torchddsp.processors").joinpath("configs")
    dag = yaml.safe_load(folder.joinpath(f"{name}.yaml").read_text(encoding="utf-8"))
    for node in dag["nodes"]:
        node.setdefault("args", {}).update(node_args.get(node["name"], {}))
    return dag


def synthesis_config(model_config: ModelConfig, sample_rate: int, frame_rate: int) -> dict:
    """The shipped DAG ``harmonic_noise_reverb`` (``harmonic_noise`` without reverb)
    with the rates, resampling and reverb length of ``model_config``.

    For :meth:`ProcessorGroup.from_config`; its inputs are the decoder's raw
    controls and ``f0_hz``.
    """
    name = "harmonic_noise_reverb" if model_config.reverb_length > 0 else "harmonic_noise"
    rates = {"sample_rate": sample_rate, "frame_rate": frame_rate}
    return shipped_dag(
        name,
        {
            "harmonic": {**rates, "amp_resample_method": model_config.amp_resample_method},
            "noise": rates,
            "reverb": {"reverb_length": model_config.reverb_length},
        },
    )


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

    __jit_unused_properties__ = ["stream_latency"]

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
        self.spectral_loss = spectral_loss_of(config, sample_rate, frame_rate)

    def n_samples(self, n_frames: int) -> int:
        """Audio samples rendered for ``n_frames`` frames of controls."""
        return n_frames * self.hop_size

    @torch.jit.unused
    def forward(self, features: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Render audio from f0 and loudness (and the audio's MFCCs when z_dims > 0).

        Shape: see the class.
        """
        f0_hz = frame_feature(features, "f0_hz")
        loudness_db = frame_feature(features, "loudness_db")
        z = None
        if self.encoder is not None:
            z = self.encoder(self._audio(features, f0_hz.shape[1]), f0_hz.shape[1])
        raw, _ = self.decoder(f0_hz, loudness_db, z)
        outputs = self._synthesize({**raw, "f0_hz": f0_hz})
        return outputs if z is None else {**outputs, "z": z}

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> dict[str, dict[str, torch.Tensor]]:
        """Stream state: the synthesis DAG's node states and the decoder's (key ``decoder``)."""
        if not torch.jit.is_scripting():
            self._check_streamable()
        state = self.synth.init_state(batch_size, dtype, device)
        state["decoder"] = self.decoder.init_state(batch_size, dtype, device)
        return state

    @torch.jit.export
    def forward_stream(
        self,
        f0_hz: torch.Tensor,
        loudness_db: torch.Tensor,
        state: dict[str, dict[str, torch.Tensor]],
        final: bool = False,
        gains: dict[str, torch.Tensor] | None = None,
    ) -> tuple[dict[str, torch.Tensor], dict[str, dict[str, torch.Tensor]]]:
        """Render new frames of f0 and loudness as they arrive (no z encoder).

        The decoder's hidden state and every synthesis node's state are
        carried, so the blocks join into what one call renders; ``final``
        ends the stream and ``gains`` scale nodes' contributions (see
        :meth:`ProcessorGroup.forward_stream`). Returns the signals by
        ``<node>/signal``, the DAG's output under ``audio``.
        Shape: f0_hz, loudness_db [batch, n_new_frames, 1] -> {key [batch, n_out]}.
        """
        raw, decoder_state = self.decoder.forward_stream(f0_hz, loudness_db, state["decoder"])
        raw["f0_hz"] = f0_hz
        signals, new_state = self.synth.forward_stream(raw, state, final, gains)
        signals["audio"] = signals[self.synth.output]
        new_state["decoder"] = decoder_state
        return signals, new_state

    @property
    def stream_latency(self) -> int:
        """Samples the streamed audio lags behind the frames pushed in."""
        return self.synth.stream_lag({**self.decoder.output_sizes, "f0_hz": 1})

    def _check_streamable(self) -> None:
        if self.encoder is not None:
            raise ValueError(
                "streaming needs a model without a z encoder (z_dims = 0), found z_dims="
                f"{self.config.z_dims}: z is computed from the audio being synthesised"
            )
        if "decoder" in self.synth.processors:
            raise ValueError("a synthesis node named 'decoder' clashes with the decoder's state")

    def loss(
        self, features: Mapping[str, torch.Tensor], outputs: Mapping[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Multi-scale spectral loss between ``features["audio"]`` and ``outputs["audio_synth"]``.

        Shape: -> {"spectral": scalar, "total": scalar}.
        """
        synth = outputs["audio_synth"]
        n_frames = frame_feature(features, "f0_hz").shape[1]
        target = self._audio(features, n_frames)
        with torch.autocast(synth.device.type, enabled=False):
            spectral = self.spectral_loss(target.to(synth.dtype), synth)
        return {"spectral": spectral, "total": spectral}

    def _synthesize(self, controls: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        signals = synthesize_in(self.synth, controls, self.decoder.dense_out.weight.dtype)
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


def spectral_loss_of(
    model_config: ModelConfig, sample_rate: int, frame_rate: int
) -> MultiScaleSpectralLoss:
    """The multi-scale spectral loss ``model_config`` asks for, at these rates."""
    return MultiScaleSpectralLoss(
        fft_sizes=model_config.fft_sizes,
        mag_weight=model_config.loss_mag_weight,
        logmag_weight=model_config.loss_logmag_weight,
        loudness_weight=model_config.loss_loudness_weight,
        sample_rate=sample_rate,
        loudness_frame_rate=frame_rate,
    )


def synthesize_in(
    synth: ProcessorGroup, controls: dict[str, torch.Tensor], dtype: torch.dtype
) -> dict[str, torch.Tensor]:
    """Every signal of ``synth`` with its controls in ``dtype`` (the network's), outside
    autocast: oscillator phases and FFT filters need float32 even when the network runs in
    half precision.

    Shape: controls {name: [batch, n_frames, channels]} -> {key: signal}.
    """
    with torch.autocast(controls["f0_hz"].device.type, enabled=False):
        return synth.get_outputs({name: value.to(dtype) for name, value in controls.items()})


@torch.no_grad()
def render_in_blocks(
    model: Autoencoder, f0_hz: torch.Tensor, loudness_db: torch.Tensor, block_frames: int = 1000
) -> torch.Tensor:
    """Render a whole input by streaming it ``block_frames`` at a time: bounded memory, and
    the same audio as one call (counter-based noise, carried state).

    Shape: f0_hz, loudness_db [batch, n_frames] -> [batch, n_frames * hop].
    """
    if isinstance(block_frames, bool) or not isinstance(block_frames, int) or block_frames < 1:
        raise ValueError(f"block_frames must be a positive integer, found {block_frames!r}")
    dtype = model.decoder.dense_out.weight.dtype
    f0_hz, loudness_db = (x.to(dtype)[..., None] for x in (f0_hz, loudness_db))
    state = model.init_state(f0_hz.shape[0], dtype, f0_hz.device)
    pieces = []
    for lo in range(0, f0_hz.shape[1], block_frames):
        block = slice(lo, lo + block_frames)
        signals, state = model.forward_stream(f0_hz[:, block], loudness_db[:, block], state)
        pieces.append(signals["audio"])
    signals, _ = model.forward_stream(f0_hz[:, :0], loudness_db[:, :0], state, final=True)
    return torch.cat([*pieces, signals["audio"]], dim=1)


def frame_feature(features: Mapping[str, torch.Tensor], key: str) -> torch.Tensor:
    """A frame-rate feature as [batch, n_frames, 1]."""
    if key not in features:
        raise ValueError(
            f"features must include {key!r} [batch, n_frames], found keys {sorted(features)}"
        )
    value = features[key]
    check_tensor(value, key, (2, 3), "[batch, n_frames] or [batch, n_frames, 1]")
    return value.unsqueeze(-1) if value.ndim == 2 else value
