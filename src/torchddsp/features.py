"""Audio -> f0_hz, f0_confidence, loudness_db at one frame rate, aligned.

Contract: with ``hop = sample_rate / frame_rate``, every feature has exactly
``n_samples / hop`` frames and frame i describes the audio centred on sample
``i * hop``. Training and inference call this same function, so a model hears
the same features in both.
"""

from __future__ import annotations

import torch

from .functional._checks import check_choice, check_positive, check_tensor
from .functional.core import hz_to_midi
from .functional.spectral import compute_loudness, frame_hop_size

F0_METHODS = ("yin", "crepe-tiny", "crepe-full")


def track_f0(
    audio: torch.Tensor, sample_rate: int, hop_size: int, f0_method: str = "yin"
) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 and its confidence with the chosen tracker.

    Shape: audio [batch, n_samples] -> (f0_hz [batch, n_frames], f0_confidence
    [batch, n_frames]), n_frames = n_samples // hop_size.
    """
    check_choice(f0_method, "f0_method", F0_METHODS)
    if f0_method == "yin":
        from .pitch.yin import yin

        return yin(audio, sample_rate, hop_size)
    from .pitch.crepe import crepe

    return crepe(audio, sample_rate, hop_size, capacity=f0_method.split("-")[1])


def compute_features(
    audio: torch.Tensor, sample_rate: int, frame_rate: int, f0_method: str = "yin"
) -> dict[str, torch.Tensor]:
    """Pitch (spikes removed), confidence and A-weighted loudness, frame-aligned.

    ``sample_rate`` must be a multiple of ``frame_rate`` and ``n_samples`` a
    multiple of the hop (pad with :func:`pad_to_hop`); otherwise ``ValueError``.
    Shape: audio [batch, n_samples] -> each [batch, n_samples // hop].
    """
    check_tensor(audio, "audio", 2, "[batch, n_samples]")
    check_positive(frame_rate, "frame_rate")
    hop = frame_hop_size(sample_rate, frame_rate)
    if audio.shape[1] % hop or audio.shape[1] == 0:
        raise ValueError(
            f"audio length must be a positive multiple of the hop ({hop} samples = "
            f"{sample_rate} Hz / {frame_rate} Hz), found {audio.shape[1]}; pad it with pad_to_hop"
        )
    n_frames = audio.shape[1] // hop
    f0_hz, confidence = track_f0(audio, sample_rate, hop, f0_method)
    f0_hz = remove_f0_spikes(f0_hz, frame_rate)
    loudness_db = compute_loudness(audio, sample_rate, frame_rate, padding="center")[:, :n_frames]
    return {"f0_hz": f0_hz, "f0_confidence": confidence, "loudness_db": loudness_db}


SPIKE_SECONDS = 0.04  # longest pitch excursion remove_f0_spikes treats as an error
SPIKE_SEMITONES = 1.0


def remove_f0_spikes(
    f0_hz: torch.Tensor, frame_rate: float, max_seconds: float = SPIKE_SECONDS
) -> torch.Tensor:
    """Replace pitch excursions of at most ``max_seconds`` by the surrounding pitch.

    Where two notes overlap (a bow or breath change), their mixture repeats at
    a common sub-multiple of both periods, and a tracker reports it, two or
    more octaves down, for a few frames. A frame more than a semitone from the
    median of the ``2 k + 1`` frames around it, ``k = round(max_seconds *
    frame_rate)``, takes that median: runs of up to ``k`` frames go, while
    vibrato, glides and notes longer than ``max_seconds`` stay as they are.

    Shape: f0_hz [batch, n_frames] -> same.
    """
    check_tensor(f0_hz, "f0_hz", 2, "[batch, n_frames]")
    k = max(1, round(max_seconds * frame_rate))
    padded = torch.nn.functional.pad(f0_hz[:, None], (k, k), mode="replicate")[:, 0]
    median = padded.unfold(-1, 2 * k + 1, 1).median(-1).values
    spikes = (hz_to_midi(f0_hz) - hz_to_midi(median)).abs() > SPIKE_SEMITONES
    return torch.where(spikes, median, f0_hz)


def pad_to_hop(audio: torch.Tensor, hop_size: int) -> torch.Tensor:
    """Zero-pad the end of audio to a multiple of ``hop_size`` samples.

    Shape: [batch, n_samples] -> [batch, ceil(n_samples / hop_size) * hop_size].
    """
    return torch.nn.functional.pad(audio, (0, -audio.shape[-1] % hop_size))


CONFIDENT = 0.5  # f0 confidence above which a frame counts as pitched
MIN_SECONDS = 0.1  # shorter inputs hold too few frames for a pitch track
SILENCE_PEAK = 1e-4  # -80 dBFS


def file_features(
    path, frame_rate: int = 100, f0_method: str = "yin"
) -> tuple[torch.Tensor, int, dict[str, torch.Tensor]]:
    """Features of an audio file (any format soundfile reads, any rate, downmixed).

    The file keeps its sample rate when ``frame_rate`` divides it, else it is
    resampled to 16 kHz. Raises :class:`UserError` for unreadable, too short or
    silent files.
    Shape: -> (audio [n_samples], sample_rate, features each [n_frames]).
    """
    from .data.audio import load_audio
    from .errors import UserError

    audio, sample_rate = load_audio(path)
    if sample_rate % frame_rate:
        audio, sample_rate = load_audio(path, sample_rate=16000)
    seconds = len(audio) / sample_rate
    if seconds < MIN_SECONDS:
        raise UserError(
            f"{path}: too short ({seconds:.3f} s); features need at least {MIN_SECONDS} s"
        )
    if abs(audio).max() < SILENCE_PEAK:
        raise UserError(
            f"{path}: the audio is silent (peak below -80 dBFS); there is no pitch to track"
        )
    hop = frame_hop_size(sample_rate, frame_rate)
    waveform = pad_to_hop(torch.from_numpy(audio)[None], hop)
    features = compute_features(waveform, sample_rate, frame_rate, f0_method)
    return waveform[0], sample_rate, {name: value[0] for name, value in features.items()}


def save_features(path, features: dict[str, torch.Tensor], frame_rate: int) -> None:
    """Write features with their frame times to ``.npz`` or ``.csv`` (atomically)."""
    import numpy as np

    from .data.atomic import atomic_output
    from .errors import UserError

    columns = {"time_s": np.arange(len(features["f0_hz"])) / frame_rate}
    columns.update({name: value.numpy() for name, value in features.items()})
    suffix = str(path).lower().rsplit(".", 1)[-1]
    if suffix not in ("npz", "csv"):
        raise UserError(f"{path}: choose a .npz or .csv output")
    with atomic_output(path) as tmp:
        if suffix == "npz":
            with open(tmp, "wb") as f:
                np.savez(f, frame_rate=frame_rate, **columns)
        else:
            table = np.stack(list(columns.values()), axis=1)
            np.savetxt(tmp, table, delimiter=",", header=",".join(columns), comments="", fmt="%.6g")


def summarize_features(
    features: dict[str, torch.Tensor], seconds: float, sample_rate: int, frame_rate: int
) -> str:
    """A few lines for people: duration, voiced share, pitch range, loudness."""
    from .functional.core import hz_to_midi

    confident = features["f0_confidence"] >= CONFIDENT
    lines = [
        f"{seconds:.2f} s at {sample_rate} Hz, {len(confident)} frames at {frame_rate} Hz",
        f"confident pitch on {confident.float().mean().item():.0%} of frames",
    ]
    if confident.any():
        f0 = features["f0_hz"][confident]
        low, median, high = torch.quantile(f0, torch.tensor([0.05, 0.5, 0.95], dtype=f0.dtype))
        note = _note_name(hz_to_midi(median).item())
        lines.append(f"f0 median {median:.1f} Hz ({note}), 5-95% range {low:.1f}-{high:.1f} Hz")
    loudness = features["loudness_db"]
    lines.append(f"loudness median {loudness.median():.1f} dB, max {loudness.max():.1f} dB")
    return "\n".join(lines)


def _note_name(midi: float) -> str:
    names = ["C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B"]
    number = round(midi)
    cents = round(100 * (midi - number))
    return f"{names[number % 12]}{number // 12 - 1} {cents:+d} cents"
