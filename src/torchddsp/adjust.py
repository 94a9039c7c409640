"""Adjusting an input's f0 and loudness to a model before timbre transfer, offline and live.

The semantics of DDSP's timbre-transfer demo, as one torch module
(:class:`Adjuster`, TorchScript-compatible) that offline transfer and the
exported live model both run:

0. Pitch repair (not in the demo): a frame the tracker is unsure of whose f0
   is 2, 3, 1/2 or 1/3 times the pitch of the nearest sure frame (within a
   semitone) takes that pitch: overlapping notes in a voice or a reverberant
   room make trackers report such harmonics.
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
   detecting how far the input is tuned from A440.
4. Manual shifts: ``octave_shift``, ``pitch_shift`` semitones and
   ``loudness_shift`` dB; f0 stays below MIDI 110.

What the input is like (mean loudness, its notes' mean pitch, loudness
distribution, tuning and key) is kept as running sums, from which
:meth:`Adjuster.derive` makes what the frames need (a loudness map, the
register, tuning offset and key). Offline the sums cover the whole input
before any frame is adjusted, so every frame sees the same statistics. Live
they take in the frames so far every ``refresh_seconds``, forgetting with a
``horizon_seconds`` time constant, starting from a prior of the training data
(so auto-adjust starts as the identity); the register changes only between
notes, with a little hysteresis. Offline smoothing and repair look both ways;
live they look back only.

Differences from the demo, chosen on purpose: the octave shift rounds to the
nearest register (the demo rounds shifts under 1.5 octaves up); smoothing is
160 ms at any frame rate and averages only existing frames at the ends of the
input; frames outside notes are never made louder; the tuning offset is the
circular mean of the note frames' pitch (the demo searches a cost with a note
change term), and the major key is the one holding the most note frames, both
with the tuning offset applied.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .functional.core import PITCH_CLASSES, hz_to_midi, midi_to_hz

MAX_MIDI = 110.0  # f0 is clipped below this note after shifting
SMOOTHING_SECONDS = 0.16
MIN_DB = -120.0
REFERENCE_CONFIDENCE = 0.7
SURE_CONFIDENCE = 0.85  # frames at or above it are trusted by the harmonic repair
HISTOGRAM_DB = (-120.0, 40.0, 0.1)  # note loudness histogram: low, high, bin width
PITCH_CLASS_BINS = 120  # 10-cent bins of the pitch class, for key detection
MAJOR_STEPS = (0, 2, 4, 5, 7, 9, 11)
AUTOTUNE_MODES = ("major", "chromatic")
# Live settings and the range each accepts (the command line and the exported model alike).
LIMITS = {
    "pitch_shift": (-24.0, 24.0),
    "octave_shift": (-4.0, 4.0),
    "loudness_shift": (-60.0, 60.0),
    "autotune": (0.0, 1.0),
    "quiet": (0.0, 60.0),
    "note_threshold": (0.0, 10.0),
}


@dataclass
class Adjustments:
    """What :class:`Adjuster` does; defaults are the demo's."""

    auto_adjust: bool = True
    octave_shift: int = 0  # octaves after auto-adjust
    pitch_shift: float = 0.0  # semitones after auto-adjust
    loudness_shift: float = 0.0  # dB after auto-adjust
    autotune: float = 0.0  # 0 (off) .. 1 (exactly on the notes)
    autotune_mode: str = "major"
    quiet: float = 20.0  # dB taken off frames outside notes
    note_threshold: float = 1.0

    def __post_init__(self):
        for name, (low, high) in LIMITS.items():
            value = getattr(self, name)
            if not low <= value <= high:
                raise ValueError(f"{name} must be within [{low:g}, {high:g}], found {value}")
        if self.octave_shift != int(self.octave_shift):
            raise ValueError(f"octave_shift must be a whole number, found {self.octave_shift}")
        if self.autotune_mode not in AUTOTUNE_MODES:
            raise ValueError(
                f"autotune_mode must be one of {AUTOTUNE_MODES}, found {self.autotune_mode!r}"
            )


@dataclass
class AdjustmentReport:
    """What offline adjustment found and did, for people."""

    note_fraction: float = 0.0
    octave_shift: int = 0
    key: str | None = None
    tuning_offset_cents: float | None = None
    notes: list[str] = field(default_factory=list)


class Adjuster(nn.Module):
    """The adjustments for one model: its dataset statistics and the live settings.

    ``statistics`` is a :class:`~torchddsp.models.DatasetStatistics` or None
    (then auto-adjust does nothing). The settings are plain attributes, so a
    live host may change them between blocks.
    """

    def __init__(
        self,
        frame_rate: float,
        statistics=None,
        settings: Adjustments | None = None,
        horizon_seconds: float = 20.0,
        prior_seconds: float = 0.25,
        refresh_seconds: float = 0.1,
    ):
        super().__init__()
        settings = settings or Adjustments()
        # The module-level constants, as attributes TorchScript can read.
        self.sure_confidence = SURE_CONFIDENCE
        self.min_db = MIN_DB
        self.reference_confidence = REFERENCE_CONFIDENCE
        self.max_midi = MAX_MIDI
        self.pitch_class_bins = PITCH_CLASS_BINS
        self.major_steps = list(MAJOR_STEPS)
        self.frame_rate = float(frame_rate)
        self.smoothing_frames = max(1, round(SMOOTHING_SECONDS * frame_rate))
        self.forget = 1.0 / max(1.0, horizon_seconds * frame_rate)
        self.refresh_frames = max(1, round(refresh_seconds * frame_rate))
        self.prior_frames = prior_seconds * frame_rate
        self.has_statistics = statistics is not None
        levels = statistics.loudness_quantile_levels if statistics else (0.0, 1.0)
        quantiles = statistics.loudness_quantiles if statistics else (self.min_db, 0.0)
        self.register_buffer("target_levels", torch.tensor(levels, dtype=torch.float64))
        self.register_buffer("target_quantiles", torch.tensor(quantiles, dtype=torch.float64))
        self.target_pitch = float(statistics.mean_pitch) if statistics else 0.0
        self.auto_adjust = settings.auto_adjust
        self.octave_shift = float(settings.octave_shift)
        self.pitch_shift = float(settings.pitch_shift)
        self.loudness_shift = float(settings.loudness_shift)
        self.autotune = float(settings.autotune)
        self.chromatic = settings.autotune_mode == "chromatic"
        self.quiet = float(settings.quiet)
        self.note_threshold = float(settings.note_threshold)
        low, high, width = HISTOGRAM_DB
        self.register_buffer("bin_edges", torch.arange(low, high + width / 2, width).double())

    # ---- running statistics of the input ---------------------------------------------------
    def empty_statistics(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Sums over no frames. Shape: -> each [batch, ...] float64."""
        zeros = torch.zeros(batch_size, 1, dtype=torch.float64, device=self.bin_edges.device)
        return {
            "frames": zeros,
            "loudness_sum": zeros,
            "notes": zeros,
            "pitch_sum": zeros,
            "histogram": zeros.new_zeros(batch_size, self.bin_edges.shape[0] - 1),
            "tuning": zeros.new_zeros(batch_size, 2),
            "pitch_classes": zeros.new_zeros(batch_size, self.pitch_class_bins),
        }

    def prior_statistics(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Sums as if ``prior_seconds`` of the training data's notes had been heard.

        Auto-adjust then starts as the identity; the input's own frames take
        over as they come. Shape: -> each [batch, ...] float64.
        """
        sums = self.empty_statistics(batch_size)
        if not self.has_statistics:
            return sums
        weight = self.prior_frames
        centres = 0.5 * (self.bin_edges[1:] + self.bin_edges[:-1])
        levels = _interpolate(centres[None], self.target_quantiles, self.target_levels[None])[0]
        mass = torch.diff(F.pad(levels, (1, 0)))
        loudness = float((mass * centres).sum() / mass.sum().clamp_min(1e-12))
        sums["frames"] = sums["frames"] + weight
        sums["loudness_sum"] = sums["loudness_sum"] + weight * loudness
        sums["notes"] = sums["notes"] + weight
        sums["pitch_sum"] = sums["pitch_sum"] + weight * self.target_pitch
        sums["histogram"] = sums["histogram"] + weight * mass / mass.sum().clamp_min(1e-12)
        return sums

    def accumulate_frames(
        self, sums: dict[str, torch.Tensor], loudness: torch.Tensor, forget: float
    ) -> dict[str, torch.Tensor]:
        """Sums over every frame (for the mean loudness), after new frames.

        Each frame first multiplies the sums by ``1 - forget``.
        Shape: loudness [batch, n_frames] -> sums.
        """
        keep, old = _forgetting(loudness.shape[1], forget, loudness.device)
        sums = {name: value for name, value in sums.items()}
        sums["frames"] = old * sums["frames"] + keep.sum().expand_as(sums["frames"])
        sums["loudness_sum"] = old * sums["loudness_sum"] + (keep * loudness.double()).sum(
            1, keepdim=True
        )
        return sums

    def accumulate_notes(
        self,
        sums: dict[str, torch.Tensor],
        midi: torch.Tensor,
        confidence: torch.Tensor,
        loudness: torch.Tensor,
        notes: torch.Tensor,
        forget: float,
    ) -> dict[str, torch.Tensor]:
        """Sums over the note frames (pitch, loudness histogram, tuning, pitch classes).

        Shape: midi, confidence, loudness, notes (bool) [batch, n_frames] -> sums.
        """
        keep, old = _forgetting(midi.shape[1], forget, midi.device)
        on = notes.double() * keep
        weight = confidence.double() * on
        midi = midi.double()
        edges = self.bin_edges
        bins = torch.bucketize(loudness.double().clamp(edges[0], edges[-1] - 1e-6), edges) - 1
        angle = 2.0 * math.pi * midi
        classes = (torch.remainder(midi, 12.0) * (self.pitch_class_bins / 12.0)).long()
        tuning = torch.stack([(weight * angle.cos()).sum(1), (weight * angle.sin()).sum(1)], 1)
        sums = {name: value for name, value in sums.items()}
        sums["notes"] = old * sums["notes"] + on.sum(1, keepdim=True)
        sums["pitch_sum"] = old * sums["pitch_sum"] + (on * midi).sum(1, keepdim=True)
        sums["histogram"] = (old * sums["histogram"]).scatter_add(1, bins.clamp_min(0), on)
        sums["tuning"] = old * sums["tuning"] + tuning
        sums["pitch_classes"] = (old * sums["pitch_classes"]).scatter_add(
            1, classes.clamp(0, self.pitch_class_bins - 1), weight
        )
        return sums

    # ---- the adjustments --------------------------------------------------------------------
    def note_ratio(
        self, smoothed_power: torch.Tensor, loudness: torch.Tensor, mean_loudness: torch.Tensor
    ) -> torch.Tensor:
        """Each frame's level over the note threshold's level (a note at >= note_threshold).

        ``smoothed_power`` is the frame's smoothed ``confidence ** 2``; ``mean_loudness``
        the input's (from :meth:`mean_loudness`).
        Shape: [batch, n_frames] (mean_loudness [batch, 1]) -> [batch, n_frames].
        """
        reference = (mean_loudness - self.min_db) * self.reference_confidence**2
        level = smoothed_power * (loudness.double() - self.min_db)
        return level / reference.clamp_min(1e-9)

    def mean_loudness(self, sums: dict[str, torch.Tensor]) -> torch.Tensor:
        """The input's mean loudness over all frames. Shape: -> [batch, 1]."""
        return sums["loudness_sum"] / sums["frames"].clamp_min(1e-12)

    def tuning_offset(self, sums: dict[str, torch.Tensor]) -> torch.Tensor:
        """The note frames' tuning relative to A440, in semitones within [-0.5, 0.5].

        Shape: -> [batch, 1].
        """
        tuning = sums["tuning"]
        return (torch.atan2(tuning[:, 1:], tuning[:, :1]) / (2.0 * math.pi)).nan_to_num(0.0)

    def major_key(self, sums: dict[str, torch.Tensor], offset: torch.Tensor) -> torch.Tensor:
        """Tonic (0 = C) of the major scale, shifted by ``offset``, holding the most notes.

        Shape: offset [batch, 1] -> [batch] int64.
        """
        centres = (torch.arange(self.pitch_class_bins, device=offset.device) + 0.5) * (
            12.0 / self.pitch_class_bins
        )
        semitone = torch.remainder(torch.round(centres[None] - offset), 12.0).long()
        chroma = torch.zeros_like(sums["pitch_classes"][:, :12]).scatter_add(
            1, semitone, sums["pitch_classes"]
        )
        steps = torch.tensor(self.major_steps, device=offset.device)
        tonics = torch.arange(12, device=offset.device)
        in_scale = (tonics[:, None] + steps[None]) % 12  # [12 keys, 7]
        scores = chroma[:, in_scale].sum(-1)
        return scores.argmax(-1)

    def autotune_pitch(
        self, midi: torch.Tensor, offset: torch.Tensor, key: torch.Tensor
    ) -> torch.Tensor:
        """f0 pulled toward the nearest note of the scale by ``autotune``.

        Shape: midi [batch, n_frames], offset [batch, 1], key [batch] -> [batch, n_frames].
        """
        if self.chromatic:
            target = torch.round(midi - offset) + offset
        else:
            octaves = torch.arange(-1, 11, dtype=midi.dtype, device=midi.device) * 12.0
            steps = torch.tensor(self.major_steps, dtype=midi.dtype, device=midi.device)
            scale = (octaves[:, None] + steps[None]).flatten()  # [84]
            notes = scale[None] + key[:, None].to(midi.dtype) + offset  # [batch, 84]
            upper = torch.searchsorted(notes, midi).clamp(1, notes.shape[1] - 1)
            below, above = notes.gather(1, upper - 1), notes.gather(1, upper)
            target = torch.where(midi - below <= above - midi, below, above)
        return midi + self.autotune * (target - midi)

    def map_loudness(self, loudness: torch.Tensor, sums: dict[str, torch.Tensor]) -> torch.Tensor:
        """Loudness through the input notes' distribution onto the training data's quantiles.

        Shape: [batch, n_frames] -> [batch, n_frames].
        """
        histogram = sums["histogram"]
        cdf = F.pad(histogram.cumsum(1), (1, 0)) / histogram.sum(1, keepdim=True).clamp_min(1e-12)
        levels = _interpolate(loudness.double(), self.bin_edges, cdf)
        targets = self.target_quantiles.expand(levels.shape[0], -1)
        return _interpolate(levels, self.target_levels, targets)

    def derive(self, sums: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """What applying the adjustments needs of the statistics, computed once for many frames:
        the loudness map sampled at the histogram's bin edges, the mean loudness, the
        register (octaves, unrounded), the tuning offset and the major key.

        Shape: -> {"loudness_map": [batch, n_edges], others [batch, 1]} (float64).
        """
        edges = self.bin_edges[None].expand(sums["histogram"].shape[0], -1)
        offset = self.tuning_offset(sums)
        return {
            "loudness_map": self.map_loudness(edges, sums),
            "mean_loudness": self.mean_loudness(sums),
            "register": self.register_fraction(sums),
            "has_notes": (sums["notes"] > 0.0).double(),
            "offset": offset,
            "key": self.major_key(sums, offset).double()[:, None],
        }

    def apply(
        self,
        f0_hz: torch.Tensor,
        loudness: torch.Tensor,
        ratio: torch.Tensor,
        derived: dict[str, torch.Tensor],
        octave: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 2 to 4 for frames whose note ratio is known, from :meth:`derive`'s values.

        ``octave`` is the register shift auto-adjust applies.
        Shape: [batch, n_frames] (octave [batch, 1]) -> f0_hz, loudness_db [batch, n_frames].
        """
        midi = hz_to_midi(f0_hz.double())
        loudness = loudness.double()
        if self.auto_adjust and self.has_statistics:
            midi = midi + 12.0 * octave
            below = (1.0 - ratio).clamp(0.0, 1.0)
            quieter = self.quiet * torch.where(ratio >= self.note_threshold, 0.0, below)
            mapped = _grid_lookup(loudness, derived["loudness_map"], self.bin_edges) - quieter
            loudness = torch.where(derived["has_notes"] > 0.0, mapped, loudness)
        if self.autotune > 0.0:
            midi = self.autotune_pitch(midi, derived["offset"], derived["key"].long()[:, 0])
        midi = (midi + self.pitch_shift + 12.0 * self.octave_shift).clamp_max(self.max_midi)
        return midi_to_hz(midi).to(f0_hz.dtype), (loudness + self.loudness_shift).to(f0_hz.dtype)

    def register_fraction(self, sums: dict[str, torch.Tensor]) -> torch.Tensor:
        """Octaves from the input notes' mean pitch to the training data's. Shape: -> [batch, 1]."""
        mean = sums["pitch_sum"] / sums["notes"].clamp_min(1e-12)
        return (self.target_pitch - mean) / 12.0

    def register(self, sums: dict[str, torch.Tensor]) -> torch.Tensor:
        """Whole octaves that bring the input notes' mean pitch nearest to the training data's.

        Shape: -> [batch, 1].
        """
        return torch.round(self.register_fraction(sums))

    # ---- offline: the whole input at once ---------------------------------------------------
    @torch.jit.unused
    def adjust(
        self, f0_hz: torch.Tensor, confidence: torch.Tensor, loudness_db: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, AdjustmentReport]:
        """Adjust a whole input, its statistics summed over all of it first.

        Shape: [n_frames] each -> (f0_hz, loudness_db, notes (bool), report).
        """
        f0_hz, confidence, loudness_db = (x[None] for x in (f0_hz, confidence, loudness_db))
        f0_hz = repair_harmonic_errors(f0_hz, confidence, both_ways=True)
        smoothed = _centred_mean(confidence.double().square(), self.smoothing_frames)
        sums = self.accumulate_frames(self.empty_statistics(1), loudness_db, 0.0)
        ratio = self.note_ratio(smoothed, loudness_db, self.mean_loudness(sums))
        notes = ratio >= self.note_threshold
        midi = hz_to_midi(f0_hz.double())
        sums = self.accumulate_notes(sums, midi, confidence, loudness_db, notes, 0.0)
        derived = self.derive(sums)
        octave = self.register(sums) * derived["has_notes"]
        adjusted_f0, adjusted_loudness = self.apply(f0_hz, loudness_db, ratio, derived, octave)
        return adjusted_f0[0], adjusted_loudness[0], notes[0], self._report(notes, derived, octave)

    @torch.jit.unused
    def _report(self, notes, derived, octave) -> AdjustmentReport:
        report = AdjustmentReport(
            note_fraction=float(notes.double().mean()) if notes.numel() else 0.0
        )
        if self.auto_adjust:
            if not notes.any():
                report.notes.append("auto-adjust skipped: no notes detected in the input")
            elif not self.has_statistics:
                report.notes.append("auto-adjust skipped: the model has no dataset statistics")
            else:
                report.octave_shift = int(octave.item())
        if self.autotune > 0.0 and notes.any():
            report.tuning_offset_cents = round(100.0 * float(derived["offset"]), 1)
            if not self.chromatic:
                report.key = PITCH_CLASSES[int(derived["key"])]
        return report

    # ---- live: frame by frame, looking back only ---------------------------------------------
    @torch.jit.export
    def init_state(self, batch_size: int) -> dict[str, torch.Tensor]:
        """The training data's prior as statistics, no history, no register shift.

        Besides the running sums, the state holds the frames since the last
        refresh (``pending``: pitch, confidence, loudness, notes), what
        :meth:`derive` made of the sums at it, the register in use, the last
        sure pitch and the recent confidences.
        """
        state = self.prior_statistics(batch_size)
        for name, value in self.derive(state).items():
            state["derived_" + name] = value
        zeros = torch.zeros(batch_size, 1, dtype=torch.float64, device=self.bin_edges.device)
        empty = zeros.new_zeros(batch_size, 0)
        state["octave"] = zeros
        state["last_sure_f0"] = zeros.clone()
        state["confidence_history"] = empty
        state["pending"] = zeros.new_zeros(batch_size, 4, 0)
        state["frame"] = torch.zeros(1, dtype=torch.int64)
        return state

    @torch.jit.export
    def forward_stream(
        self,
        f0_hz: torch.Tensor,
        confidence: torch.Tensor,
        loudness_db: torch.Tensor,
        state: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        """Adjust new frames, looking back only.

        The statistics take in the frames every ``refresh_frames`` frames (at
        fixed frame numbers, so any split into blocks gives the same output).
        Shape: f0_hz, confidence, loudness_db [batch, n_new_frames] -> f0_hz,
        loudness_db [batch, n_new_frames].
        """
        f0_out: list[torch.Tensor] = []
        loudness_out: list[torch.Tensor] = []
        for index in range(f0_hz.shape[1]):
            f0, loudness, state = self._adjust_frame(
                f0_hz[:, index : index + 1],
                confidence[:, index : index + 1],
                loudness_db[:, index : index + 1],
                state,
            )
            f0_out.append(f0)
            loudness_out.append(loudness)
        if not f0_out:
            return f0_hz, loudness_db, state
        return torch.cat(f0_out, 1), torch.cat(loudness_out, 1), state

    def _refresh(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The pending frames summed in, and the derived values renewed."""
        pending = state["pending"]  # [batch, (midi, confidence, loudness, notes), n_frames]
        loudness = pending[:, 2]
        sums = self.accumulate_frames(state, loudness, self.forget)
        sums = self.accumulate_notes(
            sums, pending[:, 0], pending[:, 1], loudness, pending[:, 3] > 0.0, self.forget
        )
        for name, value in self.derive(sums).items():
            sums["derived_" + name] = value
        sums["pending"] = pending[:, :, :0]
        return sums

    def _adjust_frame(
        self,
        f0_hz: torch.Tensor,
        confidence: torch.Tensor,
        loudness: torch.Tensor,
        state: dict[str, torch.Tensor],
    ) -> tuple[torch.Tensor, torch.Tensor, dict[str, torch.Tensor]]:
        if int(state["frame"].item()) % self.refresh_frames == 0:
            state = self._refresh(state)
        state = {name: value for name, value in state.items()}
        derived: dict[str, torch.Tensor] = {}
        for name in ("loudness_map", "mean_loudness", "register", "has_notes", "offset", "key"):
            derived[name] = state["derived_" + name]
        f0_hz, confidence, loudness = f0_hz.double(), confidence.double(), loudness.double()
        sure = confidence >= self.sure_confidence
        f0_hz = _repair_toward(f0_hz, sure, state["last_sure_f0"])
        history = torch.cat([state["confidence_history"], confidence.square()], 1)
        history = history[:, max(0, history.shape[1] - self.smoothing_frames) :]
        ratio = self.note_ratio(history.mean(1, keepdim=True), loudness, derived["mean_loudness"])
        notes = ratio >= self.note_threshold
        octave = _hysteresis_octave(state["octave"], derived["register"], notes)
        frame = torch.stack([hz_to_midi(f0_hz), confidence, loudness, notes.double()], 1)
        state["pending"] = torch.cat([state["pending"], frame], 2)
        state["octave"] = octave
        state["last_sure_f0"] = torch.where(sure, f0_hz, state["last_sure_f0"])
        state["confidence_history"] = history
        state["frame"] = state["frame"] + 1
        f0_hz, loudness = self.apply(f0_hz, loudness, ratio, derived, octave)
        return f0_hz, loudness, state


def _interpolate(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """``numpy.interp`` for each row: piecewise linear through (xp, fp[row]), clamped at the ends.

    Shape: x [batch, n], xp [n_points] increasing, fp [batch, n_points] -> [batch, n].
    """
    index = torch.searchsorted(xp, x.contiguous(), right=True).clamp(1, xp.shape[0] - 1)
    x0, x1 = xp[index - 1], xp[index]
    y0, y1 = fp.gather(1, index - 1), fp.gather(1, index)
    weight = ((x - x0) / (x1 - x0).clamp_min(1e-12)).clamp(0.0, 1.0)
    return y0 + weight * (y1 - y0)


def _grid_lookup(x: torch.Tensor, table: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """Linear interpolation in a table sampled on the evenly spaced ``edges``, clamped.

    Shape: x [batch, n], table [batch, n_edges], edges [n_edges] -> [batch, n].
    """
    width = (edges[-1] - edges[0]) / (edges.shape[0] - 1)
    position = ((x - edges[0]) / width).clamp(0.0, edges.shape[0] - 1.0)
    below = position.floor().long().clamp_max(edges.shape[0] - 2)
    y0, y1 = table.gather(1, below), table.gather(1, below + 1)
    return y0 + (position - below) * (y1 - y0)


def _forgetting(n_frames: int, forget: float, device: torch.device) -> tuple[torch.Tensor, float]:
    """Weights of n new frames (the newest 1) and of the sums before them, forgetting by
    ``1 - forget`` a frame. Shape: -> ([n_frames] float64, scalar)."""
    keep = (1.0 - forget) ** torch.arange(n_frames - 1, -1, -1, dtype=torch.float64, device=device)
    return keep, (1.0 - forget) ** n_frames


def _centred_mean(x: torch.Tensor, width: int) -> torch.Tensor:
    """Mean over the ``width`` frames around each frame that exist (no fading at the ends).

    Shape: [batch, n_frames] -> [batch, n_frames].
    """
    kernel = torch.ones(1, 1, width, dtype=torch.float64, device=x.device)
    padding = (width // 2, width - 1 - width // 2)
    total = F.conv1d(F.pad(x.double()[:, None], padding), kernel)[:, 0]
    count = F.conv1d(F.pad(torch.ones_like(x.double())[:, None], padding), kernel)[:, 0]
    return total / count


def _repair_toward(
    f0_hz: torch.Tensor, sure: torch.Tensor, reference: torch.Tensor
) -> torch.Tensor:
    """Unsure frames within a semitone of 2, 3, 1/2 or 1/3 times the reference pitch move there.

    Shape: f0_hz, sure, reference [batch, n_frames] -> [batch, n_frames].
    """
    # Trackers may report 0 Hz in silence. The factors lie octaves apart, so at most one fits.
    factors = torch.tensor([2.0, 3.0, 0.5, 1.0 / 3.0], dtype=f0_hz.dtype, device=f0_hz.device)
    candidates = f0_hz.clamp_min(1e-3)[..., None] * factors
    distance = (12.0 * torch.log2(candidates / reference.clamp_min(1e-3)[..., None])).abs()
    fits = (distance < 1.0) & (~sure & (reference > 0.0))[..., None]
    chosen = torch.where(fits, candidates, 0.0).amax(-1)
    return torch.where(fits.any(-1), chosen, f0_hz)


def repair_harmonic_errors(
    f0_hz: torch.Tensor,
    confidence: torch.Tensor,
    both_ways: bool = True,
    sure_confidence: float = SURE_CONFIDENCE,
) -> torch.Tensor:
    """Unsure frames at a harmonic or subharmonic of their sure neighbours' pitch, repaired.

    The neighbour is the nearest sure frame before (and, ``both_ways``, after;
    the one before wins where both fit).
    Shape: f0_hz, confidence [batch, n_frames] -> [batch, n_frames].
    """
    sure = confidence >= sure_confidence
    index = torch.arange(f0_hz.shape[1], device=f0_hz.device).expand_as(f0_hz)
    before = torch.where(sure, index, torch.full_like(index, -1)).cummax(1).values
    references = [before]
    if both_ways:
        n = f0_hz.shape[1]
        after = torch.where(sure, index, torch.full_like(index, n)).flip(1).cummin(1).values.flip(1)
        references = [after, before]
    repaired = f0_hz
    for nearest in references:
        valid = (nearest >= 0) & (nearest < f0_hz.shape[1])
        pitch = f0_hz.gather(1, nearest.clamp(0, f0_hz.shape[1] - 1))
        reference = torch.where(valid, pitch, torch.zeros_like(pitch))
        candidate = _repair_toward(f0_hz, sure, reference)
        repaired = torch.where(candidate != f0_hz, candidate, repaired)
    return repaired


def _hysteresis_octave(
    current: torch.Tensor, fraction: torch.Tensor, notes: torch.Tensor, margin: float = 0.1
) -> torch.Tensor:
    """The live register: changed between notes only, once the notes' mean pitch sits past the
    halfway point to the next register by ``margin`` octaves (no flapping at the boundary).

    Shape: [batch, 1] each -> [batch, 1].
    """
    moved = (fraction - current).abs() > 0.5 + margin
    return torch.where(~notes & moved, torch.round(fraction), current)


def adjust_features(
    features: dict[str, torch.Tensor],
    frame_rate: float,
    statistics=None,
    settings: Adjustments | None = None,
) -> tuple[dict[str, torch.Tensor], torch.Tensor, AdjustmentReport]:
    """f0 and loudness of a whole input adjusted for a model trained on data with ``statistics``.

    ``statistics`` (a :class:`~torchddsp.models.DatasetStatistics`) missing, or
    no notes in the input: auto-adjust is skipped and the report says so.
    Shape: features {f0_hz, f0_confidence, loudness_db [n_frames]} ->
    (same keys, notes [n_frames] bool, report).
    """
    adjuster = Adjuster(frame_rate, statistics, settings)
    f0_hz, loudness_db, notes, report = adjuster.adjust(
        features["f0_hz"], features["f0_confidence"], features["loudness_db"]
    )
    adjusted = {
        "f0_hz": f0_hz,
        "f0_confidence": features["f0_confidence"],
        "loudness_db": loudness_db,
    }
    return adjusted, notes, report
