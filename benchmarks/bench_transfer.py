"""Timbre-transfer benchmark: a 60 s input through a bundled model, end to end.

Workload: 60 s of the bundled example melody (looped), at 16 kHz, through
``torchddsp.transfer.transfer`` with the bundled violin: f0 and loudness,
adjustments, block-by-block rendering. Tracked with YIN (the model's own
tracker) and, for comparison, CREPE-full. Each case in its own process;
median of repeats; peak memory is the resident high-water mark above the
process's size before the first run.

    python benchmarks/bench_transfer.py [--repeats 3] [--model violin] [--seconds 60]
"""

from __future__ import annotations

import argparse
import dataclasses
import json

import numpy as np

from torchddsp.data.audio import load_audio
from torchddsp.models import example_input, load_model
from torchddsp.transfer import transfer

from _harness import machine_description, measure, print_table, run_case_in_subprocess

TRACKERS = ("yin", "crepe-full")


def _case(tracker: str, model: str, seconds: float):
    loaded = dataclasses.replace(load_model(model), f0_method=tracker)
    example, _ = load_audio(example_input(), sample_rate=loaded.sample_rate)
    n_samples = round(seconds * loaded.sample_rate)
    audio = np.resize(example, n_samples)  # the melody looped to length

    def run():
        transfer(audio, loaded)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default="violin")
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--device", default="cpu", choices=["cpu"])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run = _case(args.case, args.model, args.seconds)
        print(json.dumps(measure(run, args.device, args.repeats)))
        return
    extra = ["--model", args.model, "--seconds", str(args.seconds)]
    results = [
        (
            f"{tracker}, {args.model}",
            run_case_in_subprocess(__file__, tracker, "cpu", args.repeats, extra),
        )
        for tracker in TRACKERS
    ]
    print(f"machine: {machine_description('cpu')}")
    print(
        f"workload: timbre transfer of {args.seconds:g} s at 16 kHz (bundled example, looped) "
        f"with the bundled {args.model}: features, adjustments, rendering; "
        f"median of {args.repeats}"
    )
    print_table("seconds per transfer", results)
    for name, result in results:
        print(f"{name}: {args.seconds / result['seconds']:.1f}x realtime")


if __name__ == "__main__":
    main()
