"""The models the page may name: ``torchddsp models``' list, each with its kind.

The page sends a model's name; it reaches :func:`torchddsp.models.load_model`
only once it is found in this list, so a path (``../x``, ``/etc/passwd``, a
checkpoint elsewhere on disk) is refused before it touches the filesystem.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

log = logging.getLogger("torchddsp.app")
INSTRUMENT, VOICE = "instrument", "voice"


@dataclass(frozen=True)
class ModelEntry:
    name: str
    origin: str  # bundled or user
    kind: str  # instrument or voice
    step: int  # training steps


_described: dict[tuple[Path, float], tuple[str, int]] = {}
_lock = threading.Lock()


def model_entries() -> list[ModelEntry]:
    """Bundled and user models by name; an unreadable user file is left out (and logged)."""
    from ..models import available_models

    entries = []
    for name, (origin, path) in sorted(available_models().items()):
        try:
            kind, step = _describe(path)
        except UserError as err:
            log.warning("model %s left out of the list: %s", name, err)
            continue
        entries.append(ModelEntry(name, origin, kind, step))
    return entries


def checked_model_name(name: object, kind: str) -> str:
    """``name`` if it is a listed model of ``kind``; a UserError naming the choices if not."""
    names = [entry.name for entry in model_entries() if entry.kind == kind]
    if isinstance(name, str) and name in names:
        return name
    if not names:
        raise UserError(f"no {kind} model is installed")
    shown = repr(name)[:60] if isinstance(name, str) else "none"
    raise UserError(f"unknown {kind} model {shown}: choose one of {', '.join(names)}")


def load_listed(name: str, kind: str):
    """The listed model ``name`` of ``kind``, loaded (a TrainedModel) from its listed file."""
    from ..models import available_models, load_model

    origin, path = available_models()[checked_model_name(name, kind)]
    return load_model(path)


def _describe(path: Path) -> tuple[str, int]:
    """(kind, step) of a checkpoint file, read once per version of the file."""
    from ..config import config_from_dict
    from ..models.saved import read_checkpoint

    key = (path, path.stat().st_mtime)
    with _lock:
        if key not in _described:
            contents = read_checkpoint(path)
            kind = config_from_dict(contents["config"], str(path)).model.kind
            _described[key] = (kind, int(contents["step"]))
        return _described[key]
