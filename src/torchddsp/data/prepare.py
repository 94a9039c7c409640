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
import math
import os
import shutil
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..errors import UserError
from ..features import (
    CONFIDENT,
    F0_METHODS,
    SILENCE_PEAK,
    SPIKE_SECONDS,
    compute_features,
    pad_to_hop,
)
from ..functional._checks import check_choice
from ..functional.core import hz_to_midi
from ..functional.spectral import frame_hop_size
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

# Extensions of the formats libsndfile reads (others are listed as skipped, not opened).
AUDIO_EXTENSIONS = frozenset(
    (".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".mp3", ".aif", ".aiff", ".aifc")
    + (".au", ".snd", ".caf", ".w64", ".rf64", ".voc", ".sd2", ".nist", ".sph")
)
EXPECTED_AUDIO = "wav, flac, ogg, mp3, aiff, ..."
NOT_AUDIO = "not audio"  # Reason given to files skipped by their extension.
NOTE_MIN_LOUDNESS_DB = -60.0  # Quieter frames are release tails and room noise, not notes.
PITCH_QUANTILE_LEVELS = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
N_LOUDNESS_QUANTILES = 101  # 0, 1, ..., 100 %
CACHE_DIR = ".cache"
PARTIAL_PREFIX = ".partial-"
_CACHE_VERSION = 1


@dataclass(frozen=True)
class PreparedDataset:
    """What :func:`prepare_dataset` wrote: the directory, its manifest, and this run's work."""

    path: Path
    manifest: dict
    n_computed: int  # files whose features were computed in this run (the rest came from cache)


@dataclass(frozen=True)
class _Layout:
    sample_rate: int
    frame_rate: int
    example_frames: int
    step_frames: int

    @property
    def hop_size(self) -> int:
        return frame_hop_size(self.sample_rate, self.frame_rate)

    @property
    def example_samples(self) -> int:
        return self.example_frames * self.hop_size

    def starts(self, first_frame: int, end_frame: int) -> np.ndarray:
        """First frames of the whole examples within frames [first_frame, end_frame)."""
        return np.arange(first_frame, end_frame - self.example_frames + 1, self.step_frames)


@dataclass
class _Source:
    name: str  # path relative to the audio directory
    n_samples: int
    cache_path: Path
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)  # split -> frames [a, b)

    def n_frames(self, layout: _Layout) -> int:
        return self.n_samples // layout.hop_size  # Frames wholly inside the audio.


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
) -> PreparedDataset:
    """Prepare the recordings under ``audio_dir`` as a dataset in ``out_dir`` (see module notes).

    Raises :class:`UserError` when ``audio_dir`` holds no usable audio,
    ``out_dir`` holds something else, or the settings do not fit together.
    Shape: files -> arrays [N, example_samples] and [N, example_frames] per split.
    """
    try:  # the settings are the user's, whichever check refuses them
        layout = _layout(sample_rate, frame_rate, example_seconds, hop_seconds)
        check_choice(f0_method, "f0_method", F0_METHODS)
    except ValueError as err:
        raise UserError(str(err)) from None
    if not 0 <= val_fraction < 1:
        raise UserError(f"val_fraction must be within [0, 1), found {val_fraction}")
    audio_dir, out_dir = Path(audio_dir).resolve(), Path(out_dir).resolve()
    audio_paths, skipped = _find_files(audio_dir, out_dir)
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
    if not sources:
        raise UserError(f"{audio_dir} has no usable recording ({_first_reasons(skipped)})")
    split_method = _assign_regions(sources, layout, val_fraction, seed)
    counts = {split: _count_examples(sources, layout, split) for split in SPLITS}
    manifest = {
        "format_version": FORMAT_VERSION,
        "created_by": f"torchddsp {__version__}",
        "audio_dir": str(audio_dir),
        "settings": settings,
        "layout": _layout_entry(layout),
        "split_method": split_method,
        "splits": _split_entries(sources, layout, counts),
        "files": [_file_entry(source, layout) for source in sources],
        "skipped": skipped,
        "statistics": _train_statistics(sources, layout),
    }
    _write_dataset(out_dir, sources, layout, counts, manifest)
    return PreparedDataset(out_dir, manifest, n_computed)


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


def _whole_frames(seconds: float, frame_rate: int, name: str) -> int:
    frames = seconds * frame_rate
    if not (frames >= 1 and abs(frames - round(frames)) < 1e-6):
        raise ValueError(
            f"{name} must be a positive whole number of frames at {frame_rate} Hz, "
            f"found {seconds} s"
        )
    return round(frames)


def _layout(sample_rate, frame_rate, example_seconds, hop_seconds) -> _Layout:
    frame_hop_size(sample_rate, frame_rate)  # Raises unless frame_rate divides sample_rate.
    example_frames = _whole_frames(example_seconds, frame_rate, "example_seconds")
    step_frames = _whole_frames(hop_seconds, frame_rate, "hop_seconds")
    return _Layout(sample_rate, frame_rate, example_frames, step_frames)


def _layout_entry(layout: _Layout) -> dict:
    return {
        "hop_size": layout.hop_size,
        "example_samples": layout.example_samples,
        "example_frames": layout.example_frames,
        "step_frames": layout.step_frames,
    }


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
        sources.append(_Source(name, n_samples, cache_path))
    return sources, n_computed


def _cached_length(cache_path: Path) -> int | None:
    """The cached file's length in samples, or None when there is no usable cache."""
    try:
        with np.load(cache_path) as cached:
            return int(cached["n_samples"])
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _check_length(n_samples: int, layout: _Layout) -> None:
    if n_samples < layout.example_samples:
        raise _Skipped(
            f"too short ({n_samples / layout.sample_rate:.2f} s; one example needs "
            f"{layout.example_samples / layout.sample_rate:g} s)"
        )


def _compute_into_cache(path: Path, cache_path: Path, layout: _Layout, f0_method: str) -> int:
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


def _read_cache(source: _Source) -> dict[str, np.ndarray]:
    with np.load(source.cache_path) as cached:
        return {name: cached[name] for name in ARRAY_NAMES}


# ------------------------------------------------------------------ split


def _assign_regions(sources: list[_Source], layout: _Layout, val_fraction: float, seed: int) -> str:
    """Set each source's frame regions per split; returns how it split."""
    if val_fraction == 0:
        for source in sources:
            source.regions = {"train": (0, source.n_frames(layout))}
        return "none"
    if len(sources) == 1:
        _split_by_time(sources[0], layout, val_fraction)
        return "by_time"
    _split_by_file(sources, layout, val_fraction, seed)
    return "by_file"


def _split_by_time(source: _Source, layout: _Layout, val_fraction: float) -> None:
    n_frames = source.n_frames(layout)
    boundary = n_frames - max(math.ceil(val_fraction * n_frames), layout.example_frames)
    if boundary < layout.example_frames:
        raise UserError(
            f"{source.name} is too short for both a training and a validation example: "
            "add recordings, or pass --val-fraction 0"
        )
    source.regions = {"train": (0, boundary), "val": (boundary, n_frames)}


def _split_by_file(sources: list[_Source], layout: _Layout, val_fraction: float, seed: int):
    counts = [len(layout.starts(0, source.n_frames(layout))) for source in sources]
    target = val_fraction * sum(counts)
    val, n_val = set(), 0
    for index in np.random.default_rng(seed).permutation(len(sources)):
        if n_val + counts[index] <= target and len(val) < len(sources) - 1:
            val.add(index)
            n_val += counts[index]
    if not val:  # Every file alone exceeds the target: the smallest comes closest.
        val.add(min(range(len(sources)), key=lambda i: counts[i]))
    for index, source in enumerate(sources):
        source.regions = {"val" if index in val else "train": (0, source.n_frames(layout))}


def _count_examples(sources: list[_Source], layout: _Layout, split: str) -> int:
    return sum(len(layout.starts(*s.regions[split])) for s in sources if split in s.regions)


def _split_entries(sources, layout, counts) -> dict:
    entries = {}
    for split in SPLITS:
        spans = [s.regions[split] for s in sources if split in s.regions]
        seconds = sum(end - first for first, end in spans) / layout.frame_rate
        entries[split] = {"n_examples": counts[split], "n_files": len(spans), "seconds": seconds}
    return entries


def _file_entry(source: _Source, layout: _Layout) -> dict:
    return {
        "path": source.name,
        "seconds": source.n_samples / layout.sample_rate,
        "split": "+".join(source.regions),
        "regions_seconds": {
            split: [first / layout.frame_rate, end / layout.frame_rate]
            for split, (first, end) in source.regions.items()
        },
        "n_examples": {
            split: len(layout.starts(*region)) for split, region in source.regions.items()
        },
    }


# ------------------------------------------------------------------ statistics


def _train_statistics(sources: list[_Source], layout: _Layout) -> dict:
    """Note-frame statistics over the frames the train examples cover, each once."""
    pitch, loudness, n_frames = [], [], 0
    for source in sources:
        if "train" not in source.regions:
            continue
        starts = layout.starts(*source.regions["train"])
        covered = slice(starts[0], starts[-1] + layout.example_frames)
        with np.load(source.cache_path) as cached:
            f0_hz, confidence, loudness_db = (cached[name][covered] for name in FEATURE_NAMES)
        notes = (confidence >= CONFIDENT) & (loudness_db > NOTE_MIN_LOUDNESS_DB)
        pitch.append(hz_to_midi(torch.from_numpy(f0_hz[notes])).numpy())
        loudness.append(loudness_db[notes])
        n_frames += len(confidence)
    return note_statistics(np.concatenate(pitch), np.concatenate(loudness), n_frames)


def note_statistics(pitch_midi: np.ndarray, loudness_db: np.ndarray, n_frames: int) -> dict:
    """Magenta-style statistics of note frames; values are None when there are none.

    Shape: pitch_midi, loudness_db [n_note_frames] -> dict.
    """
    pitch_midi, loudness_db = pitch_midi.astype(np.float64), loudness_db.astype(np.float64)
    loudness_levels = np.linspace(0.0, 1.0, N_LOUDNESS_QUANTILES)
    statistics = {
        "n_frames": n_frames,
        "n_note_frames": len(pitch_midi),
        "note_min_confidence": CONFIDENT,
        "note_min_loudness_db": NOTE_MIN_LOUDNESS_DB,
        "pitch_quantile_levels": list(PITCH_QUANTILE_LEVELS),
        "loudness_quantile_levels": loudness_levels.tolist(),
    }
    for name, values, levels in (
        ("pitch", pitch_midi, PITCH_QUANTILE_LEVELS),
        ("loudness", loudness_db, loudness_levels),
    ):
        some = len(values) > 0
        for stat in ("mean", "std", "min", "max"):
            statistics[f"{stat}_{name}"] = float(getattr(np, stat)(values)) if some else None
        statistics[f"{name}_quantiles"] = np.quantile(values, levels).tolist() if some else None
    return statistics


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


def _write_split(directory: Path, sources, layout: _Layout, split: str, n_examples: int) -> None:
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


def _fill_examples(arrays, rows: slice, whole: dict[str, np.ndarray], starts, layout: _Layout):
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


# ------------------------------------------------------------------ summary


def summarize_preparation(done: PreparedDataset) -> str:
    """A few lines for people: files used and skipped, examples, pitch range, where."""
    manifest = done.manifest
    settings, splits, stats = manifest["settings"], manifest["splits"], manifest["statistics"]
    files, skipped = manifest["files"], manifest["skipped"]
    minutes = sum(f["seconds"] for f in files) / 60
    lines = [
        f"used {_plural(len(files), 'file')} ({minutes:.2f} min at {settings['sample_rate']} Hz); "
        f"features computed for {done.n_computed}, {len(files) - done.n_computed} from cache"
    ]
    lines += _skipped_lines(skipped)
    split_text = "; ".join(
        f"{split} {_plural(splits[split]['n_examples'], 'example')} from "
        f"{_plural(splits[split]['n_files'], 'file')}"
        for split in SPLITS
    )
    lines.append(
        f"{split_text} ({settings['example_seconds']:g} s every {settings['hop_seconds']:g} s, "
        f"split {manifest['split_method'].replace('_', ' ')})"
    )
    lines.append(_pitch_line(stats, settings["f0_method"]))
    lines.append(f"wrote {done.path} (manifest.json, train/, val/)")
    return "\n".join(lines)


def _skipped_lines(skipped: list[dict]) -> list[str]:
    not_audio = [s["path"] for s in skipped if s["reason"].startswith(NOT_AUDIO)]
    lines = [f"skipped {s['path']}: {s['reason']}" for s in skipped if s["path"] not in not_audio]
    if not_audio:
        suffixes = sorted({Path(p).suffix or "(none)" for p in not_audio})
        lines.append(f"skipped {_plural(len(not_audio), 'non-audio file')} ({', '.join(suffixes)})")
    return lines


def _pitch_line(stats: dict, f0_method: str) -> str:
    if not stats["n_note_frames"]:
        return f"no note frames in the train split (f0 by {f0_method}): is the audio pitched?"
    share = stats["n_note_frames"] / stats["n_frames"]
    return (
        f"note frames {share:.0%} of train (f0 by {f0_method}): pitch MIDI "
        f"{stats['min_pitch']:.1f}-{stats['max_pitch']:.1f}, mean {stats['mean_pitch']:.1f}; "
        f"loudness mean {stats['mean_loudness']:.1f} dB"
    )


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"
