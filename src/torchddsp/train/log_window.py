"""Per-step losses, gradient norms and learning rates between two log steps, then their means."""

from __future__ import annotations

import time

import numpy as np
import torch


class LogWindow:
    """Values logged since the last log step, kept on the device until then."""

    def __init__(self, step: int):
        self.totals: list[torch.Tensor] = []
        self._restart(step)

    def _restart(self, step: int) -> None:
        self.losses: dict[str, list[torch.Tensor]] = {}
        self.grad_norms: list[torch.Tensor] = []
        self.learning_rates: list[float] = []
        self.start_step, self.start_time = step, time.monotonic()

    def add(self, losses: dict[str, torch.Tensor], grad_norm: torch.Tensor, lr: float) -> None:
        for name, loss in losses.items():
            self.losses.setdefault(name, []).append(loss)
        self.grad_norms.append(grad_norm)
        self.learning_rates.append(lr)
        self.totals.append(losses["total"])

    def take_totals(self) -> list[float]:
        """Per-step total losses not yet taken (one device sync for all of them)."""
        totals = torch.stack(self.totals).tolist() if self.totals else []
        self.totals = []
        return totals

    def summary(self, step: int) -> tuple[list[str], torch.Tensor]:
        """(names, mean values) since the last summary, then start a new window."""
        now = time.monotonic()
        names = [*self.losses, "grad_norm", "learning_rate", "steps_per_second"]
        values = [torch.stack(losses).float().mean() for losses in self.losses.values()]
        values.append(torch.stack(self.grad_norms).float().mean())
        device = values[0].device
        speed = (step - self.start_step) / max(now - self.start_time, 1e-9)
        values += [torch.tensor(float(np.mean(self.learning_rates))), torch.tensor(speed)]
        summary = torch.stack([value.to(device) for value in values])
        self._restart(step)
        return names, summary
