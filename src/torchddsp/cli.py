"""The ``torchddsp`` command: a thin dispatcher over the library."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .config import DataConfig
from .errors import UserError
from .features import F0_METHODS

MODEL_HELP = "bundled or user model name (torchddsp models), checkpoint file or run directory"


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


def _prepare(args: argparse.Namespace) -> None:
    from .data.prepare import prepare_dataset
    from .data.prepare_summary import summarize_preparation
    from .voice.commonvoice import is_voice_source, voice_labels

    audio_dir, labels = args.audio_dir, None
    if is_voice_source(args.audio_dir):
        audio_dir, labels = voice_labels(
            args.audio_dir, args.max_clips_per_speaker, args.val_fraction, args.seed
        )
    done = prepare_dataset(
        audio_dir,
        args.out_dir,
        sample_rate=args.sample_rate,
        frame_rate=args.frame_rate,
        example_seconds=args.example_seconds,
        hop_seconds=args.hop_seconds,
        f0_method=args.f0_method,
        val_fraction=args.val_fraction,
        seed=args.seed,
        labels=labels,
    )
    print(summarize_preparation(done))


def _train(args: argparse.Namespace) -> None:
    from .config import load_config
    from .train import train
    from .train.distributed import is_main_process

    result = train(load_config(args.config, args.overrides))
    if is_main_process():  # under torchrun, one process speaks for all
        reason = result.stopped.replace("_", " ")
        print(f"{reason} at step {result.step}; checkpoint {result.checkpoint}")
        if result.stopped != "finished":
            print("run the same command again to resume")
    if result.stopped == "interrupted":
        raise KeyboardInterrupt  # exit status 130, like any interrupted command


def _eval(args: argparse.Namespace) -> None:
    from .evaluate import default_metrics_path, evaluate, format_metrics, save_metrics

    data = _data_override(args.overrides)
    if args.conversion:
        from .voice.assess import assess_voice_model

        metrics = assess_voice_model(args.model, data)
    else:
        metrics = evaluate(args.model, data, args.split, args.batch_size)
    print(format_metrics(metrics))
    output = args.output or default_metrics_path(args.model, args.conversion)
    save_metrics(output, metrics)
    print(f"wrote {output}")


def _data_override(overrides: list[str]) -> str | None:
    data = None
    for override in overrides:
        key, _, value = override.partition("=")
        if key not in ("data", "data.path") or not value:
            raise UserError(f"unknown setting {override!r}: eval takes data=DATASET_DIR")
        data = value
    return data


def _resynth(args: argparse.Namespace) -> None:
    from .evaluate import resynthesize_file

    path = resynthesize_file(args.model, args.input, args.output)
    print(f"wrote {path}")


def _adjustments(args: argparse.Namespace):
    from .adjust import Adjustments

    try:
        return Adjustments(
            auto_adjust=not args.no_auto_adjust,
            octave_shift=args.octave_shift,
            pitch_shift=args.pitch_shift,
            loudness_shift=args.loudness_shift,
            autotune=args.autotune,
            autotune_mode=args.autotune_mode,
            quiet=args.quiet,
            note_threshold=args.threshold,
        )
    except ValueError as err:  # the user's settings, checked where they are defined
        raise UserError(str(err)) from None


def _transfer(args: argparse.Namespace) -> None:
    from .models import example_input, load_model
    from .transfer import describe, transfer_file

    if (args.input is None) == (not args.example):
        raise UserError("give an INPUT audio file or --example (the bundled melody), not both")
    settings = _adjustments(args)
    source = example_input() if args.example else args.input
    loaded = load_model(args.model)
    output = args.output or f"{Path(source).stem}.{loaded.name}.wav"
    result = transfer_file(source, loaded, output, settings, args.plot)
    seconds = len(result.audio) / result.sample_rate
    print(f"{Path(source).name} -> {loaded.name}: {describe(result, loaded)}")
    print(f"wrote {output} ({seconds:.2f} s at {result.sample_rate} Hz, in {result.seconds:.1f} s)")
    if args.plot:
        print(f"wrote {args.plot}")


def _play(args: argparse.Namespace) -> None:
    from .models import load_model
    from .play import Performance, describe, play_file

    performance = Performance(
        glide_s=args.glide,
        attack_s=args.attack,
        release_s=args.release,
        vibrato_hz=args.vibrato_rate,
        vibrato_cents=args.vibrato_depth,
        vibrato_delay_s=args.vibrato_delay,
    )
    loaded = load_model(args.model)
    output = args.output or f"{Path(args.midi).stem}.{loaded.name}.wav"
    result = play_file(args.midi, loaded, output, performance, args.track, args.channel)
    seconds = len(result.audio) / result.sample_rate
    print(f"{Path(args.midi).name} -> {loaded.name}: {describe(result)}")
    print(f"wrote {output} ({seconds:.2f} s at {result.sample_rate} Hz, in {result.seconds:.1f} s)")


EXPORT_FORMATS = ("nn", "neutone")


def _export(args: argparse.Namespace) -> None:
    from .data.atomic import check_writable
    from .models import load_model

    if args.format not in EXPORT_FORMATS:
        raise UserError(
            f"unknown export format {args.format!r}: choose {' or '.join(EXPORT_FORMATS)}"
        )
    loaded = load_model(args.model)
    suffix = ".ts" if args.format == "nn" else ".nm"
    output = check_writable(args.output or f"{loaded.name}{suffix}")
    if args.format == "nn":
        from .export import export_nn

        export_nn(loaded, output, host_rate=args.sample_rate)
    else:
        from .export.neutone import export_neutone

        export_neutone(loaded, output)
    print(
        f"wrote {output} ({output.stat().st_size / 2**20:.1f} MB): {loaded.name} for {args.format}"
    )
    if args.format == "nn":
        _print_nn_latencies(output)


def _print_nn_latencies(path: Path) -> None:
    """What the file reports, read back as a host reads it."""
    import torch

    model = torch.jit.load(str(path))
    rates = [rate for rate in (44100, 48000) if model.set_sample_rate(rate) == 0]
    latencies = []
    for rate in rates:
        model.set_sample_rate(rate)
        latencies.append(f"{model.get_latency()} samples at {rate} Hz")
    print(f"latency (forward, on top of the host's buffer): {', '.join(latencies)}")


def _models(args: argparse.Namespace) -> None:
    from .models import available_models, user_models_dir
    from .models.saved import read_checkpoint

    for name, (source, path) in sorted(available_models().items()):
        try:
            kind = read_checkpoint(path)["config"]["model"].get("kind", "instrument")
        except UserError as error:
            kind = f"unreadable: {error}"
        use = {"instrument": "transfer, play", "voice": "convert"}.get(kind, kind)
        print(f"{name:<12} {source:<8} {use:<15} {path}")
    print(f"add your own: copy a trained checkpoint to {user_models_dir()}/NAME.pt")


def _add_transfer_parser(commands) -> None:
    transfer = commands.add_parser(
        "transfer", help="play the melody of any recording with a model's timbre"
    )
    transfer.add_argument("input", nargs="?", help="audio file of any length, rate and channels")
    transfer.add_argument("--example", action="store_true", help="use the bundled example melody")
    transfer.add_argument("--model", required=True, help=MODEL_HELP)
    transfer.add_argument("-o", "--output", help="audio file (default: INPUT_STEM.MODEL.wav)")
    _add_adjustment_options(transfer)
    transfer.add_argument("--plot", help="also write a PNG of spectrograms, f0 and loudness")
    transfer.set_defaults(run=_transfer)
    models = commands.add_parser("models", help="list the bundled and user models")
    models.set_defaults(run=_models)


def _within(low: float, high: float):
    """An argparse type: a number in ``low .. high``."""

    def number(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, found {text!r}") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be within {low:g} .. {high:g}, found {text}")
        return value

    return number


def _add_play_parser(commands) -> None:
    from .play import LIMITS, Performance

    defaults = Performance()
    play = commands.add_parser("play", help="play a MIDI melody with a model's timbre")
    play.add_argument("midi", help="MIDI file (format 0 or 1)")
    play.add_argument("--model", required=True, help=MODEL_HELP)
    play.add_argument("-o", "--output", help="audio file (default: MIDI_STEM.MODEL.wav)")
    play.add_argument("--track", type=int, help="play this track only (1 = the first)")
    play.add_argument(
        "--channel", type=int, help="play this channel only (1..16; 10, the drums, never plays)"
    )
    options = (
        ("--glide", "glide_s", "seconds a legato note glides to its pitch"),
        ("--attack", "attack_s", "seconds of a velocity-127 attack (twice that at velocity 1)"),
        ("--release", "release_s", "seconds the release takes to fall silent"),
        ("--vibrato-rate", "vibrato_hz", "vibrato Hz"),
        ("--vibrato-depth", "vibrato_cents", "vibrato cents, peak (0: none)"),
        ("--vibrato-delay", "vibrato_delay_s", "seconds into each phrase before vibrato fades in"),
    )
    for flag, name, text in options:
        low, high = LIMITS[name]
        default = getattr(defaults, name)
        play.add_argument(
            flag,
            type=_within(low, high),
            default=default,
            help=f"{text} ({low:g} .. {high:g}, default {default:g})",
        )
    play.set_defaults(run=_play)


def _add_export_parser(commands) -> None:
    from .live.engine import HOST_RATES

    export = commands.add_parser(
        "export", help="a model for live use: nn~ (Pure Data, Max) or Neutone (a DAW plugin)"
    )
    export.add_argument("model", help=MODEL_HELP)
    export.add_argument(
        "--format", required=True, help=f"{' or '.join(EXPORT_FORMATS)} (TorchScript file)"
    )
    export.add_argument("-o", "--output", help="file to write (default: MODEL.ts or MODEL.nm)")
    export.add_argument(
        "--sample-rate",
        type=int,
        default=48000,
        choices=HOST_RATES,
        help="nn: the host rate it starts at (patches set theirs with 'set sample_rate')",
    )
    export.set_defaults(run=_export)


def _add_adjustment_options(parser: argparse.ArgumentParser) -> None:
    from .adjust import AUTOTUNE_MODES, LIMITS, Adjustments

    defaults = Adjustments()

    def limits(name: str) -> str:
        return "{:g} .. {:g}".format(*LIMITS[name])

    parser.add_argument(
        "--pitch-shift",
        type=float,
        default=defaults.pitch_shift,
        help=f"semitones after auto-adjust ({limits('pitch_shift')})",
    )
    parser.add_argument(
        "--octave-shift",
        type=int,
        default=defaults.octave_shift,
        help=f"octaves after auto-adjust ({limits('octave_shift')})",
    )
    parser.add_argument(
        "--loudness-shift",
        type=float,
        default=defaults.loudness_shift,
        help=f"dB after auto-adjust ({limits('loudness_shift')})",
    )
    parser.add_argument(
        "--no-auto-adjust",
        action="store_true",
        help="keep the input's register and loudness (no octave shift, quantile mapping, quiet)",
    )
    parser.add_argument(
        "--autotune",
        type=float,
        default=defaults.autotune,
        help="0 (off) .. 1 (on the notes)",
    )
    parser.add_argument(
        "--autotune-mode", default=defaults.autotune_mode, choices=list(AUTOTUNE_MODES)
    )
    parser.add_argument(
        "--quiet",
        type=float,
        default=defaults.quiet,
        help=f"dB off outside notes ({limits('quiet')})",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=defaults.note_threshold,
        help=f"note detection threshold ({limits('note_threshold')})",
    )


def _add_synth_parser(commands) -> None:
    synth = commands.add_parser("synth", help="render a melody with harmonic + noise + reverb")
    synth.add_argument("-o", "--output", required=True, help="audio file to write (wav/flac/ogg)")
    synth.add_argument("--notes", type=_notes, default=_notes("60,64,67,72,67,64,60"))
    synth.add_argument("--note-seconds", type=float, default=0.5)
    synth.add_argument("--sample-rate", type=int, default=16000)
    synth.add_argument("--seed", type=int, default=0)
    synth.set_defaults(run=_synth)


def _add_render_parser(commands) -> None:
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


def _add_features_parser(commands) -> None:
    features = commands.add_parser("features", help="f0, confidence and loudness of an audio file")
    features.add_argument("input", help="audio file: wav, flac, ogg, ... (any rate, downmixed)")
    features.add_argument("-o", "--output", help=".csv or .npz (default: INPUT.features.csv)")
    features.add_argument("--plot", help="also write a PNG: spectrogram, f0 and loudness")
    features.add_argument("--frame-rate", type=int, default=100, help="frames per second")
    features.add_argument("--f0-method", default="yin", choices=list(F0_METHODS))
    features.set_defaults(run=_features)


def _add_prepare_parser(commands) -> None:
    prepare = commands.add_parser(
        "prepare", help="turn a folder of recordings into a training dataset"
    )
    prepare.add_argument(
        "audio_dir",
        help="folder of recordings (searched recursively); or, for a voice dataset, a Common "
        "Voice language folder (validated.tsv, clips/) or a CSV of path,gender,age",
    )
    prepare.add_argument("out_dir", help="dataset folder to write (rerunning reuses its cache)")
    defaults = DataConfig()
    prepare.add_argument("--sample-rate", type=int, default=defaults.sample_rate)
    prepare.add_argument(
        "--frame-rate", type=int, default=defaults.frame_rate, help="feature frames per second"
    )
    prepare.add_argument("--example-seconds", type=float, default=defaults.example_seconds)
    prepare.add_argument(
        "--hop-seconds", type=float, default=defaults.hop_seconds, help="between example starts"
    )
    prepare.add_argument("--f0-method", default=defaults.f0_method, choices=list(F0_METHODS))
    prepare.add_argument("--val-fraction", type=float, default=defaults.val_fraction)
    prepare.add_argument(
        "--seed", type=int, default=0, help="draws the validation files (voices: speakers)"
    )
    prepare.add_argument(
        "--max-clips-per-speaker", type=int, default=50, help="voice datasets: clips kept each"
    )
    prepare.set_defaults(run=_prepare)


def _add_train_parser(commands) -> None:
    train = commands.add_parser(
        "train", help="train a DDSP autoencoder on a prepared dataset (resumes its run_dir)"
    )
    train.add_argument("--config", required=True, help="shipped config name or YAML file")
    train.add_argument(
        "overrides",
        nargs="*",
        metavar="key=value",
        help="e.g. data=DIR train.steps=2000 train.run_dir=runs/violin",
    )
    train.set_defaults(run=_train)


def _add_evaluation_parser(commands) -> None:
    evaluation = commands.add_parser("eval", help="resynthesis metrics of a model")
    evaluation.add_argument("model", help=MODEL_HELP)
    evaluation.add_argument(
        "overrides", nargs="*", help="data=DATASET_DIR (default: training data)"
    )
    evaluation.add_argument("--split", default="val", choices=["val", "train"])
    evaluation.add_argument("--batch-size", type=int, default=8)
    evaluation.add_argument(
        "--conversion",
        action="store_true",
        help="voice models: how pitch shift, gender and age convert held-out speakers",
    )
    evaluation.add_argument(
        "-o", "--output", help="metrics JSON (default: beside the run, or MODEL.eval.json here)"
    )
    evaluation.set_defaults(run=_eval)


def _add_resynth_parser(commands) -> None:
    resynth = commands.add_parser("resynth", help="reconstruct an audio file through a model")
    resynth.add_argument("model", help=MODEL_HELP)
    resynth.add_argument("input", help="audio file of any length, rate and channel count")
    resynth.add_argument("-o", "--output", required=True, help="audio file to write")
    resynth.set_defaults(run=_resynth)


def _app(args: argparse.Namespace) -> None:
    try:
        from .app.server import serve
    except ModuleNotFoundError as err:
        missing = (err.name or "").split(".")[0]
        if missing not in ("starlette", "uvicorn"):
            raise
        raise UserError(f"the app needs {missing}: pip install 'torchddsp[app]'") from None
    serve(args.host, args.port, args.data)


def _add_app_parser(commands) -> None:
    app = commands.add_parser(
        "app", help="a local web studio: transfer, play MIDI, train, convert voices"
    )
    app.add_argument("--port", type=int, default=8765, help="0: any free port (default 8765)")
    app.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: this computer only)"
    )
    app.add_argument(
        "--data",
        default=str(Path.home() / ".torchddsp" / "app"),
        help="folder for trainings (default ~/.torchddsp/app); models go to the user models folder",
    )
    app.set_defaults(run=_app)


class _Parser(argparse.ArgumentParser):
    """argparse, with a mistake on the command line told in one line (then exit status 2)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .voice.cli import add_voice_parsers

    parser = _Parser(prog="torchddsp", description=__doc__)
    parser.add_argument("--version", action="version", version=f"torchddsp {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    _add_synth_parser(commands)
    _add_render_parser(commands)
    _add_features_parser(commands)
    _add_prepare_parser(commands)
    _add_train_parser(commands)
    _add_evaluation_parser(commands)
    _add_resynth_parser(commands)
    _add_transfer_parser(commands)
    _add_play_parser(commands)
    _add_export_parser(commands)
    add_voice_parsers(commands)
    _add_app_parser(commands)
    return parser


def parse_command_line(argv: list[str] | None = None) -> argparse.Namespace:
    """The command's arguments; ``key=value`` overrides may also follow its options
    (``eval RUN --conversion data=DIR``), which argparse alone refuses."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and hasattr(args, "overrides") and all("=" in e and e[0] != "-" for e in extra):
        args.overrides = [*args.overrides, *extra]
    elif extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_command_line(argv)
    try:
        args.run(args)
    except UserError as err:
        print(f"torchddsp {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"torchddsp {args.command}: interrupted", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
