"""How well a voice model converts, measured on held-out speakers rather than judged by ear.

``torchddsp eval MODEL --conversion`` runs :func:`assess_conversion` on the
validation split of a prepared voice dataset (its speakers are not in training):

- **pitch**: ``pitch_shift n`` must move the median f0 (YIN, re-tracked on the
  output) by n semitones, both medians over the frames voiced in the input and
  the output (:func:`pitch_change`).
- **gender**: a logistic classifier (:class:`GenderClassifier`) fitted on the
  train split's real utterances (mean and spread of the mel cepstrum over voiced
  frames, :class:`UtteranceFeatures`) labels each held-out utterance converted
  to the other gender (``gender`` set, the pitch following it as ``convert``
  does by default); reported as the share labelled as the target, beside the
  classifier's accuracy on the real held-out utterances and on their
  resyntheses. Two references show what each part does: the gender control
  with the pitch kept (``pitch_shift=0``), and the same pitch shift alone. How
  far the gender control alone moves the spectral envelope: the frequency
  scale that best maps the resynthesis's long-term envelope onto the
  converted one's (:func:`~torchddsp.voice.metrics.envelope_scale`; above 1:
  higher formants, toward a woman's).
- **age**: a ridge regressor (:class:`AgeRegressor`) fitted the same way reads
  the age of the output at each age control from a child's (0.08) to an
  adult's (0.40), the ages the data documents; the mean must never fall (by
  more than ``AGE_NOISE``) as the control rises.
- **content**: mel-cepstral distortion of the output against the input after
  cepstral mean normalisation (each utterance's mean cepstrum removed: the
  static envelope, i.e. who speaks, goes; what changes from frame to frame,
  i.e. what is said, stays), on the input's loud frames. Reference points:
  the resynthesis (the floor) and another sentence of the same speaker,
  frame-aligned (what losing the words costs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..data.audio import load_audio
from ..data.dataset import read_manifest
from ..errors import UserError
from ..features import compute_features, pad_to_hop
from ..functional.core import hz_to_midi
from .convert import convert_voice
from .metrics import (
    AgeRegressor,
    GenderClassifier,
    UtteranceFeatures,
    cepstral_distortion,
    envelope_scale,
    loud_frames,
    mel_cepstrum,
    voiced_frames,
)

PITCH_SHIFTS = (-4.0, 4.0)
AGES = (0.08, 0.14, 0.2, 0.3, 0.4)
AGE_NOISE = 0.01  # a reading that falls by less is the regressor's noise, not a fall


@dataclass
class Utterance:
    """One clip of a prepared voice dataset, at the model's rate, with its labels."""

    name: str
    audio: np.ndarray
    speaker: str
    gender: float | None
    age: float | None


def dataset_utterances(
    data_path: str | Path, split: str, sample_rate: int, per_speaker: int
) -> list[Utterance]:
    """Up to ``per_speaker`` clips of each speaker of ``split``, in file order."""
    manifest = read_manifest(data_path)
    files = [entry for entry in manifest["files"] if "labels" in entry]
    if not files:
        raise UserError(f"{data_path} is not a voice dataset: prepare a Common Voice folder")
    utterances, counts = [], {}
    for entry in files:
        labels = entry["labels"]
        if labels["split"] != split or counts.get(labels["speaker"], 0) >= per_speaker:
            continue
        counts[labels["speaker"]] = counts.get(labels["speaker"], 0) + 1
        audio, _ = load_audio(Path(manifest["audio_dir"]) / entry["path"], sample_rate)
        speaker, gender, age = labels["speaker"], labels["gender"], labels["age"]
        utterances.append(Utterance(entry["path"], audio, speaker, gender, age))
    return utterances


class AttributeReader:
    """Gender and age as the dataset's real voices show them (see the module notes)."""

    def __init__(self, utterances: list[Utterance], sample_rate: int):
        self.features = UtteranceFeatures(sample_rate)
        gendered = [u for u in utterances if u.gender is not None]
        aged = [u for u in utterances if u.age is not None]
        self.gender = GenderClassifier().fit(
            self.of(u.audio for u in gendered), torch.tensor([u.gender for u in gendered])
        )
        self.age = AgeRegressor().fit(
            self.of(u.audio for u in aged), torch.tensor([u.age for u in aged])
        )

    def of(self, audios) -> torch.Tensor:
        return torch.cat([self.features(torch.from_numpy(a).float()[None]) for a in audios])

    def female(self, audios) -> np.ndarray:
        return (self.gender.predict_proba(self.of(audios)) >= 0.5).numpy()

    def ages(self, audios) -> np.ndarray:
        return self.age.predict(self.of(audios)).numpy()


def voiced_pitch(audio: np.ndarray, sample_rate: int) -> tuple[np.ndarray, np.ndarray]:
    """Pitch (MIDI) and voicing of each 10 ms frame (YIN).

    Shape: audio [n_samples] -> (midi [n_frames], voiced [n_frames] bool).
    """
    waveform = pad_to_hop(torch.from_numpy(audio).float()[None], sample_rate // 100)
    features = compute_features(waveform, sample_rate, 100)
    midi = hz_to_midi(features["f0_hz"][0].double().clamp_min(1.0))
    return midi.numpy(), voiced_frames(features["f0_confidence"])[0].numpy()


def pitch_change(reference: np.ndarray, output: np.ndarray, sample_rate: int) -> float:
    """How far (semitones) ``output``'s median pitch lies from ``reference``'s, both taken on
    the frames voiced in both: a frame the output voices where the input's pitch was unsure
    (creak, breath) has no input pitch to be shifted from."""
    n = min(len(reference), len(output))
    (before, voiced_before), (after, voiced_after) = (
        voiced_pitch(audio[:n], sample_rate) for audio in (reference, output)
    )
    both = voiced_before & voiced_after
    return float(np.median(after[both]) - np.median(before[both]))


def content_distortion(reference: np.ndarray, estimate: np.ndarray, sample_rate: int) -> float:
    """Mel-cepstral distortion (dB) after cepstral mean normalisation, on the reference's loud
    frames, frame-aligned (the shorter length)."""
    n = min(len(reference), len(estimate))
    pair = torch.from_numpy(np.stack([reference[:n], estimate[:n]])).float()
    cepstra = mel_cepstrum(pair, sample_rate)
    loud = loud_frames(pair[:1], sample_rate)[0]
    normalised = cepstra - cepstra[:, loud].mean(1, keepdim=True)
    return float(cepstral_distortion(normalised[:1], normalised[1:], loud[None])[0])


def assess_conversion(loaded, data_path: str | Path, per_speaker: int = 10) -> dict:
    """The conversion measures of a voice model on a prepared dataset (module notes)."""
    rate = loaded.sample_rate
    reader = AttributeReader(dataset_utterances(data_path, "train", rate, per_speaker), rate)
    held_out = [
        u for u in dataset_utterances(data_path, "val", rate, per_speaker) if u.gender is not None
    ]
    if not held_out:
        raise UserError(f"{data_path} has no labelled validation speakers to convert")

    def convert(utterance: Utterance, **controls) -> np.ndarray:
        return convert_voice(utterance.audio, loaded, **controls)

    report = {"utterances": len(held_out), "speakers": len({u.speaker for u in held_out})}
    report.update(_pitch(held_out, convert, rate))
    report.update(_gender(held_out, convert, reader, rate))
    report.update(_age(held_out, convert, reader))
    return report


def _pitch(held_out, convert, rate) -> dict:
    report = {}
    for shift in PITCH_SHIFTS:
        errors = [
            pitch_change(u.audio, convert(u, pitch_shift=shift).audio, rate) - shift
            for u in held_out
        ]
        report.update(_spread(f"pitch_{shift:+g}_error_semitones", np.abs(errors)))
    return report


def _gender(held_out, convert, reader, rate) -> dict:
    real = np.array([u.gender for u in held_out]) >= 0.5
    resynth = [convert(u).audio for u in held_out]
    swapped = [convert(u, gender=1.0 - round(u.gender)) for u in held_out]
    kept_pitch = [convert(u, gender=1.0 - round(u.gender), pitch_shift=0.0) for u in held_out]
    shifts = [result.pitch_shift for result in swapped]
    pitch_only = [convert(u, pitch_shift=shift) for u, shift in zip(held_out, shifts, strict=True)]
    others = [_another_sentence(u, held_out) for u in held_out]

    def to_target(results) -> float:
        return float((reader.female(r.audio for r in results) != real).mean())

    scales = np.array(
        [envelope_scale(r, k.audio, rate) for r, k in zip(resynth, kept_pitch, strict=True)]
    )

    return {
        "gender_accuracy_real": float((reader.female(u.audio for u in held_out) == real).mean()),
        "gender_accuracy_resynthesis": float((reader.female(resynth) == real).mean()),
        "gender_converted_to_target": to_target(swapped),
        "gender_pitch_shift_semitones_mean": float(np.mean(np.abs(shifts))),
        "gender_with_pitch_kept_converted_to_target": to_target(kept_pitch),
        "pitch_alone_converted_to_target": to_target(pitch_only),
        **_mean("envelope_scale_male_to_female", scales[~real]),
        **_mean("envelope_scale_female_to_male", scales[real]),
        **_content("resynthesis", held_out, resynth, rate),
        **_content("gender_converted", held_out, [s.audio for s in swapped], rate),
        **_content("other_sentence", held_out, [o.audio for o in others], rate),
    }


def _content(name: str, held_out: list[Utterance], outputs: list[np.ndarray], rate: int) -> dict:
    distortions = [
        content_distortion(u.audio, out, rate) for u, out in zip(held_out, outputs, strict=True)
    ]
    return _spread(f"content_mcd_{name}_db", distortions)


def _another_sentence(utterance: Utterance, utterances: list[Utterance]) -> Utterance:
    """The next utterance of the same speaker (itself when the speaker has only one)."""
    same = [u for u in utterances if u.speaker == utterance.speaker]
    return same[(same.index(utterance) + 1) % len(same)]


def _age(held_out, convert, reader) -> dict:
    means = [float(reader.ages(convert(u, age=a).audio for u in held_out).mean()) for a in AGES]
    report = {f"age_read_at_{age:g}": mean for age, mean in zip(AGES, means, strict=True)}
    report["age_rise"] = means[-1] - means[0]
    return {**report, "age_monotonic": bool(np.all(np.diff(means) > -AGE_NOISE))}


def _mean(name: str, values: np.ndarray) -> dict:
    """``{name_mean: ...}``, or nothing when no utterance had it."""
    return {f"{name}_mean": float(values.mean())} if len(values) else {}


def _spread(name: str, values) -> dict:
    values = np.asarray(values, dtype=float)
    return {f"{name}_mean": float(values.mean()), f"{name}_max": float(values.max())}


def assess_voice_model(model_name_or_path, data_path: str | None = None) -> dict:
    """:func:`assess_conversion` of any :func:`~torchddsp.models.load_model` argument, on its
    own training data by default."""
    from ..evaluate import dataset_path
    from ..models import load_model
    from ..models.voice import VoiceAutoencoder

    loaded = load_model(model_name_or_path)
    if not isinstance(loaded.model, VoiceAutoencoder):
        raise UserError(f"{loaded.name} is not a voice model: --conversion needs one")
    report = assess_conversion(loaded, dataset_path(loaded, data_path))
    return {"model": loaded.name, "checkpoint": str(loaded.path), "step": loaded.step, **report}
