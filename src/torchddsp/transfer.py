"""Timbre transfer: the melody of any recording, played by a trained model.

input audio (any length, rate, channels) -> f0 and loudness with the model's
own tracker -> :mod:`torchddsp.adjust` -> the model, rendered block by block
(:mod:`torchddsp.streaming`, so memory stays bounded and blocks join without
seams) -> audio at the model's rate.

Models are named: the bundled instruments (``torchddsp/pretrained/*.pt``,
each with a model card ``*.md``), models dropped in the user folder
(``$TORCHDDSP_MODELS``, default ``~/.torchddsp/models``), or any checkpoint
file or training run directory.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from .adjust import AdjustmentReport, Adjustments, adjust_features
from .errors import UserError

EXAMPLE_NAME = "example.flac"
BLOCK_SECONDS = 10.0  # frames the model renders per block


@dataclass
class TransferModel:
    """A loaded model with what transfer needs to know about its training."""

    name: str
    model: torch.nn.Module
    sample_rate: int
    frame_rate: int
    f0_method: str
    statistics: dict | None
    path: Path


@dataclass
class TransferResult:
    """Output audio at ``sample_rate``, and the features before and after adjustment."""

    audio: np.ndarray
    sample_rate: int
    frame_rate: int
    features: dict[str, np.ndarray]
    adjusted: dict[str, np.ndarray]
    notes: np.ndarray
    report: AdjustmentReport
    seconds: float


def pretrained_dir() -> Path:
    return Path(str(resources.files("torchddsp").joinpath("pretrained")))


def user_models_dir() -> Path:
    return Path(os.environ.get("TORCHDDSP_MODELS", Path.home() / ".torchddsp" / "models"))


def example_input() -> Path:
    """The bundled example melody (a sampled voice, rendered by this project)."""
    return pretrained_dir() / EXAMPLE_NAME


def available_models() -> dict[str, tuple[str, Path]]:
    """name -> (``bundled`` or ``user``, path); user models shadow bundled names."""
    found = {}
    for kind, folder in (("bundled", pretrained_dir()), ("user", user_models_dir())):
        if folder.is_dir():
            found.update({p.stem: (kind, p) for p in sorted(folder.glob("*.pt"))})
    return found


def load_transfer_model(name_or_path: str | os.PathLike) -> TransferModel:
    """A bundled or user model by name, or a checkpoint file / run directory by path."""
    from .train.checkpoint import load_checkpoint

    models = available_models()
    text = str(name_or_path)
    if text in models:
        path = models[text][1]
    elif Path(text).exists():
        path = Path(text)
    else:
        raise UserError(
            f"unknown model {text!r}: choose one of {', '.join(sorted(models)) or '(none)'} "
            "(torchddsp models lists them) or pass a checkpoint file or run directory"
        )
    model, config, metadata = load_checkpoint(path)
    if model.encoder is not None:
        raise UserError(f"{path}: transfer needs a model without a z encoder (z_dims = 0)")
    dataset = metadata["dataset"]
    return TransferModel(
        name=text if text in models else Path(text).stem,
        model=model,
        sample_rate=config.data.sample_rate,
        frame_rate=config.data.frame_rate,
        f0_method=dataset["settings"]["f0_method"],
        statistics=dataset.get("statistics"),
        path=Path(metadata["path"]),
    )


def input_features(audio: np.ndarray, loaded: TransferModel) -> dict[str, np.ndarray]:
    """f0, confidence and loudness of mono audio at the model's rates and tracker.

    Shape: audio [n_samples] -> each [ceil(n_samples / hop)].
    """
    from .features import compute_features, pad_to_hop

    hop = loaded.sample_rate // loaded.frame_rate
    waveform = pad_to_hop(torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None], hop)
    features = compute_features(waveform, loaded.sample_rate, loaded.frame_rate, loaded.f0_method)
    return {name: value[0].numpy() for name, value in features.items()}


def transfer(
    audio: np.ndarray,
    loaded: TransferModel,
    settings: Adjustments | None = None,
    block_frames: int | None = None,
    seed: int = 0,
) -> TransferResult:
    """Transfer mono ``audio`` at the model's sample rate to the model's timbre.

    Shape: audio [n_samples] -> result.audio [n_samples].
    """
    from .streaming import render

    start = time.perf_counter()
    if audio.ndim != 1 or len(audio) == 0:
        raise UserError(f"transfer needs mono audio with samples, found shape {audio.shape}")
    features = input_features(audio, loaded)
    adjusted, notes, report = adjust_features(
        features, loaded.frame_rate, loaded.statistics, settings
    )
    block = block_frames or round(BLOCK_SECONDS * loaded.frame_rate)
    output = render(
        loaded.model,
        torch.from_numpy(adjusted["f0_hz"]),
        torch.from_numpy(adjusted["loudness_db"]),
        block_frames=block,
        seed=seed,
    )
    return TransferResult(
        audio=output[: len(audio)].numpy(),
        sample_rate=loaded.sample_rate,
        frame_rate=loaded.frame_rate,
        features=features,
        adjusted=adjusted,
        notes=notes,
        report=report,
        seconds=time.perf_counter() - start,
    )


def transfer_file(
    input_path: str | os.PathLike,
    loaded: TransferModel,
    output_path: str | os.PathLike,
    settings: Adjustments | None = None,
    plot_path: str | os.PathLike | None = None,
) -> TransferResult:
    """Read any audio file soundfile reads, transfer it, write ``output_path`` (atomically)."""
    from .data.audio import load_audio, write_audio

    audio, _ = load_audio(input_path, sample_rate=loaded.sample_rate)
    if len(audio) == 0:
        raise UserError(f"{input_path}: the file holds no audio samples")
    result = transfer(audio, loaded, settings)
    write_audio(output_path, result.audio, result.sample_rate)
    if plot_path is not None:
        from .plots import plot_transfer

        plot_transfer(plot_path, audio, result)
    return result


def output_f0_error(result: TransferResult, loaded: TransferModel) -> dict:
    """How closely the output's pitch follows the adjusted input f0.

    The output is re-tracked with the model's tracker; on note frames where it
    is pitched (confidence >= features.CONFIDENT), the absolute difference to
    the adjusted f0 in cents: median, mean, and the number of frames.
    """
    from .features import CONFIDENT

    tracked = input_features(result.audio, loaded)  # as many frames as result.notes
    frames = result.notes & (tracked["f0_confidence"] >= CONFIDENT)
    ratio = tracked["f0_hz"][frames] / result.adjusted["f0_hz"][frames]
    cents = 1200.0 * np.abs(np.log2(ratio))
    empty = not cents.size
    return {
        "median_cents": float("nan") if empty else float(np.median(cents)),
        "mean_cents": float("nan") if empty else float(np.mean(cents)),
        "note_frames": int(frames.sum()),
    }


def describe(result: TransferResult, loaded: TransferModel) -> str:
    """One line on what the adjustment did, for people."""
    report = result.report
    parts = [f"notes in {100 * report.note_fraction:.0f}% of frames"]
    if report.octave_shift:
        parts.append(f"register shifted {report.octave_shift:+d} octave(s) toward {loaded.name}")
    if report.key is not None:
        parts.append(f"autotuned to {report.key} major")
    if report.tuning_offset_cents is not None:
        parts.append(f"tuning offset {report.tuning_offset_cents:+.0f} cents")
    parts.extend(report.notes)
    return "; ".join(parts)
