"""CREPE for inference: the activations of :class:`~torchddsp.pitch.crepe.Crepe`, computed faster.

Each BatchNorm's scale is folded into its conv (``a relu(x) = relu(a x)`` for
``a > 0``; negative scales keep a sign flip before the pool) and its shift into
the next layer as a per-position bias, which is exact at the zero-padded edges
too. The first conv is rewritten as a stride-1 conv over the 4 polyphase
components of the frame; all convs run channels-last.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from ..functional._checks import check_tensor
from .crepe_layers import FRAME_SIZE, KERNEL_SIZES, PADDINGS, STRIDES

if TYPE_CHECKING:
    from .crepe import Crepe


def _check_frames(frames: object) -> None:
    check_tensor(frames, "frames", 2, f"[n_frames, {FRAME_SIZE}]")
    if frames.shape[-1] != FRAME_SIZE:
        raise ValueError(
            f"frames must have shape [n_frames, {FRAME_SIZE}], found {tuple(frames.shape)}"
        )


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
        self.stride = STRIDES[0]
        self.first_padding = PADDINGS[0]
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
        for i in range(len(KERNEL_SIZES)):
            if i > 0:
                x = F.pad(x, (0, 0) + PADDINGS[i])
            # [frames, time, channels] viewed as a channels-last [frames, channels, time, 1].
            y = F.conv2d(x.transpose(1, 2)[..., None], getattr(self, f"weight{i}"))
            y = (y[..., 0].transpose(1, 2) + getattr(self, f"bias{i}")).relu_()
            sign = getattr(self, f"sign{i}")
            if sign is not None:
                y = y.mul_(sign)
            x = y.reshape(n_frames, y.shape[1] // 2, 2, y.shape[2]).amax(2)
        logits = F.linear(x.reshape(n_frames, -1), self.classifier_weight, self.classifier_bias)
        return torch.sigmoid(logits)
