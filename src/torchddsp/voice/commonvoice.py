"""Common Voice releases, or any folder of audio with a small CSV, as labelled clips.

:func:`read_common_voice` reads one language of a release (``validated.tsv`` and
``clips/*.mp3``), :func:`read_labelled_csv` a CSV of ``path,gender,age`` (and optionally
``speaker``); both filter with :func:`process_tsv` and give the same :class:`Clip` records.

Labels are scalars in [0, 1], the model's conditioning controls:

- gender: 0 = male, 1 = female. ``male`` and ``male_masculine`` (release 17+) give 0,
  ``female`` and ``female_feminine`` give 1. ``other``, ``non-binary``, ``transgender``,
  ``intersex`` and ``do_not_wish_to_say`` give ``None`` (unlabelled): they do not say
  where a voice lies on the male-female axis, so the clip trains the autoencoder without
  the gender loss rather than pulling the control toward 0.5.
- age: the middle of the bucket in years, divided by 100: ``teens`` 0.15, ``twenties``
  0.25, ... ``nineties`` 0.95; ``fourties`` (Common Voice's spelling) and ``forties`` are
  both 0.45. Two words that are not Common Voice's cover Festival's voices, whose
  documentation gives an age group and no decade: ``child`` 0.08 (middle of 5-11 years,
  before the voice breaks) and ``adult`` 0.40 (middle of 20-60).
- empty: ``None``. A number in [0, 1] is taken as the scalar itself. Any other word is a
  :class:`UserError` naming it and the accepted ones.

Filtering (:func:`process_tsv`), in this order:

1. votes: a row is dropped when ``down_votes > 0`` and ``down_votes >= up_votes`` (no
   majority of listeners accepted it); a row without vote columns is kept.
2. missing clips are dropped with one warning; none at all is a :class:`UserError`.
3. rows without a gender or an age are kept, marked by ``None`` (``Clip.labelled``).
4. at most ``max_clips_per_speaker`` clips per speaker: those whose hash of
   ``(seed, file name)`` is smallest, so the choice does not depend on the row order.
5. split by speaker: no speaker is in both splits. Speakers are grouped by gender (male,
   female, unlabelled) and ``val_fraction`` of each group (rounded, at least one from a
   group of two or more, never the whole group) drawn with ``seed`` for validation, so
   held-out speakers of both genders exist whenever the data has two of each.

Silent clips are found where the audio is read: ``prepare`` skips and lists them.
"""

from __future__ import annotations

import csv
import hashlib
import math
import os
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from ..data.dataset import SPLITS
from ..errors import UserError, warn

__all__ = [
    "AGE_VALUES",
    "COMMON_VOICE_COLUMNS",
    "GENDER_VALUES",
    "Clip",
    "is_voice_source",
    "parse_age",
    "parse_gender",
    "process_tsv",
    "read_common_voice",
    "read_labelled_csv",
    "read_voice_clips",
    "voice_labels",
]

# validated.tsv's header from release 17 on (older ones lack sentence_id, sentence_domain,
# variant; the reader needs only REQUIRED_TSV_COLUMNS).
COMMON_VOICE_COLUMNS = (
    "client_id",
    "path",
    "sentence_id",
    "sentence",
    "sentence_domain",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accents",
    "variant",
    "locale",
    "segment",
)
REQUIRED_TSV_COLUMNS = ("client_id", "path", "gender", "age")
REQUIRED_CSV_COLUMNS = ("path", "gender", "age")

GENDER_VALUES: dict[str, float | None] = {
    "male": 0.0,  # releases up to 16
    "female": 1.0,
    "other": None,
    "male_masculine": 0.0,  # release 17 on
    "female_feminine": 1.0,
    "non-binary": None,
    "transgender": None,
    "intersex": None,
    "do_not_wish_to_say": None,
}
_AGE_YEARS = {
    "child": 8,  # not a Common Voice word: Festival's child voice
    "teens": 15,
    "twenties": 25,
    "thirties": 35,
    "fourties": 45,  # Common Voice's spelling
    "forties": 45,
    "fifties": 55,
    "sixties": 65,
    "seventies": 75,
    "eighties": 85,
    "nineties": 95,
    "adult": 40,  # not a Common Voice word: an adult voice of undocumented age
}
AGE_VALUES: dict[str, float] = {word: years / 100 for word, years in _AGE_YEARS.items()}


@dataclass(frozen=True)
class Clip:
    """One recording: its file, speaker, text, labels (``None``: unlabelled) and split."""

    path: Path
    speaker: str
    sentence: str
    gender: float | None
    age: float | None
    split: str = ""

    @property
    def labelled(self) -> bool:
        """Both labels known: the clip can also train the conditioning."""
        return self.gender is not None and self.age is not None


# ---------------------------------------------------------------- labels


def parse_gender(text: str) -> float | None:
    """A gender word of any release, or a number in [0, 1], as 0 = male ... 1 = female.

    Empty and the words that place no voice on that axis give ``None``.
    """
    return _parse_label(text, "gender", GENDER_VALUES, "0 = male, 1 = female")


def parse_age(text: str) -> float | None:
    """An age bucket word, or a number in [0, 1], as years / 100; empty gives ``None``."""
    return _parse_label(text, "age", AGE_VALUES, "years / 100, e.g. 0.3")


def _parse_label(text: str, kind: str, words: dict[str, float | None], scale: str) -> float | None:
    word = text.strip().lower()
    if not word:
        return None
    if word in words:
        return words[word]
    try:
        value = float(word)
    except ValueError:
        raise UserError(
            f"unknown {kind} {text.strip()!r}: use one of {', '.join(words)}, "
            f"or a number in [0, 1] ({scale})"
        ) from None
    if not 0.0 <= value <= 1.0:  # also refuses nan
        raise UserError(f"{kind} {text.strip()} is outside [0, 1] ({scale}); or use a word")
    return value


# ---------------------------------------------------------------- reading


def read_voice_clips(
    source: str | os.PathLike,
    max_clips_per_speaker: int | None = 50,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> list[Clip]:
    """Clips of a Common Voice language folder or of a labels CSV file (see the module)."""
    source = Path(source)
    if source.is_file() and source.suffix.lower() == ".csv":
        return read_labelled_csv(source, max_clips_per_speaker, val_fraction, seed)
    return read_common_voice(source, max_clips_per_speaker, val_fraction, seed)


def read_common_voice(
    release_dir: str | os.PathLike,
    max_clips_per_speaker: int | None = 50,
    val_fraction: float = 0.1,
    seed: int = 0,
    tsv_name: str = "validated.tsv",
) -> list[Clip]:
    """Clips of one language of a Common Voice release: ``tsv_name`` and ``clips/``."""
    release_dir = Path(release_dir)
    tsv_path = release_dir / tsv_name
    if not tsv_path.is_file():
        raise UserError(
            f"{release_dir} has no {tsv_name}: give the folder of one language of a Common "
            "Voice release (cv-corpus-*/LOCALE), or a CSV file of path,gender,age"
        )
    clips_dir = release_dir / "clips"
    if not clips_dir.is_dir():
        raise UserError(
            f"{release_dir} has no clips/ folder: extract the release's clips there "
            "(the audio that validated.tsv lists)"
        )
    rows = _read_table(tsv_path, "\t", REQUIRED_TSV_COLUMNS)
    clips = []
    for line, row in rows:
        if _down_voted(row, tsv_path, line):
            continue
        name = _required(row, "path", tsv_path, line)
        speaker = _required(row, "client_id", tsv_path, line)
        clips.append(_clip(row, clips_dir / name, speaker, tsv_path, line))
    return process_tsv(clips, max_clips_per_speaker, val_fraction, seed, source=tsv_path)


def read_labelled_csv(
    csv_path: str | os.PathLike,
    max_clips_per_speaker: int | None = 50,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> list[Clip]:
    """Clips listed by a CSV of ``path,gender,age`` and optionally ``speaker``, ``sentence``.

    Paths are relative to the CSV's folder (or absolute); gender and age are words or
    numbers as in :func:`parse_gender`, :func:`parse_age`. Without a ``speaker`` column
    each file counts as its own speaker: give one to keep a speaker's files in one split.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise UserError(f"{csv_path}: no such CSV file; give a CSV of path,gender,age")
    rows = _read_table(csv_path, ",", REQUIRED_CSV_COLUMNS)
    clips = []
    for line, row in rows:
        path = csv_path.parent / _required(row, "path", csv_path, line)
        speaker = (row.get("speaker") or "").strip() or str(path)
        clips.append(_clip(row, path, speaker, csv_path, line))
    return process_tsv(clips, max_clips_per_speaker, val_fraction, seed, source=csv_path)


def _read_table(
    path: Path, delimiter: str, required: tuple[str, ...]
) -> list[tuple[int, dict[str, str]]]:
    """(line number, row) of a TSV or CSV with a header that has the ``required`` columns."""
    # Common Voice writes sentences unquoted, quotes included: QUOTE_NONE for its TSVs.
    quoting = csv.QUOTE_NONE if delimiter == "\t" else csv.QUOTE_MINIMAL
    with open(path, encoding="utf-8-sig", newline="") as file:
        reader = csv.DictReader(file, delimiter=delimiter, quoting=quoting)
        header = [name.strip() for name in reader.fieldnames or []]
        missing = [name for name in required if name not in header]
        if missing:
            raise UserError(
                f"{path} lacks the column(s) {', '.join(missing)} (found: "
                f"{', '.join(header) or 'no header'}); its first line must name at least "
                f"{', '.join(required)}"
            )
        reader.fieldnames = header
        rows = []
        for row in reader:
            if None in row:  # more fields than the header names
                raise UserError(f"{path}:{reader.line_num}: more fields than the header has")
            rows.append((reader.line_num, row))
    if not rows:
        raise UserError(f"{path} lists no clips: it has a header and no rows")
    return rows


def _required(row: dict[str, str], column: str, path: Path, line: int) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        raise UserError(f"{path}:{line}: empty {column}; every row needs one")
    return value


def _down_voted(row: dict[str, str], path: Path, line: int) -> bool:
    if "up_votes" not in row or "down_votes" not in row:
        return False
    try:
        up, down = int(row["up_votes"] or 0), int(row["down_votes"] or 0)
    except ValueError:
        raise UserError(
            f"{path}:{line}: votes must be whole numbers, found up_votes "
            f"{row['up_votes']!r}, down_votes {row['down_votes']!r}"
        ) from None
    return down > 0 and down >= up


def _clip(row: dict[str, str], path: Path, speaker: str, source: Path, line: int) -> Clip:
    try:
        gender, age = parse_gender(row["gender"] or ""), parse_age(row["age"] or "")
    except UserError as err:
        raise UserError(f"{source}:{line}: {err}") from None
    sentence = (row.get("sentence") or "").strip()
    return Clip(path, speaker, sentence, gender, age)


# ---------------------------------------------------------------- filtering


def process_tsv(
    clips: list[Clip],
    max_clips_per_speaker: int | None = 50,
    val_fraction: float = 0.1,
    seed: int = 0,
    source: str | os.PathLike = "the list",
) -> list[Clip]:
    """Clips whose file exists, at most ``max_clips_per_speaker`` each, split by speaker.

    ``clips`` come with their labels and no split yet; ``source`` names the list in
    messages. See the module for the rules.
    """
    if max_clips_per_speaker is not None and max_clips_per_speaker < 1:
        raise UserError(f"max_clips_per_speaker must be at least 1, found {max_clips_per_speaker}")
    if not 0 <= val_fraction < 1:
        raise UserError(f"val_fraction must be within [0, 1), found {val_fraction}")
    present = _existing(clips, source)
    if max_clips_per_speaker is not None:
        present = _cap_per_speaker(present, max_clips_per_speaker, seed)
    return _split_by_speaker(present, val_fraction, seed)


def _existing(clips: list[Clip], source: str | os.PathLike) -> list[Clip]:
    folders = {clip.path.parent for clip in clips}
    names = {folder: set(os.listdir(folder)) if folder.is_dir() else set() for folder in folders}
    present = [clip for clip in clips if clip.path.name in names[clip.path.parent]]
    n_missing = len(clips) - len(present)
    if clips and not present:
        folder = sorted(folders)[0]
        raise UserError(
            f"none of the {len(clips)} clips that {source} lists is there (first: "
            f"{clips[0].path}): put the audio files in {folder} or fix the paths"
        )
    if n_missing:
        warn(f"{n_missing} of the {len(clips)} clips that {source} lists are missing: skipped")
    return present


def _stable_rank(seed: int, text: str) -> bytes:
    """A sort key that depends on ``seed`` and ``text`` only, the same on every run."""
    return hashlib.sha256(f"{seed}:{text}".encode()).digest()


def _cap_per_speaker(clips: list[Clip], cap: int, seed: int) -> list[Clip]:
    by_speaker: dict[str, list[Clip]] = {}
    for clip in clips:
        by_speaker.setdefault(clip.speaker, []).append(clip)
    kept = set()
    for speaker_clips in by_speaker.values():
        ranked = sorted(speaker_clips, key=lambda c: _stable_rank(seed, c.path.name))
        kept.update(id(clip) for clip in ranked[:cap])
    return [clip for clip in clips if id(clip) in kept]


def _speaker_gender_groups(clips: list[Clip]) -> dict[str, list[str]]:
    """Speakers (sorted) by their most frequent gender label: male, female or unlabelled."""
    votes: dict[str, Counter] = {clip.speaker: Counter() for clip in clips}
    for clip in clips:
        if clip.gender is not None:
            votes[clip.speaker]["female" if clip.gender >= 0.5 else "male"] += 1
    groups: dict[str, list[str]] = {"male": [], "female": [], "unlabelled": []}
    for speaker in sorted(votes):
        most = votes[speaker].most_common(1)
        groups[most[0][0] if most else "unlabelled"].append(speaker)
    return groups


def _n_validation(n_speakers: int, val_fraction: float) -> int:
    if val_fraction == 0 or n_speakers < 2:
        return 0
    return min(n_speakers - 1, max(1, math.floor(val_fraction * n_speakers + 0.5)))


def _split_by_speaker(clips: list[Clip], val_fraction: float, seed: int) -> list[Clip]:
    groups = _speaker_gender_groups(clips)
    rng = np.random.default_rng(seed)
    validation: set[str] = set()
    for speakers in groups.values():
        order = rng.permutation(len(speakers))
        validation.update(speakers[i] for i in order[: _n_validation(len(speakers), val_fraction)])
    all_speakers = sorted(s for speakers in groups.values() for s in speakers)
    if val_fraction > 0 and not validation:
        if len(all_speakers) < 2:
            raise UserError(
                f"all clips are of one speaker ({all_speakers[0]}): a split by speaker needs "
                "two or more; add speakers or set val_fraction=0"
            )
        validation.add(all_speakers[int(rng.integers(len(all_speakers)))])
    train, val = SPLITS
    return [replace(clip, split=val if clip.speaker in validation else train) for clip in clips]


# ---------------------------------------------------------------- for prepare


def is_voice_source(source: str | os.PathLike) -> bool:
    """A Common Voice language folder (``validated.tsv``) or a labels CSV file."""
    source = Path(source)
    if source.is_file():
        return source.suffix.lower() == ".csv"
    return (source / "validated.tsv").is_file()


def voice_labels(
    source: str | os.PathLike,
    max_clips_per_speaker: int | None = 50,
    val_fraction: float = 0.1,
    seed: int = 0,
) -> tuple[Path, dict[str, dict]]:
    """The folder the clips of ``source`` lie under and, by path relative to it, each clip's
    ``split``, ``speaker``, ``gender`` and ``age`` (for ``prepare_dataset(labels=...)``)."""
    source = Path(source).resolve()
    root = source.parent if source.is_file() else source / "clips"
    labels = {}
    for clip in read_voice_clips(source, max_clips_per_speaker, val_fraction, seed):
        path = clip.path.resolve()
        if not path.is_relative_to(root):
            raise UserError(f"{clip.path} is outside {root}: keep the clips under the CSV's folder")
        labels[path.relative_to(root).as_posix()] = {
            "split": clip.split,
            "speaker": clip.speaker,
            "gender": clip.gender,
            "age": clip.age,
        }
    return root, labels
