import math
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from torchddsp.cli import main
from torchddsp.config import load_config
from torchddsp.data.dataset import DDSPDataset
from torchddsp.data.prepare import prepare_dataset
from torchddsp.errors import UserError
from torchddsp.models.saved import (
    CHECKPOINT_DIR,
    checkpoint_path,
    list_checkpoints,
    load_checkpoint,
)
from torchddsp.train import train
from torchddsp.train.precision import amp_dtype

SAMPLE_RATE = 16000
TINY_MODEL = [
    "model.n_harmonics=8",
    "model.n_noise_bands=8",
    "model.reverb_length=0",
    "model.mlp_units=16",
    "model.mlp_layers=1",
    "model.gru_units=16",
    "model.fft_sizes=[256,64]",
]
QUIET = ["train.log_every=50", "train.eval_every=1000", "train.audio_every=1000"]

pytestmark = pytest.mark.usefixtures("single_thread")


def _harmonic_tone(f0_hz: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    tone = sum(0.3 / k * np.sin(2 * np.pi * f0_hz * k * t) for k in range(1, 6))
    return (tone * np.minimum(1.0, 10 * t)).astype(np.float32)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Two 1.6 s tones: one file of 6 training examples (0.5 s), one of validation."""
    root = tmp_path_factory.mktemp("data")
    (root / "wav").mkdir()
    for name, f0_hz in (("a.wav", 220.0), ("b.wav", 330.0)):
        sf.write(root / "wav" / name, _harmonic_tone(f0_hz, 1.6), SAMPLE_RATE)
    prepared = prepare_dataset(
        root / "wav", root / "prepared", sample_rate=SAMPLE_RATE, frame_rate=250,
        example_seconds=0.5, hop_seconds=0.2, val_fraction=0.5, seed=0,
    )  # fmt: skip
    assert prepared.manifest["splits"]["train"]["n_examples"] == 6
    return root / "prepared"


def _overrides(dataset, run_dir, *extra) -> list[str]:
    return [
        f"data={dataset}",
        "data.f0_method=yin",
        "data.example_seconds=0.5",
        *TINY_MODEL,
        "train.batch_size=2",  # 3 batches an epoch
        "train.checkpoint_every=100",
        f"train.run_dir={run_dir}",
        *extra,
    ]


def _config(dataset, run_dir, *extra):
    return load_config("solo_instrument_magenta", _overrides(dataset, run_dir, *extra))


@pytest.fixture(scope="module")
def short_run(dataset, tmp_path_factory):
    """4 steps logging everything, checkpoints at steps 2 and 4."""
    run_dir = tmp_path_factory.mktemp("runs") / "short"
    logged = ["train.log_every=1", "train.eval_every=2", "train.audio_every=4"]
    config = _config(dataset, run_dir, "train.steps=4", "train.checkpoint_every=2", *logged)
    return train(config)


def test_short_run_trains_and_checkpoints(short_run):
    assert short_run.stopped == "finished" and short_run.step == 4
    assert len(short_run.losses) == 4 and all(math.isfinite(loss) for loss in short_run.losses)
    names = [path.name for path in list_checkpoints(short_run.run_dir / CHECKPOINT_DIR)]
    assert names == ["step_00000004.pt", "step_00000002.pt"]
    latest = (short_run.run_dir / CHECKPOINT_DIR / "latest").read_text().strip()
    assert latest == "step_00000004.pt" == short_run.checkpoint.name


def test_load_checkpoint_gives_model_config_and_dataset_metadata(short_run, dataset):
    model, config, metadata = load_checkpoint(short_run.run_dir)
    assert metadata["step"] == 4 and config.model.n_harmonics == 8 and not model.training
    assert metadata["dataset"]["settings"]["f0_method"] == "yin"
    assert metadata["dataset"]["statistics"]["mean_pitch"] is not None
    example = {name: value[None] for name, value in DDSPDataset(dataset, "val")[0].items()}
    with torch.no_grad():
        assert model(example)["audio_synth"].shape == example["audio"].shape


def test_same_seed_same_losses_and_logging_does_not_change_them(short_run, dataset, tmp_path):
    quiet = train(_config(dataset, tmp_path / "again", "train.steps=4", *QUIET))
    assert quiet.losses == short_run.losses
    other_seed = train(_config(dataset, tmp_path / "seed1", "train.steps=2", "train.seed=1"))
    assert other_seed.losses != short_run.losses[:2]


def test_resume_continues_exactly(short_run, dataset, tmp_path):
    """4 steps + resume + 3 steps (part-way through the second epoch) == 7 steps."""
    whole = train(_config(dataset, tmp_path / "whole", "train.steps=7", *QUIET))
    shutil.copytree(short_run.run_dir, tmp_path / "resumed")
    resumed = train(_config(dataset, tmp_path / "resumed", "train.steps=7", *QUIET))
    assert resumed.step == 7 and len(resumed.losses) == 3
    np.testing.assert_allclose(short_run.losses + resumed.losses, whole.losses, rtol=1e-6)


def test_corrupt_newest_checkpoint_falls_back_with_a_warning(short_run, dataset, tmp_path, capsys):
    run_dir = tmp_path / "run"
    shutil.copytree(short_run.run_dir, run_dir)
    newest = checkpoint_path(run_dir, 4)
    newest.write_bytes(newest.read_bytes()[:1000])  # a kill mid-write, without atomic rename
    _, _, metadata = load_checkpoint(run_dir)
    assert metadata["step"] == 2
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "step_00000004.pt is not a readable torchddsp model" in warning[0]
    newest.write_bytes(b"garbage" * 100)
    resumed = train(_config(dataset, run_dir, "train.steps=4", *QUIET))
    assert "falling back" in capsys.readouterr().err
    np.testing.assert_allclose(resumed.losses, short_run.losses[2:], rtol=1e-6)
    assert load_checkpoint(run_dir)[2]["step"] == 4  # rewritten whole


def test_tensorboard_has_losses_validation_audio_and_figures(short_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(short_run.run_dir), size_guidance={"scalars": 0, "audio": 0})
    events.Reload()
    tags = events.Tags()
    for tag in ("total", "spectral", "learning_rate", "grad_norm", "steps_per_second"):
        assert [e.step for e in events.Scalars(f"train/{tag}")] == [1, 2, 3, 4]
    assert [e.step for e in events.Scalars("validation/total")] == [2, 4]
    assert events.Scalars("train/learning_rate")[0].value == pytest.approx(3e-4)
    assert {"audio/target", "audio/resynthesis"} <= set(tags["audio"])
    assert {"figures/target", "figures/resynthesis"} <= set(tags["images"])
    assert len(list((short_run.run_dir / "figures").glob("*.png"))) == 2


def _interrupt(step):
    if step == 2:
        raise KeyboardInterrupt


def _terminate(step):
    if step == 2:
        os.kill(os.getpid(), signal.SIGTERM)


@pytest.mark.parametrize(
    "how, extra, on_step, stopped_at",
    [
        ("keyboard", [], _interrupt, 2),
        ("sigterm", [], _terminate, 2),
        ("time limit", ["train.max_minutes=0.0000001"], None, 1),
    ],
)
def test_stopped_run_leaves_a_loadable_checkpoint(
    dataset, tmp_path, how, extra, on_step, stopped_at
):
    config = _config(dataset, tmp_path / "run", "train.steps=50", *QUIET, *extra)
    result = train(config, on_step=on_step)
    assert result.stopped == ("time_limit" if how == "time limit" else "interrupted")
    assert result.step == stopped_at and len(result.losses) == stopped_at
    assert load_checkpoint(tmp_path / "run")[2]["step"] == stopped_at
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # handlers restored


def test_refuses_to_mix_runs(short_run, dataset):
    with pytest.raises(UserError, match="already holds checkpoints"):
        train(_config(dataset, short_run.run_dir, "train.steps=8"), resume=False)
    with pytest.raises(UserError, match=r"other model\.gru_units"):
        train(_config(dataset, short_run.run_dir, "train.steps=8", "model.gru_units=8"))


def test_a_checkpoint_from_before_a_config_field_resumes_with_its_default(
    short_run, dataset, tmp_path
):
    run_dir = tmp_path / "older"
    shutil.copytree(short_run.run_dir, run_dir)
    newest = checkpoint_path(run_dir, 4)
    contents = torch.load(newest, weights_only=False)
    del contents["config"]["model"]["content_warp"]  # a field added after it was written
    torch.save(contents, newest)
    assert train(_config(dataset, run_dir, "train.steps=5", *QUIET)).step == 5
    with pytest.raises(UserError, match=r"other model\.content_warp"):
        train(_config(dataset, run_dir, "train.steps=6", "model.content_warp=1.5"))


def test_load_checkpoint_of_a_missing_run_names_it(tmp_path):
    with pytest.raises(UserError, match=f"no checkpoint at {tmp_path / 'nope'}"):
        load_checkpoint(tmp_path / "nope")


def test_torchrun_two_cpu_processes(dataset, tmp_path):
    run_dir = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "torchddsp.cli", "train", "--config", "solo_instrument_magenta",
        *_overrides(dataset, run_dir, "train.steps=3", "train.batch_size=1", "train.log_every=1"),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, capture_output=True, text=True, timeout=180, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.count("finished at step 3") == 1  # rank 0 alone speaks
    assert done.stderr.count(f"watch with: tensorboard --logdir {run_dir}") == 1
    assert [p.name for p in list_checkpoints(run_dir / CHECKPOINT_DIR)] == ["step_00000003.pt"]
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1


@pytest.mark.parametrize(
    "overrides, message",
    [
        ([], "no dataset given"),
        (["data.sample_rate=8000"], "was prepared at 16000 Hz"),
        (["train.stepz=3"], "unknown key 'train.stepz'"),
        (["train.steps=many"], "'train.steps' expects int"),
        (["train.batch_size=64"], "fewer than train.batch_size=64"),
    ],
)
def test_train_command_refuses_with_one_line(dataset, tmp_path, capsys, overrides, message):
    data = [f"data={dataset}"] if overrides else []
    argv = ["train", "--config", "solo_instrument_magenta", *data, *overrides]
    assert main([*argv, f"train.run_dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_mixed_precision_only_where_the_device_computes_it_natively(monkeypatch):
    cpu = torch.device("cpu")
    assert amp_dtype(False, cpu) is None
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert amp_dtype(True, cpu) is None  # emulated bfloat16 would be slower than float32
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert amp_dtype(True, cpu) is torch.bfloat16
