"""Dataset preparation and reading: examples, split, statistics, cache, interruptions, CLI."""

import json
import os
import pickle
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from torchddsp.cli import main
from torchddsp.data import prepare as prep
from torchddsp.data import soundfont as sfont
from torchddsp.data.audio import load_audio
from torchddsp.data.dataset import (
    DDSPDataset,
    check_dataset_matches,
    dataset_statistics,
    read_manifest,
)
from torchddsp.errors import UserError
from torchddsp.features import CONFIDENT, compute_features, pad_to_hop

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not sfont.DEFAULT_SOUNDFONT.is_file(),
    reason="needs fluidsynth and FluidR3_GM.sf2: apt-get install fluidsynth fluid-soundfont-gm",
)

SR, FR, HOP = 16000, 100, 160
EXAMPLE_FRAMES, STEP_FRAMES = 50, 25
EXAMPLE_SAMPLES, STEP_SAMPLES = EXAMPLE_FRAMES * HOP, STEP_FRAMES * HOP
# Small examples at 100 frames/s keep the pitch tracking, hence the tests, fast.
FAST = {"frame_rate": FR, "example_seconds": 0.5, "hop_seconds": 0.25}

pytestmark = pytest.mark.usefixtures("single_thread")


def _tone(path, hz=440.0, seconds=1.0, rate=SR, channels=1, amplitude=0.3, glide=1.0):
    """A sine gliding from ``hz`` to ``hz * glide``, swelling from 1/4 to full amplitude."""
    t = np.arange(int(round(rate * seconds))) / rate
    f0 = hz * glide ** (t / seconds)
    envelope = amplitude * (0.25 + 0.75 * t / seconds)
    tone = envelope * np.sin(2 * np.pi * np.cumsum(f0) / rate)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, np.stack([tone] * channels, 1), rate)
    return path


def _whole_features(path):
    audio, _ = load_audio(path, SR)
    padded = pad_to_hop(torch.from_numpy(audio)[None], HOP)
    features = compute_features(padded, SR, FR, "yin")
    return audio, {name: value[0].numpy() for name, value in features.items()}


def _arrays(out, split):
    names = ("audio", "f0_hz", "f0_confidence", "loudness_db", "sources")
    return {name: np.load(out / split / f"{name}.npy") for name in names}


def _count_feature_calls(monkeypatch, fail_on_call=None):
    calls = []

    def counting(*args, **kwargs):
        calls.append(1)
        if len(calls) == fail_on_call:
            raise KeyboardInterrupt
        return compute_features(*args, **kwargs)

    monkeypatch.setattr(prep, "compute_features", counting)
    return calls


def _one_line(message: str) -> bool:
    return len(message.strip().splitlines()) == 1


def test_examples_are_slices_of_the_whole_file(tmp_path):
    path = _tone(tmp_path / "audio" / "glide.wav", seconds=1.37, rate=22050, glide=2.0)
    out = tmp_path / "ds"
    done = prep.prepare_dataset(path.parent, out, val_fraction=0.0, **FAST)
    audio, whole = _whole_features(path)
    arrays = _arrays(out, "train")
    n_frames = len(audio) // HOP
    n_examples = (n_frames - EXAMPLE_FRAMES) // STEP_FRAMES + 1
    assert n_examples == 4  # The last partial example is dropped.
    assert arrays["audio"].shape == (n_examples, EXAMPLE_SAMPLES)
    assert arrays["audio"].dtype == np.float32
    for name in ("f0_hz", "f0_confidence", "loudness_db"):
        assert arrays[name].shape == (n_examples, EXAMPLE_FRAMES)
        assert arrays[name].dtype == np.float32
    for k in range(n_examples):
        start, first = k * STEP_SAMPLES, k * STEP_FRAMES
        np.testing.assert_array_equal(arrays["audio"][k], audio[start : start + EXAMPLE_SAMPLES])
        for name, values in whole.items():
            np.testing.assert_array_equal(arrays[name][k], values[first : first + EXAMPLE_FRAMES])
    np.testing.assert_array_equal(arrays["sources"][:, 1], np.arange(n_examples) * STEP_SAMPLES)
    assert done.manifest["splits"]["train"]["n_examples"] == n_examples
    assert done.manifest["splits"]["val"]["n_examples"] == 0
    assert np.load(out / "val" / "audio.npy").shape == (0, EXAMPLE_SAMPLES)


def test_mixed_formats_rates_and_channels_land_at_the_target_rate(tmp_path):
    audio_dir = tmp_path / "audio"
    (audio_dir / "sub").mkdir(parents=True)
    _tone(audio_dir / "a.wav", 330.0, rate=44100, channels=2)
    _tone(audio_dir / "sub" / "b.flac", 440.0, rate=22050)
    _tone(audio_dir / "c.ogg", 550.0, rate=48000, channels=2)
    _tone(audio_dir / "d.aiff", 660.0, rate=8000)
    done = prep.prepare_dataset(audio_dir, tmp_path / "ds", val_fraction=0.0, **FAST)
    files = done.manifest["files"]
    assert [f["path"] for f in files] == ["a.wav", "c.ogg", "d.aiff", "sub/b.flac"]
    assert all(abs(f["seconds"] - 1.0) < 0.01 for f in files)
    assert done.manifest["skipped"] == []
    dataset = DDSPDataset(tmp_path / "ds")
    assert dataset.sample_rate == SR and len(dataset) == 4 * 3
    medians = [np.median(dataset[3 * k]["f0_hz"].numpy()) for k in range(4)]
    np.testing.assert_allclose(medians, [330.0, 550.0, 660.0, 440.0], rtol=0.01)


def test_unusable_files_are_skipped_with_reasons(tmp_path):
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    _tone(audio_dir / "good.wav")
    _tone(audio_dir / "silent.wav", amplitude=0.0)
    _tone(audio_dir / "short.flac", seconds=0.3)
    (audio_dir / "corrupt.wav").write_bytes(b"RIFF....WAVEjunk")
    (audio_dir / "notes.txt").write_text("not audio")
    (audio_dir / ".DS_Store").write_bytes(b"hidden files are ignored")
    done = prep.prepare_dataset(audio_dir, tmp_path / "ds", **FAST)
    reasons = {s["path"]: s["reason"] for s in done.manifest["skipped"]}
    assert set(reasons) == {"silent.wav", "short.flac", "corrupt.wav", "notes.txt"}
    assert reasons["silent.wav"].startswith("silent")
    assert reasons["short.flac"].startswith("too short (0.30 s; one example needs 0.5 s)")
    assert reasons["corrupt.wav"].startswith("not a readable audio file")
    assert reasons["notes.txt"] == "not audio (.txt extension)"
    assert [f["path"] for f in done.manifest["files"]] == ["good.wav"]
    assert done.manifest["split_method"] == "by_time"


@pytest.mark.parametrize(
    "contents, message",
    [
        ({}, r"holds nothing; expected recordings \(wav, flac"),
        ({"a.txt": b"x", "b.mid": b"y"}, "holds only 2 non-audio files"),
        (None, "no such directory"),
    ],
)
def test_folder_without_audio_is_a_one_line_error(tmp_path, contents, message):
    audio_dir = tmp_path / "audio"
    if contents is not None:
        audio_dir.mkdir()
        for name, data in contents.items():
            (audio_dir / name).write_bytes(data)
    with pytest.raises(UserError, match=message) as error:
        prep.prepare_dataset(audio_dir, tmp_path / "ds")
    assert str(audio_dir) in str(error.value) and _one_line(str(error.value))
    assert not (tmp_path / "ds").exists()


def test_only_unusable_audio_is_a_one_line_error(tmp_path):
    _tone(tmp_path / "silent.wav", amplitude=0.0)
    with pytest.raises(UserError, match=r"no usable recording \(silent.wav: silent") as error:
        prep.prepare_dataset(tmp_path, tmp_path / "ds", **FAST)
    assert _one_line(str(error.value))


def test_rerun_only_recomputes_changed_files(tmp_path, monkeypatch):
    audio_dir, out = tmp_path / "audio", tmp_path / "ds"
    audio_dir.mkdir()
    first = _tone(audio_dir / "a.wav", 440.0)
    _tone(audio_dir / "b.wav", 550.0)
    calls = _count_feature_calls(monkeypatch)
    prep.prepare_dataset(audio_dir, out, **FAST)
    before = _arrays(out, "train")
    assert len(calls) == 2
    done = prep.prepare_dataset(audio_dir, out, **FAST)
    assert len(calls) == 2 and done.n_computed == 0
    for name, array in _arrays(out, "train").items():
        np.testing.assert_array_equal(array, before[name])
    stat = first.stat()
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    done = prep.prepare_dataset(audio_dir, out, **FAST)
    assert len(calls) == 3 and done.n_computed == 1
    assert len(list((out / ".cache").glob("*.npz"))) == 2  # The stale entry is gone.


def test_interrupted_run_leaves_no_dataset_and_resumes(tmp_path, monkeypatch):
    audio_dir, out = tmp_path / "audio", tmp_path / "ds"
    audio_dir.mkdir()
    _tone(audio_dir / "a.wav", 440.0)
    _tone(audio_dir / "b.wav", 550.0)
    _count_feature_calls(monkeypatch, fail_on_call=2)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare_dataset(audio_dir, out, **FAST)
    assert sorted(p.name for p in out.iterdir()) == [".cache"]
    assert len(list((out / ".cache").glob("*.npz"))) == 1
    with pytest.raises(UserError, match="not a prepared dataset"):
        read_manifest(out)
    calls = _count_feature_calls(monkeypatch)
    done = prep.prepare_dataset(audio_dir, out, **FAST)
    assert len(calls) == 1 and done.manifest["splits"]["train"]["n_examples"] > 0


def test_interrupted_rewrite_keeps_the_previous_dataset(tmp_path, monkeypatch):
    audio_dir, out = tmp_path / "audio", tmp_path / "ds"
    audio_dir.mkdir()
    _tone(audio_dir / "a.wav", 440.0)
    prep.prepare_dataset(audio_dir, out, **FAST)
    before = _arrays(out, "train")

    def interrupted(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(prep, "_fill_examples", interrupted)
    with pytest.raises(KeyboardInterrupt):
        prep.prepare_dataset(audio_dir, out, **(FAST | {"hop_seconds": 0.5}))
    assert read_manifest(out)["settings"]["hop_seconds"] == 0.25
    for name, array in _arrays(out, "train").items():
        np.testing.assert_array_equal(array, before[name])
    assert not list(out.glob(".partial-*"))


def test_statistics_match_numpy_on_note_frames(tmp_path):
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    paths = [_tone(audio_dir / "a.wav", 440.0), _tone(audio_dir / "b.wav", 880.0)]
    prep.prepare_dataset(audio_dir, tmp_path / "ds", val_fraction=0.0, **FAST)
    stats = dataset_statistics(tmp_path / "ds")
    features = [_whole_features(path)[1] for path in paths]
    f0, confidence, loudness = (
        np.concatenate([f[name] for f in features])  # All frames lie in examples.
        for name in ("f0_hz", "f0_confidence", "loudness_db")
    )
    notes = (confidence >= CONFIDENT) & (loudness > prep.NOTE_MIN_LOUDNESS_DB)
    assert notes.mean() > 0.9 and stats["n_note_frames"] == notes.sum()
    assert stats["mean_pitch"] == pytest.approx(75.0, abs=0.02)  # MIDI 69 and 81, equal time
    assert stats["min_pitch"] == pytest.approx(69.0, abs=0.05)
    assert stats["max_pitch"] == pytest.approx(81.0, abs=0.05)
    midi = 12 * np.log2(f0[notes].astype(np.float64) / 440.0) + 69
    np.testing.assert_allclose(
        stats["pitch_quantiles"],
        np.quantile(midi, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99]),
        atol=1e-4,
    )
    loud = loudness[notes].astype(np.float64)
    assert stats["mean_loudness"] == pytest.approx(loud.mean())
    assert stats["std_loudness"] == pytest.approx(loud.std())
    np.testing.assert_allclose(
        stats["loudness_quantiles"], np.quantile(loud, np.linspace(0, 1, 101))
    )
    assert stats["loudness_quantiles"][0] == stats["min_loudness"] < stats["max_loudness"]


def test_split_is_by_file_and_deterministic(tmp_path):
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    for k in range(5):
        _tone(audio_dir / f"{k}.wav", 300.0 + 50 * k)
    done = prep.prepare_dataset(audio_dir, tmp_path / "ds", val_fraction=0.2, seed=3, **FAST)
    train, val = (set(_arrays(tmp_path / "ds", s)["sources"][:, 0]) for s in ("train", "val"))
    assert len(val) == 1 and len(train) == 4 and not train & val
    splits = [f["split"] for f in done.manifest["files"]]
    assert [i for i, s in enumerate(splits) if s == "val"] == sorted(val)
    assert done.manifest["split_method"] == "by_file"
    again = prep.prepare_dataset(audio_dir, tmp_path / "ds", val_fraction=0.2, seed=3, **FAST)
    assert [f["split"] for f in again.manifest["files"]] == splits


def test_single_file_splits_by_time(tmp_path):
    path = _tone(tmp_path / "audio" / "one.wav", seconds=2.0)
    out = tmp_path / "ds"
    done = prep.prepare_dataset(path.parent, out, val_fraction=0.25, **FAST)
    # Frames [0, 150) train, [150, 200) validation: no window crosses the boundary.
    np.testing.assert_array_equal(
        _arrays(out, "train")["sources"][:, 1], [0, 4000, 8000, 12000, 16000]
    )
    np.testing.assert_array_equal(_arrays(out, "val")["sources"][:, 1], [24000])
    assert done.manifest["files"][0]["regions_seconds"] == {"train": [0.0, 1.5], "val": [1.5, 2.0]}
    with pytest.raises(UserError, match="--val-fraction 0"):
        prep.prepare_dataset(
            path.parent, out, val_fraction=0.25, **(FAST | {"example_seconds": 1.5})
        )


def test_check_dataset_matches_names_the_fix(tmp_path):
    manifest = {
        "settings": {"sample_rate": 22050, "frame_rate": 250},
        "path": "ds",
        "audio_dir": "rec",
    }
    check_dataset_matches(manifest, 22050, 250)
    with pytest.raises(UserError) as error:
        check_dataset_matches(manifest, 16000, 250)
    message = str(error.value)
    assert message == (
        "dataset ds was prepared at 22050 Hz / 250 Hz frames, the config asks for 16000 Hz: "
        "re-run `torchddsp prepare rec ds --sample-rate 16000` or set data.sample_rate=22050"
    )
    with pytest.raises(UserError, match="--frame-rate 100` or set data.frame_rate=250"):
        check_dataset_matches(manifest, 22050, 100)


def test_dataset_works_with_a_dataloader_with_workers(tmp_path):
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    _tone(audio_dir / "a.wav", 440.0)
    _tone(audio_dir / "b.wav", 550.0)
    prep.prepare_dataset(audio_dir, tmp_path / "ds", val_fraction=0.0, **FAST)
    dataset = DDSPDataset(tmp_path / "ds")
    first = dataset[0]
    assert {k: (v.dtype, tuple(v.shape)) for k, v in first.items()} == {
        "audio": (torch.float32, (EXAMPLE_SAMPLES,)),
        "f0_hz": (torch.float32, (EXAMPLE_FRAMES,)),
        "f0_confidence": (torch.float32, (EXAMPLE_FRAMES,)),
        "loudness_db": (torch.float32, (EXAMPLE_FRAMES,)),
    }
    assert len(pickle.dumps(dataset)) < 10_000  # Workers get no copy of the arrays.
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2)
    batches = list(loader)
    audio = torch.cat([batch["audio"] for batch in batches])
    torch.testing.assert_close(audio, torch.from_numpy(_arrays(tmp_path / "ds", "train")["audio"]))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """A small dataset, prepared once; tests that change it work on a copy."""
    root = tmp_path_factory.mktemp("prepared")
    _tone(root / "audio" / "a.wav")
    return prep.prepare_dataset(root / "audio", root / "ds", **FAST).path


@pytest.mark.parametrize(
    "damage, message",
    [
        ("no manifest", "is not a prepared dataset .no manifest.json."),
        ("corrupt", "manifest.json is corrupt"),
        ("old version", "has format version 0, this torchddsp reads version 1"),
        ("missing key", "lacks statistics"),
        ("missing array", "train/f0_hz.npy is missing or corrupt"),
    ],
)
def test_damaged_dataset_is_refused_in_one_line(prepared, tmp_path, damage, message):
    out = shutil.copytree(prepared, tmp_path / "ds")
    manifest_path = out / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    if damage == "no manifest":
        manifest_path.unlink()
    elif damage == "corrupt":
        manifest_path.write_text(manifest_path.read_text()[:100])
    elif damage == "old version":
        manifest_path.write_text(json.dumps(manifest | {"format_version": 0}))
    elif damage == "missing key":
        del manifest["statistics"]
        manifest_path.write_text(json.dumps(manifest))
    else:
        (out / "train" / "f0_hz.npy").unlink()
    with pytest.raises(UserError, match=message) as error:
        DDSPDataset(out)
    assert _one_line(str(error.value))


def test_out_dir_with_other_files_is_refused_and_inside_audio_is_ignored(tmp_path):
    _tone(tmp_path / "a.wav")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "thesis.tex").write_text("x")
    with pytest.raises(UserError, match="holds other files .thesis.tex"):
        prep.prepare_dataset(tmp_path, tmp_path / "elsewhere", **FAST)
    prep.prepare_dataset(tmp_path, tmp_path / "ds", **FAST)
    again = prep.prepare_dataset(tmp_path, tmp_path / "ds", **FAST)
    assert [s["path"] for s in again.manifest["skipped"]] == ["elsewhere/thesis.tex"]


def test_cli_prepare_prints_a_summary(tmp_path, capsys):
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    _tone(audio_dir / "a.wav", 440.0)
    _tone(audio_dir / "b.flac", 550.0)
    _tone(audio_dir / "silent.wav", amplitude=0.0)
    (audio_dir / "readme.md").write_text("x")
    args = ["prepare", str(audio_dir), str(tmp_path / "ds"), "--frame-rate", "100"]
    assert main([*args, "--example-seconds", "0.5", "--hop-seconds", "0.25"]) == 0
    printed = capsys.readouterr().out
    assert "used 2 files (0.03 min at 16000 Hz); features computed for 2, 0 from cache" in printed
    assert "skipped silent.wav: silent" in printed and "skipped 1 non-audio file (.md)" in printed
    assert "train 3 examples from 1 file; val 3 examples from 1 file" in printed
    assert "pitch MIDI 72.9-72.9" in printed  # b.flac, 550 Hz, is the train file
    assert printed.endswith(f"wrote {tmp_path / 'ds'} (manifest.json, train/, val/)\n")


@pytest.mark.parametrize(
    "extra, message",
    [
        ([], "holds nothing"),
        (["--frame-rate", "300"], "frame_rate must divide sample_rate"),
        (["--example-seconds", "0.001"], "example_seconds must be a positive whole number"),
        (["--val-fraction", "1"], "val_fraction must be within"),
    ],
)
def test_cli_prepare_bad_input_is_one_line_exit_2(tmp_path, capsys, extra, message):
    (tmp_path / "audio").mkdir()
    assert main(["prepare", str(tmp_path / "audio"), str(tmp_path / "ds"), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and _one_line(err)


@needs_fluidsynth
def test_real_renders_prepare_into_their_pitch_range(tmp_path):
    audio_dir = tmp_path / "audio"
    melodies = [sfont.generate_melody("flute", 3.0, seed) for seed in (1, 2)]
    for k, melody in enumerate(melodies):
        sfont.render(melody, audio_dir / f"flute_{k}.wav")
    done = prep.prepare_dataset(audio_dir, tmp_path / "ds", **FAST)
    assert {s["reason"] for s in done.manifest["skipped"]} == {
        "not audio (.mid extension)",
        "not audio (.npz extension)",
    }
    train_melody = melodies[[f["split"] for f in done.manifest["files"]].index("train")]
    pitches = [note.pitch for note in train_melody.notes]
    stats = done.manifest["statistics"]
    assert min(pitches) - 1 < stats["pitch_quantiles"][3] < max(pitches) + 1  # the median
    assert stats["n_note_frames"] > 0.3 * stats["n_frames"]
