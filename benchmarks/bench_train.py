"""Training-step benchmark: seconds per step and peak memory, torchddsp vs textbook.

Workload: the magenta-equivalent config (16 kHz, 250 Hz frames, GRU 512,
60 harmonics, 65 noise bands, 48000-tap reverb, 6-scale spectral loss),
batch 16 of 4 s examples; one step = forward, loss, backward, Adam update.
The straightforward model has the same decoder and parameters but renders
harmonics at audio rate ([batch, samples, harmonics] sines) and computes the
loss with plain torch.stft, as most ports do. Also the fast CPU recipe.

    python benchmarks/bench_train.py [--repeats 3] [--device cuda]
"""

from __future__ import annotations

import argparse
import json

import torch

from torchddsp.config import load_config
from torchddsp.models import Autoencoder
from torchddsp.train.precision import amp_dtype

from _harness import machine_description, measure, print_table, run_case_in_subprocess
from _reference import straightforward_harmonic

BATCH = 16


class StraightforwardAutoencoder(Autoencoder):
    """The same network; textbook harmonic synthesis and spectral loss."""

    def _synthesize(self, controls):
        nodes = self.synth.processors
        harmonic = nodes["harmonic"].get_controls(
            controls["amplitudes"], controls["harmonic_distribution"], controls["f0_hz"]
        )
        n_samples = self.n_samples(controls["f0_hz"].shape[1])
        tone = straightforward_harmonic(
            harmonic["f0_hz"],
            harmonic["amplitudes"],
            harmonic["harmonic_distribution"],
            n_samples,
            self.sample_rate,
        )
        noise = nodes["noise"](controls["noise_magnitudes"])
        return {"audio_synth": nodes["reverb"](tone + noise)}

    def loss(self, features, outputs):
        target, synth = features["audio"], outputs["audio_synth"]
        total = synth.new_zeros(())
        for n_fft in self.spectral_loss.fft_sizes:
            window = torch.hann_window(n_fft, device=synth.device)
            mags = [
                torch.stft(x, n_fft, n_fft // 4, window=window, return_complex=True).abs()
                for x in (target, synth)
            ]
            total = total + (mags[0] - mags[1]).abs().mean()
            total = total + (torch.log(mags[0] + 1e-5) - torch.log(mags[1] + 1e-5)).abs().mean()
        return {"total": total}


def _step_case(config_name: str, model_class: type, amp: bool, device: str):
    config = load_config(config_name)
    rate, frame_rate = config.data.sample_rate, config.data.frame_rate
    n_frames = round(config.data.example_seconds * frame_rate)
    model = model_class(config.model, rate, frame_rate).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.learning_rate)
    generator = torch.Generator().manual_seed(0)
    batch = {
        "f0_hz": 200 + 300 * torch.rand(BATCH, n_frames, generator=generator),
        "loudness_db": -50 + 40 * torch.rand(BATCH, n_frames, generator=generator),
        "audio": 0.1 * torch.randn(BATCH, model.n_samples(n_frames), generator=generator),
    }
    batch = {key: value.to(device) for key, value in batch.items()}

    dtype = amp_dtype(amp, torch.device(device))

    def step():
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=dtype or torch.float32, enabled=dtype is not None):
            outputs = model(batch)  # as the trainer: networks in dtype, synthesis and loss float32
        model.loss(batch, outputs)["total"].backward()
        optimizer.step()

    return step


# (config, model, mixed precision as `torchddsp train` chooses it for the device)
CASES = {
    "magenta config, torchddsp": ("solo_instrument_magenta", Autoencoder, True),
    "magenta config, torchddsp float32": ("solo_instrument_magenta", Autoencoder, False),
    "magenta config, straightforward float32": (
        "solo_instrument_magenta",
        StraightforwardAutoencoder,
        False,
    ),
    "fast CPU recipe, torchddsp": ("solo_instrument_fast", Autoencoder, True),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        step = _step_case(*CASES[args.case], args.device)
        print(json.dumps(measure(step, args.device, args.repeats)))
        return
    results = {
        name: run_case_in_subprocess(__file__, name, args.device, args.repeats) for name in CASES
    }
    print(f"machine: {machine_description(args.device)}")
    networks = amp_dtype(True, torch.device(args.device)) or torch.float32
    print(
        f"workload: one training step (forward, loss, backward, Adam), batch {BATCH}; "
        f"magenta config: 4 s examples at 16 kHz, 250 Hz frames, GRU 512; "
        f"median of {args.repeats}; torchddsp rows without 'float32' run the networks "
        f"in {str(networks).removeprefix('torch.')} as `torchddsp train` does on this device"
    )
    print_table("seconds per training step", list(results.items()))
    slow = results["magenta config, straightforward float32"]
    for name in ("magenta config, torchddsp", "magenta config, torchddsp float32"):
        fast = results[name]
        print(
            f"{name}: {slow['seconds'] / fast['seconds']:.2f}x faster per step, "
            f"{fast['peak_mib'] / max(slow['peak_mib'], 1e-9):.2f} of the peak memory "
            f"of the straightforward float32 implementation"
        )


if __name__ == "__main__":
    main()
