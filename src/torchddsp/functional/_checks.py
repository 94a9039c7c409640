"""Argument validation shared by the public entry points.

Every check raises ``ValueError`` naming the argument and what was found, so a
wrong shape fails at the call that caused it rather than deep inside a kernel.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def check_tensor(x: object, name: str, ndim: int | Sequence[int], shape: str) -> None:
    """Require ``x`` to be a floating tensor with one of the given ranks."""
    if not isinstance(x, torch.Tensor):
        raise ValueError(
            f"{name} must be a torch.Tensor of shape {shape}, found {type(x).__name__}"
        )
    ranks = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in ranks:
        raise ValueError(f"{name} must have shape {shape}, found shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, found dtype {x.dtype}")


def check_single_channel(x: object, name: str) -> None:
    """Require a frame-rate control with one channel, [batch, n_frames, 1]."""
    check_tensor(x, name, 3, "[batch, n_frames, 1]")
    if x.shape[-1] != 1:
        raise ValueError(f"{name} must have shape [batch, n_frames, 1], found {tuple(x.shape)}")


def check_same_leading(
    a: torch.Tensor, b: torch.Tensor, a_name: str, b_name: str, dims: int
) -> None:
    """Require the first ``dims`` sizes of two tensors to agree (batch, frames...)."""
    if a.shape[:dims] != b.shape[:dims]:
        raise ValueError(
            f"{a_name} and {b_name} must agree in their first {dims} dimensions, "
            f"found shapes {tuple(a.shape)} and {tuple(b.shape)}"
        )


def check_positive(value: float, name: str) -> None:
    """Require a strictly positive number (sample rates, sizes, lengths)."""
    if not value > 0:
        raise ValueError(f"{name} must be positive, found {value}")


def check_positive_int(value: object, name: str) -> None:
    """Require a strictly positive ``int`` (not a bool, not a float): sizes, counts, hops."""
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, found {value!r}")


def check_stream_state(
    state: object, key: str, min_length: int, batch_size: int | None = None
) -> None:
    """Require ``state[key]`` to be a stream's buffer ``[batch_size, >= min_length]``."""
    if not isinstance(state, dict):
        raise ValueError(f"state must be the dict from init_state, found {type(state).__name__}")
    name = f"state[{key!r}]"
    expected = f"[batch={batch_size or 'batch'}, >= {min_length}]"
    buffer = state.get(key)
    check_tensor(buffer, name, 2, f"{expected} (from init_state)")
    wrong_batch = batch_size is not None and buffer.shape[0] != batch_size
    if wrong_batch or buffer.shape[-1] < min_length:
        raise ValueError(
            f"{name} must have shape {expected} (from init_state or forward_stream), "
            f"found {tuple(buffer.shape)}"
        )


def check_choice(value: str, name: str, choices: Sequence[str]) -> None:
    """Require ``value`` to be one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, found {value!r}")
