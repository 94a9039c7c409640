"""Voice benchmark: offline conversion speed, and the exported nn~ file block by block.

Workloads, each in its own process (peak memory is its own):

- ``offline``: ``torchddsp.voice.convert.convert_voice`` of the bundled example
  speech looped to ``--seconds`` at 16 kHz with the bundled voice model, to
  female, age 0.3, +4 semitones (features, attribute estimate, rendering in
  blocks), with all threads and with one; median of ``--repeats``.
- ``live``: the model exported with ``torchddsp.export.export_nn`` and loaded
  back with ``torch.jit.load``, as nn~ does; ``forward`` with the four channels
  ``[audio, pitch_shift, gender, age]`` under ``torch.inference_mode()`` and
  ``torch.set_num_threads(1)`` at 48 kHz in blocks of 512 (and ``--blocks``),
  every call timed, after a warm-up pass and a few warm-up calls.

    python benchmarks/bench_voice.py [--model voice] [--seconds 20] [--blocks 512,64]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from torchddsp.data.audio import load_audio
from torchddsp.export import export_nn
from torchddsp.models import load_model
from torchddsp.models.trained import example_voice
from torchddsp.voice.convert import convert_voice

from _harness import machine_description, measure, run_case_in_subprocess, time_stream

HOST_RATE = 48000
WARM_UP_CALLS = 10
CONTROLS = {"gender": 1.0, "age": 0.3, "pitch_shift": 4.0}


def _offline(model: str, seconds: float, threads: int, repeats: int) -> dict:
    if threads:
        torch.set_num_threads(threads)
    loaded = load_model(model)
    example, _ = load_audio(example_voice(), sample_rate=loaded.sample_rate)
    audio = np.resize(example, round(seconds * loaded.sample_rate))
    result = measure(lambda: convert_voice(audio, loaded, **CONTROLS), "cpu", repeats)
    return {**result, "realtime": seconds / result["seconds"], "threads": torch.get_num_threads()}


def _live(model: str, seconds: float, blocks: list[int], repeats: int) -> dict:
    torch.set_num_threads(1)
    example, _ = load_audio(example_voice(), sample_rate=HOST_RATE)
    n = round(seconds * HOST_RATE)
    audio = torch.from_numpy(np.resize(example, n)).float()
    controls = [torch.full((n,), CONTROLS[name]) for name in ("pitch_shift", "gender", "age")]
    signal = torch.stack([audio, *controls])[None]
    with tempfile.TemporaryDirectory() as folder:
        exported = torch.jit.load(str(export_nn(load_model(model), Path(folder) / "voice.ts")))
    with torch.inference_mode():
        for _ in range(WARM_UP_CALLS):
            exported(signal[..., :512])
        timings = {
            block: time_stream(exported, signal, block, repeats, HOST_RATE) for block in blocks
        }
    return {"latency": exported.get_latency(), "blocks": timings}


def _case(args) -> dict:
    if args.case == "live":
        return _live(args.model, args.seconds, _blocks(args.blocks), args.repeats)
    threads = 1 if args.case == "offline-1" else 0
    return _offline(args.model, args.seconds * 3, threads, args.repeats)


def _blocks(text: str) -> list[int]:
    return [int(block) for block in text.split(",")]


def _print(offline: dict[str, dict], live: dict) -> None:
    header = f"{'threads':>8}{'median s':>10}{'x realtime':>12}{'peak MiB':>10}"
    print(f"\n{'offline conversion':<28}{header}")
    for name, result in offline.items():
        print(
            f"{name:<28}{result['threads']:>8}{result['seconds']:>10.3f}"
            f"{result['realtime']:>12.1f}{result['peak_mib']:>10.1f}"
        )
    print(
        f"\n{'live (nn~ file), block':<28}{'budget ms':>10}{'median ms':>11}{'p99 ms':>9}"
        f"{'x realtime':>12}{'(CPU time)':>12}{'peak MiB':>10}"
    )
    for block, timing in live["blocks"].items():
        print(
            f"{block:<28}{1e3 * int(block) / HOST_RATE:>10.2f}{timing['median_ms']:>11.3f}"
            f"{timing['p99_ms']:>9.3f}{timing['realtime']:>12.2f}{timing['cpu_realtime']:>12.2f}"
            f"{timing['peak_mib']:>10.1f}"
        )
    latency = live["latency"]
    print(f"reported latency {latency} samples = {1e3 * latency / HOST_RATE:.1f} ms at 48 kHz")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="voice")
    parser.add_argument("--seconds", type=float, default=20.0, help="live; offline gets 3x")
    parser.add_argument("--blocks", default="512,64")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu"])
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(_case(args)))
        return
    extra = ["--model", args.model, "--seconds", str(args.seconds), "--blocks", args.blocks]
    offline = {
        f"{args.seconds * 3:g} s, all threads": run_case_in_subprocess(
            __file__, "offline", "cpu", args.repeats, extra
        ),
        f"{args.seconds * 3:g} s, one thread": run_case_in_subprocess(
            __file__, "offline-1", "cpu", args.repeats, extra
        ),
    }
    live = run_case_in_subprocess(__file__, "live", "cpu", 1, extra)
    print(
        f"machine: {machine_description('cpu')}, "
        f"CPU capability {torch.backends.cpu.get_cpu_capability()} (float32 throughout)"
    )
    print(
        f"workload: the bundled {args.model} model converting the bundled example speech "
        f"(looped) to {CONTROLS}; offline at 16 kHz, median of {args.repeats}; live: the "
        f"exported file at {HOST_RATE} Hz, one thread, one warm-up pass then one timed pass"
    )
    _print(offline, live)


if __name__ == "__main__":
    main()
