"""Causal repair of a live pitch track: one-frame glitches and octave jumps.

Offline, :func:`torchddsp.features.remove_f0_spikes` looks at the frames on
both sides of an excursion; live there are none after it, so the repair
trades a little delay on genuine changes for stability:

- a median of the last three frames removes a one-frame glitch (a lone
  subharmonic at a note change) at the cost of following a genuine note
  change one frame late;
- within a phrase (the previous frame confident), a jump to within a
  semitone of a whole number of octaves away is held back, at the previous
  register, until it has lasted ``octave_frames`` frames: trackers' octave
  errors rarely last longer, and a genuine octave leap is followed that many
  frames late. After an unsure frame (a rest, a new onset) any pitch is taken
  at once;
- an unsure frame keeps the last sure pitch: a tracker's guess in a rest or a
  breath (often its highest pitch) would otherwise sound as a chirp while the
  note fades, since live note detection cannot see the rest coming.
"""

from __future__ import annotations

import torch
from torch import nn

CONFIDENT = 0.5


class CausalPitchRepair(nn.Module):
    """Median of three, then octave hysteresis, frame by frame (TorchScript-compatible).

    Shape: forward_stream(f0_hz, confidence [batch, n_new_frames]) -> f0_hz [batch, n_new_frames].
    """

    def __init__(self, octave_frames: int = 3, confident: float = CONFIDENT):
        super().__init__()
        self.octave_frames = octave_frames
        self.confident = confident

    @property
    def median_delay_frames(self) -> int:
        """Frames a genuine pitch change is followed late."""
        return 1

    @torch.jit.export
    def init_state(self, batch_size: int) -> dict[str, torch.Tensor]:
        """No history: the first frames pass as they are."""
        zeros = torch.zeros(batch_size, 1, dtype=torch.float64)
        return {
            "recent": torch.zeros(batch_size, 0, dtype=torch.float64),
            "previous": zeros,
            "was_confident": torch.zeros(batch_size, 1, dtype=torch.bool),
            "jump_frames": torch.zeros(batch_size, 1, dtype=torch.int64),
        }

    @torch.jit.export
    def forward_stream(
        self, f0_hz: torch.Tensor, confidence: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Repair new frames, each from the frames before it.

        Shape: f0_hz, confidence [batch, n_new_frames] -> f0_hz [batch, n_new_frames].
        """
        out: list[torch.Tensor] = []
        for index in range(f0_hz.shape[1]):
            f0, state = self._frame(
                f0_hz[:, index : index + 1], confidence[:, index : index + 1], state
            )
            out.append(f0)
        if not out:
            return f0_hz, state
        return torch.cat(out, 1).to(f0_hz.dtype), state

    def _frame(
        self, f0_hz: torch.Tensor, confidence: torch.Tensor, state: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        recent = torch.cat([state["recent"], f0_hz.double()], 1)[:, -3:]
        median = recent.median(1, keepdim=True).values if recent.shape[1] == 3 else f0_hz.double()
        previous = state["previous"]
        octaves = torch.log2(median.clamp_min(1e-3) / previous.clamp_min(1e-3))
        whole = torch.round(octaves)
        at_octave = (whole != 0) & ((octaves - whole).abs() < 1.0 / 12.0)
        in_phrase = state["was_confident"] & (previous > 0)
        jumping = at_octave & in_phrase
        jump_frames = torch.where(
            jumping, state["jump_frames"] + 1, torch.zeros_like(state["jump_frames"])
        )
        held = jumping & (jump_frames < self.octave_frames)
        repaired = torch.where(held, median * torch.pow(2.0, -whole), median)
        confident = confidence >= self.confident
        repaired = torch.where(confident | (previous <= 0), repaired, previous)
        new_state = {
            "recent": recent,
            "previous": torch.where(confident, repaired, previous),
            "was_confident": confident,
            "jump_frames": torch.where(held, jump_frames, torch.zeros_like(jump_frames)),
        }
        return repaired, new_state
