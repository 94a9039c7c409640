"""Live against offline timbre transfer: pitch agreement, octave glitches and measured latency.

Each input (the bundled example and FluidR3 melodies the model never heard)
goes through the exported nn~ file's ``forward`` at 48 kHz in blocks (as nn~
calls it) and through offline ``torchddsp transfer``. Both outputs are
re-tracked with YIN at 100 frames/s; the live one is first moved back by the
latency the file reports. Printed per input: the median and 95th percentile
of the pitch difference in cents on frames where both outputs are confidently
pitched, and octave glitches per minute in each output (runs of frames ten or
more semitones from the median of the half second around them). Then an onset
test: a tone after a second of silence, the time its transfer starts live and
offline, against the reported latency.

    python benchmarks/bench_live_quality.py [--model violin] [--block 512] [--seconds 30]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
import soxr
import torch

from torchddsp.adjust import Adjustments
from torchddsp.data.audio import load_audio
from torchddsp.data.soundfont import render_dataset
from torchddsp.export import export_nn
from torchddsp.features import compute_features, pad_to_hop
from torchddsp.functional.core import hz_to_midi
from torchddsp.models import example_input, load_model
from torchddsp.transfer import transfer

from _harness import machine_description

HOST_RATE, FRAME_RATE = 48000, 100
MELODIES = {"clarinet": 11, "cello": 12}  # FluidR3 instruments the bundled models never heard
CONFIDENT = 0.8


def _track(audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    waveform = pad_to_hop(torch.from_numpy(audio.astype(np.float32))[None], rate // FRAME_RATE)
    features = compute_features(waveform, rate, FRAME_RATE)
    return features["f0_hz"][0].numpy(), features["f0_confidence"][0].numpy()


def _live(model_file: Path, audio: np.ndarray, block: int, settings: dict | None = None):
    model = torch.jit.load(str(model_file))
    for name, value in (settings or {}).items():
        assert getattr(model, f"set_{name}")(value) == 0
    signal = torch.from_numpy(np.pad(audio, (0, -len(audio) % block)).astype(np.float32))
    with torch.inference_mode():
        blocks = [model(signal[None, None, i : i + block]) for i in range(0, len(signal), block)]
    return torch.cat(blocks, -1)[0, 0].numpy()


def _octave_glitches_per_minute(f0_hz: np.ndarray, confidence: np.ndarray) -> float:
    midi = hz_to_midi(torch.from_numpy(np.maximum(f0_hz, 1e-3))).numpy()
    half = FRAME_RATE // 4
    padded = np.pad(midi, half, mode="edge")
    local = np.median(np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1), axis=1)
    away = (np.abs(midi - local) >= 10) & (confidence >= CONFIDENT)
    runs = np.count_nonzero(np.diff(away.astype(int)) == 1) + int(away[0])
    return runs / (len(midi) / FRAME_RATE / 60)


def _compare(name: str, audio_48k: np.ndarray, loaded, model_file: Path, block: int) -> list:
    latency = int(torch.jit.load(str(model_file)).get_latency())
    live = _live(model_file, audio_48k, block)[latency : latency + len(audio_48k)]
    audio_16k = soxr.resample(audio_48k, HOST_RATE, loaded.sample_rate).astype(np.float32)
    offline = transfer(audio_16k, loaded).audio
    live_f0, live_confidence = _track(live, HOST_RATE)
    offline_f0, offline_confidence = _track(offline, loaded.sample_rate)
    n = min(len(live_f0), len(offline_f0))
    both = (live_confidence[:n] >= CONFIDENT) & (offline_confidence[:n] >= CONFIDENT)
    cents = np.abs(1200 * np.log2(live_f0[:n][both] / offline_f0[:n][both]))
    return [
        name,
        f"{len(audio_48k) / HOST_RATE:.1f}",
        f"{np.median(cents):.1f}",
        f"{np.percentile(cents, 95):.1f}",
        f"{100 * both.mean():.0f}%",
        f"{_octave_glitches_per_minute(live_f0, live_confidence):.1f}",
        f"{_octave_glitches_per_minute(offline_f0, offline_confidence):.1f}",
    ]


def _onset(audio: np.ndarray, rate: int) -> float:
    """Seconds until the 2.5 ms RMS first reaches a hundredth of its final level."""
    window = rate // 400
    rms = np.sqrt(np.convolve(audio**2, np.ones(window) / window, mode="valid"))
    level = np.median(rms[-rate // 2 :])
    return np.argmax(rms >= 0.01 * level) / rate


def _onset_test(loaded, model_file: Path, block: int) -> list:
    """Auto-adjust and quiet off, so that live and offline shape the onset alike."""
    t = np.arange(3 * HOST_RATE) / HOST_RATE
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6))
    audio = np.where(t >= 1.0, 0.2 * tone, 0.0).astype(np.float32)
    live = _live(model_file, audio, block, {"auto_adjust": 0, "quiet": 0.0})
    settings = Adjustments(auto_adjust=False, quiet=0.0)
    offline = transfer(soxr.resample(audio, HOST_RATE, loaded.sample_rate), loaded, settings).audio
    measured = _onset(live, HOST_RATE) - _onset(offline, loaded.sample_rate)
    reported = int(torch.jit.load(str(model_file)).get_latency())
    return [f"{1000 * measured:.1f}", f"{reported} ({1000 * reported / HOST_RATE:.1f} ms)"]


def _inputs(seconds: float, data: Path) -> dict[str, np.ndarray]:
    inputs = {"example (sung)": load_audio(example_input(), sample_rate=HOST_RATE)[0]}
    for instrument, seed in MELODIES.items():
        done = render_dataset(
            instrument, seconds / 60, data / instrument, seed=seed, sample_rate=HOST_RATE
        )
        clips = sorted(done.manifest_path.parent.glob("*.wav"))
        audio = np.concatenate([load_audio(path)[0] for path in clips])
        inputs[f"{instrument} (FluidR3)"] = audio[: int(seconds * HOST_RATE)]
    return inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="violin")
    parser.add_argument("--block", type=int, default=512, help="host block size, samples")
    parser.add_argument("--seconds", type=float, default=30.0, help="of each FluidR3 melody")
    parser.add_argument("--data", type=Path, default=Path(".bench_data/live_quality"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    loaded = load_model(args.model)
    with tempfile.TemporaryDirectory() as folder:
        model_file = export_nn(loaded, Path(folder) / f"{args.model}.ts", HOST_RATE)
        rows = [
            _compare(name, audio, loaded, model_file, args.block)
            for name, audio in _inputs(args.seconds, args.data).items()
        ]
        onset = _onset_test(loaded, model_file, args.block)
    print(machine_description())
    print(f"\n{args.model}: live (nn~ file, {HOST_RATE} Hz, blocks of {args.block}) vs offline")
    header = ["input", "seconds", "median cents", "p95 cents", "both pitched"]
    _print_rows([*header, "live glitches/min", "offline glitches/min"], rows)
    print()
    _print_rows(["onset delay measured (ms)", "reported latency (samples)"], [onset])


def _print_rows(header: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(row[i])) for row in [header, *rows]) + 2 for i in range(len(header))]
    for row in [header, *rows]:
        print("".join(f"{str(cell):>{width}}" for cell, width in zip(row, widths, strict=True)))


if __name__ == "__main__":
    main()
