import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from torchddsp.adjust import Adjustments
from torchddsp.cli import main
from torchddsp.config import config_to_dict, load_config
from torchddsp.data.audio import load_audio
from torchddsp.errors import UserError
from torchddsp.models import Autoencoder, available_models, example_input, load_model
from torchddsp.models.saved import FORMAT, VERSION, load_checkpoint
from torchddsp.models.trained import pretrained_dir
from torchddsp.transfer import output_f0_error, transfer, transfer_file

BUNDLED = ("violin", "flute", "trumpet", "tenor_sax")
RATE = 16000
STATISTICS = {
    "mean_pitch": 72.0,
    "loudness_quantile_levels": np.linspace(0, 1, 101).tolist(),
    "loudness_quantiles": np.linspace(-45, -5, 101).tolist(),
}


@pytest.fixture(scope="module")
def model_path(tmp_path_factory):
    """An untrained fast-recipe model with dataset statistics, saved as an export."""
    config = load_config("solo_instrument_fast")
    torch.manual_seed(0)
    model = Autoencoder(config.model, config.data.sample_rate, config.data.frame_rate)
    path = tmp_path_factory.mktemp("models") / "tiny.pt"
    dataset = {"settings": {"f0_method": "yin"}, "statistics": STATISTICS}
    contents = {"format": FORMAT, "version": VERSION, "torchddsp_version": "test", "step": 0}
    contents |= {"model": model.state_dict(), "config": config_to_dict(config), "dataset": dataset}
    torch.save(contents, path)
    return path


@pytest.fixture(scope="module")
def loaded(model_path):
    return load_model(model_path)


def _melody(seconds, rate=RATE, channels=1):
    t = np.arange(round(seconds * rate)) / rate
    f0 = np.where((t * 2).astype(int) % 2, 330.0, 262.0)  # two notes, half a second each
    tone = 0.3 * np.sin(2 * np.pi * np.cumsum(f0) / rate) * np.minimum(1, t * 20)
    return np.repeat(tone[:, None], channels, axis=1).astype(np.float32)


def test_half_a_second_gives_the_same_length_at_the_model_rate(loaded):
    result = transfer(_melody(0.5)[:, 0], loaded)
    assert result.audio.shape == (8000,) and np.isfinite(result.audio).all()
    assert result.report.note_fraction > 0.5


def test_blocks_do_not_change_the_output(loaded):
    audio = _melody(3.0)[:, 0]
    whole = transfer(audio, loaded, block_frames=10_000).audio
    np.testing.assert_allclose(transfer(audio, loaded, block_frames=37).audio, whole, atol=1e-5)


@pytest.mark.parametrize(("rate", "channels"), [(44100, 2), (96000, 1)])
def test_files_at_any_rate_and_channel_count(loaded, tmp_path, rate, channels):
    source = tmp_path / "in.wav"
    sf.write(source, _melody(1.5, rate, channels), rate)
    result = transfer_file(source, loaded, tmp_path / "out.flac", plot_path=tmp_path / "p.png")
    written, written_rate = sf.read(tmp_path / "out.flac")
    assert written_rate == RATE and len(written) == round(1.5 * RATE)
    assert result.report.note_fraction > 0.5
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"


def test_silence_transfers_to_near_silence(loaded, tmp_path):
    source = tmp_path / "silence.wav"
    sf.write(source, np.zeros(RATE, np.float32), RATE)
    result = transfer_file(source, loaded, tmp_path / "out.wav")
    assert result.report.note_fraction == 0.0
    assert "no notes" in result.report.notes[0]
    assert len(result.audio) == RATE and np.isfinite(result.audio).all()


def test_adjustment_reaches_the_model(loaded):
    audio = _melody(1.0)[:, 0]
    up = transfer(audio, loaded, Adjustments(auto_adjust=False, pitch_shift=12))
    plain = transfer(audio, loaded, Adjustments(auto_adjust=False))
    np.testing.assert_allclose(up.adjusted["f0_hz"], 2 * plain.adjusted["f0_hz"], rtol=1e-5)
    auto = transfer(audio, loaded)
    assert auto.report.octave_shift == 1  # notes around MIDI 62, the data around 72


def test_ten_minutes_in_bounded_memory(model_path, tmp_path):
    source = tmp_path / "long.flac"
    sf.write(source, np.tile(_melody(10.0), (60, 1)), RATE)
    script = (
        "import sys, json, resource\n"
        "from torchddsp.models import load_model\nfrom torchddsp.transfer import transfer_file\n"
        "r = transfer_file(sys.argv[1], load_model(sys.argv[2]), sys.argv[3])\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps({'samples': len(r.audio), 'peak_mib': peak}))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script, str(source), str(model_path), str(tmp_path / "o.flac")],
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout.splitlines()[-1])
    assert report["samples"] == 600 * RATE
    assert report["peak_mib"] < 1500, report  # 10 min of float32 audio at 16 kHz is 37 MiB


def test_corrupt_file_and_unknown_model_fail_in_one_line(loaded, tmp_path, capsys):
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk")
    with pytest.raises(UserError, match="not a readable audio file"):
        transfer_file(corrupt, loaded, tmp_path / "out.wav")
    assert main(["transfer", str(corrupt), "--model", "kazoo", "-o", str(tmp_path / "o.wav")]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "unknown model 'kazoo'" in error
    assert not (tmp_path / "o.wav").exists()


def test_input_and_example_are_exclusive(capsys, tmp_path):
    assert main(["transfer", "x.wav", "--example", "--model", "violin"]) == 2
    assert "not both" in capsys.readouterr().err


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_models_load_and_have_cards(name):
    path = pretrained_dir() / f"{name}.pt"
    assert available_models()[name] == ("bundled", path)
    assert path.stat().st_size < 8 * 2**20
    model, config, metadata = load_checkpoint(path)
    assert metadata["step"] > 1000 and metadata["dataset"]["statistics"]["mean_pitch"] > 40
    card = path.with_suffix(".md").read_text()
    assert "f0_l1_cents" in card and "median cents" in card


@pytest.mark.parametrize("name", BUNDLED)
def test_bundled_model_plays_the_example_melody_in_tune(name):
    loaded = load_model(name)
    audio, _ = load_audio(example_input(), sample_rate=loaded.sample_rate)
    error = output_f0_error(transfer(audio, loaded), loaded)
    assert error["note_frames"] > 500  # of 1200 frames, 12 s at 100 Hz
    assert error["median_cents"] < 30, error


def test_readme_main_command_renders_the_example_with_the_violin(tmp_path, capsys):
    output = tmp_path / "violin.wav"
    assert main(["transfer", "--example", "--model", "violin", "-o", str(output)]) == 0
    audio, rate = sf.read(output)
    example, example_rate = sf.read(example_input())
    assert rate == 16000 and len(audio) == round(len(example) * rate / example_rate)
    assert 0.01 < np.sqrt(np.mean(audio**2)) < 1.0
    assert "wrote" in capsys.readouterr().out


def test_models_command_lists_bundled_and_user_models(model_path, monkeypatch, tmp_path, capsys):
    (tmp_path / "mine.pt").write_bytes(model_path.read_bytes())
    monkeypatch.setenv("TORCHDDSP_MODELS", str(tmp_path))
    assert main(["models"]) == 0
    listing = capsys.readouterr().out
    assert "mine" in listing and "user" in listing
    assert all(name in listing for name in BUNDLED)
    rows = {line.split()[0]: line for line in listing.splitlines()}
    assert "transfer, play" in rows["mine"] and "transfer, play" in rows["violin"]
    (tmp_path / "broken.pt").write_bytes(b"not a model")
    assert main(["models"]) == 0
    assert "unreadable" in capsys.readouterr().out
    assert load_model("mine").name == "mine"


def test_nan_samples_become_silence_with_a_warning(loaded, tmp_path, capsys):
    audio = _melody(2.0)
    audio[16000:16003] = np.nan
    audio[20000] = np.inf
    source = tmp_path / "bad.wav"
    sf.write(source, audio, RATE, subtype="FLOAT")
    result = transfer_file(source, loaded, tmp_path / "out.wav")
    warning = capsys.readouterr().err
    assert "4 NaN or infinite samples (the first at 1.000 s) set to 0" in warning
    assert np.isfinite(result.audio).all() and result.report.note_fraction > 0.5


def test_bad_transfer_settings_and_inputs_are_one_line_errors(tmp_path, capsys):
    short = tmp_path / "short.wav"
    sf.write(short, np.zeros(1, np.float32), RATE)
    output = tmp_path / "o.wav"
    cases = [
        (["transfer", str(short), "--model", "violin", "-o", str(output)], "too short"),
        (
            [
                "transfer",
                "--example",
                "--model",
                "violin",
                "--octave-shift",
                "40",
                "-o",
                str(output),
            ],
            "octave_shift must be within [-4, 4], found 40",
        ),
        (
            ["transfer", "--example", "--model", "violin", "--quiet", "-3", "-o", str(output)],
            "quiet must be within [0, 60], found -3.0",
        ),
    ]
    for argv, message in cases:
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert len(error.splitlines()) == 1 and message in error, error
    assert not output.exists()


def test_an_internal_error_is_not_dressed_as_a_user_error(monkeypatch):
    import torchddsp.transfer

    def broken(*args, **kwargs):
        raise ValueError("an internal bug")

    monkeypatch.setattr(torchddsp.transfer, "transfer", broken)
    with pytest.raises(ValueError, match="an internal bug"):
        main(["transfer", "--example", "--model", "violin", "-o", "/tmp/never.wav"])
