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


def _render(args: argparse.Namespace) -> None:
    from .data.soundfont import DEFAULT_GAIN, render, render_dataset

    options = {
        "sample_rate": args.sample_rate,
        "soundfont": args.soundfont,
        "gain": DEFAULT_GAIN if args.gain is None else args.gain,
        "frame_rate": args.frame_rate,
    }
    if args.midi:
        done = render(args.midi, args.out, program=args.program, **options)
        print(
            f"wrote {done.audio_path} ({done.seconds:.2f} s at {args.sample_rate} Hz, "
            f"peak {done.peak:.2f}) and ground truth {done.truth_path}"
        )
        return
    if args.program is not None:
        raise UserError("--program applies to --midi; an --instrument sets its own program")
    done = render_dataset(args.instrument, args.minutes, args.out, args.seed, **options)
    print(
        f"wrote {done.n_clips} clips ({done.seconds / 60:.2f} min at {args.sample_rate} Hz; "
        f"{done.n_rendered} rendered now) to {args.out}, manifest {done.manifest_path}"
    )


def _features(args: argparse.Namespace) -> None:
    from pathlib import Path

    from .features import file_features, save_features, summarize_features

    audio, sample_rate, features = file_features(args.input, args.frame_rate, args.f0_method)
    output = args.output or f"{Path(args.input).stem}.features.csv"
    save_features(output, features, args.frame_rate)
    print(summarize_features(features, len(audio) / sample_rate, sample_rate, args.frame_rate))
    print(f"wrote {output}")
    if args.plot:
        from .plots import plot_features

        plot_features(args.plot, audio, sample_rate, args.frame_rate, {args.f0_method: features})
        print(f"wrote {args.plot}")


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
    render = commands.add_parser(
        "render", help="render SoundFont audio (fluidsynth) with exact f0 ground truth"
    )
    source = render.add_mutually_exclusive_group(required=True)
    source.add_argument("--instrument", help="render a dataset of melodies: violin, flute, ...")
    source.add_argument("--midi", help="render this MIDI file")
    render.add_argument(
        "-o", "--out", required=True, help="dataset folder (--instrument) or audio file (--midi)"
    )
    render.add_argument("--minutes", type=float, default=2.0)
    render.add_argument("--seed", type=int, default=0)
    render.add_argument("--program", type=int, help="GM program, 0-based (violin = 40)")
    render.add_argument("--sample-rate", type=int, default=16000)
    render.add_argument("--frame-rate", type=int, default=250, help="ground-truth frames/s")
    render.add_argument("--soundfont", help="SoundFont file (default: FluidR3_GM)")
    render.add_argument("--gain", type=float, help="FluidSynth master gain")
    render.set_defaults(run=_render)
    features = commands.add_parser("features", help="f0, confidence and loudness of an audio file")
    features.add_argument("input", help="audio file: wav, flac, ogg, ... (any rate, downmixed)")
    features.add_argument("-o", "--output", help=".csv or .npz (default: INPUT.features.csv)")
    features.add_argument("--plot", help="also write a PNG: spectrogram, f0 and loudness")
    features.add_argument("--frame-rate", type=int, default=100, help="frames per second")
    features.add_argument("--f0-method", default="yin", choices=["yin", "crepe-tiny", "crepe-full"])
    features.set_defaults(run=_features)
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
