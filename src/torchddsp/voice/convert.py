"""Voice conversion: a recording with another pitch, gender or age, the words kept.

input audio (any length, rate, channels) -> f0, voicing and loudness with the
model's own tracker -> f0 shifted by ``pitch_shift`` semitones -> the voice
model with the asked gender and age, streamed block by block (bounded memory,
no seams) -> audio at the model's rate. A control not given keeps the input's
own: gender and age as the model's attribute estimator hears them, so without
changes the output is a resynthesis of the input.

The gender and age controls move the vocal tract; the pitch is the glottis's.
Without ``pitch_shift`` the pitch follows the voice: it moves by the difference
between the typical speaking pitch of the asked gender and age and that of
the input's (:func:`speaking_pitch`), so ``gender=1`` alone turns a man's voice
into a woman's, pitch included. An explicit ``pitch_shift`` (0 too) is used as
it is.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from ..functional.core import hz_to_midi
from .commonvoice import AGE_VALUES, parse_age, parse_gender

# Typical speaking f0 (Hz) of adult men, adult women and children (Titze, Principles of Voice
# Production, 1994: about 120, 210 and 260-300 Hz)
SPEAKING_PITCH_HZ = {"man": 120.0, "woman": 210.0, "child": 260.0}
BLOCK_SECONDS = 10.0  # audio the model converts per block
MIN_SECONDS = 0.1  # shorter inputs hold too few frames for a pitch track
CONTROL_RANGES = {"pitch_shift": (-24.0, 24.0), "gender": (0.0, 1.0), "age": (0.0, 1.0)}
F0_MAX_HZ = 2000.0  # the glottal source's highest pitch after a shift


def shifted_f0(f0_hz: torch.Tensor, semitones: torch.Tensor) -> torch.Tensor:
    """f0 moved by ``semitones`` (a ratio: unvoiced zeros stay zero), at most F0_MAX_HZ.

    TorchScript-compatible. Shape: f0_hz, semitones broadcastable -> broadcast.
    """
    return (f0_hz * torch.pow(2.0, semitones / 12.0)).clamp_max(2000.0)


@dataclass
class ConversionResult:
    """Output audio at ``sample_rate``, the input's features and what was asked."""

    audio: np.ndarray
    sample_rate: int
    features: dict[str, np.ndarray]
    gender: float
    age: float
    pitch_shift: float
    seconds: float


def control_value(name: str, value: float | str | None) -> float | None:
    """``pitch_shift`` (semitones), ``gender`` or ``age`` from a number or, for gender and
    age, a dataset word (:func:`parse_gender`, :func:`parse_age`); ``None`` stays ``None``
    (unset: the input's own, see the module notes).

    Raises :class:`UserError` naming the accepted range or words.
    """
    if value is None:
        return None
    if isinstance(value, str):
        value = _parse(name, value)
    low, high = CONTROL_RANGES[name]
    if not low <= value <= high:  # also refuses nan
        option = f"--{name.replace('_', '-')}"
        raise UserError(f"{option} must be within [{low:g}, {high:g}], found {value}")
    return float(value)


def _parse(name: str, text: str) -> float:
    if name == "pitch_shift":
        try:
            return float(text)
        except ValueError:
            raise UserError(f"--pitch-shift must be semitones, found {text!r}") from None
    value = parse_gender(text) if name == "gender" else parse_age(text)
    if value is None:
        raise UserError(f"--{name} {text!r} gives no {name} value: use a number in [0, 1]")
    return value


def convert_voice(
    audio: np.ndarray,
    loaded,
    gender: float | str | None = None,
    age: float | str | None = None,
    pitch_shift: float | str | None = None,
    block_seconds: float = BLOCK_SECONDS,
) -> ConversionResult:
    """Convert mono ``audio`` at the model's rate (``loaded``: a voice model's
    :class:`~torchddsp.models.TrainedModel`); see the module notes.

    Shape: audio [n_samples] -> result.audio [n_samples].
    """
    from ..models.voice import VoiceAutoencoder
    from ..transfer import input_features

    start = time.perf_counter()
    if not isinstance(loaded.model, VoiceAutoencoder):
        raise UserError(f"{loaded.name} is not a voice model: convert needs one (`--model voice`)")
    seconds = len(audio) / loaded.sample_rate
    if audio.ndim != 1 or seconds < MIN_SECONDS:
        raise UserError(
            f"convert needs mono audio of at least {MIN_SECONDS} s, found shape {audio.shape} "
            f"({seconds:.4f} s)"
        )
    shift = control_value("pitch_shift", pitch_shift)
    gender, age = control_value("gender", gender), control_value("age", age)
    features = input_features(audio, loaded)
    waveform = _padded(audio, len(features["f0_hz"]) * loaded.hop_size)
    own_gender, own_age = _own_attributes(loaded.model, waveform, features["f0_confidence"])
    gender = own_gender if gender is None else gender
    age = own_age if age is None else age
    if shift is None:
        shift = speaking_pitch(gender, age) - speaking_pitch(own_gender, own_age)
    frames = voice_frames(features, shift, gender, age)
    block_frames = max(1, round(block_seconds * loaded.frame_rate))
    output = render_voice_in_blocks(loaded.model, waveform, frames, block_frames)
    return ConversionResult(
        audio=output[0, : len(audio)].numpy(),
        sample_rate=loaded.sample_rate,
        features={name: value.numpy() for name, value in features.items()},
        gender=gender,
        age=age,
        pitch_shift=shift,
        seconds=time.perf_counter() - start,
    )


def speaking_pitch(gender: float, age: float) -> float:
    """The typical speaking pitch (MIDI) of a voice of this gender and age: between a
    man's and a woman's (``SPEAKING_PITCH_HZ``, log-linear in gender), moving to a
    child's as the vocal tract does (:func:`~torchddsp.models.voice.childness`)."""
    from ..models.voice import GROWN_TRACT_AGE, childness

    man, woman, child = (hz_to_midi(SPEAKING_PITCH_HZ[who]) for who in ("man", "woman", "child"))
    weight = float(childness(torch.tensor(age), AGE_VALUES["child"], GROWN_TRACT_AGE))
    return float(torch.lerp(man + gender * (woman - man), child, weight))


def voice_frames(
    features: dict[str, torch.Tensor], pitch_shift: float, gender: float, age: float
) -> torch.Tensor:
    """The voice model's frame inputs: shifted f0, loudness, voicing, gender, age.

    Shape: features [n_frames] each -> [1, n_frames, 5].
    """
    f0_hz = shifted_f0(features["f0_hz"].float(), torch.tensor(pitch_shift))
    loudness_db, voicing = features["loudness_db"].float(), features["f0_confidence"].float()
    constant = torch.ones_like(f0_hz)
    return torch.stack([f0_hz, loudness_db, voicing, gender * constant, age * constant], -1)[None]


@torch.no_grad()
def render_voice_in_blocks(
    model, audio: torch.Tensor, frames: torch.Tensor, block_frames: int
) -> torch.Tensor:
    """Stream the source audio and its frames through a voice model ``block_frames`` at a
    time: bounded memory, and the same audio as one call.

    Shape: audio [batch, n_frames * hop], frames [batch, n_frames, 5] -> [batch, n_frames * hop].
    """
    hop = model.hop_size
    state = model.init_state(audio.shape[0])
    pieces = []
    for lo in range(0, frames.shape[1], block_frames):
        block_audio = audio[:, lo * hop : (lo + block_frames) * hop]
        signals, state = model.forward_stream(block_audio, frames[:, lo : lo + block_frames], state)
        pieces.append(signals["audio"])
    signals, _ = model.forward_stream(audio[:, :0], frames[:, :0], state, final=True)
    return torch.cat([*pieces, signals["audio"]], dim=1)


def _padded(audio: np.ndarray, n_samples: int) -> torch.Tensor:
    waveform = torch.zeros(1, n_samples)
    waveform[0, : len(audio)] = torch.from_numpy(np.ascontiguousarray(audio, np.float32))
    return waveform


@torch.no_grad()
def _own_attributes(model, waveform: torch.Tensor, voicing: torch.Tensor) -> tuple[float, float]:
    gender, age = model.estimate_attributes(waveform, voicing[None].float())[0].tolist()
    return gender, age


def convert_file(
    input_path: str | os.PathLike,
    loaded,
    output_path: str | os.PathLike,
    gender: float | str | None = None,
    age: float | str | None = None,
    pitch_shift: float | str | None = None,
) -> ConversionResult:
    """Read any audio file soundfile reads, convert it, write ``output_path`` (atomically)."""
    from ..data.audio import load_audio, write_audio

    for name, value in (("gender", gender), ("age", age), ("pitch_shift", pitch_shift)):
        control_value(name, value)  # Bad controls fail before the audio is read.
    audio, _ = load_audio(input_path, sample_rate=loaded.sample_rate)
    if len(audio) < MIN_SECONDS * loaded.sample_rate:
        seconds = len(audio) / loaded.sample_rate
        raise UserError(
            f"{input_path}: too short ({seconds:.4f} s); convert needs at least {MIN_SECONDS} s"
        )
    result = convert_voice(audio, loaded, gender, age, pitch_shift)
    write_audio(output_path, result.audio, result.sample_rate)
    return result
