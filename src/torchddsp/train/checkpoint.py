"""Training checkpoints: atomic files, the last few kept, a corrupt newest one skipped.

The file format and its reading live in :mod:`torchddsp.models.saved`; a
training checkpoint adds what resuming needs:

- ``optimizer``, ``scheduler``, ``grad_scaler``: state dicts
- ``rng``: torch (and CUDA), numpy and python generator states
- ``data_position``: ``{"epoch", "batch_index"}`` of the next training batch
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..data.atomic import atomic_output, write_bytes_atomic
from ..errors import warn
from ..models.saved import (
    LATEST,
    checkpoint_path,
    list_checkpoints,
    read_latest_checkpoint,
    stamp,
)
from .distributed import is_main_process

KEEP_LAST = 3


def save_checkpoint(run_dir: str | Path, contents: dict, keep: int = KEEP_LAST) -> Path:
    """Write ``contents`` (with a ``step``) atomically, point ``latest`` at it, prune.

    A kill at any moment leaves the previous checkpoints and pointer intact.
    """
    path = checkpoint_path(run_dir, contents["step"])
    with atomic_output(path) as tmp:
        torch.save({**stamp(), **contents}, tmp)
    write_bytes_atomic(path.parent / LATEST, f"{path.name}\n".encode())
    for old in list_checkpoints(path.parent)[keep:]:
        old.unlink(missing_ok=True)
    return path


def read_run(run_dir: str | Path) -> tuple[dict, Path] | None:
    """The run's newest readable checkpoint; one process warns of a skipped torn file."""
    return read_latest_checkpoint(run_dir, warn=_warn)


def capture_rng_state() -> dict:
    """Every random generator training draws from, in a weights_only-loadable form."""
    # The legacy global generator is the one third-party code may draw from.
    kind, keys, position, has_gauss, cached_gauss = np.random.get_state()  # noqa: NPY002
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, cached_gauss],
        "python": random.getstate(),
    }


def restore_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    kind, keys, position, has_gauss, cached_gauss = state["numpy"]
    keys = keys.numpy().astype(np.uint32)
    np.random.set_state((kind, keys, position, has_gauss, cached_gauss))  # noqa: NPY002
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))


def _warn(message: str) -> None:
    if is_main_process():  # every process reads the checkpoint; one warning is enough
        warn(message)
