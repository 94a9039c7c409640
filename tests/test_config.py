import pytest
import yaml

from torchddsp.config import (
    DataConfig,
    ExperimentConfig,
    ModelConfig,
    TrainConfig,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
    shipped_configs,
)
from torchddsp.errors import UserError


def _write(tmp_path, text: str):
    path = tmp_path / "experiment.yaml"
    path.write_text(text)
    return path


def _user_error(fn, *args) -> str:
    with pytest.raises(UserError) as info:
        fn(*args)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_shipped_configs_load():
    assert {"solo_instrument_magenta", "solo_instrument_fast"} <= set(shipped_configs())
    magenta = load_config("solo_instrument_magenta")
    assert magenta.data == DataConfig(f0_method="crepe-full")
    assert magenta.model == ModelConfig()
    assert (magenta.train.batch_size, magenta.train.steps) == (16, 30000)
    fast = load_config("solo_instrument_fast.yaml")
    assert fast.data.sample_rate % fast.data.frame_rate == 0
    assert fast.model.gru_units < magenta.model.gru_units


def test_yaml_dataclass_dict_round_trip(tmp_path):
    path = _write(
        tmp_path,
        "data: {frame_rate: 100, path: /data/violin}\n"
        "model: {gru_units: 64, fft_sizes: [512, 128], loss_loudness_weight: 1}\n"
        "train: {amp: false, max_minutes: 20}\n",
    )
    config = load_config(str(path))
    assert config.data.frame_rate == 100 and config.data.sample_rate == 16000
    assert config.model.fft_sizes == (512, 128)
    assert config.model.loss_loudness_weight == 1.0
    assert isinstance(config.model.loss_loudness_weight, float)
    assert config.train == TrainConfig(amp=False, max_minutes=20.0)
    as_dict = config_to_dict(config)
    assert as_dict["model"]["fft_sizes"] == [512, 128]
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(as_dict))) == config


def test_empty_file_gives_defaults(tmp_path):
    assert load_config(str(_write(tmp_path, ""))) == ExperimentConfig()


def test_overrides_of_each_section_and_data_shorthand():
    config = load_config(
        "solo_instrument_fast",
        [
            "train.batch_size=8",
            "model.gru_units=256",
            "model.fft_sizes=[1024, 64]",
            "data=/x/prepared",
            "train.learning_rate=3e-4",
            "train.max_minutes=1",
            "train.run_dir=2024",
        ],
    )
    assert config.train.batch_size == 8
    assert config.model.gru_units == 256
    assert config.model.fft_sizes == (1024, 64)
    assert config.data.path == "/x/prepared"
    assert config.train.learning_rate == 3e-4  # YAML 1.1 reads 3e-4 as text
    assert config.train.max_minutes == 1.0 and isinstance(config.train.max_minutes, float)
    assert config.train.run_dir == "2024"  # text fields take the text verbatim


def test_apply_overrides_copies():
    base = ExperimentConfig()
    changed = apply_overrides(base, ["data.path=/y"])
    assert changed.data.path == "/y" and base.data.path == ""


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("train.batchsize=8", "'train.batchsize'"),
        ("model.gru_unit=3", "'model.gru_unit'"),
        ("optim.lr=3", "'optim'"),
        ("train.batch_size=abc", "'train.batch_size'"),
        ("train.batch_size=8.5", "'train.batch_size'"),
        ("train.learning_rate=fast", "'train.learning_rate'"),
        ("train.amp=3", "'train.amp'"),
        ("model.fft_sizes=[1024, x]", "'model.fft_sizes'"),
        ("data.f0_method=pyin", "'data.f0_method'"),
        ("data.frame_rate=300", "frame_rate"),
        ("train.batch_size", "section.key=value"),
    ],
)
def test_bad_override_names_the_key(override, named):
    message = _user_error(load_config, "solo_instrument_fast", [override])
    assert named in message and override in message


def test_unknown_key_lists_valid_keys(tmp_path):
    message = _user_error(load_config, str(_write(tmp_path, "train:\n  batchsize: 8\n")))
    assert "'train.batchsize'" in message and "batch_size" in message and "run_dir" in message


def test_wrong_type_in_file_names_key_type_and_value(tmp_path):
    message = _user_error(load_config, str(_write(tmp_path, "model:\n  gru_units: big\n")))
    assert "'model.gru_units'" in message and "int" in message and "'big'" in message


def test_unknown_config_and_malformed_yaml(tmp_path):
    message = _user_error(load_config, "no_such_config")
    assert "'no_such_config'" in message and "solo_instrument_fast" in message
    message = _user_error(load_config, str(_write(tmp_path, "model: [1, 2\n")))
    assert "experiment.yaml" in message and "line" in message


def test_config_from_dict_rejects_unknown_section():
    message = _user_error(config_from_dict, {"optimizer": {"lr": 1}})
    assert "'optimizer'" in message and "data, model, train" in message
