"""Audio -> f0_hz, f0_confidence, loudness_db at one frame rate, aligned.

Contract: with ``hop = sample_rate / frame_rate``, every feature has exactly
``n_samples / hop`` frames and frame i describes the audio centred on sample
``i * hop``. Training and inference call this same function, so a model hears
the same features in both. Live, :class:`FeatureStream` gives the same frames
block by block (before ``remove_f0_spikes``, which looks ahead).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .functional._checks import (
    check_choice,
    check_positive,
    check_positive_int,
    check_stream_state,
    check_tensor,
)
from .functional.core import DB_RANGE, hz_to_midi, note_name
from .functional.spectral import (
    compute_loudness,
    frame_hop_size,
    frames_loudness_db,
    hann_window,
    loudness_weights,
    samples_to_next_frame,
    take_ready_frames,
)
from .pitch.yin import DEFAULT_F0_MIN_HZ, Yin, yin

F0_METHODS = ("yin", "crepe-tiny", "crepe-full")
AUDIO_SHAPE = "[batch, n_samples]"


def track_f0(
    audio: torch.Tensor, sample_rate: int, hop_size: int, f0_method: str = "yin"
) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 and its confidence with the chosen tracker.

    Shape: audio [batch, n_samples] -> (f0_hz [batch, n_frames], f0_confidence
    [batch, n_frames]), n_frames = n_samples // hop_size.
    """
    check_choice(f0_method, "f0_method", F0_METHODS)
    if f0_method == "yin":
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


class LoudnessStream(nn.Module):
    """:func:`compute_loudness` (``padding='center'``), offline or block by block.

    Frame ``i`` is centred on sample ``i * hop`` and the frames stop at
    ``n_samples // hop``, as :func:`compute_features` has them. The streaming
    state is the tail of the left zero-padded signal, ``{"buffer": [batch,
    n_buffered]}``; frames come out as soon as their window is complete and
    their hop has arrived (``take_ready_frames``), :meth:`flush` ends the
    signal. Computes in the dtype of its window and weights (``module.to``).
    TorchScript-compatible.
    """

    def __init__(
        self,
        sample_rate: int,
        frame_rate: int,
        n_fft: int = 512,
        range_db: float = DB_RANGE,
        ref_db: float = 0.0,
    ) -> None:
        super().__init__()
        check_positive_int(n_fft, "n_fft")
        self.hop_size = frame_hop_size(sample_rate, frame_rate)
        self.n_fft = n_fft
        self.range_db = float(range_db)
        self.ref_db = float(ref_db)
        # Derived from the arguments, so not saved with a model's weights.
        self.register_buffer("window", hann_window(n_fft), persistent=False)
        self.register_buffer("weights", loudness_weights(sample_rate, n_fft), persistent=False)

    @property
    def latency_samples(self) -> int:
        """Samples after a frame's centre sample that must arrive before it is emitted."""
        return max(self.n_fft - self.n_fft // 2, self.hop_size)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        """Loudness of the ``n_samples // hop`` frames of a whole signal.

        Shape: audio [batch, n_samples] -> loudness_db [batch, n_samples // hop].
        """
        if not torch.jit.is_scripting():
            check_tensor(audio, "audio", 2, AUDIO_SHAPE)
        padded = F.pad(audio, (self.n_fft // 2, 0))
        frames, _ = take_ready_frames(padded, self.n_fft, self.hop_size, final=True)
        return self._loudness(frames)

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> dict[str, torch.Tensor]:
        """State before the first block: the left zero padding of frame 0.

        Shape: -> {"buffer": [batch_size, n_fft // 2]}.
        """
        if not torch.jit.is_scripting():
            check_positive_int(batch_size, "batch_size")
        return {"buffer": torch.zeros(batch_size, self.n_fft // 2, dtype=dtype, device=device)}

    @torch.jit.export
    def forward_stream(
        self, audio_block: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Feed a block of any length (0 too); get the frames it completes and the new state.

        Shape: audio_block [batch, n_block_samples] -> loudness_db [batch, n_completed_frames].
        """
        if not torch.jit.is_scripting():
            check_tensor(audio_block, "audio_block", 2, AUDIO_SHAPE)
            check_stream_state(state, "buffer", self.n_fft // 2, audio_block.shape[0])
        buffer = torch.cat([state["buffer"], audio_block], dim=-1)
        frames, rest = take_ready_frames(buffer, self.n_fft, self.hop_size)
        return self._loudness(frames), {"buffer": rest}

    @torch.jit.export
    def flush(self, state: dict[str, torch.Tensor]) -> torch.Tensor:
        """End of signal: the frames not yet emitted, zero-padded past the end.

        Shape: state -> loudness_db [batch, n_last_frames].
        """
        if not torch.jit.is_scripting():
            check_stream_state(state, "buffer", self.n_fft // 2)
        frames, _ = take_ready_frames(state["buffer"], self.n_fft, self.hop_size, final=True)
        return self._loudness(frames)

    def _loudness(self, frames: torch.Tensor) -> torch.Tensor:
        return frames_loudness_db(frames, self.window, self.weights, self.ref_db, self.range_db)


class FeatureStream(nn.Module):
    """Live features: YIN f0 and confidence and A-weighted loudness, at one frame rate.

    The frames of :func:`compute_features` with ``f0_method='yin'`` (frame ``i``
    centred on sample ``i * hop``), before ``remove_f0_spikes``, which needs
    frames ahead and is offline only. ``f0_min_hz`` sets YIN's frame (two
    periods) and so, with the loudness window ``n_fft``, the latency.
    :meth:`forward_stream` emits a frame as soon as both trackers have it,
    holding back the frames of the one that is ahead, which the state carries
    (``f0_hz``, ``f0_confidence``, ``loudness_db`` ``[batch, n_held]``) with the
    two trackers' buffers. TorchScript-compatible.
    """

    def __init__(
        self,
        sample_rate: int,
        frame_rate: int,
        f0_min_hz: float = DEFAULT_F0_MIN_HZ,
        n_fft: int = 512,
    ) -> None:
        super().__init__()
        self.yin = Yin(sample_rate, frame_hop_size(sample_rate, frame_rate), f0_min_hz)
        self.loudness = LoudnessStream(sample_rate, frame_rate, n_fft)

    @property
    def latency_samples(self) -> int:
        """Samples after a frame's centre sample that must arrive before it is emitted."""
        return max(self.yin.latency_samples, self.loudness.latency_samples)

    def forward(self, audio: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The features of a whole signal.

        Shape: audio [batch, n_samples] -> f0_hz, f0_confidence, loudness_db,
        each [batch, n_samples // hop].
        """
        f0_hz, confidence = self.yin(audio)
        return f0_hz, confidence, self.loudness(audio)

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> dict[str, torch.Tensor]:
        """State before the first block: both trackers' padding, no frames held.

        Shape: -> {"yin_buffer", "loudness_buffer": [batch_size, n_buffered],
        "f0_hz", "f0_confidence", "loudness_db": [batch_size, 0]}.
        """
        held = torch.zeros(batch_size, 0, dtype=dtype, device=device)
        return {
            "yin_buffer": self.yin.init_state(batch_size, dtype, device)["buffer"],
            "loudness_buffer": self.loudness.init_state(batch_size, dtype, device)["buffer"],
            "f0_hz": held,
            "f0_confidence": held.clone(),
            "loudness_db": held.clone(),
        }

    @torch.jit.export
    def forward_stream(
        self, audio_block: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Feed a block of any length (0 too); get the frames both trackers have completed.

        Shape: audio_block [batch, n_block_samples] -> f0_hz, f0_confidence,
        loudness_db [batch, n_new_frames], state.
        """
        if not torch.jit.is_scripting():
            check_tensor(audio_block, "audio_block", 2, AUDIO_SHAPE)
            self._check_state(state, audio_block.shape[0])
        f0_hz, confidence, yin_state = self.yin.forward_stream(
            audio_block, {"buffer": state["yin_buffer"]}
        )
        loudness_db, loudness_state = self.loudness.forward_stream(
            audio_block, {"buffer": state["loudness_buffer"]}
        )
        f0_hz = _after(state["f0_hz"], f0_hz)
        confidence = _after(state["f0_confidence"], confidence)
        loudness_db = _after(state["loudness_db"], loudness_db)
        n_ready = min(f0_hz.shape[1], loudness_db.shape[1])
        f0_hz, held_f0_hz = _split_frames(f0_hz, n_ready)
        confidence, held_confidence = _split_frames(confidence, n_ready)
        loudness_db, held_loudness_db = _split_frames(loudness_db, n_ready)
        new_state = {
            "yin_buffer": yin_state["buffer"],
            "loudness_buffer": loudness_state["buffer"],
            "f0_hz": held_f0_hz,
            "f0_confidence": held_confidence,
            "loudness_db": held_loudness_db,
        }
        return f0_hz, confidence, loudness_db, new_state

    @torch.jit.export
    def samples_needed(self, state: dict[str, torch.Tensor]) -> int:
        """Samples still to come before the next frame can be emitted (0: it can be now)."""
        yin_needed = 0
        if state["f0_hz"].shape[1] == 0:
            yin_needed = samples_to_next_frame(
                state["yin_buffer"].shape[1], self.yin.frame_size, self.yin.hop_size
            )
        loudness_needed = 0
        if state["loudness_db"].shape[1] == 0:
            loudness_needed = samples_to_next_frame(
                state["loudness_buffer"].shape[1], self.loudness.n_fft, self.loudness.hop_size
            )
        return max(yin_needed, loudness_needed)

    @torch.jit.export
    def flush(
        self, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """End of signal: the frames not yet emitted, zero-padded past the end.

        Shape: state -> f0_hz, f0_confidence, loudness_db [batch, n_last_frames].
        """
        if not torch.jit.is_scripting():
            self._check_state(state)
        f0_hz, confidence = self.yin.flush({"buffer": state["yin_buffer"]})
        loudness_db = self.loudness.flush({"buffer": state["loudness_buffer"]})
        return (
            _after(state["f0_hz"], f0_hz),
            _after(state["f0_confidence"], confidence),
            _after(state["loudness_db"], loudness_db),
        )

    def _check_state(self, state: object, batch_size: int | None = None) -> None:
        check_stream_state(state, "yin_buffer", self.yin.frame_size // 2, batch_size)
        check_stream_state(state, "loudness_buffer", self.loudness.n_fft // 2, batch_size)
        for name in ("f0_hz", "f0_confidence", "loudness_db"):
            check_stream_state(state, name, 0, batch_size)


def _after(held: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    """New frames after the held ones (most calls hold none: no copy then)."""
    return torch.cat([held, new], dim=1) if held.shape[1] > 0 else new


def _split_frames(frames: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` frames and the rest (views)."""
    return frames.narrow(1, 0, n), frames.narrow(1, n, frames.shape[1] - n)


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
    confident = features["f0_confidence"] >= CONFIDENT
    lines = [
        f"{seconds:.2f} s at {sample_rate} Hz, {len(confident)} frames at {frame_rate} Hz",
        f"confident pitch on {confident.float().mean().item():.0%} of frames",
    ]
    if confident.any():
        f0 = features["f0_hz"][confident]
        low, median, high = torch.quantile(f0, torch.tensor([0.05, 0.5, 0.95], dtype=f0.dtype))
        note = note_name(hz_to_midi(median).item())
        lines.append(f"f0 median {median:.1f} Hz ({note}), 5-95% range {low:.1f}-{high:.1f} Hz")
    loudness = features["loudness_db"]
    lines.append(f"loudness median {loudness.median():.1f} dB, max {loudness.max():.1f} dB")
    return "\n".join(lines)
