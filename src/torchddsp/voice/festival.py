"""A small speech dataset in Common Voice's layout, spoken by Debian's Festival voices.

:func:`make_festival_dataset` writes ``validated.tsv`` (the header of release 17 on) and
``clips/common_voice_LOCALE_N.mp3`` (48 kHz mono, like Common Voice's), so
:func:`torchddsp.voice.commonvoice.read_common_voice` reads it like a real release. The
voices speak :data:`~torchddsp.voice.festival_sentences.SENTENCES`, written for torchddsp.

Each voice is one speaker (``client_id``: the SHA-512 of its name, as long as Common
Voice's). Its labels come from its documentation; none gives an age in years, so an adult
voice is ``adult`` and the one child ``child`` (see
:mod:`~torchddsp.voice.commonvoice` for their scalars):

====================  ====================  ==  ======  =====  ===========================
voice                 Debian package        lc  gender  age    source (Debian description)
====================  ====================  ==  ======  =====  ===========================
kal_diphone           festvox-kallpc16k     en  male    adult  "American English male
                                                               speaker"
ked_diphone           festvox-kdlpc16k      en  male    adult  "American English male
                                                               speaker"
cmu_us_slt_arctic_hts festvox-us-slt-hts    en  female  adult  "US English female HTS
                                                               voice"; README: "SLT, a
                                                               female US English speaker"
czech_dita            festvox-czech-dita    cs  female  adult  "Czech adult female speaker"
czech_machac          festvox-czech-machac  cs  male    adult  "Czech adult male speaker"
czech_krb             festvox-czech-krb     cs  male    child  "Czech child male speaker"
czech_ph              festvox-czech-ph      cs  male    adult  "Czech male speaker"
lp_diphone            festvox-italp16k      it  female  adult  "Italian female speaker"
pc_diphone            festvox-itapc16k      it  male    adult  "Italian male speaker"
suo_fi_lj_diphone     festvox-suopuhe-lj    fi  female  adult  "Finnish female speaker" (1)
hy_fi_mv_diphone      festvox-suopuhe-mv    fi  male    adult  "Finnish male speaker"
upc_ca_ona_hts        festvox-ca-ona-hts    ca  female  adult  "Catalan female speaker"
msu_ru_nsh_clunits    festvox-ru            ru  male    adult  "Russian male speaker"
hindi_NSK_diphone     festvox-hi-nsk        hi  male    adult  "Hindi male speaker"
====================  ====================  ==  ======  =====  ===========================

(1) its Scheme file's ``proclaim_voice`` says ``(gender male)``, copied from the male
voice's; the package description and the voice's pitch say female.

Left out: ``festvox-mr-nsk`` (Marathi) speaks Devanagari text with the very samples of
``festvox-hi-nsk`` (the same speaker under two client ids would leak across the split),
``festvox-te-nsk`` (Telugu, the same NSK speaker), and the 8 kHz copies
(``festvox-kallpc8k``, ``festvox-kdlpc8k``). Debian 12 has no other Festival voices.

Decisions:

- Missing voices: voices asked for by name must be installed (else a :class:`UserError`
  naming the package); with the default (all), voices not installed are skipped with a
  warning if at least two voices of each gender remain (one to train on and one to hold
  out, for the speaker-disjoint split), else a :class:`UserError` naming the packages.
- Clips: voice ``k`` clip ``i`` speaks sentence ``order[i]`` of a permutation of its
  language's list drawn from ``(seed, k)`` (cycling when more clips than sentences), is
  resampled (soxr) to ``sample_rate`` and scaled to a peak of -3 dBFS (the MP3 encoder
  overshoots full-scale peaks; Festival's own levels differ by 10 dB between voices).
  A voice gets clips until it has ``minutes_per_voice`` of audio or
  ``max_clips_per_voice`` clips.
- Resumable and atomic: each MP3 and the TSV are written to a temporary file and renamed;
  a rerun keeps the clips already there and only synthesises the others. Settings that
  change the clips (seed, rate, sentences) are recorded in ``.torchddsp-festival.json``;
  resuming with other ones is refused.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from ..data.atomic import check_same_settings, write_bytes_atomic
from ..data.audio import load_audio, write_audio
from ..errors import UserError, warn
from .commonvoice import COMMON_VOICE_COLUMNS
from .festival_sentences import SENTENCES

__all__ = [
    "TINY_VOICES",
    "VOICES",
    "FestivalDataset",
    "FestivalVoice",
    "festival_binary",
    "installed_voices",
    "make_festival_dataset",
    "select_voices",
]

MALE, FEMALE = "male_masculine", "female_feminine"  # Common Voice's words from release 17


@dataclass(frozen=True)
class FestivalVoice:
    """A Festival voice as a Common Voice speaker."""

    name: str  # selected in Festival by (voice_NAME)
    package: str  # the Debian package that installs it
    locale: str
    gender: str  # Common Voice word
    age: str  # age word of torchddsp.voice.commonvoice.AGE_VALUES
    number: int  # fixed; numbers its clip files and seeds its sentence order

    @property
    def client_id(self) -> str:
        return hashlib.sha512(f"torchddsp festival {self.name}".encode()).hexdigest()


VOICES = (
    FestivalVoice("kal_diphone", "festvox-kallpc16k", "en", MALE, "adult", 1),
    FestivalVoice("ked_diphone", "festvox-kdlpc16k", "en", MALE, "adult", 2),
    FestivalVoice("cmu_us_slt_arctic_hts", "festvox-us-slt-hts", "en", FEMALE, "adult", 3),
    FestivalVoice("czech_dita", "festvox-czech-dita", "cs", FEMALE, "adult", 4),
    FestivalVoice("czech_machac", "festvox-czech-machac", "cs", MALE, "adult", 5),
    FestivalVoice("czech_krb", "festvox-czech-krb", "cs", MALE, "child", 6),
    FestivalVoice("czech_ph", "festvox-czech-ph", "cs", MALE, "adult", 7),
    FestivalVoice("lp_diphone", "festvox-italp16k", "it", FEMALE, "adult", 8),
    FestivalVoice("pc_diphone", "festvox-itapc16k", "it", MALE, "adult", 9),
    FestivalVoice("suo_fi_lj_diphone", "festvox-suopuhe-lj", "fi", FEMALE, "adult", 10),
    FestivalVoice("hy_fi_mv_diphone", "festvox-suopuhe-mv", "fi", MALE, "adult", 11),
    FestivalVoice("upc_ca_ona_hts", "festvox-ca-ona-hts", "ca", FEMALE, "adult", 12),
    FestivalVoice("msu_ru_nsh_clunits", "festvox-ru", "ru", MALE, "adult", 13),
    FestivalVoice("hindi_NSK_diphone", "festvox-hi-nsk", "hi", MALE, "adult", 14),
)
# A male, a female and a child voice: every kind of label, in seconds.
TINY_VOICES = ("kal_diphone", "cmu_us_slt_arctic_hts", "czech_krb")
TINY_CLIPS_PER_VOICE = 3

# The byte encoding each language's Festival text front end reads (found by the phones it
# makes of accented words: Czech ISO-8859-2, the Latin-1 ones, UTF-8 for Cyrillic and
# Devanagari).
TEXT_ENCODINGS = {
    "en": "ascii",
    "cs": "iso-8859-2",
    "it": "latin-1",
    "fi": "latin-1",
    "ca": "latin-1",
    "ru": "utf-8",
    "hi": "utf-8",
}
PEAK_DBFS = -3.0
PEAK = 10 ** (PEAK_DBFS / 20)
SETTINGS_NAME = ".torchddsp-festival.json"
CLIPS_PER_FESTIVAL_RUN = 8  # Festival loads a voice in ~0.3 s: batch, yet show progress
FIRST_GUESS_CLIP_SECONDS = 2.5


@dataclass(frozen=True)
class FestivalDataset:
    """What :func:`make_festival_dataset` wrote."""

    tsv_path: Path
    voices: tuple[str, ...]
    n_clips: int
    n_synthesized: int
    seconds: float


# ---------------------------------------------------------------- Festival


def festival_binary() -> str:
    """The ``festival`` executable on PATH."""
    binary = shutil.which("festival")
    if binary is None:
        packages = " ".join(voice.package for voice in VOICES)
        raise UserError(
            f"festival not found: install it and its voices (Debian/Ubuntu: apt-get install "
            f"festival {packages})"
        )
    return binary


def installed_voices() -> set[str]:
    """Names of the voices Festival finds."""
    result = subprocess.run(
        [festival_binary(), "--pipe"],
        input=b"(print (voice.list))\n",
        capture_output=True,
        check=False,
    )
    listing = result.stdout.decode("utf-8", "replace").strip()
    if result.returncode != 0 or not listing.startswith("("):
        errors = result.stderr.decode(errors="replace").strip().splitlines() or ["no output"]
        raise UserError(f"festival does not start ({errors[-1]}): reinstall it")
    return set(listing.strip("()").split())


def _scheme_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _synthesize(voice: FestivalVoice, sentences: list[str], folder: Path) -> list[Path]:
    """One Festival run speaking ``sentences`` with ``voice``: a WAV file each."""
    wavs = [folder / f"{i}.wav" for i in range(len(sentences))]
    lines = [f"(voice_{voice.name})"]
    lines += [
        f"(utt.save.wave (utt.synth (Utterance Text {_scheme_string(s)})) "
        f"{_scheme_string(str(wav))} 'riff)"
        for s, wav in zip(sentences, wavs, strict=True)
    ]
    script = "\n".join(lines + [""]).encode(TEXT_ENCODINGS[voice.locale])
    result = subprocess.run(
        [festival_binary(), "--pipe"], input=script, capture_output=True, check=False
    )
    for sentence, wav in zip(sentences, wavs, strict=True):
        if not wav.is_file() or wav.stat().st_size <= 44:  # 44: a WAV header alone
            errors = result.stderr.decode(TEXT_ENCODINGS[voice.locale], "replace").splitlines()
            detail = next((e for e in errors if "error" in e.lower()), None)
            detail = detail or f"exit status {result.returncode}"
            raise UserError(
                f"festival could not speak {sentence!r} with {voice.name} ({detail}); "
                f"reinstall it: apt-get install --reinstall {voice.package}"
            )
    return wavs


# ---------------------------------------------------------------- voices


def select_voices(names: list[str] | tuple[str, ...] | None) -> list[FestivalVoice]:
    """The voices of ``names`` (each must be installed), or all installed ones (see module)."""
    by_name = {voice.name: voice for voice in VOICES}
    unknown = [name for name in names or () if name not in by_name]
    if unknown:
        raise UserError(
            f"unknown Festival voice(s) {', '.join(unknown)}: choose from {', '.join(by_name)}"
        )
    available = installed_voices()
    if names is not None:
        missing = [by_name[name] for name in names if name not in available]
        if missing:
            raise UserError(
                f"voice(s) {', '.join(v.name for v in missing)} not installed: apt-get install "
                + " ".join(v.package for v in missing)
            )
        return [by_name[name] for name in names]
    chosen = [voice for voice in VOICES if voice.name in available]
    absent = [voice for voice in VOICES if voice.name not in available]
    for gender in (MALE, FEMALE):
        if sum(voice.gender == gender for voice in chosen) < 2:
            packages = " ".join(v.package for v in absent if v.gender == gender)
            raise UserError(
                f"fewer than two {gender.split('_')[0]} Festival voices are installed (one to "
                f"train on, one to hold out): apt-get install {packages}"
            )
    if absent:
        warn(
            f"skipping {len(absent)} Festival voices that are not installed "
            f"(apt-get install {' '.join(v.package for v in absent)})"
        )
    return chosen


def _sentence_order(voice: FestivalVoice, seed: int) -> list[str]:
    sentences = SENTENCES[voice.locale]
    order = np.random.default_rng([seed, voice.number]).permutation(len(sentences))
    return [sentences[i] for i in order]


def _clip_name(voice: FestivalVoice, index: int) -> str:
    return f"common_voice_{voice.locale}_{voice.number * 100_000 + index}.mp3"


def _tsv_row(voice: FestivalVoice, clip_name: str, sentence: str) -> dict[str, str]:
    row = dict.fromkeys(COMMON_VOICE_COLUMNS, "")
    row.update(
        client_id=voice.client_id,
        path=clip_name,
        sentence_id=hashlib.sha256(sentence.encode()).hexdigest(),
        sentence=sentence,
        up_votes="2",  # a validated clip has at least two up votes and fewer down votes
        down_votes="0",
        age=voice.age,
        gender=voice.gender,
        locale=voice.locale,
    )
    return row


def _write_tsv(path: Path, rows: list[dict[str, str]]) -> None:
    lines = ["\t".join(COMMON_VOICE_COLUMNS)]
    lines += ["\t".join(row[column] for column in COMMON_VOICE_COLUMNS) for row in rows]
    write_bytes_atomic(path, ("\n".join(lines) + "\n").encode())


# ---------------------------------------------------------------- dataset


def _settings(seed: int, sample_rate: int) -> dict:
    sentences = json.dumps(SENTENCES, sort_keys=True, ensure_ascii=False).encode()
    return {
        "seed": seed,
        "sample_rate": sample_rate,
        "peak_dbfs": PEAK_DBFS,
        "sentences_sha256": hashlib.sha256(sentences).hexdigest(),
    }


def _write_clip(wav: Path, mp3: Path, sample_rate: int) -> float:
    """``wav`` resampled, scaled to ``PEAK`` and written to ``mp3``; returns its seconds."""
    audio, _ = load_audio(wav, sample_rate)
    peak = float(np.abs(audio).max())
    if peak == 0:
        raise UserError(f"festival spoke silence into {mp3.name}: report this voice and text")
    write_audio(mp3, audio * (PEAK / peak), sample_rate)
    return len(audio) / sample_rate


def _voice_clips(
    voice: FestivalVoice,
    clips_dir: Path,
    target_seconds: float,
    max_clips: int | None,
    seed: int,
    sample_rate: int,
    bar: tqdm,
) -> tuple[list[dict[str, str]], int, float]:
    """(TSV rows, clips synthesised now, seconds) of one voice; existing clips are kept."""
    sentences = _sentence_order(voice, seed)
    rows, n_new, seconds = [], 0, 0.0
    limit = math.inf if max_clips is None else max_clips
    while seconds < target_seconds and len(rows) < limit:
        mean = seconds / len(rows) if rows else FIRST_GUESS_CLIP_SECONDS
        n_batch = math.ceil((target_seconds - seconds) / mean)
        n_batch = int(min(n_batch, CLIPS_PER_FESTIVAL_RUN, limit - len(rows)))
        indices = range(len(rows), len(rows) + n_batch)
        texts = [sentences[i % len(sentences)] for i in indices]
        paths = [clips_dir / _clip_name(voice, i) for i in indices]
        todo = [k for k, path in enumerate(paths) if not path.is_file()]
        durations = {k: sf.info(str(paths[k])).duration for k in range(n_batch) if k not in todo}
        if todo:
            with tempfile.TemporaryDirectory(prefix="torchddsp-festival-") as tmp:
                wavs = _synthesize(voice, [texts[k] for k in todo], Path(tmp))
                for k, wav in zip(todo, wavs, strict=True):
                    durations[k] = _write_clip(wav, paths[k], sample_rate)
            n_new += len(todo)
        for k in range(n_batch):
            if seconds >= target_seconds:
                break
            rows.append(_tsv_row(voice, paths[k].name, texts[k]))
            bar.update(min(durations[k], target_seconds - seconds))
            seconds += durations[k]
    return rows, n_new, seconds


def make_festival_dataset(
    out_dir: str | os.PathLike,
    minutes_per_voice: float = 2.0,
    voices: list[str] | tuple[str, ...] | None = None,
    seed: int = 0,
    sample_rate: int = 48000,
    max_clips_per_voice: int | None = None,
) -> FestivalDataset:
    """Write a Common Voice style dataset spoken by Festival voices into ``out_dir``.

    ``voices``: names from :data:`VOICES` (default: all installed, see the module);
    ``TINY_VOICES`` with ``max_clips_per_voice=3`` makes the test-sized one. Rerunning
    resumes: clips already written are kept.
    """
    if not minutes_per_voice > 0:
        raise UserError(f"minutes per voice must be positive, found {minutes_per_voice}")
    if max_clips_per_voice is not None and max_clips_per_voice < 1:
        raise UserError(f"max clips per voice must be at least 1, found {max_clips_per_voice}")
    if not sample_rate > 0:
        raise UserError(f"sample rate must be positive, found {sample_rate}")
    chosen = select_voices(voices)
    out_dir = Path(out_dir)
    clips_dir = out_dir / "clips"
    clips_dir.mkdir(parents=True, exist_ok=True)
    settings_path = out_dir / SETTINGS_NAME
    settings = _settings(seed, sample_rate)
    check_same_settings(settings_path, settings)
    write_bytes_atomic(settings_path, json.dumps({"settings": settings}, indent=1).encode())
    tsv_path, target = out_dir / "validated.tsv", minutes_per_voice * 60.0
    rows, n_new, seconds = [], 0, 0.0
    bar_format = (
        "{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]"
    )
    with tqdm(total=target * len(chosen), desc="festival", bar_format=bar_format) as bar:
        for index, voice in enumerate(chosen):
            bar.set_postfix_str(voice.name)
            voice_rows, voice_new, voice_seconds = _voice_clips(
                voice, clips_dir, target, max_clips_per_voice, seed, sample_rate, bar
            )
            bar.n = target * (index + 1)  # whole, also where a clip cap ended the voice early
            bar.refresh()
            rows, n_new, seconds = rows + voice_rows, n_new + voice_new, seconds + voice_seconds
            _write_tsv(tsv_path, rows)  # after each voice: an interruption keeps a valid TSV
    return FestivalDataset(tsv_path, tuple(v.name for v in chosen), len(rows), n_new, seconds)
