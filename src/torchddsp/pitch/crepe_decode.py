"""CREPE's bins to f0: cents of each bin, and the weighted, Viterbi and argmax decoders.

Bin ``k`` stands for ``cents = 20 k + 1997.3794...`` above 10 Hz,
``f0 = 10 * 2 ** (cents / 1200)`` (32.7 Hz to 1975.5 Hz).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..functional._checks import check_choice, check_tensor
from .crepe_layers import N_BINS
from .viterbi import crepe_transition, viterbi_decode

CENTS_PER_BIN = 20.0
CENTS_OFFSET = 1997.3794084376191  # cents of bin 0 above 10 Hz, CREPE's mapping
DECODERS = ("weighted", "viterbi", "argmax")
_LOCAL_RADIUS = 4  # the weighted average spans the argmax and 4 bins on each side
# CREPE's Viterbi observes the argmax bin, emitted by the true state with
# probability 0.1 + 0.9 / 360 and by any other with 0.9 / 360.
_SELF_EMISSION = 0.1


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
