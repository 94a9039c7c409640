"""Realtime benchmark: the exported nn~ file, block by block, on one CPU thread.

Workload: each model exported with ``torchddsp.export.export_nn`` and loaded
back with ``torch.jit.load``, as nn~ does; its ``forward`` (features, pitch
repair, adjustments, network, synthesis, reverb, both resamplers) run under
``torch.inference_mode()`` (nn~'s c10::InferenceMode) with
``torch.set_num_threads(1)`` on the bundled example melody at 48 kHz, looped,
in blocks of each size, every call timed. The stream runs one pass over the
signal as warm-up, then ``--repeats`` timed passes. Models: the four bundled
fast-recipe instruments (one architecture: the violin gets every block size,
the others ``--sibling-blocks``) and the magenta config with its 48000-tap
reverb, untrained (cost does not depend on the weights). Each model in its own
process, warmed up by a few calls (TorchScript optimises on the first ones);
peak memory is the resident high-water mark above its size after them.

    python benchmarks/bench_realtime.py [--seconds 20] [--blocks 64,512] [--models violin] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from torchddsp.config import load_config
from torchddsp.data.audio import load_audio
from torchddsp.export import export_nn
from torchddsp.models import Autoencoder, TrainedModel, example_input, load_model

from _harness import machine_description, run_case_in_subprocess, time_stream

HOST_RATE = 48000
BLOCKS = (64, 128, 256, 512, 1024, 2048)
SIBLINGS = ("flute", "trumpet", "tenor_sax")  # the violin's architecture
MAGENTA = "magenta"
MODELS = ("violin", *SIBLINGS, MAGENTA)
WARM_UP_CALLS = 10
TARGETS = {512: 25.0, 64: 5.0}  # x realtime, for the bundled models


def _trained(name: str) -> TrainedModel:
    if name != MAGENTA:
        return load_model(name)
    config = load_config("solo_instrument_magenta")
    rate, frame_rate = config.data.sample_rate, config.data.frame_rate
    return TrainedModel(
        name="magenta config, untrained",
        model=Autoencoder(config.model, rate, frame_rate).eval(),
        sample_rate=rate,
        frame_rate=frame_rate,
        f0_method=config.data.f0_method,
        statistics=load_model("violin").statistics,  # any plausible dataset's
        path=Path("untrained"),
        step=0,
        card=None,
        config=config,
    )


def _case(name: str, blocks: list[int], seconds: float, repeats: int) -> dict:
    torch.set_num_threads(1)
    example, _ = load_audio(example_input(), sample_rate=HOST_RATE)
    audio = torch.from_numpy(np.resize(example, round(seconds * HOST_RATE)))[None, None]
    with tempfile.TemporaryDirectory() as folder:
        exported = torch.jit.load(str(export_nn(_trained(name), Path(folder) / "model.ts")))
    with torch.inference_mode():
        for _ in range(WARM_UP_CALLS):
            exported(audio[..., :512])
        timings = {
            block: time_stream(exported, audio, block, repeats, HOST_RATE) for block in blocks
        }
    return {"latency": exported.get_latency(), "blocks": timings}


def _load_average() -> str:
    return ", ".join(f"{load:.2f}" for load in os.getloadavg())


def _target(name: str, block: int, realtime: float) -> str:
    if name == MAGENTA or block not in TARGETS:
        return ""
    return f">= {TARGETS[block]:g}x: {'met' if realtime >= TARGETS[block] else 'MISSED'}"


def _print_results(results: dict[str, dict]) -> None:
    print(
        f"\n{'model':<12}{'block':>7}{'budget ms':>11}{'median ms':>11}{'p99 ms':>10}"
        f"{'x realtime':>12}{'(CPU time)':>12}{'peak MiB':>10}  target"
    )
    for name, result in results.items():
        for block, timing in result["blocks"].items():
            print(
                f"{name:<12}{block:>7}{1e3 * int(block) / HOST_RATE:>11.2f}"
                f"{timing['median_ms']:>11.3f}{timing['p99_ms']:>10.3f}"
                f"{timing['realtime']:>12.2f}{timing['cpu_realtime']:>12.2f}"
                f"{timing['peak_mib']:>10.1f}  "
                f"{_target(name, int(block), timing['realtime'])}"
            )
    for name, result in results.items():
        latency = result["latency"]
        print(f"{name}: reported latency {latency} samples = {1e3 * latency / HOST_RATE:.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="audio per timed pass")
    parser.add_argument("--repeats", type=int, default=1, help="timed passes")
    parser.add_argument("--blocks", default=",".join(map(str, BLOCKS)))
    parser.add_argument("--sibling-blocks", default="64,512", help=f"for {', '.join(SIBLINGS)}")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--quick", action="store_true", help="5 s, blocks 64,512, violin, magenta")
    parser.add_argument("--device", default="cpu", choices=["cpu"])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.blocks, args.models = 5.0, "64,512", f"violin,{MAGENTA}"
    blocks = [int(b) for b in args.blocks.split(",")]
    if args.case:
        print(json.dumps(_case(args.case, blocks, args.seconds, args.repeats)))
        return
    torch.set_num_threads(1)  # as in each case's process, for the machine line
    load_before = _load_average()
    results = {}
    for name in args.models.split(","):
        model_blocks = args.sibling_blocks if name in SIBLINGS else args.blocks
        extra = ["--seconds", str(args.seconds), "--blocks", model_blocks]
        results[name] = run_case_in_subprocess(__file__, name, "cpu", args.repeats, extra)
    load_after = _load_average()
    print(
        f"machine: {machine_description('cpu')}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print(f"load average (1, 5, 15 min): {load_before} before, {load_after} after (shared)")
    print(
        f"workload: exported nn~ file (torch.jit.load), forward under inference_mode, "
        f"torch.set_num_threads(1), {HOST_RATE} Hz, bundled example looped to "
        f"{args.seconds:g} s; one warm-up pass, then {args.repeats} timed pass(es); "
        "per-call median and p99; x realtime = audio seconds / compute seconds of the median "
        "pass, by the wall clock and by this thread's CPU time"
    )
    _print_results(results)
    print(
        f"targets (bundled models, not asserted): {TARGETS[512]:g}x at 512, {TARGETS[64]:g}x at 64"
    )


if __name__ == "__main__":
    main()
