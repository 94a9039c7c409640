"""How recordings are cut into examples and split into train and validation.

Examples start on whole frames every ``step_frames`` (:class:`ExampleLayout`);
each :class:`Source` (one recording) gets a frame region per split: by time
for a single recording, by file for several (see :mod:`torchddsp.data.prepare`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import UserError
from ..functional.spectral import frame_hop_size
from .dataset import SPLITS


@dataclass(frozen=True)
class ExampleLayout:
    """Examples of ``example_frames`` frames, one every ``step_frames``, on the frame grid."""

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
class Source:
    """One recording: its length, its cached features and its frames in each split."""

    name: str  # path relative to the audio directory
    n_samples: int
    cache_path: Path
    regions: dict[str, tuple[int, int]] = field(default_factory=dict)  # split -> frames [a, b)
    labels: dict | None = None  # speaker, gender, age and the given split of a labelled clip

    def n_frames(self, layout: ExampleLayout) -> int:
        return self.n_samples // layout.hop_size  # Frames wholly inside the audio.


def _whole_frames(seconds: float, frame_rate: int, name: str) -> int:
    frames = seconds * frame_rate
    if not (frames >= 1 and abs(frames - round(frames)) < 1e-6):
        raise ValueError(
            f"{name} must be a positive whole number of frames at {frame_rate} Hz, "
            f"found {seconds} s"
        )
    return round(frames)


def example_layout(sample_rate, frame_rate, example_seconds, hop_seconds) -> ExampleLayout:
    """The layout of these settings; ValueError unless both durations are whole frames."""
    frame_hop_size(sample_rate, frame_rate)  # Raises unless frame_rate divides sample_rate.
    example_frames = _whole_frames(example_seconds, frame_rate, "example_seconds")
    step_frames = _whole_frames(hop_seconds, frame_rate, "hop_seconds")
    return ExampleLayout(sample_rate, frame_rate, example_frames, step_frames)


def layout_entry(layout: ExampleLayout) -> dict:
    """The manifest's ``layout``, in samples and frames."""
    return {
        "hop_size": layout.hop_size,
        "example_samples": layout.example_samples,
        "example_frames": layout.example_frames,
        "step_frames": layout.step_frames,
    }


def assign_regions(
    sources: list[Source], layout: ExampleLayout, val_fraction: float, seed: int
) -> str:
    """Set each source's frame regions per split; returns how it split.

    Labelled clips come with their split (by speaker, so no speaker is in both).
    """
    if sources and sources[0].labels is not None:
        for source in sources:
            source.regions = {source.labels["split"]: (0, source.n_frames(layout))}
        return "by_speaker"
    if val_fraction == 0:
        for source in sources:
            source.regions = {"train": (0, source.n_frames(layout))}
        return "none"
    if len(sources) == 1:
        _split_by_time(sources[0], layout, val_fraction)
        return "by_time"
    _split_by_file(sources, layout, val_fraction, seed)
    return "by_file"


def _split_by_time(source: Source, layout: ExampleLayout, val_fraction: float) -> None:
    n_frames = source.n_frames(layout)
    boundary = n_frames - max(math.ceil(val_fraction * n_frames), layout.example_frames)
    if boundary < layout.example_frames:
        raise UserError(
            f"{source.name} is too short for both a training and a validation example: "
            "add recordings, or pass --val-fraction 0"
        )
    source.regions = {"train": (0, boundary), "val": (boundary, n_frames)}


def _split_by_file(sources: list[Source], layout: ExampleLayout, val_fraction: float, seed: int):
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


def count_examples(sources: list[Source], layout: ExampleLayout, split: str) -> int:
    """Examples of ``split`` over all sources."""
    return sum(len(layout.starts(*s.regions[split])) for s in sources if split in s.regions)


def split_entries(sources, layout, counts) -> dict:
    """The manifest's ``splits``: examples, files and seconds of each split."""
    entries = {}
    for split in SPLITS:
        spans = [s.regions[split] for s in sources if split in s.regions]
        seconds = sum(end - first for first, end in spans) / layout.frame_rate
        entries[split] = {"n_examples": counts[split], "n_files": len(spans), "seconds": seconds}
    return entries


def file_entry(source: Source, layout: ExampleLayout) -> dict:
    """The manifest's entry of one file: its regions and examples per split."""
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
        **({"labels": source.labels} if source.labels is not None else {}),
    }
