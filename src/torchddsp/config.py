"""Experiment configuration: typed dataclasses read from YAML, overridable by ``key.sub=value``.

An experiment has three sections, ``data``, ``model`` and ``train``. A YAML
file sets any subset of their fields; the rest keep the dataclass defaults.
Configs shipped in ``torchddsp/configs`` are found by name
(``load_config("solo_instrument_fast")``). Every mistake (unknown file, section
or key, a value of the wrong type) raises a one-line :class:`UserError` that
names it and lists what is allowed.
"""

from __future__ import annotations

import copy
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .errors import UserError
from .features import F0_METHODS
from .functional.core import RESAMPLE_METHODS
from .functional.spectral import frame_hop_size
from .yaml_files import read_yaml, shipped_names, yaml_problem


@dataclass
class DataConfig:
    """Dataset preparation: rates, example length and pitch tracker."""

    sample_rate: int = 16000  # Hz
    frame_rate: int = 250  # Hz of f0 and loudness frames; must divide sample_rate
    example_seconds: float = 4.0  # length of a training example
    hop_seconds: float = 1.0  # stride between consecutive examples
    f0_method: str = "yin"  # one of torchddsp.features.F0_METHODS
    val_fraction: float = 0.1  # share of the audio held out for evaluation
    path: str = ""  # prepared dataset folder


@dataclass
class ModelConfig:
    """Decoder sizes, synthesizer and spectral loss of the autoencoder."""

    kind: str = "instrument"  # instrument: harmonic + noise; voice: glottal source + vocal tract
    n_harmonics: int = 60
    n_noise_bands: int = 65
    n_tract_bands: int = 65  # voice: bands of the vocal tract filter on the glottal source
    adversary_weight: float = 0.1  # voice: attribute loss through gradient reversal on z
    content_warp: float = 1.2  # voice: training scales the encoder input's frequencies by up to
    # this factor either way (vocal tract length perturbation); 1 = off
    female_formant_ratio: float = 1.0  # voice: formants of gender 1 over gender 0 (1 = off)
    child_formant_ratio: float = 1.0  # voice: formants of a child over an adult man (1 = off)
    reverb_length: int = 48000  # impulse response taps; 0 = no reverb
    mlp_units: int = 512
    mlp_layers: int = 3  # 0 = no fc stacks around the GRU (DDSP's tiny model)
    gru_units: int = 512
    z_dims: int = 0  # 0 = no z encoder; > 0 = MFCC -> GRU -> z encoder (voice: the content code)
    n_mfcc: int = 30
    encoder_gru_units: int = 512
    amp_resample_method: str = "window"  # one of functional.core.RESAMPLE_METHODS
    fft_sizes: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64)
    loss_mag_weight: float = 1.0
    loss_logmag_weight: float = 1.0
    loss_loudness_weight: float = 0.0


@dataclass
class TrainConfig:
    """Optimisation, schedule of checkpoints and logs, and the run folder."""

    batch_size: int = 16
    steps: int = 30000
    learning_rate: float = 3e-3
    lr_decay_steps: int = 10000  # the learning rate is multiplied by lr_decay_rate ...
    lr_decay_rate: float = 0.98  # ... every lr_decay_steps steps
    grad_clip_norm: float = 3.0
    seed: int = 0
    checkpoint_every: int = 500  # steps
    eval_every: int = 1000
    log_every: int = 50
    audio_every: int = 1000
    num_workers: int = 0
    amp: bool = True  # bfloat16/float16 networks where the device computes them natively
    max_minutes: float = 0.0  # wall-clock limit; 0 = no time limit
    run_dir: str = "runs/default"


@dataclass
class ExperimentConfig:
    """A whole experiment: what data, which model, how to train it."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


SECTIONS = {"data": DataConfig, "model": ModelConfig, "train": TrainConfig}
SHORTHANDS = {"data": "data.path"}  # `data=/x` means `data.path=/x`
MODEL_KINDS = ("instrument", "voice")
CHOICES = {
    ("data", "f0_method"): F0_METHODS,
    ("model", "amp_resample_method"): RESAMPLE_METHODS,
    ("model", "kind"): MODEL_KINDS,
}
_INVALID = object()  # a value that does not fit the field's type


def shipped_configs() -> list[str]:
    """Names of the experiment configs shipped in ``torchddsp/configs``."""
    return shipped_names(__package__)


def load_config(name_or_path: str | Path, overrides: Sequence[str] = ()) -> ExperimentConfig:
    """Read a shipped config (by name) or a YAML file, then apply ``overrides``.

    Overrides are ``section.key=value`` (``train.batch_size=8``,
    ``model.fft_sizes=[1024,256]``) or the shorthand ``data=/x`` for
    ``data.path=/x``. Values are parsed as YAML, except for text fields, which
    take the text verbatim (so a path such as ``2024`` or ``on`` stays text).
    Raises :class:`UserError` naming the file, key or value at fault.
    """
    source, parsed = read_yaml(name_or_path, __package__, "config")
    config = _build(parsed, source)
    for override in overrides:
        _apply_override(config, override)
    _check_consistency(config, " ".join([source, *overrides]))
    return config


def apply_overrides(config: ExperimentConfig, overrides: Sequence[str]) -> ExperimentConfig:
    """A copy of ``config`` with ``section.key=value`` overrides (see :func:`load_config`)."""
    config = copy.deepcopy(config)
    for override in overrides:
        _apply_override(config, override)
    _check_consistency(config, " ".join(overrides) or "config")
    return config


def config_to_dict(config: ExperimentConfig) -> dict:
    """Plain nested dict of built-in types (tuples as lists), for YAML and checkpoints."""
    return {name: _plain(dataclasses.asdict(getattr(config, name))) for name in SECTIONS}


def _plain(values: dict) -> dict:
    return {
        key: list(value) if isinstance(value, tuple) else value for key, value in values.items()
    }


def config_from_dict(d: Mapping, source: str = "config") -> ExperimentConfig:
    """Inverse of :func:`config_to_dict`; missing keys keep their defaults.

    ``source`` names the origin (a file, a checkpoint) in error messages.
    """
    config = _build(d, source)
    _check_consistency(config, source)
    return config


# Reading ----------------------------------------------------------------------------------------
def _parse_yaml(text: str, source: str) -> object:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise UserError(f"{source}: malformed YAML, {yaml_problem(error)}") from error


# Building and checking ------------------------------------------------------------------------
def _build(d: object, source: str) -> ExperimentConfig:
    """An ExperimentConfig from a nested mapping, every section, key and type checked."""
    if d is None:
        d = {}
    if not isinstance(d, Mapping):
        raise UserError(
            f"{source}: a config must be a mapping of sections ({', '.join(SECTIONS)}), "
            f"found {type(d).__name__}"
        )
    config = ExperimentConfig()
    for section, values in d.items():
        _check_section(section, source)
        if values is None:
            continue
        if not isinstance(values, Mapping):
            raise UserError(
                f"{source}: section {section!r} must be a mapping of keys, "
                f"found {type(values).__name__}"
            )
        for key, value in values.items():
            _assign(config, section, key, value, source)
    return config


def _check_section(section: object, label: str) -> None:
    if section not in SECTIONS:
        raise UserError(
            f"{label}: unknown config section {section!r}; sections: {', '.join(SECTIONS)}"
        )


def _assign(config: ExperimentConfig, section: str, key: object, value: object, label: str) -> None:
    """Type-check ``value`` against the field ``section.key`` and set it."""
    _check_section(section, label)
    hints = typing.get_type_hints(SECTIONS[section])
    if key not in hints:
        raise UserError(
            f"{label}: unknown key '{section}.{key}'; valid keys of {section}: {', '.join(hints)}"
        )
    coerced = _coerce(value, hints[key])
    if coerced is _INVALID:
        raise UserError(
            f"{label}: '{section}.{key}' expects {_type_name(hints[key])}, found {value!r}"
        )
    choices = CHOICES.get((section, key))
    if choices is not None and coerced not in choices:
        raise UserError(
            f"{label}: '{section}.{key}' must be one of {', '.join(choices)}, found {value!r}"
        )
    setattr(getattr(config, section), key, coerced)


def _coerce(value: object, hint: object) -> object:
    """``value`` as the field type (int accepted for float, list for tuple), or _INVALID."""
    is_int = isinstance(value, int) and not isinstance(value, bool)
    if hint is bool:
        return value if isinstance(value, bool) else _INVALID
    if hint is int:
        return value if is_int else _INVALID
    if hint is float:
        return _as_float(value)
    if hint is str:
        return value if isinstance(value, str) else _INVALID
    # tuple[int, ...]: a non-empty list of integers
    if isinstance(value, (list, tuple)) and value:
        items = [_coerce(item, int) for item in value]
        return _INVALID if _INVALID in items else tuple(items)
    return _INVALID


def _as_float(value: object) -> object:
    if isinstance(value, bool):
        return _INVALID
    if isinstance(value, (int, float)):
        return float(value)
    try:  # PyYAML reads 3e-4 (no dot) as text
        return float(value) if isinstance(value, str) else _INVALID
    except ValueError:
        return _INVALID


def _type_name(hint: object) -> str:
    if typing.get_origin(hint) is tuple:
        return "a list of int, e.g. [1024, 256]"
    return "float (or int)" if hint is float else hint.__name__


def _apply_override(config: ExperimentConfig, override: str) -> None:
    label = f"override {override!r}"
    key, sep, text = override.partition("=")
    key = SHORTHANDS.get(key.strip(), key.strip())
    section, dot, name = key.partition(".")
    if not sep or not dot or not name:
        raise UserError(
            f"{label}: write section.key=value, e.g. train.batch_size=8 or data=/path/to/dataset"
        )
    _check_section(section, label)
    hints = typing.get_type_hints(SECTIONS[section])
    value = text if hints.get(name) is str else _parse_yaml(text, label)
    _assign(config, section, name, value, label)


def _check_consistency(config: ExperimentConfig, label: str) -> None:
    """Relations between fields that no single type check sees."""
    try:
        frame_hop_size(config.data.sample_rate, config.data.frame_rate)
    except ValueError as error:
        raise UserError(f"{label}: data.{error}") from error
    for name in ("content_warp", "female_formant_ratio", "child_formant_ratio"):
        if getattr(config.model, name) < 1:
            raise UserError(f"{label}: model.{name} must be at least 1 (1 = off)")
    if config.model.kind == "voice" and config.model.z_dims < 1:
        raise UserError(f"{label}: a voice model needs model.z_dims >= 1 (its content code)")
