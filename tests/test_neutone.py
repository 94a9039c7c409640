"""The Neutone export: knobs, the missing-SDK error, and the exported file in the compat env.

neutone-sdk needs torchaudio, which pins torch, so the export runs in an environment of its
own: ``scripts/compat_env.sh`` makes it and ``TORCHDDSP_COMPAT_PYTHON`` names its python.
There the test exports the bundled violin with the CLI (neutone-sdk's own checks run), loads
the file with plain ``torch.jit.load`` (neutone-sdk and torchaudio made unimportable) and
measures the delay of a tone's onset through it.
"""

import json
import os
import subprocess
import sys

import librosa
import numpy as np
import pytest
import torch

from torchddsp.errors import UserError
from torchddsp.export import neutone

COMPAT_PYTHON = os.environ.get("TORCHDDSP_COMPAT_PYTHON")
needs_compat_env = pytest.mark.skipif(
    not COMPAT_PYTHON,
    reason="set TORCHDDSP_COMPAT_PYTHON (scripts/compat_env.sh makes the environment)",
)
HOSTS = [(48000, 1024), (48000, 512), (44100, 1024)]  # DAW rate and buffer size
PITCH_UP_AN_OCTAVE = 0.75  # the Pitch knob at +12 semitones

# Runs in the compat env: the .nm file as a DAW plugin would drive it, without neutone-sdk.
PLAY = r"""
import json, math, sys
sys.modules["neutone_sdk"] = sys.modules["torchaudio"] = None  # imports of them now fail
import torch

path, hosts, pitch_up, renders = sys.argv[1:]
hosts, pitch_up = json.loads(hosts), float(pitch_up)
torch.set_num_threads(1)
extra = {"metadata.json": ""}
model = torch.jit.load(path, _extra_files=extra)
metadata = json.loads(extra["metadata.json"])

def sung_tone(rate, n_silence):
    # One second of A3 with vibrato and 15 harmonics, a 10 ms attack, after n_silence zeros.
    t = torch.arange(rate, dtype=torch.float64) / rate
    f0 = 220.0 * 2 ** (0.15 / 12 * torch.sin(2 * math.pi * 5.5 * t))
    phase = 2 * math.pi * torch.cumsum(f0, 0) / rate
    tone = sum(torch.sin(k * phase) / k for k in range(1, 16))
    tone = 0.3 * tone / tone.abs().max() * (t / 0.01).clamp(max=1.0)
    return torch.cat([torch.zeros(n_silence, dtype=torch.float64), tone]).float()

def play(rate, buffer_size, knobs):
    model.set_daw_sample_rate_and_buffer_size(rate, buffer_size)
    model.reset()
    onset = 20 * buffer_size - 7  # off the buffer grid
    audio = sung_tone(rate, onset)
    audio = torch.nn.functional.pad(audio, (0, -len(audio) % buffer_size))
    params = torch.tensor(knobs)[:, None].repeat(1, buffer_size)
    # The plugin's output buffer is reused: copy each block out.
    out = [model(block[None], params)[0].clone() for block in audio.split(buffer_size)]
    return onset, torch.cat(out)

knobs = [metadata["neutone_parameters"][f"p{i}"] for i in range(1, 5)]
neutral = [(k["default_value"] - k["min_value"]) / (k["max_value"] - k["min_value"]) for k in knobs]
delays = []
for rate, buffer_size in hosts:
    onset, out = play(rate, buffer_size, neutral)
    width = rate // 200  # 5 ms
    envelope = torch.nn.functional.max_pool1d(out.abs()[None, None], width, 1, width // 2)[0, 0]
    level = envelope[-rate // 4 :].median()
    rise = int(torch.nonzero(envelope > 0.1 * level)[0])
    delays.append({
        "rate": rate, "buffer_size": buffer_size, "measured": rise - onset,
        "model": model.calc_model_delay_samples(),
        "buffering": model.calc_buffering_delay_samples(),
        "silence_peak": float(envelope[:onset].max() / level),
    })
rate, buffer_size = hosts[0]
up = list(neutral)
up[0] = pitch_up
torch.save({"neutral": play(rate, buffer_size, neutral)[1], "up": play(rate, buffer_size, up)[1]},
           renders)
print(json.dumps({"metadata": metadata, "delays": delays}))
"""


def test_knob_mappings_are_linear_from_0_to_1_and_match_the_module_notes():
    notes = neutone.__doc__
    for knob in neutone.knob_mappings():
        assert knob.value(0.0) == knob.low and knob.value(1.0) == knob.high
        span = knob.high - knob.low
        value = f"{span:g} v".removeprefix("1 ") if knob.low == 0 else f"{knob.low:g} + {span:g} v"
        default = (knob.default - knob.low) / span
        row = next(line for line in notes.splitlines() if line.startswith(knob.name + " "))
        assert value in row and f" {default:g} " in row, (row, value, default)


def test_a_missing_neutone_sdk_is_a_user_error_naming_the_fix(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "neutone_sdk", None)  # importing it raises ImportError
    monkeypatch.setitem(sys.modules, "neutone_sdk.utils", None)
    with pytest.raises(UserError, match=r"pip install 'torchddsp\[neutone\]'.*torchaudio"):
        neutone.export_neutone(None, tmp_path / "model.nm")  # fails before reading the model
    assert list(tmp_path.iterdir()) == []


@needs_compat_env
def test_exported_violin_plays_with_the_delay_it_reports(tmp_path):
    target = tmp_path / "violin.nm"
    command = [COMPAT_PYTHON, "-m", "torchddsp", "export", "violin", "--format", "neutone"]
    exported = subprocess.run([*command, "-o", str(target)], capture_output=True, text=True)
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert "exported successfully" in exported.stderr  # neutone-sdk's checks all passed
    assert [path.name for path in tmp_path.iterdir()] == ["violin.nm"]  # no leftovers

    renders = tmp_path / "renders.pt"
    arguments = [str(target), json.dumps(HOSTS), str(PITCH_UP_AN_OCTAVE), str(renders)]
    played = subprocess.run([COMPAT_PYTHON, "-c", PLAY, *arguments], capture_output=True, text=True)
    assert played.returncode == 0, played.stderr[-3000:]
    report = json.loads(played.stdout.splitlines()[-1])

    metadata = report["metadata"]
    assert metadata["model_name"] == "torchddsp violin"
    assert metadata["native_sample_rates"] == neutone.SAMPLE_RATES
    assert metadata["native_buffer_sizes"] == neutone.BUFFER_SIZES
    knobs = [metadata["neutone_parameters"][f"p{i}"] for i in range(1, 5)]
    expected = neutone.knob_mappings()
    assert [(k["name"], k["min_value"], k["max_value"], k["default_value"]) for k in knobs] == [
        (k.name, k.low, k.high, k.default) for k in expected
    ]
    for delay in report["delays"]:
        print(delay)
        assert delay["silence_peak"] < 0.01  # the onset is the output's first sound
        reported = delay["model"] + delay["buffering"]
        assert abs(delay["measured"] - reported) <= delay["buffer_size"], delay

    audio = {name: signal.numpy() for name, signal in torch.load(renders).items()}
    rate = HOSTS[0][0]
    f0 = {
        name: np.median(librosa.yin(signal[-rate // 2 :], fmin=100, fmax=2000, sr=rate))
        for name, signal in audio.items()
    }
    assert f0["up"] / f0["neutral"] == pytest.approx(2.0, rel=0.01), f0
