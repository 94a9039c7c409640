"""The nn~ export, driven as nn~ drives it (tests/nn_host.py), in this and a fresh interpreter."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nn_host import NNHost
from torchddsp.cli import main
from torchddsp.export import export_nn
from torchddsp.features import compute_features
from torchddsp.functional.core import hz_to_midi
from torchddsp.models import load_model

RATE = 48000
HOST = Path(__file__).with_name("nn_host.py")
BLOCKS = [64, 128, 256, 512, 1024, 2048, 4096]


@pytest.fixture(scope="module")
def violin_file(tmp_path_factory) -> Path:
    return export_nn(load_model("violin"), tmp_path_factory.mktemp("nn") / "violin.ts")


def _tone(seconds: float = 3.0, notes=(220.0, 330.0), rate: int = RATE) -> torch.Tensor:
    """Held notes of five harmonics with a rest between them, as [1, 1, n]."""
    t = torch.arange(round(seconds * rate), dtype=torch.float64) / rate
    per_note = seconds / len(notes)
    f0 = torch.tensor(notes, dtype=torch.float64)[(t / per_note).long().clamp_max(len(notes) - 1)]
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / rate
    tone = sum(torch.sin(k * phase) / k for k in range(1, 6))
    playing = (t % per_note) < 0.8 * per_note
    return (0.2 * tone * playing)[None, None].float()


def _stream(host: NNHost, signal: torch.Tensor, block: int = 2048) -> torch.Tensor:
    n = signal.shape[-1] // block * block
    return host.run("forward", signal[..., :n], [block] * (n // block))


def _median_midi(audio: torch.Tensor, rate: int = RATE) -> float:
    """Median pitch of the confident frames of a rendered output (YIN, 100 frames/s)."""
    features = compute_features(audio.reshape(1, -1)[:, : audio.shape[-1] // 480 * 480], rate, 100)
    confident = features["f0_confidence"][0] > 0.8
    return float(hz_to_midi(features["f0_hz"][0][confident]).median())


def _rms_db(audio: torch.Tensor) -> float:
    return float(10 * torch.log10(audio.double().square().mean()))


# ---- the protocol --------------------------------------------------------------------------


def test_methods_and_their_shapes_at_every_buffer_size(violin_file):
    host = NNHost(str(violin_file))
    assert host.methods == ["forward", "render", "features"]
    assert host.params == {
        "forward": [1, 1, 1, 1],
        "render": [2, 1, 1, 1],
        "features": [1, 1, 3, 1],
    }
    for batch in (1, 4):
        for block in BLOCKS:
            audio = torch.randn(batch, 1, block) * 0.1
            controls = torch.stack(
                [torch.full((batch, block), 440.0), torch.full((batch, block), -30.0)], 1
            )
            assert host.call("forward", audio).shape == (batch, 1, block)
            assert host.call("render", controls).shape == (batch, 1, block)
            assert host.call("features", audio).shape == (batch, 3, block)


def test_a_batch_of_four_equals_four_streams(violin_file):
    signal = torch.cat([_tone(1.0, (f,)) for f in (150.0, 220.0, 330.0, 500.0)])
    together = _stream(NNHost(str(violin_file)), signal)
    apart = torch.cat([_stream(NNHost(str(violin_file)), signal[i : i + 1]) for i in range(4)])
    torch.testing.assert_close(together, apart, rtol=0, atol=1e-5)


def test_every_attribute_round_trips_and_refuses_values_out_of_range(violin_file):
    host = NNHost(str(violin_file))
    valid = {
        "pitch_shift": (7.5, 30.0),
        "octave_shift": (-2, 9),
        "loudness_shift": (-6.0, 90.0),
        "threshold": (2.0, -1.0),
        "auto_adjust": (0, 3),
        "quiet": (30.0, -5.0),
        "autotune": (0.5, 1.5),
        "harmonic_mix": (0.25, 3.0),
        "noise_mix": (1.5, -0.5),
        "reverb_mix": (0.0, 2.5),
        "sample_rate": (44100, 12345),
    }
    assert sorted(host.attributes) == sorted(valid)
    for name, (good, bad) in valid.items():
        assert host.set(name, good) == 0, name
        assert host.get(name) == [good], name
        assert host.set(name, bad) != 0, name
        assert host.get(name) == [good], name  # a refused value changes nothing


# ---- streaming --------------------------------------------------------------------------------


def _stream_in_fresh_interpreter(python: str, model: Path, tmp_path: Path) -> dict:
    signal = torch.cat([_tone(2.0), torch.randn(1, 1, RATE) * 0.05], -1)
    torch.save(signal, tmp_path / "input.pt")
    env = {"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1"}
    command = [python, "-I", str(HOST), "stream", str(model), "input.pt", "output.pt"]
    subprocess.run(command, cwd=tmp_path, env=env, check=True, capture_output=True, text=True)
    return torch.load(tmp_path / "output.pt")


def test_the_file_streams_exactly_in_a_fresh_interpreter(violin_file, tmp_path):
    result = _stream_in_fresh_interpreter(sys.executable, violin_file, tmp_path)
    assert result["whole"].abs().max() > 0.01
    torch.testing.assert_close(result["blocks"], result["whole"], rtol=0, atol=1e-5)


@pytest.mark.skipif(
    "TORCHDDSP_COMPAT_PYTHON" not in os.environ,
    reason="set TORCHDDSP_COMPAT_PYTHON (scripts/compat_env.sh makes the environment)",
)
def test_the_file_loads_and_streams_under_libtorch_2_5(violin_file, tmp_path):
    result = _stream_in_fresh_interpreter(
        os.environ["TORCHDDSP_COMPAT_PYTHON"], violin_file, tmp_path
    )
    assert result["torch"].startswith("2.5.1")
    torch.testing.assert_close(result["blocks"], result["whole"], rtol=0, atol=1e-5)
    here = NNHost(str(violin_file)).run("forward", torch.load(tmp_path / "input.pt"), [RATE * 3])
    torch.testing.assert_close(result["whole"], here, rtol=0, atol=1e-4)


def test_a_bad_block_leaves_no_trace(violin_file):
    signal = _tone(2.0)
    broken, clean = signal.clone(), signal.clone()
    broken[..., 20000:20010] = float("nan")
    broken[..., 20100] = float("inf")
    clean[..., 20000:20010] = 0.0
    clean[..., 20100] = 0.0
    outputs = [_stream(NNHost(str(violin_file)), x, 4096) for x in (broken, clean)]
    assert torch.isfinite(outputs[0]).all()
    torch.testing.assert_close(outputs[0], outputs[1], rtol=0, atol=0)


# ---- what the attributes do ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def renders(violin_file) -> dict[str, torch.Tensor]:
    """The test tone through the violin with one attribute changed at a time."""
    settings = {
        "plain": [],
        "pitch_shift": [("pitch_shift", 12)],
        "octave_shift": [("octave_shift", -1)],
        "loudness_shift": [("loudness_shift", -12)],
        "no_harmonics": [("harmonic_mix", 0)],
        "no_noise": [("noise_mix", 0)],
        "no_auto_adjust": [("auto_adjust", 0)],
        "all_notes": [("threshold", 0)],  # every frame a note: nothing to quiet
        "loud_rests": [("quiet", 0)],
        "reverb_mix": [("reverb_mix", 0)],
    }
    signal = _tone(3.0)  # A3 for 1.5 s (the last 0.3 s a rest), then E4
    out = {}
    for name, changes in settings.items():
        host = NNHost(str(violin_file))
        for attribute, value in changes:
            assert host.set(attribute, value) == 0
        # The second note: live auto-adjust changes register only in a rest.
        out[name] = _stream(host, signal)[..., RATE * 3 // 2 :]
    return out


def test_pitch_shift_moves_the_pitch_an_octave(renders):
    cents = 100 * (_median_midi(renders["pitch_shift"]) - _median_midi(renders["plain"]))
    assert cents == pytest.approx(1200, abs=10)
    cents = 100 * (_median_midi(renders["octave_shift"]) - _median_midi(renders["plain"]))
    assert cents == pytest.approx(-1200, abs=10)


def test_auto_adjust_off_keeps_the_input_register(renders):
    # The notes (A3, E4) sit an octave below the violin's data: auto-adjust plays them up.
    shift = _median_midi(renders["plain"]) - _median_midi(renders["no_auto_adjust"])
    assert shift == pytest.approx(12, abs=0.1)


def test_loudness_shift_lowers_the_level(renders):
    drop = _rms_db(renders["plain"]) - _rms_db(renders["loudness_shift"])
    assert drop == pytest.approx(12, abs=1)


def test_threshold_and_quiet_shape_the_rests(renders):
    rest = slice(int(1.35 * RATE), int(1.48 * RATE))  # the end of the rest after the second note
    for louder in ("loud_rests", "all_notes"):
        assert _rms_db(renders[louder][..., rest]) > _rms_db(renders["plain"][..., rest]) + 6


def test_reverb_mix_leaves_a_model_without_reverb_alone(renders):
    torch.testing.assert_close(renders["reverb_mix"], renders["plain"], rtol=0, atol=0)


def _vibrato_tone(seconds: float = 2.0, depth_cents: float = 30.0) -> torch.Tensor:
    """A3 with a 5 Hz vibrato, as [1, 1, n]."""
    t = torch.arange(round(seconds * RATE), dtype=torch.float64) / RATE
    f0 = 220.0 * 2 ** (depth_cents / 1200 * torch.sin(2 * torch.pi * 5 * t))
    phase = 2 * torch.pi * torch.cumsum(f0, 0) / RATE
    return (0.2 * sum(torch.sin(k * phase) / k for k in range(1, 6)))[None, None].float()


def test_autotune_pulls_the_vibrato_onto_the_note(violin_file):
    spread = {}
    for amount in (0.0, 1.0):
        host = NNHost(str(violin_file))
        assert host.set("autotune", amount) == 0
        out = _stream(host, _vibrato_tone())[..., RATE // 2 :].reshape(1, -1)
        features = compute_features(out[:, : out.shape[1] // 480 * 480], RATE, 100)
        midi = hz_to_midi(features["f0_hz"][0][features["f0_confidence"][0] > 0.8])
        spread[amount] = float(100 * midi.std())
    assert spread[0.0] > 15  # the vibrato, +-30 cents
    assert spread[1.0] < 0.2 * spread[0.0]


def test_mixes_take_out_the_harmonics_or_the_noise(renders):
    plain, noise_only, harmonics_only = (
        renders[name] for name in ("plain", "no_harmonics", "no_noise")
    )
    torch.testing.assert_close(noise_only + harmonics_only, plain, rtol=0, atol=1e-4)
    assert _rms_db(noise_only) < _rms_db(plain) - 10  # a violin is mostly harmonics


# ---- the command --------------------------------------------------------------------------------


def test_export_command_writes_the_file_and_refuses_bad_input(tmp_path, capsys):
    assert main(["export", "violin", "--format", "nn", "-o", str(tmp_path / "v.ts")]) == 0
    assert NNHost(str(tmp_path / "v.ts")).methods == ["forward", "render", "features"]
    not_a_model = tmp_path / "notes.pt"
    not_a_model.write_bytes(b"not a model at all")
    cases = [
        ["export", "kazoo", "--format", "nn", "-o", str(tmp_path / "a.ts")],
        ["export", str(not_a_model), "--format", "nn", "-o", str(tmp_path / "b.ts")],
        ["export", "violin", "--format", "nn", "-o", "/proc/no/such/c.ts"],
        ["export", "violin", "--format", "vst", "-o", str(tmp_path / "d.ts")],
    ]
    capsys.readouterr()
    for argv in cases:
        assert main(argv) == 2, argv
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4
    assert "unknown model 'kazoo'" in errors[0]
    assert "not a readable torchddsp model" in errors[1]
    assert "cannot write /proc/no/such/c.ts" in errors[2]
    assert "unknown export format 'vst'" in errors[3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.pt", "v.ts"]
