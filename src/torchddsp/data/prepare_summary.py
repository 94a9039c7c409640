"""The few lines ``torchddsp prepare`` prints: files used and skipped, examples, pitch range."""

from __future__ import annotations

from pathlib import Path

from .dataset import SPLITS
from .prepare import NOT_AUDIO, PreparedDataset


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
