"""A trained model's saved form: checkpoint files and run directories, read back.

A run directory holds ``checkpoints/step_00001000.pt`` files and
``checkpoints/latest``, a text file naming the newest. Each file is a
``torch.save`` dict readable with ``weights_only=True``:

- ``format``, ``version``, ``torchddsp_version``, ``step``
- ``model``: the autoencoder's state dict; ``config``: the experiment config
- ``dataset``: the training data's manifest ``settings`` and ``statistics``,
  so inference uses the run's f0 tracker and loudness/pitch statistics
- training checkpoints add ``optimizer``, ``scheduler``, ``grad_scaler``,
  ``rng`` and ``data_position`` (see :mod:`torchddsp.train.checkpoint`)

Training writes these files; inference reads them here, without importing
the trainer.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Callable
from pathlib import Path

import torch

from .. import __version__
from ..data.atomic import atomic_output
from ..errors import UserError, warn

FORMAT = "torchddsp-checkpoint"
VERSION = 1
CHECKPOINT_DIR = "checkpoints"
LATEST = "latest"
_NAME = re.compile(r"^step_(\d{8})\.pt$")
_REQUIRED = ("step", "model", "config", "dataset")
# What a torn or foreign file raises from torch.load.
_UNREADABLE = (RuntimeError, EOFError, OSError, ValueError, pickle.UnpicklingError)


def checkpoint_path(run_dir: str | Path, step: int) -> Path:
    return Path(run_dir) / CHECKPOINT_DIR / f"step_{step:08d}.pt"


def stamp() -> dict:
    """The format fields every saved file starts with."""
    return {"format": FORMAT, "version": VERSION, "torchddsp_version": __version__}


def list_checkpoints(folder: str | Path) -> list[Path]:
    """Checkpoint files in ``folder``, newest (highest step) first."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _NAME.match(p.name)]
    return sorted(found, key=lambda p: p.name, reverse=True)


def read_checkpoint(path: str | Path) -> dict:
    """The contents of one checkpoint file; ``UserError`` if missing or unreadable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"no checkpoint at {path}; pass a .pt file or a run directory")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=True)
    except _UNREADABLE as err:
        reason = type(err).__name__  # torch's own messages run to paragraphs about pickling
        raise UserError(
            f"{path} is not a readable torchddsp model ({reason}): pass a checkpoint or an "
            "exported model file"
        ) from None
    if not isinstance(contents, dict) or contents.get("format") != FORMAT:
        raise UserError(f"{path} is not a torchddsp checkpoint")
    missing = [key for key in _REQUIRED if key not in contents]
    if missing:
        raise UserError(f"checkpoint {path} lacks {', '.join(missing)}; it is incomplete")
    return contents


def read_latest_checkpoint(
    run_dir: str | Path, warn: Callable[[str], None] = warn
) -> tuple[dict, Path] | None:
    """Newest readable checkpoint of a run, or None if it has none yet.

    An unreadable newer file (a crash mid-write on a filesystem without atomic
    rename, a truncated copy) is skipped with a one-line warning.
    """
    candidates = list_checkpoints(Path(run_dir) / CHECKPOINT_DIR)
    for path in candidates:
        try:
            return read_checkpoint(path), path
        except UserError as err:
            warn(f"{err}; falling back to the previous checkpoint")
    if candidates:
        raise UserError(
            f"no readable checkpoint in {Path(run_dir) / CHECKPOINT_DIR}; "
            "delete it or choose another train.run_dir"
        )
    return None


def resolve_checkpoint(path_or_run_dir: str | Path) -> tuple[dict, Path]:
    """Contents and path of a checkpoint file, or of a run directory's newest one."""
    path = Path(path_or_run_dir)
    if path.is_file():
        return read_checkpoint(path), path
    run_dir = path.parent if path.name == CHECKPOINT_DIR else path
    found = read_latest_checkpoint(run_dir) if run_dir.is_dir() else None
    if found is None:
        raise UserError(
            f"no checkpoint at {path}; pass a run directory written by torchddsp train "
            "or one of its checkpoints/step_*.pt files"
        )
    return found


def export_model(path_or_run_dir: str | Path, target: str | Path) -> Path:
    """Write the newest checkpoint's weights, config and dataset metadata only.

    The result (a few MB: no optimizer, schedule or RNG state) loads as a named
    model (:func:`torchddsp.models.load_model`); written atomically.
    """
    contents, _ = resolve_checkpoint(path_or_run_dir)
    kept = {key: contents[key] for key in ("format", "version", "torchddsp_version", *_REQUIRED)}
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(target) as tmp:
        torch.save(kept, tmp)
    return target


def build_model(config) -> torch.nn.Module:
    """The autoencoder an experiment config describes (``model.kind``), freshly initialised."""
    from .autoencoder import Autoencoder
    from .voice import VoiceAutoencoder

    kind = VoiceAutoencoder if config.model.kind == "voice" else Autoencoder
    return kind(config.model, config.data.sample_rate, config.data.frame_rate)


def load_checkpoint(
    path_or_run_dir: str | Path, device: str | torch.device = "cpu"
) -> tuple[torch.nn.Module, object, dict]:
    """(model in eval mode, ExperimentConfig, metadata) from a checkpoint or run directory.

    ``metadata`` holds ``path``, ``step`` and ``dataset`` (the training data's
    manifest ``settings`` and ``statistics``).
    """
    from ..config import config_from_dict

    contents, path = resolve_checkpoint(path_or_run_dir)
    config = config_from_dict(contents["config"])
    model = build_model(config)
    try:
        model.load_state_dict(contents["model"])
    except RuntimeError as err:
        first = str(err).splitlines()[0][:120]
        raise UserError(f"{path}: its weights do not fit its own config ({first})") from None
    metadata = {"path": path, "step": contents["step"], "dataset": contents["dataset"]}
    return model.to(device).eval(), config, metadata
