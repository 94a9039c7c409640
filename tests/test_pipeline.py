"""End to end through the command line: render -> prepare -> train -> resume -> eval -> resynth."""

import json
import shutil

import numpy as np
import pytest
import soundfile as sf

from torchddsp.cli import main

pytestmark = [
    pytest.mark.usefixtures("single_thread"),
    pytest.mark.skipif(
        shutil.which("fluidsynth") is None,
        reason="needs FluidSynth and FluidR3: apt-get install fluidsynth fluid-soundfont-gm",
    ),
]
TINY = [
    "model.n_harmonics=16",
    "model.n_noise_bands=16",
    "model.reverb_length=0",
    "model.mlp_units=32",
    "model.mlp_layers=1",
    "model.gru_units=32",
    "model.fft_sizes=[512,128]",
    "train.batch_size=4",
    "train.log_every=2",
    "train.eval_every=3",
    "train.audio_every=3",
    "train.checkpoint_every=3",
]


def _loss_log(run_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_dir)).Reload()
    return {e.step: e.value for e in events.Scalars("train/total")}


def test_render_prepare_train_resume_eval_resynth(tmp_path, capsys):
    renders, data, run = tmp_path / "renders", tmp_path / "data", tmp_path / "run"
    assert (
        main(
            [
                "render",
                "--instrument",
                "violin",
                "--minutes",
                "1.2",
                "--out",
                str(renders),
                "--seed",
                "3",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "prepare",
                str(renders),
                str(data),
                "--frame-rate",
                "100",
                "--example-seconds",
                "1",
                "--hop-seconds",
                "0.5",
            ]
        )
        == 0
    )
    train = [
        "train",
        "--config",
        "solo_instrument_fast",
        f"data={data}",
        f"train.run_dir={run}",
        *TINY,
    ]
    assert main([*train, "train.steps=3"]) == 0
    first_part = _loss_log(run)
    assert main([*train, "train.steps=6"]) == 0  # resumes from step 3
    resumed = _loss_log(run)
    assert set(first_part) <= set(resumed) and max(resumed) == 6
    assert all(np.isfinite(list(resumed.values())))
    capsys.readouterr()

    metrics_path = tmp_path / "metrics.json"
    assert main(["eval", str(run), "-o", str(metrics_path)]) == 0
    metrics = json.loads(metrics_path.read_text())
    assert metrics["step"] == 6 and metrics["f0_method"] == "yin"
    assert metrics["n_note_frames"] > 0 and np.isfinite(metrics["loudness_l1_db"])
    assert "f0_l1_cents" in capsys.readouterr().out

    source = sorted(renders.glob("*.wav"))[0]
    out = tmp_path / "resynth.wav"
    assert main(["resynth", str(run), str(source), "-o", str(out)]) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and len(audio) == sf.info(source).frames


def test_eval_and_resynth_refuse_bad_input(tmp_path, capsys, monkeypatch):
    assert main(["eval", str(tmp_path / "missing")]) == 2
    assert main(["resynth", str(tmp_path / "missing"), "x.wav", "-o", "y.wav"]) == 2
    (tmp_path / "empty_run").mkdir()
    assert main(["eval", str(tmp_path / "empty_run")]) == 2
    monkeypatch.chdir(tmp_path)
    assert main(["eval", "violin"]) == 2  # bundled: its training data is not on this machine
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 4
    assert all("unknown model" in line for line in errors[:2])
    assert "no checkpoint" in errors[2]
    assert "violin: its training data" in errors[3] and "pass data=DATASET_DIR" in errors[3]
    assert not list(tmp_path.glob("*.json"))


def test_eval_of_a_bundled_model_writes_here_not_into_the_package(tmp_path, monkeypatch):
    from torchddsp.evaluate import default_metrics_path

    monkeypatch.chdir(tmp_path)
    assert default_metrics_path("violin") == tmp_path.joinpath("violin.eval.json").relative_to(
        tmp_path
    )
    (tmp_path / "runs" / "cello").mkdir(parents=True)
    assert default_metrics_path("runs/cello/") == type(tmp_path)("runs/cello.eval.json")
