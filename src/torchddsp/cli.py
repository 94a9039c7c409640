"""The ``torchddsp`` command: a thin dispatcher over the library."""

from __future__ import annotations

import argparse
import sys

from . import __version__
from .errors import UserError


def _notes(text: str) -> list[float]:
    try:
        return [float(n) for n in text.split(",") if n.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected MIDI notes like 60,64,67, found {text!r}"
        ) from None


def _synth(args: argparse.Namespace) -> None:
    from .data.audio import write_audio
    from .demo import render_melody

    audio = render_melody(args.notes, args.note_seconds, args.sample_rate, args.seed)
    path = write_audio(args.output, audio.numpy(), args.sample_rate)
    print(f"wrote {path} ({audio.shape[0] / args.sample_rate:.2f} s at {args.sample_rate} Hz)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchddsp", description=__doc__)
    parser.add_argument("--version", action="version", version=f"torchddsp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    synth = commands.add_parser("synth", help="render a melody with harmonic + noise + reverb")
    synth.add_argument("-o", "--output", required=True, help="audio file to write (wav/flac/ogg)")
    synth.add_argument("--notes", type=_notes, default=_notes("60,64,67,72,67,64,60"))
    synth.add_argument("--note-seconds", type=float, default=0.5)
    synth.add_argument("--sample-rate", type=int, default=16000)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=_synth)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (UserError, ValueError) as err:
        print(f"torchddsp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"torchddsp {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
