"""The ``fluidsynth`` command: MIDI in, dry mono audio out, aligned with MIDI time.

Its settings turn reverb and chorus off and fix the mixing order, so a render
is reproducible; its block latency is trimmed from the audio.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import UserError
from .audio import load_audio
from .midi import MidiFile, write_midi

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
DEFAULT_GAIN = 2.0  # FluidSynth master gain: FluidR3 melodies then peak around 0.15-0.65.

# FluidSynth synthesises at 44.1-96 kHz (events land on 64-sample blocks, so
# a high rate means fine timing), then soxr resamples to the asked rate.
SYNTH_RATE_RANGE = (44100, 96000)
# Measured (FluidSynth 2.3): an event sounds on the block after the one its
# time falls in, 64 to 128 samples late; trimming the middle, 96, leaves
# +-0.75 ms at 44.1 kHz.
FLUIDSYNTH_LATENCY_SAMPLES = 96
# Settings that make renders reproducible and dry: no reverb/chorus, float
# output (no dither), one core (fixed mixing order), sample-clock timing.
FLUIDSYNTH_SETTINGS = (
    "synth.reverb.active=0",
    "synth.chorus.active=0",
    "synth.cpu-cores=1",
    "synth.lock-memory=0",
    "audio.period-size=64",
    "audio.file.format=float",
    "player.timing-source=sample",
)


def fluidsynth_binary() -> str:
    """The ``fluidsynth`` executable on PATH."""
    binary = shutil.which("fluidsynth")
    if binary is None:
        raise UserError(
            "fluidsynth not found: install it (Debian/Ubuntu: apt-get install fluidsynth)"
        )
    return binary


def check_soundfont(path: str | os.PathLike | None) -> Path:
    """``path`` (default FluidR3 GM) if it is a SoundFont file."""
    path = DEFAULT_SOUNDFONT if path is None else Path(path)
    if not path.is_file():
        raise UserError(
            f"SoundFont {path} not found: install it (Debian/Ubuntu: apt-get install "
            "fluid-soundfont-gm) or pass --soundfont PATH"
        )
    with open(path, "rb") as file:
        header = file.read(12)
    if header[:4] != b"RIFF" or header[8:12] != b"sfbk":
        raise UserError(f"{path}: not a SoundFont (.sf2/.sf3) file; pass --soundfont PATH")
    return path


def _run_fluidsynth(
    binary: str, soundfont: Path, midi_path: Path, wav_path: Path, rate: int, gain: float
) -> None:
    settings = [arg for setting in FLUIDSYNTH_SETTINGS for arg in ("-o", setting)]
    command = [binary, "-n", "-i", "-q", *settings, "-g", f"{gain:g}", "-r", str(rate)]
    command += ["-T", "wav", "-F", str(wav_path), str(soundfont), str(midi_path)]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    # FluidSynth exits 0 even when it cannot load the SoundFont: read its messages.
    problems = [
        line.strip()
        for line in result.stderr.splitlines()
        if "error" in line.lower() or line.startswith("Failed")
    ]
    if result.returncode != 0 or problems or not wav_path.is_file():
        detail = problems[0] if problems else f"exit status {result.returncode}"
        raise UserError(f"fluidsynth failed with SoundFont {soundfont}: {detail}")


def synthesize(
    midi: MidiFile, n_samples: int, sample_rate: int, soundfont: Path, gain: float
) -> np.ndarray:
    """Mono audio of ``midi`` by FluidSynth, aligned with MIDI time (latency removed).

    Shape: -> [n_samples].
    """
    if not 0 < gain <= 10:
        raise ValueError(f"gain must be within (0, 10] (FluidSynth's range), found {gain}")
    binary = fluidsynth_binary()
    synth_rate = min(max(sample_rate, SYNTH_RATE_RANGE[0]), SYNTH_RATE_RANGE[1])
    with tempfile.TemporaryDirectory(prefix="torchddsp-render-") as tmp:
        midi_path, wav_path = Path(tmp) / "in.mid", Path(tmp) / "out.wav"
        write_midi(midi_path, midi)
        _run_fluidsynth(binary, soundfont, midi_path, wav_path, synth_rate, gain)
        audio, _ = load_audio(wav_path, sample_rate)
    latency = round(FLUIDSYNTH_LATENCY_SAMPLES * sample_rate / synth_rate)
    audio = audio[latency : latency + n_samples]
    return np.pad(audio, (0, n_samples - len(audio)))
