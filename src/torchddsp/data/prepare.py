"""Turn a folder of recordings into a training dataset (``torchddsp prepare``).

Each audio file (any format soundfile reads, found recursively) is loaded at
``sample_rate`` and downmixed; its features are computed once on the whole
file with :func:`torchddsp.features.compute_features`, then the audio and the
matching frames are cut into examples of ``example_seconds`` every
``hop_seconds``. Decisions:

- Examples start on whole frames, so example ``k`` of a region starting at
  frame ``f`` holds samples ``(f + k * step) * hop ...`` and frames
  ``f + k * step ...`` of the whole-file arrays. The last partial example is
  dropped (no zero padding: the model would learn silence that is not there).
- Split: with two or more files, by file (overlapping windows of one
  recording never land in both splits); validation files are drawn with
  ``seed`` until they hold at most ``val_fraction`` of the examples (at least
  one file, at least one file left for training). With one file, by time:
  the last ``val_fraction`` of it (at least one example) is validation.
- Statistics come from the train split's note frames: ``f0_confidence >=
  CONFIDENT`` and ``loudness_db > NOTE_MIN_LOUDNESS_DB``, each frame once
  (Magenta's ``compute_dataset_statistics``: mean pitch, mean loudness, and a
  loudness quantile table for the quantile mapping of timbre transfer).
- Files that are unreadable, too short for one example or silent (peak below
  -80 dBFS) are skipped and listed with the reason.

On disk (``out_dir``)::

    manifest.json          written last, atomically; the dataset is valid iff it is
    train/audio.npy        [N, example_samples] float32
    train/f0_hz.npy, train/f0_confidence.npy, train/loudness_db.npy
                           [N, example_frames] float32
    train/sources.npy      [N, 2] int64: index into manifest["files"], first sample
    val/...                the same arrays
    .cache/<key>.npz       per-file audio and features, keyed by the file's path,
                           size, mtime and the feature settings: a rerun only
                           computes new or changed files

The split arrays are built in ``.partial-*`` inside ``out_dir`` and moved into
place at the end, so an interrupted run leaves the previous dataset (or
nothing) and its cache; the next run picks up from the cache.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..errors import UserError
from ..features import (
    F0_METHODS,
    SILENCE_PEAK,
    SPIKE_SECONDS,
    compute_features,
    pad_to_hop,
)
from ..functional._checks import check_choice
from .atomic import atomic_output, write_bytes_atomic
from .audio import load_audio
from .dataset import (
    ARRAY_NAMES,
    FEATURE_NAMES,
    FORMAT_VERSION,
    MANIFEST_NAME,
    SOURCES_NAME,
    SPLITS,
)
from .examples import (
    ExampleLayout,
    Source,
    assign_regions,
    count_examples,
    example_layout,
    file_entry,
    layout_entry,
    split_entries,
)
from .statistics import NOTE_MIN_LOUDNESS_DB, note_statistics, train_statistics

__all__ = [
    "AUDIO_EXTENSIONS",
    "NOTE_MIN_LOUDNESS_DB",
    "PreparedDataset",
    "note_statistics",
    "prepare_dataset",
    "tracker_parameters",
]

# Extensions of the formats libsndfile reads (others are listed as skipped, not opened).
AUDIO_EXTENSIONS = frozenset(
    (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc")
    + (".au", ".snd", ".caf", ".w64", ".rf64", ".voc", ".sd2", ".nist", ".sph")
)
EXPECTED_AUDIO = "wav, flac, ogg, mp3, aiff, ..."
NOT_AUDIO = "not audio"  # Reason given to files skipped by their extension.
CACHE_DIR = ".cache"
PARTIAL_PREFIX = ".partial-"
_CACHE_VERSION = 1


@dataclass(frozen=True)
class PreparedDataset:
    """What :func:`prepare_dataset` wrote: the directory, its manifest, and this run's work."""

    path: Path
    manifest: dict
    n_computed: int  # files whose features were computed in this run (the rest came from cache)


class _Skipped(Exception):
    """A file that cannot contribute examples; the message is the reason."""


def prepare_dataset(
    audio_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    sample_rate: int = 16000,
    frame_rate: int = 250,
    example_seconds: float = 4.0,
    hop_seconds: float = 1.0,
    f0_method: str = "yin",
    val_fraction: float = 0.1,
    seed: int = 0,
    labels: Mapping[str, dict] | None = None,
) -> PreparedDataset:
    """Prepare the recordings under ``audio_dir`` as a dataset in ``out_dir`` (see module notes).

    ``labels`` (a voice dataset's) maps clip paths relative to ``audio_dir`` to
    ``{"split", "speaker", "gender", "age"}``: only those clips are prepared,
    each in its given split, its labels kept in the manifest.
    Raises :class:`UserError` when ``audio_dir`` holds no usable audio,
    ``out_dir`` holds something else, or the settings do not fit together.
    Shape: files -> arrays [N, example_samples] and [N, example_frames] per split.
    """
    try:  # the settings are the user's, whichever check refuses them
        layout = example_layout(sample_rate, frame_rate, example_seconds, hop_seconds)
        check_choice(f0_method, "f0_method", F0_METHODS)
    except ValueError as err:
        raise UserError(str(err)) from None
    if not 0 <= val_fraction < 1:
        raise UserError(f"val_fraction must be within [0, 1), found {val_fraction}")
    audio_dir, out_dir = Path(audio_dir).resolve(), Path(out_dir).resolve()
    audio_paths, skipped = _find_files(audio_dir, out_dir)
    if labels is not None:
        audio_paths = [p for p in audio_paths if p.relative_to(audio_dir).as_posix() in labels]
    _check_out_dir(out_dir)
    settings = {
        "sample_rate": sample_rate,
        "frame_rate": frame_rate,
        "example_seconds": example_seconds,
        "hop_seconds": hop_seconds,
        "f0_method": f0_method,
        "f0_parameters": tracker_parameters(f0_method),
        "val_fraction": val_fraction,
        "seed": seed,
    }
    sources, n_computed = _load_sources(audio_dir, audio_paths, out_dir, layout, settings, skipped)
    if labels is not None:
        _attach_labels(sources, skipped, labels)
    if not sources:
        raise UserError(f"{audio_dir} has no usable recording ({_first_reasons(skipped)})")
    split_method = assign_regions(sources, layout, val_fraction, seed)
    counts = {split: count_examples(sources, layout, split) for split in SPLITS}
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_by": f"torchddsp {__version__}",
        "audio_dir": str(audio_dir),
        "settings": settings,
        "layout": layout_entry(layout),
        "split_method": split_method,
        "splits": split_entries(sources, layout, counts),
        "files": [file_entry(source, layout) for source in sources],
        "skipped": skipped,
        "statistics": train_statistics(sources, layout),
    }
    _write_dataset(out_dir, sources, layout, counts, manifest)
    return PreparedDataset(out_dir, manifest, n_computed)


def _attach_labels(sources: list[Source], skipped: list[dict], labels: Mapping[str, dict]):
    """Each listed clip's labels on its source; a skipped clip's reason says the fix."""
    for source in sources:
        source.labels = dict(labels[source.name])
    for entry in skipped:
        if entry["path"] in labels:
            entry["reason"] += "; remove its row from the list of clips to drop this note"


def tracker_parameters(f0_method: str) -> dict:
    """The f0 tracker's settings as :func:`compute_features` calls it, for the manifest."""
    check_choice(f0_method, "f0_method", F0_METHODS)
    if f0_method == "yin":
        from ..pitch.yin import yin as tracker

        fixed = {}
    else:
        from ..pitch.crepe import crepe as tracker

        fixed = {"capacity": f0_method.split("-")[1]}
    parameters = inspect.signature(tracker).parameters.values()
    defaults = {p.name: p.default for p in parameters if p.default not in (None, p.empty)}
    return defaults | fixed | {"spike_seconds": SPIKE_SECONDS}  # remove_f0_spikes


# ------------------------------------------------------------------ inputs


def _find_files(audio_dir: Path, out_dir: Path) -> tuple[list[Path], list[dict]]:
    """Audio files by extension, and the other files as skipped entries.

    Hidden files and the output directory (when it lies inside) are ignored.
    """
    if not audio_dir.is_dir():
        raise UserError(f"{audio_dir}: no such directory; pass the folder holding your recordings")
    audio, other = [], []
    for path in sorted(audio_dir.rglob("*")):
        relative = path.relative_to(audio_dir)
        hidden = any(part.startswith(".") for part in relative.parts)
        if hidden or not path.is_file() or path.is_relative_to(out_dir):
            continue
        (audio if path.suffix.lower() in AUDIO_EXTENSIONS else other).append(path)
    if not audio:
        found = f"only {len(other)} non-audio files" if other else "nothing"
        raise UserError(f"{audio_dir} holds {found}; expected recordings ({EXPECTED_AUDIO})")
    skipped = [
        {
            "path": p.relative_to(audio_dir).as_posix(),
            "reason": f"{NOT_AUDIO} ({p.suffix or 'no'} extension)",
        }
        for p in other
    ]
    return audio, skipped


def _first_reasons(skipped: list[dict], count: int = 3) -> str:
    audio = [
        f"{s['path']}: {s['reason']}" for s in skipped if not s["reason"].startswith(NOT_AUDIO)
    ]
    more = f"; {len(audio) - count} more" if len(audio) > count else ""
    return "; ".join(audio[:count]) + more


def _check_out_dir(out_dir: Path) -> None:
    """Refuse a folder holding anything but a dataset: rerunning replaces its contents."""
    ours = {MANIFEST_NAME, CACHE_DIR, *SPLITS}
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise UserError(f"{out_dir} is a file: pass a new or empty folder as OUT_DIR")
    foreign = [
        p.name
        for p in out_dir.iterdir()
        if p.name not in ours and not p.name.startswith(PARTIAL_PREFIX)
    ]
    if foreign:
        raise UserError(
            f"{out_dir} holds other files ({', '.join(sorted(foreign)[:3])}, ...): "
            "pass a new or empty folder as OUT_DIR"
        )


def _cache_key(path: Path, settings: dict) -> str:
    stat = path.stat()
    identity = {
        "path": str(path),
        "size": stat.st_size,
        "mtime_ns": stat.st_mtime_ns,
        "cache_version": _CACHE_VERSION,
        **{k: settings[k] for k in ("sample_rate", "frame_rate", "f0_method", "f0_parameters")},
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]


def _load_sources(audio_dir, audio_paths, out_dir, layout, settings, skipped):
    """Sources with cached features, computing the missing ones; appends to ``skipped``."""
    cache_dir = out_dir / CACHE_DIR
    sources, n_computed = [], 0
    for path in tqdm(audio_paths, desc="prepare: features", unit="file"):
        name = path.relative_to(audio_dir).as_posix()
        cache_path = cache_dir / f"{_cache_key(path, settings)}.npz"
        try:
            n_samples = _cached_length(cache_path)
            if n_samples is None:
                n_samples = _compute_into_cache(path, cache_path, layout, settings["f0_method"])
                n_computed += 1
            _check_length(n_samples, layout)
        except _Skipped as skip:
            skipped.append({"path": name, "reason": str(skip)})
            continue
        sources.append(Source(name, n_samples, cache_path))
    return sources, n_computed


def _cached_length(cache_path: Path) -> int | None:
    """The cached file's length in samples, or None when there is no usable cache."""
    try:
        with np.load(cache_path) as cached:
            return int(cached["n_samples"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _check_length(n_samples: int, layout: ExampleLayout) -> None:
    if n_samples < layout.example_samples:
        raise _Skipped(
            f"too short ({n_samples / layout.sample_rate:.2f} s; one example needs "
            f"{layout.example_samples / layout.sample_rate:g} s)"
        )


def _compute_into_cache(path: Path, cache_path: Path, layout: ExampleLayout, f0_method: str) -> int:
    """Load, check and analyse one file, store audio and features; returns its length."""
    try:
        audio, _ = load_audio(path, layout.sample_rate)
    except UserError as err:
        raise _Skipped(str(err).removeprefix(f"{path}: ")) from None
    _check_length(len(audio), layout)
    if np.abs(audio).max() < SILENCE_PEAK:
        raise _Skipped("silent (peak below -80 dBFS)")
    waveform = pad_to_hop(torch.from_numpy(audio)[None], layout.hop_size)
    with torch.inference_mode():
        features = compute_features(waveform, layout.sample_rate, layout.frame_rate, f0_method)
    arrays = {name: value[0].numpy().astype(np.float32) for name, value in features.items()}
    with atomic_output(cache_path) as tmp, open(tmp, "wb") as file:
        np.savez(file, audio=audio, n_samples=len(audio), **arrays)
    return len(audio)


def _read_cache(source: Source) -> dict[str, np.ndarray]:
    with np.load(source.cache_path) as cached:
        return {name: cached[name] for name in ARRAY_NAMES}


# ------------------------------------------------------------------ output


def _write_dataset(out_dir: Path, sources, layout, counts, manifest) -> None:
    """Build the split arrays aside, swap them in, then write the manifest."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for stale in out_dir.glob(f"{PARTIAL_PREFIX}*"):  # Left by a killed run.
        shutil.rmtree(stale)
    partial = Path(tempfile.mkdtemp(prefix=PARTIAL_PREFIX, dir=out_dir))
    try:
        for split in SPLITS:
            _write_split(partial / split, sources, layout, split, counts[split])
        # Without a manifest the directory reads as unfinished while old and new swap.
        (out_dir / MANIFEST_NAME).unlink(missing_ok=True)
        for split in SPLITS:
            if (out_dir / split).exists():
                shutil.rmtree(out_dir / split)
            os.replace(partial / split, out_dir / split)
        write_bytes_atomic(out_dir / MANIFEST_NAME, json.dumps(manifest, indent=1).encode())
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    _prune_cache(out_dir / CACHE_DIR, {source.cache_path for source in sources})


def _write_split(
    directory: Path, sources, layout: ExampleLayout, split: str, n_examples: int
) -> None:
    directory.mkdir()
    widths = {"audio": layout.example_samples, SOURCES_NAME: 2}
    arrays = {
        name: np.lib.format.open_memmap(
            directory / f"{name}.npy",
            mode="w+",
            dtype=np.int64 if name == SOURCES_NAME else np.float32,
            shape=(n_examples, widths.get(name, layout.example_frames)),
        )
        for name in (*ARRAY_NAMES, SOURCES_NAME)
    }
    row = 0
    for index, source in enumerate(
        tqdm(sources, desc=f"prepare: {split}", unit="file", leave=False)
    ):
        if split not in source.regions:
            continue
        starts = layout.starts(*source.regions[split])
        rows = slice(row, row + len(starts))
        _fill_examples(arrays, rows, _read_cache(source), starts, layout)
        arrays[SOURCES_NAME][rows] = np.stack(
            [np.full_like(starts, index), starts * layout.hop_size], 1
        )
        row += len(starts)
    for array in arrays.values():
        array.flush()


def _fill_examples(
    arrays, rows: slice, whole: dict[str, np.ndarray], starts, layout: ExampleLayout
):
    """Rows ``rows`` get the windows of ``whole`` starting at frames ``starts``."""
    frames = starts[:, None] + np.arange(layout.example_frames)
    for name in FEATURE_NAMES:
        arrays[name][rows] = whole[name][frames]
    windows = np.lib.stride_tricks.sliding_window_view(whole["audio"], layout.example_samples)
    arrays["audio"][rows] = windows[starts * layout.hop_size]


def _prune_cache(cache_dir: Path, used: set[Path]) -> None:
    """Drop entries of files that changed or left, so the cache does not grow without end."""
    for path in cache_dir.glob("*.npz"):
        if path not in used:
            path.unlink()
