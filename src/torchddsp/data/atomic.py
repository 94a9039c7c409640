"""Atomic file output: write to a temporary file beside the target, then rename."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import UserError


def check_writable(path: str | os.PathLike) -> Path:
    """``path`` as a Path, once its folder exists (made if missing) and takes new files.

    Raises :class:`UserError` naming the path and why not, so a long job can
    refuse at once instead of failing at its end.
    """
    path = Path(path)
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    except OSError as err:
        raise UserError(f"cannot write {path}: {err.strerror or err}") from None
    os.close(fd)
    os.unlink(probe)
    return path


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` only if the block succeeds.

    An interrupted or failed write leaves neither a partial file nor the
    temporary one; an existing file at ``path`` stays untouched until then.
    """
    path = check_writable(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide outputs from other users
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_output(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def check_same_settings(manifest_path: Path, settings: dict) -> None:
    """Refuse to resume into a folder written with other settings (it would mix two datasets).

    ``manifest_path`` is a JSON file whose ``settings`` the folder was written with.
    """
    if not manifest_path.is_file():
        return
    previous = json.loads(manifest_path.read_text()).get("settings") or {}
    changed = [
        f"{k} {previous.get(k)!r}, not {v!r}" for k, v in settings.items() if previous.get(k) != v
    ]
    if changed:
        raise UserError(
            f"{manifest_path.parent} holds a dataset written with other settings "
            f"({'; '.join(changed)}): write to another folder or delete it"
        )
