"""Rebuild a bundled instrument model and its model card from scratch.

    python scripts/build_pretrained.py violin [--train-minutes 20] [--work .bench_data/pretrained]
    python scripts/build_pretrained.py example   # the bundled example input

The example is 12 s of a generated melody sung by FluidR3_GM's choir ("aahs"),
written as 16 kHz FLAC. For each instrument:

1. ``torchddsp render``: 15 min of generated melodies through FluidR3_GM;
2. ``torchddsp prepare``: 16 kHz, 100 Hz frames, 1 s examples every 0.25 s, YIN;
3. ``torchddsp train --config solo_instrument_fast`` for ``--train-minutes``
   (``--no-train`` keeps the run as it is);
4. ``torchddsp eval`` on the held-out melodies, and timbre transfer of two
   melodies of other sources (the bundled example voice and a clarinet),
   re-tracked to measure how well the output follows the adjusted input f0;
5. writes ``src/torchddsp/pretrained/NAME.pt`` (weights, config and dataset
   statistics only) and the model card ``NAME.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from torchddsp.data.audio import load_audio
from torchddsp.data.soundfont import generate_melody, render, render_dataset
from torchddsp.evaluate import evaluate
from torchddsp.models import example_input, export_model, load_model
from torchddsp.models.trained import pretrained_dir
from torchddsp.transfer import output_f0_error, transfer

ROOT = Path(__file__).resolve().parents[1]
DATA_SEEDS = {"violin": 0, "flute": 1, "trumpet": 2, "tenor_sax": 3}
PREPARE = ["--frame-rate", "100", "--example-seconds", "1", "--hop-seconds", "0.25"]
TRANSFER_SOURCE = ("clarinet", 1234)  # an instrument none of the models learned, unseen seed
EXAMPLE = ("choir_aahs", 12.0, 7)  # instrument, seconds, seed


def _torchddsp(*args: str) -> None:
    print("$ torchddsp " + " ".join(args), flush=True)
    subprocess.run([sys.executable, "-m", "torchddsp", *args], check=True)


def build_example(work: Path) -> Path:
    instrument, seconds, seed = EXAMPLE
    rendered = render(generate_melody(instrument, seconds, seed), work / "example.flac")
    target = example_input()
    target.write_bytes(rendered.audio_path.read_bytes())
    print(f"wrote {target} ({rendered.seconds:.1f} s of {instrument}, seed {seed})")
    return target


def _transfer_quality(model_path: Path, audio: np.ndarray) -> dict:
    """Median |cents| between the output's re-tracked f0 and the adjusted input f0."""
    loaded = load_model(model_path)
    result = transfer(audio, loaded)
    error = output_f0_error(result, loaded)
    return {**error, "octave_shift": result.report.octave_shift, "seconds": result.seconds}


def _sources(work: Path) -> dict[str, np.ndarray]:
    instrument, seed = TRANSFER_SOURCE
    folder = work / f"{instrument}_transfer_source"
    render_dataset(instrument, 0.5, folder, seed=seed)
    clip = sorted(folder.glob("*.wav"))[0]
    return {
        "example voice (bundled)": load_audio(example_input(), sample_rate=16000)[0],
        f"{instrument} melody ({clip.name}, seed {seed})": load_audio(clip, sample_rate=16000)[0],
    }


def _card(name: str, metrics: dict, quality: dict, manifest: dict, run_dir: Path) -> str:
    splits, stats = manifest["splits"], manifest["statistics"]
    train, held_out = splits["train"], splits["val"]
    rows = "\n".join(f"| {k} | {v:.4g} |" for k, v in metrics.items() if isinstance(v, float))
    transfers = "\n".join(
        f"| {source} | {q['median_cents']:.1f} | {q['mean_cents']:.1f} | {q['note_frames']} "
        f"| {q['octave_shift']:+d} | {q['seconds']:.1f} |"
        for source, q in quality.items()
    )
    return f"""# {name}

A torchddsp timbre model of FluidR3_GM's {name.replace("_", " ")}, trained by
`scripts/build_pretrained.py {name}` with the project's own pipeline.

## Data

- Audio: `torchddsp render --instrument {name} --minutes 15 --seed {DATA_SEEDS[name]}`,
  generated melodies (phrases, legato and detached notes, dynamics, vibrato)
  rendered by FluidSynth.
- Features: `torchddsp prepare {" ".join(PREPARE)}`, 16 kHz, f0 by
  {manifest["settings"]["f0_method"]}.
- Split: {train["seconds"] / 60:.1f} min for training ({train["n_examples"]} examples);
  {held_out["seconds"] / 60:.1f} min held out ({held_out["n_files"]} melodies).
- Note frames: mean pitch MIDI {stats["mean_pitch"]:.1f},
  mean loudness {stats["mean_loudness"]:.1f} dB.

## Recipe

`solo_instrument_fast` (GRU 256, MLP 256 x 2, 60 harmonics, 65 noise bands, no
reverb, batch 8, Adam), {metrics["step"]} steps on a 2-core CPU. Run: `{run_dir}`.

## Evaluation on the held-out melodies (`torchddsp eval`)

| metric | value |
|---|---|
{rows}

## Timbre transfer of other sources

Output re-tracked with the model's tracker, against the adjusted input f0, on
note frames where the output is pitched:

| source | median cents | mean cents | frames | octave shift | seconds |
|---|---|---|---|---|---|
{transfers}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", choices=[*sorted(DATA_SEEDS), "example"])
    parser.add_argument("--train-minutes", type=float, default=20.0)
    parser.add_argument("--no-train", action="store_true", help="evaluate and export the run")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench_data" / "pretrained")
    parser.add_argument("--run-dir", type=Path, help="default: runs/pretrained/NAME")
    args = parser.parse_args()
    if args.name == "example":
        build_example(args.work)
        return
    work = args.work / args.name
    run_dir = args.run_dir or ROOT / "runs" / "pretrained" / args.name
    audio, prepared = work / "audio", work / "prepared"
    seed = str(DATA_SEEDS[args.name])
    _torchddsp(
        "render", "--instrument", args.name, "--minutes", "15", "--seed", seed, "-o", str(audio)
    )
    _torchddsp("prepare", str(audio), str(prepared), *PREPARE)
    if not args.no_train:
        overrides = [f"data={prepared}", f"train.run_dir={run_dir}"]
        _torchddsp("train", "--config", "solo_instrument_fast", *overrides,
                   f"train.max_minutes={args.train_minutes}")  # fmt: skip
    metrics = evaluate(run_dir, str(prepared))
    target = pretrained_dir() / f"{args.name}.pt"
    export_model(run_dir, target)
    quality = {source: _transfer_quality(target, clip) for source, clip in _sources(work).items()}
    manifest = json.loads((prepared / "manifest.json").read_text())
    card = _card(args.name, metrics, quality, manifest, Path(os.path.relpath(run_dir, ROOT)))
    target.with_suffix(".md").write_text(card)
    print(card)


if __name__ == "__main__":
    main()
