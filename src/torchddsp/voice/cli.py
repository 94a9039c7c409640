"""The ``torchddsp`` commands of voice conversion: ``festival`` (a dataset) and ``convert``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..cli import MODEL_HELP
from ..errors import UserError


def add_voice_parsers(commands) -> None:
    festival = commands.add_parser(
        "festival", help="write a Common Voice style dataset spoken by Festival voices"
    )
    festival.add_argument("out_dir", help="folder for validated.tsv and clips/ (reruns resume)")
    festival.add_argument("--minutes", type=float, default=2.0, help="of speech per voice")
    which = festival.add_mutually_exclusive_group()
    which.add_argument(
        "--voices", type=_names, help="comma-separated Festival voices (default: all installed)"
    )
    which.add_argument("--tiny", action="store_true", help="3 voices x 3 clips, for tests")
    festival.add_argument("--seed", type=int, default=0, help="draws each voice's sentences")
    festival.add_argument("--sample-rate", type=int, default=48000, help="Common Voice's: 48000")
    festival.set_defaults(run=_festival)
    convert = commands.add_parser(
        "convert", help="a voice with another pitch, gender or age (a voice model)"
    )
    convert.add_argument("input", nargs="?", help="audio file of any length, rate and channels")
    convert.add_argument("--example", action="store_true", help="use the bundled example speech")
    convert.add_argument("--model", required=True, help=MODEL_HELP)
    convert.add_argument("-o", "--output", help="audio file (default: INPUT_STEM.MODEL.wav)")
    convert.add_argument(
        "--gender", help="0 (male) .. 1 (female), or a word: male, female (default: the input's)"
    )
    convert.add_argument(
        "--age", help="years / 100, or a word: teens .. nineties, child (default: the input's)"
    )
    convert.add_argument(
        "--pitch-shift",
        help="semitones (-24 .. 24; default: the pitch follows the gender and age change)",
    )
    convert.set_defaults(run=_convert)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _festival(args: argparse.Namespace) -> None:
    from .festival import TINY_CLIPS_PER_VOICE, TINY_VOICES, make_festival_dataset

    done = make_festival_dataset(
        args.out_dir,
        minutes_per_voice=args.minutes,
        voices=TINY_VOICES if args.tiny else args.voices,
        seed=args.seed,
        sample_rate=args.sample_rate,
        max_clips_per_voice=TINY_CLIPS_PER_VOICE if args.tiny else None,
    )
    print(
        f"wrote {done.n_clips} clips of {len(done.voices)} voices ({done.seconds / 60:.1f} min, "
        f"{done.n_synthesized} synthesised now); list {done.tsv_path}"
    )


def _convert(args: argparse.Namespace) -> None:
    from ..models import load_model
    from ..models.trained import example_voice
    from .convert import convert_file

    if (args.input is None) == (not args.example):
        raise UserError("give an INPUT audio file or --example (the bundled speech), not both")
    source = example_voice() if args.example else args.input
    loaded = load_model(args.model)
    output = args.output or f"{Path(source).stem}.{loaded.name}.wav"
    result = convert_file(source, loaded, output, args.gender, args.age, args.pitch_shift)
    seconds = len(result.audio) / result.sample_rate
    print(
        f"{Path(source).name} -> {loaded.name}: gender {result.gender:.2f}, age "
        f"{result.age:.2f}, pitch shift {result.pitch_shift:+g} semitones"
    )
    print(f"wrote {output} ({seconds:.2f} s at {result.sample_rate} Hz, in {result.seconds:.1f} s)")
