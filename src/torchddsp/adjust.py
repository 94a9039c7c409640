"""Adjusting an input's f0 and loudness to a model before timbre transfer.

The semantics of DDSP's timbre-transfer demo, on frame-rate numpy arrays:

0. Pitch repair (not in the demo): a frame the tracker is unsure of whose f0
   is 2, 3, 1/2 or 1/3 times the pitch of the nearest sure frame before or
   after it (within a semitone) takes that pitch: overlapping notes in
   a voice or a reverberant room make trackers report such harmonics.
1. Note detection: a frame is "on" when its smoothed ``confidence ** 2``
   times its loudness above -120 dB reaches ``note_threshold`` times the
   level of a frame of mean loudness at confidence 0.7.
2. Auto-adjust, from the model's dataset statistics: shift the register by
   whole octaves toward the training data's mean note pitch; map the
   loudness of the input's note frames onto the training data's note-frame
   loudness distribution (quantile mapping); turn frames outside notes down by
   up to ``quiet`` dB.
3. Autotune: pull f0 toward the nearest note of the detected major key, or of
   the chromatic scale, by ``amount`` (0: unchanged, 1: on the note), after
   detecting how far the whole input is tuned from A440.
4. Manual shifts: ``pitch_shift`` semitones and ``loudness_shift`` dB.

Differences from the demo, chosen on purpose: the octave shift rounds to the
nearest register (the demo rounds shifts under 1.5 octaves up, so an input
four semitones below the target went up an octave); smoothing is 160 ms at any
frame rate (the demo's 40 frames at 250 Hz) and averages only existing frames
at the ends of the input (the demo's zero padding fades them); frames outside notes are never
made louder; the major-scale mode uses the detected tuning offset too.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .functional import core

MAX_MIDI = 110.0  # f0 is clipped below this note after shifting
SMOOTHING_SECONDS = 0.16
MIN_DB = -120.0
REFERENCE_CONFIDENCE = 0.7
CONFIDENCE_EXPONENT = 2.0
SURE_CONFIDENCE = 0.85  # frames at or above it are trusted by repair_harmonic_errors
HARMONIC_FACTORS = (2.0, 3.0, 1 / 2, 1 / 3)
MAJOR_STEPS = np.array([0, 2, 4, 5, 7, 9, 11])
KEYS = ("C", "Db", "D", "Eb", "E", "F", "Gb", "G", "Ab", "A", "Bb", "B")
AUTOTUNE_MODES = ("major", "chromatic")


@dataclass
class Adjustments:
    """What :func:`adjust_features` does; defaults are the demo's."""

    auto_adjust: bool = True
    pitch_shift: float = 0.0  # semitones after auto-adjust; 12 is an octave
    loudness_shift: float = 0.0  # dB after auto-adjust
    autotune: float = 0.0  # 0 (off) .. 1 (exactly on the notes)
    autotune_mode: str = "major"
    quiet: float = 20.0  # dB taken off frames outside notes
    note_threshold: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.autotune <= 1.0:
            raise ValueError(f"autotune must be within [0, 1], found {self.autotune}")
        if self.autotune_mode not in AUTOTUNE_MODES:
            raise ValueError(
                f"autotune_mode must be one of {AUTOTUNE_MODES}, found {self.autotune_mode!r}"
            )
        if self.quiet < 0:
            raise ValueError(f"quiet must be >= 0 dB, found {self.quiet}")
        if self.note_threshold < 0:
            raise ValueError(f"note_threshold must be >= 0, found {self.note_threshold}")


@dataclass
class AdjustmentReport:
    """What :func:`adjust_features` found and did, for people."""

    note_fraction: float = 0.0
    octave_shift: int = 0
    key: str | None = None
    tuning_offset_cents: float | None = None
    notes: list[str] = field(default_factory=list)


def hz_to_midi(f0_hz: np.ndarray) -> np.ndarray:
    """:func:`torchddsp.functional.core.hz_to_midi` on numpy arrays (0 Hz and below: 1 mHz)."""
    return core.hz_to_midi(torch.from_numpy(np.maximum(f0_hz, 1e-3))).numpy()


def midi_to_hz(midi: np.ndarray) -> np.ndarray:
    """:func:`torchddsp.functional.core.midi_to_hz` on numpy arrays."""
    return core.midi_to_hz(torch.as_tensor(np.asarray(midi, dtype=np.float64))).numpy()


def detect_notes(
    loudness_db: np.ndarray,
    f0_confidence: np.ndarray,
    frame_rate: float,
    note_threshold: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Frames inside notes, and each frame's ratio to the note threshold.

    Shape: loudness_db, f0_confidence [n_frames] -> (mask_on bool, ratio) [n_frames].
    """
    width = max(1, round(SMOOTHING_SECONDS * frame_rate))
    box = np.ones(width)
    # Averaged over the frames that exist, so the first and last notes are not faded.
    confidence = np.convolve(f0_confidence**CONFIDENCE_EXPONENT, box, "same")
    confidence /= np.convolve(np.ones_like(f0_confidence, dtype=float), box, "same")
    level = confidence * (loudness_db - MIN_DB)
    reference = (np.mean(loudness_db) - MIN_DB) * REFERENCE_CONFIDENCE**CONFIDENCE_EXPONENT
    ratio = level / max(reference, 1e-9)
    return ratio >= note_threshold, ratio


def repair_harmonic_errors(f0_hz: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Unsure frames at a harmonic or subharmonic of their sure neighbours' pitch, repaired.

    Shape: f0_hz, confidence [n_frames] -> [n_frames].
    """
    sure = confidence >= SURE_CONFIDENCE
    if not sure.any():
        return f0_hz
    index, n_frames = np.arange(len(f0_hz)), len(f0_hz)
    previous = np.maximum.accumulate(np.where(sure, index, -1))
    following = np.minimum.accumulate(np.where(sure, index, n_frames)[::-1])[::-1]
    previous = np.where(previous < 0, following, previous)  # before the first sure frame
    following = np.where(following == n_frames, previous, following)  # after the last
    f0_hz = np.maximum(f0_hz, 1e-3)  # trackers may report 0 Hz in silence
    repaired = f0_hz.copy()
    for neighbour in (following, previous):  # the previous note wins where both fit
        reference = f0_hz[neighbour]
        for factor in HARMONIC_FACTORS:
            fits = ~sure & (np.abs(12 * np.log2(f0_hz * factor / reference)) < 1.0)
            repaired[fits] = f0_hz[fits] * factor
    return repaired


def register_shift(pitch_midi: np.ndarray, mask_on: np.ndarray, target_mean_pitch: float) -> int:
    """Whole octaves that bring the notes' mean pitch nearest to the target."""
    return int(np.round((target_mean_pitch - np.mean(pitch_midi[mask_on])) / 12.0))


def map_loudness_quantiles(
    loudness_db: np.ndarray,
    mask_on: np.ndarray,
    levels: np.ndarray,
    target_quantiles: np.ndarray,
) -> np.ndarray:
    """Map loudness through the note frames' CDF onto the target's quantile function.

    The CDF is fitted on the note frames at ``levels``; every frame is mapped
    (values beyond the notes' range land on the target's extremes).
    Shape: loudness_db, mask_on [n_frames], levels, target_quantiles [n_levels] -> [n_frames].
    """
    levels, target_quantiles = np.asarray(levels), np.asarray(target_quantiles)
    source_quantiles = np.quantile(loudness_db[mask_on], levels)
    # Averaging the forward and reversed interpolation splits ties in the quantiles evenly.
    forward = np.interp(loudness_db, source_quantiles, levels)
    backward = -np.interp(-loudness_db, -source_quantiles[::-1], -levels[::-1])
    return np.interp(0.5 * (forward + backward), levels, target_quantiles)


def tuning_offset(f0_midi: np.ndarray, f0_confidence: np.ndarray, mask_on: np.ndarray) -> float:
    """The input's tuning relative to A440, in semitones within [-0.5, 0.5].

    The offset whose chromatic grid leaves the note frames closest to its
    notes with the fewest note changes (each cost standardised over the
    candidates, confidence-weighted), as the demo's ``get_tuning_factor``.
    """
    candidates = np.linspace(-0.5, 0.5, 101)
    midi, weights = f0_midi[mask_on], f0_confidence[mask_on]
    cost_deviation, cost_changes = np.zeros_like(candidates), np.zeros_like(candidates)
    for i, candidate in enumerate(candidates):  # a loop keeps memory at one track's size
        deviation = _wrap_semitone(midi - candidate)
        cost_deviation[i] = np.mean(weights * np.abs(deviation))
        changes = np.diff(np.round(midi - deviation, 6)) != 0
        cost_changes[i] = np.mean(weights[:-1] * changes) if len(midi) > 1 else 0.0
    cost = _standardise(cost_deviation) + _standardise(cost_changes)
    return float(candidates[np.argmin(cost)])


def autotune(
    f0_midi: np.ndarray,
    mask_on: np.ndarray,
    amount: float,
    mode: str = "major",
    offset: float = 0.0,
) -> tuple[np.ndarray, str | None]:
    """Pull f0 toward the nearest scale note by ``amount``; the major key it chose.

    The key (``mode="major"``) is the major scale, shifted by ``offset``
    semitones, whose notes lie closest on average to the note frames.
    Shape: f0_midi, mask_on [n_frames] -> ([n_frames], key or None).
    """
    if mode == "chromatic":
        return f0_midi - amount * _wrap_semitone(f0_midi - offset), None
    scales = [_scale_notes(key + offset) for key in range(12)]
    notes = f0_midi[mask_on]
    errors = [np.mean(np.abs(_nearest_note(notes, scale) - notes)) for scale in scales]
    key = int(np.argmin(errors))
    return f0_midi + amount * (_nearest_note(f0_midi, scales[key]) - f0_midi), KEYS[key]


def adjust_features(
    features: dict[str, np.ndarray],
    frame_rate: float,
    statistics: dict | None,
    settings: Adjustments | None = None,
) -> tuple[dict[str, np.ndarray], np.ndarray, AdjustmentReport]:
    """f0 and loudness adjusted for a model trained on data with ``statistics``.

    ``statistics`` are a prepared dataset's (``mean_pitch``,
    ``loudness_quantile_levels``, ``loudness_quantiles``); without them, or
    without notes in the input, auto-adjust is skipped and said so in the report.
    Shape: features {f0_hz, f0_confidence, loudness_db [n_frames]} ->
    (same keys, mask_on [n_frames], report).
    """
    settings = settings or Adjustments()
    confidence = features["f0_confidence"]
    f0_hz = repair_harmonic_errors(features["f0_hz"].astype(np.float64), confidence)
    loudness = features["loudness_db"].astype(np.float64)
    mask_on, ratio = detect_notes(loudness, confidence, frame_rate, settings.note_threshold)
    report = AdjustmentReport(note_fraction=float(mask_on.mean()) if mask_on.size else 0.0)
    midi = hz_to_midi(f0_hz)
    if settings.auto_adjust:
        midi, loudness = _auto_adjust(midi, loudness, mask_on, ratio, statistics, settings, report)
    if settings.autotune > 0 and mask_on.any():
        offset = tuning_offset(midi, confidence, mask_on)
        midi, report.key = autotune(
            midi, mask_on, settings.autotune, settings.autotune_mode, offset
        )
        report.tuning_offset_cents = round(100 * offset, 1)
    midi = np.minimum(midi + settings.pitch_shift, MAX_MIDI)
    adjusted = {
        "f0_hz": midi_to_hz(midi).astype(np.float32),
        "f0_confidence": confidence,
        "loudness_db": (loudness + settings.loudness_shift).astype(np.float32),
    }
    return adjusted, mask_on, report


def _auto_adjust(midi, loudness, mask_on, ratio, statistics, settings, report):
    if not mask_on.any():
        report.notes.append("auto-adjust skipped: no notes detected in the input")
        return midi, loudness
    if not statistics or statistics.get("mean_pitch") is None:
        report.notes.append("auto-adjust skipped: the model has no dataset statistics")
        return midi, loudness
    report.octave_shift = register_shift(midi, mask_on, statistics["mean_pitch"])
    loudness = map_loudness_quantiles(
        loudness, mask_on, statistics["loudness_quantile_levels"], statistics["loudness_quantiles"]
    )
    loudness = loudness - settings.quiet * np.where(mask_on, 0.0, np.clip(1.0 - ratio, 0.0, 1.0))
    return midi + 12.0 * report.octave_shift, loudness


def _wrap_semitone(x: np.ndarray) -> np.ndarray:
    """x mod 1, folded into [-0.5, 0.5)."""
    return (x + 0.5) % 1.0 - 0.5


def _standardise(cost: np.ndarray) -> np.ndarray:
    spread = np.std(cost)
    return (cost - np.mean(cost)) / spread if spread > 0 else np.zeros_like(cost)


def _scale_notes(tonic: float) -> np.ndarray:
    return (MAJOR_STEPS[None] + tonic + 12 * np.arange(-1, 11)[:, None]).ravel()


def _nearest_note(midi: np.ndarray, notes: np.ndarray) -> np.ndarray:
    """The element of sorted ``notes`` nearest to each value of ``midi``."""
    upper = np.clip(np.searchsorted(notes, midi), 1, len(notes) - 1)
    below, above = notes[upper - 1], notes[upper]
    return np.where(midi - below <= above - midi, below, above)
