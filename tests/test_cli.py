import numpy as np
import pytest
import soundfile as sf

from torchddsp.cli import main, parse_command_line


def _tone(path, sample_rate=44100, channels=2, seconds=1.0, amplitude=0.3):
    t = np.arange(int(sample_rate * seconds)) / sample_rate
    tone = amplitude * np.sin(2 * np.pi * 330.0 * t)
    sf.write(path, np.stack([tone] * channels, 1), sample_rate)


@pytest.mark.parametrize("extension", ["wav", "flac", "ogg"])
def test_features_command_writes_table_and_plot(tmp_path, capsys, extension):
    _tone(tmp_path / f"in.{extension}")
    out, plot = tmp_path / "f.npz", tmp_path / "f.png"
    assert (
        main(["features", str(tmp_path / f"in.{extension}"), "-o", str(out), "--plot", str(plot)])
        == 0
    )
    printed = capsys.readouterr().out
    assert "E4" in printed and "frames at 100 Hz" in printed
    assert np.load(out)["f0_hz"].shape == (100,)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    "content, message",
    [
        ("silent", "silent"),
        ("short", "too short"),
        ("corrupt", "not a readable audio file"),
        ("missing", "no such audio file"),
    ],
)
def test_features_command_bad_input_is_one_line_exit_2(tmp_path, capsys, content, message):
    path = tmp_path / "in.wav"
    if content == "silent":
        _tone(path, amplitude=0.0)
    elif content == "short":
        _tone(path, seconds=0.05)
    elif content == "corrupt":
        path.write_bytes(b"RIFF....WAVEjunk")
    assert main(["features", str(path), "-o", str(tmp_path / "f.csv")]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "f.csv").exists()


def test_synth_command_renders_audio(tmp_path):
    out = tmp_path / "melody.wav"
    assert main(["synth", "-o", str(out), "--notes", "60,67", "--note-seconds", "0.25"]) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and abs(len(audio) - 8000) <= 2 * 64  # whole 250 Hz frames per note
    assert 0.1 < np.abs(audio).max() <= 1.0


def test_overrides_may_follow_the_options(capsys):
    args = parse_command_line(["eval", "runs/x", "--conversion", "data=/d", "--split", "train"])
    assert args.conversion and args.overrides == ["data=/d"] and args.split == "train"
    before = parse_command_line(["eval", "runs/x", "data=/d", "--conversion"])
    assert before.overrides == ["data=/d"]
    with pytest.raises(SystemExit) as stop:
        parse_command_line(["eval", "runs/x", "--conversion", "--nope"])
    assert stop.value.code == 2
    assert "unrecognized arguments: --nope" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_command_line(["features", "a.wav", "x=1"])  # a command without overrides
