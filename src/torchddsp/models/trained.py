"""Trained models by name or path: bundled instruments, user models, checkpoints, runs.

:func:`load_model` turns any of them into a :class:`TrainedModel`: the network
with the rates, pitch tracker and dataset statistics of its training data,
which every inference command (transfer, eval, resynth, export) needs.

- bundled: ``torchddsp/pretrained/NAME.pt``, each with a model card ``NAME.md``;
- user: ``$TORCHDDSP_MODELS/NAME.pt`` (default ``~/.torchddsp/models``),
  shadowing a bundled model of the same name;
- any checkpoint file or training run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import UserError
from .autoencoder import Autoencoder
from .saved import load_checkpoint
from .voice import VoiceAutoencoder

EXAMPLE_NAME = "example.flac"
EXAMPLE_SPEECH_NAME = "example_speech.flac"  # its licence: example_speech.md


@dataclass(frozen=True)
class DatasetStatistics:
    """Note-frame statistics of the training data, as ``torchddsp prepare`` records them.

    ``mean_pitch`` is in MIDI notes; the loudness quantiles (dB) sit at
    ``loudness_quantile_levels`` (0..1) of the note frames' distribution.
    """

    mean_pitch: float
    loudness_quantile_levels: tuple[float, ...]
    loudness_quantiles: tuple[float, ...]
    mean_loudness: float | None = None

    @classmethod
    def from_manifest(cls, statistics: dict | None) -> DatasetStatistics | None:
        """From a manifest's ``statistics``; None when the data had no note frames."""
        if not statistics or statistics.get("mean_pitch") is None:
            return None
        return cls(
            mean_pitch=float(statistics["mean_pitch"]),
            loudness_quantile_levels=tuple(map(float, statistics["loudness_quantile_levels"])),
            loudness_quantiles=tuple(map(float, statistics["loudness_quantiles"])),
            mean_loudness=statistics.get("mean_loudness"),
        )


@dataclass
class TrainedModel:
    """A trained autoencoder (eval mode, on the CPU) and what inference needs of its training."""

    name: str
    model: Autoencoder | VoiceAutoencoder
    sample_rate: int
    frame_rate: int
    f0_method: str
    statistics: DatasetStatistics | None
    path: Path
    step: int
    card: Path | None  # the model card, for bundled models
    config: object  # the ExperimentConfig it was trained with

    @property
    def hop_size(self) -> int:
        return self.sample_rate // self.frame_rate


def is_voice_model(loaded: TrainedModel) -> bool:
    """A voice autoencoder (``torchddsp convert``), not an instrument (``transfer``)."""
    return isinstance(loaded.model, VoiceAutoencoder)


def pretrained_dir() -> Path:
    return Path(str(resources.files("torchddsp").joinpath("pretrained")))


def user_models_dir() -> Path:
    return Path(os.environ.get("TORCHDDSP_MODELS", Path.home() / ".torchddsp" / "models"))


def example_input() -> Path:
    """The bundled example melody (a sampled voice, rendered by this project)."""
    return pretrained_dir() / EXAMPLE_NAME


def example_voice() -> Path:
    """The bundled example speech: a man reading a sentence (CMU ARCTIC, real speech)."""
    return pretrained_dir() / EXAMPLE_SPEECH_NAME


def available_models() -> dict[str, tuple[str, Path]]:
    """name -> (``bundled`` or ``user``, path); user models shadow bundled names."""
    found = {}
    for kind, folder in (("bundled", pretrained_dir()), ("user", user_models_dir())):
        if folder.is_dir():
            found.update({p.stem: (kind, p) for p in sorted(folder.glob("*.pt"))})
    return found


def load_model(name_or_path: str | os.PathLike) -> TrainedModel:
    """A bundled or user model by name, or a checkpoint file / run directory by path.

    Raises :class:`UserError` naming the choices when nothing matches, and
    when the file is not a torchddsp model.
    """
    models = available_models()
    text = str(name_or_path)
    if text in models:
        path, name = models[text][1], text
    elif Path(text).exists():
        path, name = Path(text), Path(text).resolve().name.removesuffix(".pt")
    else:
        raise UserError(
            f"unknown model {text!r}: choose one of {', '.join(sorted(models)) or '(none)'} "
            "(torchddsp models lists them) or pass a checkpoint file or run directory"
        )
    model, config, metadata = load_checkpoint(path)
    card = Path(metadata["path"]).with_suffix(".md")
    return TrainedModel(
        name=name,
        model=model,
        sample_rate=config.data.sample_rate,
        frame_rate=config.data.frame_rate,
        f0_method=metadata["dataset"]["settings"]["f0_method"],
        statistics=DatasetStatistics.from_manifest(metadata["dataset"].get("statistics")),
        path=Path(metadata["path"]),
        step=metadata["step"],
        card=card if card.is_file() else None,
        config=config,
    )
