"""Pitch-tracker benchmark on SoundFont renders with exact MIDI ground truth.

Renders (once, cached) generated melodies of violin, flute, trumpet, cello and
tenor sax through FluidR3_GM with ``torchddsp render``'s machinery, then tracks
them with YIN, CREPE-tiny and CREPE-full at a 10 ms hop and prints, per
instrument and tracker, raw pitch accuracy (share of sustained-note frames
within 50 cents of the MIDI f0) and the median absolute error in cents; then
speed in times realtime (median of repeats on an excerpt, each tracker in its
own process) and peak memory.

    python benchmarks/bench_pitch.py [--minutes 2] [--data .bench_data/pitch]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from torchddsp.data.audio import load_audio
from torchddsp.data.soundfont import render_dataset
from torchddsp.features import pad_to_hop, track_f0

from _harness import machine_description, measure, print_table, run_case_in_subprocess

INSTRUMENTS = ("violin", "flute", "trumpet", "cello", "tenor_sax")
TRACKERS = ("yin", "crepe-tiny", "crepe-full")
SAMPLE_RATE, FRAME_RATE = 16000, 100  # 10 ms hop
HOP = SAMPLE_RATE // FRAME_RATE


def _clips(data_dir: Path, instrument: str, minutes: float) -> list[tuple[np.ndarray, dict]]:
    summary = render_dataset(
        instrument,
        minutes,
        data_dir / instrument,
        seed=INSTRUMENTS.index(instrument),  # each instrument its own melodies
        sample_rate=SAMPLE_RATE,
        frame_rate=FRAME_RATE,
    )
    manifest = json.loads(summary.manifest_path.read_text())
    folder = summary.manifest_path.parent
    return [
        (load_audio(folder / clip["audio"])[0], dict(np.load(folder / clip["truth"])))
        for clip in manifest["clips"]
    ]


def _cents_errors(tracker: str, clips) -> np.ndarray:
    errors = []
    for audio, truth in clips:
        waveform = pad_to_hop(torch.from_numpy(audio)[None], HOP)
        f0_hz, _ = track_f0(waveform, SAMPLE_RATE, HOP, tracker)
        estimate = f0_hz[0, : len(truth["f0_hz"])].numpy()
        on_note = truth["sustained"][: len(estimate)]
        errors.append(1200 * np.log2(np.maximum(estimate[on_note], 1e-3) / truth["f0_hz"][on_note]))
    return np.abs(np.concatenate(errors))


def _speed_case(tracker: str, seconds: float):
    generator = torch.Generator().manual_seed(0)
    t = torch.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = 0.3 * torch.sin(2 * torch.pi * 220 * t) + 0.01 * torch.randn(len(t), generator=generator)
    audio = tone[None]
    return lambda: track_f0(audio, SAMPLE_RATE, HOP, tracker)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=2.0, help="audio per instrument")
    parser.add_argument("--data", type=Path, default=Path(".bench_data/pitch"))
    parser.add_argument("--trackers", default=",".join(TRACKERS))
    parser.add_argument("--speed-seconds", type=float, default=20.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--skip", choices=["accuracy", "speed"], help="run only the other part")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        run = _speed_case(args.case, args.speed_seconds)
        print(json.dumps(measure(run, args.device, args.repeats)))
        return
    trackers = args.trackers.split(",")
    print(f"machine: {machine_description(args.device)}")
    if args.skip != "accuracy":
        print_accuracy(args.data, args.minutes, trackers)
    if args.skip != "speed":
        print_speed(trackers, args.speed_seconds, args.device, args.repeats)


def print_accuracy(data_dir: Path, minutes: float, trackers: list[str]) -> None:
    print(
        f"workload: FluidR3_GM renders, {minutes} min per instrument at {SAMPLE_RATE} Hz, "
        "10 ms hop, sustained-note frames"
    )
    print(f"\n{'instrument':<12}{'tracker':<12}{'frames':>8}{'RPA(50c)':>10}{'median |c|':>12}")
    for instrument in INSTRUMENTS:
        clips = _clips(data_dir, instrument, minutes)
        for tracker in trackers:
            errors = _cents_errors(tracker, clips)
            print(
                f"{instrument:<12}{tracker:<12}{len(errors):>8}{np.mean(errors < 50):>10.4f}"
                f"{np.median(errors):>12.2f}",
                flush=True,
            )


def print_speed(trackers: list[str], seconds: float, device: str, repeats: int) -> None:
    rows = []
    for tracker in trackers:
        extra = ["--speed-seconds", str(seconds)]
        result = run_case_in_subprocess(__file__, tracker, device, repeats, extra)
        result["x_realtime"] = seconds / result["seconds"]
        rows.append((f"{tracker} ({seconds:g} s of audio)", result))
    print_table(f"speed at a 10 ms hop, median of {repeats}", rows)
    for name, result in rows:
        print(f"{name}: {result['x_realtime']:.2f}x realtime")


if __name__ == "__main__":
    main()
