"""PNG figures: spectrogram with the f0 track, and loudness, over time."""

from __future__ import annotations

import numpy as np
import torch

from .features import CONFIDENT


def plot_features(
    path,
    audio: torch.Tensor,
    sample_rate: int,
    frame_rate: float,
    tracks: dict[str, dict[str, torch.Tensor]],
) -> None:
    """Spectrogram of ``audio`` under each track's f0, and each track's loudness.

    ``tracks`` maps a label (e.g. "input", "adjusted") to features with
    ``f0_hz`` and ``loudness_db`` [n_frames]; written atomically.
    Shape: audio [n_samples].
    """
    plt = _pyplot()
    fig, (spec_ax, loud_ax) = plt.subplots(
        2, 1, figsize=(10, 6), sharex=True, gridspec_kw={"height_ratios": [2, 1]}
    )
    _spectrogram(spec_ax, audio.numpy(), sample_rate)
    for label, features in tracks.items():
        times = np.arange(len(features["f0_hz"])) / frame_rate
        f0_hz = features["f0_hz"].numpy().copy()
        if "f0_confidence" in features:  # unpitched frames hold a meaningless guess
            f0_hz[features["f0_confidence"].numpy() < CONFIDENT] = np.nan
        spec_ax.plot(times, f0_hz, linewidth=1.2, label=f"f0 ({label})")
        loud_ax.plot(times, features["loudness_db"].numpy(), linewidth=1.0, label=label)
    spec_ax.legend(loc="upper right")
    spec_ax.set_ylabel("Hz")
    loud_ax.set_ylabel("loudness dB")
    loud_ax.set_xlabel("time (s)")
    loud_ax.legend(loc="lower right")
    _save(plt, fig, path)


def plot_transfer(path, input_audio: np.ndarray, result) -> None:
    """Input and output spectrograms under f0 before and after adjustment, and loudness.

    ``result`` is a :class:`torchddsp.transfer.TransferResult`; ``input_audio``
    is the input at the result's sample rate. Written atomically.
    Shape: input_audio [n_samples].
    """
    plt = _pyplot()
    fig, (in_ax, out_ax, loud_ax) = plt.subplots(
        3, 1, figsize=(10, 8), sharex=True, gridspec_kw={"height_ratios": [2, 2, 1]}
    )
    times = np.arange(len(result.notes)) / result.frame_rate
    for ax, audio, label, features in (
        (in_ax, input_audio, "input", result.features),
        (out_ax, result.audio, "output", result.adjusted),
    ):
        _spectrogram(ax, audio, result.sample_rate)
        f0_hz = np.where(result.notes, features["f0_hz"], np.nan)  # the notes' pitch only
        ax.plot(times, f0_hz, color="cyan", linewidth=1.2, label=f"f0 into the {label}")
        ax.set_ylabel(f"{label} Hz")
        ax.legend(loc="upper right")
    loud_ax.plot(times, result.features["loudness_db"], linewidth=1.0, label="input")
    loud_ax.plot(times, result.adjusted["loudness_db"], linewidth=1.0, label="adjusted")
    loud_ax.set_ylabel("loudness dB")
    loud_ax.set_xlabel("time (s)")
    loud_ax.legend(loc="lower right")
    _save(plt, fig, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    return plt


def _save(plt, fig, path) -> None:
    from .data.atomic import atomic_output

    fig.tight_layout()
    with atomic_output(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _spectrogram(ax, audio: np.ndarray, sample_rate: int) -> None:
    n_fft = 1 << int(np.log2(sample_rate * 0.064))
    with np.errstate(divide="ignore"):  # digital silence is -inf dB, drawn as the floor
        ax.specgram(
            audio,
            NFFT=n_fft,
            Fs=sample_rate,
            noverlap=n_fft * 3 // 4,
            cmap="magma",
            scale="dB",
            vmin=-120,
        )
    ax.set_ylim(0, min(4000, sample_rate / 2))
