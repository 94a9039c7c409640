"""Core DSP benchmark: the standard DDSP workload, forward and backward.

Workload: batch 16, 64000 samples at 16 kHz, 1000 frames, 60 harmonics,
65 noise bands, 48000-tap reverb. Each case runs in its own process; the
table gives the median of repeats and peak memory above the inputs. The
"straightforward" rows are the textbook implementation (phases by cumulative
sum at audio rate, a [batch, samples, harmonics] sine tensor, summed).

    python benchmarks/bench_core.py [--device cuda] [--repeats 5]
"""

from __future__ import annotations

import argparse
import json

import torch

from torchddsp.functional.oscillators import harmonic_synthesis
from torchddsp.losses import MultiScaleSpectralLoss
from torchddsp.processors import FilteredNoise, Reverb

from _harness import machine_description, measure, print_table, run_case_in_subprocess
from _reference import straightforward_harmonic as straightforward_harmonic_synthesis

BATCH, N_SAMPLES, N_FRAMES, N_HARMONICS, N_BANDS, REVERB = 16, 64000, 1000, 60, 65, 48000
SAMPLE_RATE = 16000


def _harmonic_controls(device):
    gen = torch.Generator().manual_seed(0)
    f0 = 200 + 300 * torch.rand(BATCH, N_FRAMES, 1, generator=gen)
    amps = torch.rand(BATCH, N_FRAMES, 1, generator=gen)
    dist = torch.rand(BATCH, N_FRAMES, N_HARMONICS, generator=gen)
    return [x.to(device).requires_grad_() for x in (f0, amps, dist)]


def straightforward_harmonic(f0, amps, dist):
    return straightforward_harmonic_synthesis(f0, amps, dist, N_SAMPLES, SAMPLE_RATE)


def torchddsp_harmonic(f0, amps, dist):
    return harmonic_synthesis(f0, amps, dist, N_SAMPLES, SAMPLE_RATE)[0]


def _forward(synth, device):
    inputs = [x.detach() for x in _harmonic_controls(device)]

    def run():
        with torch.no_grad():
            synth(*inputs)

    return run


def _forward_backward(synth, device):
    inputs = _harmonic_controls(device)

    def run():
        synth(*inputs).square().mean().backward()

    return run


def _filtered_noise(device):
    noise = FilteredNoise(sample_rate=SAMPLE_RATE, frame_rate=N_FRAMES * SAMPLE_RATE // N_SAMPLES)
    magnitudes = torch.randn(BATCH, N_FRAMES, N_BANDS, device=device, requires_grad=True)
    return lambda: noise(magnitudes).square().mean().backward()


def _reverb(device):
    reverb = Reverb(reverb_length=REVERB).to(device)
    audio = torch.randn(BATCH, N_SAMPLES, device=device, requires_grad=True)
    return lambda: reverb(audio).square().mean().backward()


def _spectral_loss(device):
    loss = MultiScaleSpectralLoss().to(device)
    target = torch.randn(BATCH, N_SAMPLES, device=device)
    audio = torch.randn(BATCH, N_SAMPLES, device=device, requires_grad=True)
    return lambda: loss(target, audio).backward()


CASES = {
    "harmonic forward": lambda d: _forward(torchddsp_harmonic, d),
    "harmonic forward+backward": lambda d: _forward_backward(torchddsp_harmonic, d),
    "straightforward harmonic forward": lambda d: _forward(straightforward_harmonic, d),
    "straightforward harmonic forward+backward": lambda d: _forward_backward(
        straightforward_harmonic, d
    ),
    "filtered noise forward+backward": _filtered_noise,
    "reverb forward+backward": _reverb,
    "spectral loss forward+backward": _spectral_loss,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(measure(CASES[args.case](args.device), args.device, args.repeats)))
        return
    results = {
        name: run_case_in_subprocess(__file__, name, args.device, args.repeats) for name in CASES
    }
    print(f"machine: {machine_description(args.device)}")
    print(
        f"workload: batch {BATCH}, {N_SAMPLES} samples at {SAMPLE_RATE} Hz, {N_FRAMES} frames, "
        f"{N_HARMONICS} harmonics, {N_BANDS} noise bands, {REVERB}-tap reverb; "
        f"median of {args.repeats}"
    )
    print_table("torchddsp core", list(results.items()))
    for mode in ("forward", "forward+backward"):
        fast = results[f"harmonic {mode}"]
        slow = results[f"straightforward harmonic {mode}"]
        print(
            f"harmonic {mode}: {slow['seconds'] / fast['seconds']:.1f}x faster, "
            f"{fast['peak_mib'] / max(slow['peak_mib'], 1e-9):.3f} of the peak memory "
            "of the straightforward implementation"
        )


if __name__ == "__main__":
    main()
