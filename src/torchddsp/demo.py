"""A melody rendered from hand-set controls: harmonic + filtered noise + reverb.

Shows the processors at work without a trained model (``torchddsp synth``).
"""

from __future__ import annotations

import math

import torch

from .functional.core import midi_to_hz
from .processors import ExpDecayReverb, FilteredNoise, Harmonic

FRAME_RATE = 250
N_HARMONICS = 40
N_NOISE_BANDS = 65


def _note_controls(notes: list[float], note_seconds: float) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 with a gentle 5 Hz vibrato and a per-note attack/release envelope: [1, n_frames, 1]."""
    frames_per_note = max(2, round(note_seconds * FRAME_RATE))
    t = torch.arange(frames_per_note, dtype=torch.float64) / FRAME_RATE
    vibrato = 1.0 + 0.004 * torch.sin(2 * math.pi * 5.0 * t) * torch.clamp(t / 0.3, max=1.0)
    held = torch.clamp(t / 0.03, max=1.0) * torch.clamp((note_seconds - t) / 0.08, 0.0, 1.0)
    f0 = torch.cat(
        [midi_to_hz(torch.tensor(float(n), dtype=torch.float64)) * vibrato for n in notes]
    )
    envelope = torch.cat([held for _ in notes])
    return f0.float()[None, :, None], envelope.float()[None, :, None]


def render_melody(
    notes: list[float], note_seconds: float, sample_rate: int, seed: int = 0
) -> torch.Tensor:
    """Render MIDI ``notes`` of ``note_seconds`` each at ``sample_rate``.

    Shape: -> [n_samples].
    """
    if not notes:
        raise ValueError("notes must name at least one MIDI note, found none")
    generator = torch.Generator().manual_seed(seed)
    f0_hz, envelope = _note_controls(notes, note_seconds)
    n_frames = f0_hz.shape[1]
    harmonic = Harmonic(sample_rate, FRAME_RATE, scale_fn=None)
    noise = FilteredNoise(sample_rate, FRAME_RATE, scale_fn=None)
    reverb = ExpDecayReverb(reverb_length=sample_rate, trainable=False, scale_fn=None)
    rolloff = torch.arange(1, N_HARMONICS + 1, dtype=torch.float32) ** -1.5
    with torch.no_grad():
        tone = harmonic(0.3 * envelope, rolloff.expand(1, n_frames, N_HARMONICS), f0_hz)
        breath = noise(0.004 * envelope.expand(1, n_frames, N_NOISE_BANDS), generator=generator)
        wet = reverb(tone + breath, torch.tensor([[0.02]]), torch.tensor([[1.0]]))
    return wet[0] / max(1.0, wet.abs().max().item() / 0.9)
