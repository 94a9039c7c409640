"""Reading a dataset written by :func:`torchddsp.data.prepare.prepare_dataset`.

The directory is valid only when ``manifest.json`` is there and readable: the
writer puts it last, so a reader never sees arrays of an unfinished run. The
arrays are opened memory-mapped on first access in each process, so a
``DataLoader`` with ``num_workers > 0`` shares the page cache, not copies.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
SPLITS = ("train", "val")
FEATURE_NAMES = ("f0_hz", "f0_confidence", "loudness_db")
ARRAY_NAMES = ("audio", *FEATURE_NAMES)
SOURCES_NAME = "sources"  # [N, 2] int64: index into manifest["files"], first sample
LABEL_NAMES = ("gender", "has_gender", "age", "has_age")
UNKNOWN_LABEL = 0.5  # the condition of an unlabelled voice: between the groups
REQUIRED_KEYS = ("format_version", "settings", "layout", "splits", "files", "skipped", "statistics")
REQUIRED_SETTINGS = ("sample_rate", "frame_rate", "example_seconds", "hop_seconds", "f0_method")


def _rerun_hint(path: Path) -> str:
    return f"run `torchddsp prepare AUDIO_DIR {path}`"


def read_manifest(path: str | os.PathLike) -> dict:
    """The manifest of the dataset directory ``path``, validated.

    Adds ``"path"``: the directory it was read from (the dataset may have moved
    since it was written). Raises :class:`UserError` when the manifest is
    missing (also after an interrupted prepare), corrupt, or of another format.
    """
    path = Path(path)
    manifest_path = path / MANIFEST_NAME
    if not manifest_path.is_file():
        raise UserError(
            f"{path} is not a prepared dataset (no {MANIFEST_NAME}): {_rerun_hint(path)}"
        )
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{manifest_path} is corrupt ({err}): {_rerun_hint(path)}") from None
    _check_manifest(manifest, manifest_path)
    manifest["path"] = str(path)
    return manifest


def _check_manifest(manifest: object, manifest_path: Path) -> None:
    hint = _rerun_hint(manifest_path.parent)
    if not isinstance(manifest, dict):
        raise UserError(f"{manifest_path} is not a dataset manifest: {hint}")
    version = manifest.get("format_version")
    if version != FORMAT_VERSION:
        raise UserError(
            f"{manifest_path} has format version {version!r}, this torchddsp reads "
            f"version {FORMAT_VERSION}: {hint} again"
        )
    missing = [key for key in REQUIRED_KEYS if key not in manifest]
    missing += [f"settings.{key}" for key in REQUIRED_SETTINGS if key not in manifest["settings"]]
    missing += [f"splits.{split}" for split in SPLITS if split not in manifest["splits"]]
    if missing:
        raise UserError(f"{manifest_path} lacks {', '.join(missing)}: {hint} again")


def dataset_statistics(path: str | os.PathLike) -> dict:
    """Pitch and loudness statistics of the train split's note frames (see prepare)."""
    return read_manifest(path)["statistics"]


def check_dataset_matches(manifest: dict, sample_rate: int, frame_rate: int) -> None:
    """Raise :class:`UserError` when the dataset's rates differ from the config's."""
    settings = manifest["settings"]
    prepared = {"sample_rate": settings["sample_rate"], "frame_rate": settings["frame_rate"]}
    wanted = {"sample_rate": sample_rate, "frame_rate": frame_rate}
    differ = [key for key in wanted if prepared[key] != wanted[key]]
    if not differ:
        return
    asked = " / ".join(
        f"{wanted[key]} Hz{' frames' if key == 'frame_rate' else ''}" for key in differ
    )
    options = " ".join(f"--{key.replace('_', '-')} {wanted[key]}" for key in differ)
    overrides = " ".join(f"data.{key}={prepared[key]}" for key in differ)
    path, audio_dir = manifest.get("path", "DATASET"), manifest.get("audio_dir", "AUDIO_DIR")
    raise UserError(
        f"dataset {path} was prepared at {prepared['sample_rate']} Hz / "
        f"{prepared['frame_rate']} Hz frames, the config asks for {asked}: re-run "
        f"`torchddsp prepare {audio_dir} {path} {options}` or set {overrides}"
    )


class DDSPDataset(torch.utils.data.Dataset):
    """Examples of one split of a prepared dataset, as float32 tensors.

    ``dataset[i]`` is ``{"audio": [n_samples], "f0_hz": [n_frames],
    "f0_confidence": [n_frames], "loudness_db": [n_frames]}``, frame ``j``
    centred on audio sample ``j * sample_rate / frame_rate``. A labelled
    (voice) dataset adds scalars ``gender``, ``age`` (0.5 when unknown) and
    ``has_gender``, ``has_age``.
    Shape: -> dict of [example_samples] and [example_frames] tensors.
    """

    def __init__(self, path: str | os.PathLike, split: str = "train"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, found {split!r}")
        self.path = Path(path)
        self.split = split
        self.manifest = read_manifest(self.path)
        self.sample_rate = int(self.manifest["settings"]["sample_rate"])
        self.frame_rate = int(self.manifest["settings"]["frame_rate"])
        self._length = int(self.manifest["splits"][split]["n_examples"])
        self._arrays: dict[str, np.ndarray] | None = None
        self._open_arrays()  # Fails now, in the main process, if an array is missing.
        self._labels = self._example_labels()

    def _open_arrays(self) -> dict[str, np.ndarray]:
        layout = self.manifest["layout"]
        shapes = {"audio": (self._length, layout["example_samples"])}
        shapes.update({name: (self._length, layout["example_frames"]) for name in FEATURE_NAMES})
        arrays = {}
        for name, shape in shapes.items():
            array_path = self.path / self.split / f"{name}.npy"
            try:
                arrays[name] = np.load(array_path, mmap_mode="r")
            except (OSError, ValueError) as err:
                raise UserError(
                    f"{array_path} is missing or corrupt ({err}): {_rerun_hint(self.path)} again"
                ) from None
            if arrays[name].shape != shape or arrays[name].dtype != np.float32:
                raise UserError(
                    f"{array_path} holds {arrays[name].dtype} {arrays[name].shape}, the manifest "
                    f"says float32 {shape}: {_rerun_hint(self.path)} again"
                )
        return arrays

    def _example_labels(self) -> dict[str, np.ndarray]:
        """Each example's gender and age, from its clip's labels (none for unlabelled data)."""
        files = self.manifest["files"]
        if not files or "labels" not in files[0]:
            return {}
        per_file = {name: [] for name in LABEL_NAMES}
        for entry in files:
            for name in ("gender", "age"):
                value = entry["labels"].get(name)
                per_file[name].append(UNKNOWN_LABEL if value is None else value)
                per_file[f"has_{name}"].append(value is not None)
        sources_path = self.path / self.split / f"{SOURCES_NAME}.npy"
        try:
            file_index = np.load(sources_path)[:, 0]
        except (OSError, ValueError, IndexError) as err:
            raise UserError(
                f"{sources_path} is missing or corrupt ({err}): {_rerun_hint(self.path)} again"
            ) from None
        return {
            name: np.asarray(values, np.float32 if name in ("gender", "age") else bool)[file_index]
            for name, values in per_file.items()
        }

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if self._arrays is None:
            self._arrays = self._open_arrays()
        # np.array copies out of the read-only map; torch wants writable memory.
        arrays = {**self._arrays, **self._labels}
        return {name: torch.from_numpy(np.array(array[index])) for name, array in arrays.items()}

    def __getstate__(self) -> dict:
        # Workers open their own maps (pickling a memmap would copy the whole array).
        return {**self.__dict__, "_arrays": None}
