"""YAML configs given as a file path or as the name of one shipped in the package."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from .errors import UserError


def shipped_names(package: str) -> list[str]:
    """Names (without ``.yaml``) of the configs in ``<package>/configs``."""
    folder = resources.files(package).joinpath("configs")
    return sorted(item.name[:-5] for item in folder.iterdir() if item.name.endswith(".yaml"))


def read_yaml(name_or_path: str | Path, package: str, kind: str) -> tuple[str, object]:
    """(source label, parsed YAML) of a file, or of a config shipped in ``package``.

    A real file wins over a shipped name; a name works with or without
    ``.yaml``. Raises :class:`UserError` naming the file for a missing,
    unreadable or malformed one.
    """
    path = Path(name_or_path)
    name = path.name if path.suffix == ".yaml" else f"{path.name}.yaml"
    shipped = resources.files(package).joinpath("configs").joinpath(name)
    if path.is_file():
        source, file = str(path), path
    elif path.parent == Path(".") and shipped.is_file():
        source, file = name, shipped
    else:
        raise UserError(
            f"no {kind} file {str(name_or_path)!r} and no shipped config of that name; "
            f"give a YAML path or one of: {', '.join(shipped_names(package))}"
        )
    try:
        return source, yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as error:
        raise UserError(f"{source}: cannot read the {kind} file ({error})") from error
    except yaml.YAMLError as error:
        raise UserError(f"{source}: malformed YAML, {yaml_problem(error)}") from error


def yaml_problem(error: yaml.YAMLError) -> str:
    """One line: where and what, from PyYAML's multi-line message."""
    mark = getattr(error, "problem_mark", None)
    problem = getattr(error, "problem", None)
    if mark is not None and problem:
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return " ".join(str(error).split())
