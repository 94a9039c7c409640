"""Timbre transfer: the melody of any recording, played by a trained model.

input audio (any length, rate, channels) -> f0 and loudness with the model's
own tracker -> :mod:`torchddsp.adjust` -> the model, streamed block by block
(memory stays bounded and blocks join without seams) -> audio at the model's
rate. Models come from :func:`torchddsp.models.load_model`.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from .adjust import AdjustmentReport, Adjustments, adjust_features
from .errors import UserError
from .models import TrainedModel
from .models.autoencoder import render_in_blocks

BLOCK_SECONDS = 10.0  # frames the model renders per block
MIN_SECONDS = 0.1  # shorter inputs hold too few frames for a pitch track


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


def input_features(audio: np.ndarray, loaded: TrainedModel) -> dict[str, torch.Tensor]:
    """f0, confidence and loudness of mono audio at the model's rates and tracker.

    Shape: audio [n_samples] -> each [ceil(n_samples / hop)].
    """
    from .features import compute_features, pad_to_hop

    waveform = torch.from_numpy(np.ascontiguousarray(audio, np.float32))[None]
    waveform = pad_to_hop(waveform, loaded.hop_size)
    features = compute_features(waveform, loaded.sample_rate, loaded.frame_rate, loaded.f0_method)
    return {name: value[0] for name, value in features.items()}


def check_instrument(loaded: TrainedModel) -> None:
    """Refuse a voice model where an instrument plays (transfer, Neutone)."""
    from .models import is_voice_model

    if is_voice_model(loaded):
        raise UserError(
            f"{loaded.name} is a voice model: convert voices with `torchddsp convert` "
            "(live: `torchddsp export --format nn`)"
        )


def transfer(
    audio: np.ndarray,
    loaded: TrainedModel,
    settings: Adjustments | None = None,
    block_frames: int | None = None,
) -> TransferResult:
    """Transfer mono ``audio`` at the model's sample rate to the model's timbre.

    Shape: audio [n_samples] -> result.audio [n_samples].
    """
    start = time.perf_counter()
    check_instrument(loaded)
    seconds = len(audio) / loaded.sample_rate
    if audio.ndim != 1 or seconds < MIN_SECONDS:
        raise UserError(
            f"transfer needs mono audio of at least {MIN_SECONDS} s, found shape {audio.shape} "
            f"({seconds:.4f} s)"
        )
    features = input_features(audio, loaded)
    adjusted, notes, report = adjust_features(
        features, loaded.frame_rate, loaded.statistics, settings
    )
    output = render_in_blocks(
        loaded.model,
        adjusted["f0_hz"][None].float(),
        adjusted["loudness_db"][None].float(),
        block_frames=block_frames or round(BLOCK_SECONDS * loaded.frame_rate),
    )
    return TransferResult(
        audio=output[0, : len(audio)].numpy(),
        sample_rate=loaded.sample_rate,
        frame_rate=loaded.frame_rate,
        features={name: value.numpy() for name, value in features.items()},
        adjusted={name: value.float().numpy() for name, value in adjusted.items()},
        notes=notes.numpy(),
        report=report,
        seconds=time.perf_counter() - start,
    )


def transfer_file(
    input_path: str | os.PathLike,
    loaded: TrainedModel,
    output_path: str | os.PathLike,
    settings: Adjustments | None = None,
    plot_path: str | os.PathLike | None = None,
) -> TransferResult:
    """Read any audio file soundfile reads, transfer it, write ``output_path`` (atomically)."""
    from .data.audio import load_audio, write_audio

    audio, _ = load_audio(input_path, sample_rate=loaded.sample_rate)
    if len(audio) < MIN_SECONDS * loaded.sample_rate:
        seconds = len(audio) / loaded.sample_rate
        raise UserError(
            f"{input_path}: too short ({seconds:.4f} s); transfer needs at least {MIN_SECONDS} s"
        )
    result = transfer(audio, loaded, settings)
    write_audio(output_path, result.audio, result.sample_rate)
    if plot_path is not None:
        from .plots import plot_transfer

        plot_transfer(plot_path, audio, result)
    return result


def output_f0_error(result: TransferResult, loaded: TrainedModel) -> dict:
    """How closely the output's pitch follows the adjusted input f0.

    The output is re-tracked with the model's tracker; on note frames where it
    is pitched (confidence >= features.CONFIDENT), the absolute difference to
    the adjusted f0 in cents: median, mean, and the number of frames.
    """
    from .features import CONFIDENT
    from .functional.core import cents_apart

    tracked = input_features(result.audio, loaded)  # as many frames as result.notes
    frames = torch.from_numpy(result.notes) & (tracked["f0_confidence"] >= CONFIDENT)
    adjusted = torch.from_numpy(result.adjusted["f0_hz"])
    cents = cents_apart(tracked["f0_hz"][frames], adjusted[frames]).numpy()
    empty = not cents.size
    return {
        "median_cents": float("nan") if empty else float(np.median(cents)),
        "mean_cents": float("nan") if empty else float(np.mean(cents)),
        "note_frames": int(frames.sum()),
    }


def describe(result: TransferResult, loaded: TrainedModel) -> str:
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
