"""Resynthesis evaluation and whole-file resynthesis with a trained model.

Metrics follow DDSP's ``F0LoudnessMetrics``: the model renders each validation
example from its own f0 and loudness; the output is re-analysed with the same
tracker and loudness function as the training data, and compared frame by frame.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from .features import compute_features, pad_to_hop
from .functional.core import cents_apart
from .losses import MultiScaleSpectralLoss

F0_CONFIDENCE_THRESHOLD = 0.85  # DDSP's: frames where the input pitch is trustworthy
OUTLIER_CENTS = 100.0  # an f0 error beyond a semitone counts as an outlier
NOTE_LOUDNESS_DB = -60.0  # "note frames" also need this loudness in the input


def frame_errors(
    batch: dict, synth: torch.Tensor, sample_rate: int, frame_rate: int, f0_method: str
) -> dict[str, np.ndarray]:
    """Per-frame loudness (dB) and f0 (cents) errors of ``synth`` against the input features;
    of a voice dataset's examples (labelled), also the voice measures of :func:`voice_errors`.

    Shape: batch {f0_hz, f0_confidence, loudness_db [batch, n_frames]}, synth
    [batch, n_samples] -> {"loudness", "loudness_notes", "f0_cents", ...} flat arrays.
    """
    resynth = compute_features(synth.float(), sample_rate, frame_rate, f0_method)
    voice = voice_errors(batch, synth, resynth, sample_rate, frame_rate) if "age" in batch else {}
    loudness_error = (resynth["loudness_db"] - batch["loudness_db"]).abs()
    confident = batch["f0_confidence"] >= F0_CONFIDENCE_THRESHOLD
    notes = confident & (batch["loudness_db"] > NOTE_LOUDNESS_DB)
    cents = cents_apart(resynth["f0_hz"], batch["f0_hz"])
    return {
        "loudness": loudness_error.flatten().numpy(),
        "loudness_notes": loudness_error[notes].numpy(),
        "f0_cents": cents[notes].numpy(),
        **voice,
    }


def voice_errors(
    batch: dict, synth: torch.Tensor, resynth: dict, sample_rate: int, frame_rate: int
) -> dict[str, np.ndarray]:
    """Mel-cepstral distortion per example (dB, loud frames), squared f0 errors (cents^2) on
    frames voiced in both, and voicing disagreements per frame.

    Shape: -> {"mcd_db" [batch], "f0_squared_cents" [n_voiced], "voicing_errors" [n_frames]}.
    """
    from .voice.metrics import mel_cepstral_distortion, voiced_frames

    voiced = voiced_frames(batch["f0_confidence"])
    voiced_out = voiced_frames(resynth["f0_confidence"])
    both = voiced & voiced_out
    cents = cents_apart(resynth["f0_hz"], batch["f0_hz"])
    mcd = mel_cepstral_distortion(batch["audio"], synth.float(), sample_rate, frame_rate)
    return {
        "mcd_db": mcd.numpy(),
        "f0_squared_cents": cents[both].square().numpy(),
        "voicing_errors": (voiced != voiced_out).flatten().numpy(),
    }


def summarize_errors(errors: dict[str, list[np.ndarray]], spectral: list[float]) -> dict:
    """The reported metrics from accumulated per-frame errors."""
    joined = {key: np.concatenate(values) for key, values in errors.items()}
    f0_cents = joined["f0_cents"]
    voice = {}
    if "mcd_db" in joined:
        voice = {
            "mcd_db": float(np.nanmean(joined["mcd_db"])),
            "f0_rmse_cents": float(np.sqrt(joined["f0_squared_cents"].mean())),
            "voicing_error_rate": float(joined["voicing_errors"].mean()),
        }
    return {
        **voice,
        "loudness_l1_db": float(joined["loudness"].mean()),
        "loudness_l1_note_frames_db": float(joined["loudness_notes"].mean()),
        "f0_l1_cents": float(f0_cents.mean()) if f0_cents.size else float("nan"),
        "f0_median_cents": float(np.median(f0_cents)) if f0_cents.size else float("nan"),
        "f0_outlier_ratio": float((f0_cents > OUTLIER_CENTS).mean()) if f0_cents.size else 1.0,
        "spectral_distance": float(np.mean(spectral)),
        "n_frames": int(joined["loudness"].size),
        "n_note_frames": int(f0_cents.size),
    }


@torch.no_grad()
def evaluate(
    model_name_or_path, data_path: str | None = None, split: str = "val", batch_size: int = 8
) -> dict:
    """Resynthesis metrics of a model (any :func:`~torchddsp.models.load_model` argument)
    on a prepared dataset's split, by default its own training data's."""
    from .data.dataset import DDSPDataset, check_dataset_matches
    from .errors import UserError
    from .models import load_model

    loaded = load_model(model_name_or_path)
    dataset = DDSPDataset(dataset_path(loaded, data_path), split)
    check_dataset_matches(dataset.manifest, loaded.sample_rate, loaded.frame_rate)
    if len(dataset) == 0:
        raise UserError(f"{dataset.manifest['path']} has no {split!r} examples to evaluate")
    f0_method = dataset.manifest["settings"]["f0_method"]
    loss = MultiScaleSpectralLoss()
    errors: dict[str, list[np.ndarray]] = {}
    spectral = []
    for batch in DataLoader(dataset, batch_size=batch_size):
        synth = loaded.model(batch)["audio_synth"]
        for key, value in frame_errors(
            batch, synth, loaded.sample_rate, loaded.frame_rate, f0_method
        ).items():
            errors.setdefault(key, []).append(value)
        spectral.append(loss(batch["audio"], synth).item())
    metrics = summarize_errors(errors, spectral)
    return {
        "model": loaded.name,
        "checkpoint": str(loaded.path),
        "step": loaded.step,
        "split": split,
        "f0_method": f0_method,
        **metrics,
    }


def dataset_path(loaded, data_path: str | None) -> str:
    """``data_path``, by default the model's training data; a folder that must exist."""
    from .errors import UserError

    data_path = data_path or loaded.config.data.path
    if not data_path or not Path(data_path).is_dir():
        raise UserError(
            f"{loaded.name}: its training data {data_path!r} is not here; "
            "pass data=DATASET_DIR (a folder written by torchddsp prepare)"
        )
    return data_path


def default_metrics_path(model_name_or_path: str, conversion: bool = False) -> Path:
    """Where eval writes its JSON: beside a run directory or checkpoint file, else (a bundled
    or user model, whose folder is not the user's to write into) in the working directory."""
    path, suffix = Path(model_name_or_path), ".conversion.json" if conversion else ".eval.json"
    if path.exists():
        return Path(str(path).rstrip("/").removesuffix(".pt") + suffix)
    return Path(f"{path.name}{suffix}")


def format_metrics(metrics: dict) -> str:
    """A two-column table for people."""
    rows = [
        (key, f"{value:.4g}" if isinstance(value, float) else str(value))
        for key, value in metrics.items()
    ]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key:<{width}}  {value}" for key, value in rows)


def save_metrics(path, metrics: dict) -> None:
    from .data.atomic import write_bytes_atomic

    write_bytes_atomic(path, json.dumps(metrics, indent=1).encode())


@torch.no_grad()
def resynthesize_file(model_name_or_path, input_path, output_path) -> Path:
    """Reconstruct an audio file of any length through a trained model."""
    from .data.audio import load_audio, write_audio
    from .models import is_voice_model, load_model
    from .models.autoencoder import render_in_blocks

    loaded = load_model(model_name_or_path)
    audio, _ = load_audio(input_path, sample_rate=loaded.sample_rate)
    if is_voice_model(loaded):  # the conversion with no change is the resynthesis
        from .voice.convert import convert_voice

        return write_audio(output_path, convert_voice(audio, loaded).audio, loaded.sample_rate)
    waveform = pad_to_hop(torch.from_numpy(audio)[None], loaded.hop_size)
    features = compute_features(waveform, loaded.sample_rate, loaded.frame_rate, loaded.f0_method)
    if loaded.model.encoder is None:
        synth = render_in_blocks(loaded.model, features["f0_hz"], features["loudness_db"])
    else:  # z comes from the audio itself: one pass
        synth = loaded.model({**features, "audio": waveform})["audio_synth"]
    return write_audio(output_path, synth[0, : len(audio)].numpy(), loaded.sample_rate)
