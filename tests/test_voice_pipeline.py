"""A voice model end to end, through the commands a user runs: Festival data in Common Voice's
layout -> prepare -> train -> resume -> eval -> convert -> export -> the file streamed."""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from nn_host import NNHost, random_sizes
from test_voice_data import needs_festival
from torchddsp.cli import main
from torchddsp.config import load_config
from torchddsp.train import train

TINY_MODEL = (
    "model.mlp_units=32",
    "model.gru_units=32",
    "model.encoder_gru_units=16",
    "model.n_tract_bands=17",
    "model.n_noise_bands=9",
    "model.reverb_length=400",
    "train.batch_size=4",
    "train.checkpoint_every=2",
    "train.eval_every=2",
    "train.audio_every=2",
    "train.log_every=1",
)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    folder = tmp_path_factory.mktemp("voice")
    assert main(["festival", "--tiny", str(folder / "cv")]) == 0
    options = ["--frame-rate", "100", "--example-seconds", "1", "--hop-seconds", "0.5"]
    assert main(["prepare", str(folder / "cv"), str(folder / "data"), *options]) == 0
    return folder


def _config(dataset, run_dir, *overrides):
    overrides = [f"data={dataset / 'data'}", f"train.run_dir={run_dir}", *TINY_MODEL, *overrides]
    return load_config("voice_fast", overrides)


@needs_festival
def test_prepare_keeps_labels_and_holds_out_whole_speakers(dataset):
    manifest = json.loads((dataset / "data" / "manifest.json").read_text())
    speakers = {}
    for entry in manifest["files"]:
        speakers.setdefault(entry["labels"]["split"], set()).add(entry["labels"]["speaker"])
    assert len(speakers["train"]) == 2 and len(speakers["val"]) == 1
    assert not speakers["train"] & speakers["val"]


@needs_festival
def test_train_resume_convert_export_and_stream(dataset, tmp_path, capsys, single_thread):
    run = tmp_path / "run"
    first = train(_config(dataset, run, "train.steps=2"))
    resumed = train(_config(dataset, run, "train.steps=4"))
    whole = train(_config(dataset, tmp_path / "whole", "train.steps=4"))
    assert resumed.step == 4 and len(resumed.losses) == 2
    np.testing.assert_allclose(first.losses + resumed.losses, whole.losses, rtol=1e-6)

    assert main(["eval", str(run)]) == 0
    metrics = json.loads((tmp_path / "run.eval.json").read_text())
    assert {"mcd_db", "f0_rmse_cents", "voicing_error_rate", "spectral_distance"} <= set(metrics)
    assert main(["eval", str(run), "--conversion"]) == 0
    conversion = json.loads((tmp_path / "run.conversion.json").read_text())
    assert conversion["utterances"] == 3 and 0 <= conversion["gender_accuracy_real"] <= 1
    assert {"pitch_+4_error_semitones_mean", "age_monotonic"} <= set(conversion)

    clip = sorted((dataset / "cv" / "clips").iterdir())[0]
    out = tmp_path / "converted.wav"
    controls = ["--gender", "female", "--age", "0.3", "--pitch-shift", "4"]
    assert main(["convert", str(clip), "--model", str(run), "-o", str(out), *controls]) == 0
    assert "gender 1.00, age 0.30, pitch shift +4 semitones" in capsys.readouterr().out
    source, converted = sf.info(str(clip)), sf.info(str(out))
    assert converted.samplerate == 16000
    assert converted.frames == pytest.approx(source.duration * 16000, abs=1)

    exported = tmp_path / "voice.ts"
    assert main(["export", str(run), "--format", "nn", "-o", str(exported)]) == 0
    audio, _ = sf.read(clip, dtype="float32")
    n = len(audio)
    controls = [np.full(n, 4.0), np.linspace(0, 1, n), np.full(n, 0.3)]
    signal = torch.from_numpy(np.stack([audio, *controls]).astype(np.float32))[None]
    offline = NNHost(str(exported)).run("forward", signal, [n])
    streamed = NNHost(str(exported)).run("forward", signal, random_sizes(n, seed=4))
    assert offline.abs().max() > 1e-3
    torch.testing.assert_close(streamed, offline, rtol=0, atol=1e-5)


@needs_festival
def test_bad_voice_input_gives_one_line(dataset, tmp_path, capsys):
    broken = tmp_path / "cv"
    shutil.copytree(dataset / "cv", broken)
    tsv = broken / "validated.tsv"
    lines = tsv.read_text().splitlines()
    header = lines[0].replace("\tgender\t", "\tsex\t")
    tsv.write_text("\n".join([header, *lines[1:]]) + "\n")
    assert main(["prepare", str(broken), str(tmp_path / "data")]) == 2
    assert "lacks the column(s) gender" in capsys.readouterr().err
    shutil.rmtree(broken / "clips")
    tsv.write_text("\n".join(lines) + "\n")
    assert main(["prepare", str(broken), str(tmp_path / "data")]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "no clips/ folder" in error


@needs_festival
def test_torchrun_trains_a_voice_model_on_two_processes(dataset, tmp_path):
    """The adversary and the estimator live in the loss, outside forward: DDP must still
    average their gradients (every parameter gets one each step)."""
    run_dir = tmp_path / "ddp"
    overrides = [f"data={dataset / 'data'}", f"train.run_dir={run_dir}", *TINY_MODEL]
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "torchddsp.cli", "train", "--config", "voice_fast", *overrides,
        "train.steps=2", "train.batch_size=2",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("finished at step 2") == 1
