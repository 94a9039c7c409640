"""Viterbi decoding of hidden-state sequences in torch, and CREPE's pitch-continuity prior.

:func:`viterbi_decode` is vectorised over the batch and the states and loops
over frames only. It works in log space and renormalises the running scores at
every frame (subtracting their maximum), so float32 keeps its precision over
sequences of any length; the best path does not change.

A transition is either a dense ``[n_states, n_states]`` matrix of
``log P(from -> to)`` or a :class:`BandedTransition`, whose nonzero
probabilities lie within ``radius`` states of the diagonal (pitch continuity):
a frame then costs ``n_states * (2 radius + 1)`` instead of ``n_states ** 2``.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..functional._checks import check_tensor

# CREPE's prior: P(i -> j) proportional to max(0, 12 - |i - j|), so jumps of at
# most 11 bins (220 cents) per frame, rows normalised (Kim et al. 2018, crepe.core).
CREPE_TRANSITION_WIDTH = 12


@dataclass(frozen=True)
class BandedTransition:
    """Transition log-probabilities within ``radius`` states of the diagonal.

    ``log_incoming[j, e] = log P(state j + e - radius -> state j)``, ``-inf``
    where that predecessor does not exist or cannot reach ``j``.
    Shape: log_incoming [n_states, 2 * radius + 1].
    """

    log_incoming: torch.Tensor

    @property
    def radius(self) -> int:
        return (self.log_incoming.shape[-1] - 1) // 2

    @property
    def n_states(self) -> int:
        return self.log_incoming.shape[0]

    @classmethod
    def from_dense(cls, log_transition: torch.Tensor, radius: int) -> BandedTransition:
        """The band of a dense ``log P(from -> to)`` matrix; entries outside it are dropped.

        Shape: log_transition [n_states, n_states] -> log_incoming [n_states, 2 * radius + 1].
        """
        _check_square(log_transition)
        n_states = log_transition.shape[0]
        to_state = torch.arange(n_states, device=log_transition.device)[:, None]
        from_state = to_state + torch.arange(-radius, radius + 1, device=log_transition.device)
        exists = (from_state >= 0) & (from_state < n_states)
        values = log_transition[from_state.clamp(0, n_states - 1), to_state]
        return cls(torch.where(exists, values, torch.full_like(values, -torch.inf)))


def crepe_transition(n_states: int = 360) -> BandedTransition:
    """CREPE's Viterbi prior: ``P(i -> j)`` proportional to ``max(0, 12 - |i - j|)``.

    Each row (source state) is normalised, as in CREPE's ``to_viterbi_cents``,
    so states near the edges, having fewer neighbours, stay put more often.
    Shape: -> log_incoming [n_states, 23].
    """
    radius = CREPE_TRANSITION_WIDTH - 1
    states = torch.arange(n_states, dtype=torch.float64)
    weights = (CREPE_TRANSITION_WIDTH - (states[:, None] - states).abs()).clamp_min(0.0)
    dense = (weights / weights.sum(-1, keepdim=True)).log()
    return BandedTransition.from_dense(dense, radius)


def _check_square(log_transition: object) -> None:
    check_tensor(log_transition, "log_transition", 2, "[n_states, n_states]")
    if log_transition.shape[0] != log_transition.shape[1]:
        raise ValueError(
            f"log_transition must have shape [n_states, n_states], "
            f"found {tuple(log_transition.shape)}"
        )


def _check_transition(log_transition: object, n_states: int) -> None:
    if isinstance(log_transition, BandedTransition):
        found = log_transition.n_states
    else:
        _check_square(log_transition)
        found = log_transition.shape[0]
    if found != n_states:
        raise ValueError(
            f"log_transition must have n_states={n_states} states (from log_observation), "
            f"found {found}"
        )


def _step_function(transition: torch.Tensor | BandedTransition, n_states: int):
    """Best predecessor of every state, ``max over from of score + log P(from -> to)``."""
    if not isinstance(transition, BandedTransition):
        return lambda scores: (scores[:, :, None] + transition).max(dim=1)
    radius = transition.radius
    first_predecessor = torch.arange(n_states, device=transition.log_incoming.device) - radius

    def banded_step(scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        padded = F.pad(scores, (radius, radius), value=-torch.inf)
        candidates = padded.unfold(-1, 2 * radius + 1, 1) + transition.log_incoming
        best, offset = candidates.max(dim=-1)
        return best, offset + first_predecessor

    return banded_step


@contextmanager
def _one_cpu_thread(device: torch.device):
    """Per-frame ops are too small to share between threads, and waking idle
    threads costs milliseconds a frame when other processes load the cores."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def viterbi_decode(
    log_observation: torch.Tensor,
    log_transition: torch.Tensor | BandedTransition,
    log_initial: torch.Tensor | None = None,
) -> torch.Tensor:
    """Most likely state sequence of a hidden Markov model.

    ``log_observation[b, t, s]`` is ``log P(observation t | state s)`` (any
    per-frame offset is irrelevant), ``log_transition`` is ``log P(from -> to)``
    (dense or :class:`BandedTransition`) and ``log_initial`` the log prior of
    the first state (uniform when ``None``). On the CPU the frame loop runs on
    one thread (restored afterwards): its ops are too small to share.
    Shape: log_observation [batch, n_frames, n_states], log_transition
    [n_states, n_states], log_initial [n_states] -> path [batch, n_frames] (int64).
    """
    check_tensor(log_observation, "log_observation", 3, "[batch, n_frames, n_states]")
    batch, n_frames, n_states = log_observation.shape
    _check_transition(log_transition, n_states)
    if log_initial is not None:
        check_tensor(log_initial, "log_initial", 1, f"[n_states={n_states}]")
        if log_initial.shape[0] != n_states:
            raise ValueError(
                f"log_initial must have shape [{n_states}], found {tuple(log_initial.shape)}"
            )
    if n_frames == 0:
        return torch.zeros(batch, 0, dtype=torch.int64, device=log_observation.device)
    step = _step_function(_to_like(log_transition, log_observation), n_states)
    scores = log_observation[:, 0]
    if log_initial is not None:
        scores = scores + log_initial.to(scores)
    backpointers = torch.empty(
        n_frames - 1, batch, n_states, dtype=torch.int32, device=scores.device
    )
    with _one_cpu_thread(scores.device):
        for t in range(1, n_frames):
            scores = scores - scores.amax(-1, keepdim=True)
            best, backpointers[t - 1] = step(scores)
            scores = best + log_observation[:, t]
        return _backtrack(scores.argmax(-1), backpointers)


def _to_like(
    log_transition: torch.Tensor | BandedTransition, like: torch.Tensor
) -> torch.Tensor | BandedTransition:
    if isinstance(log_transition, BandedTransition):
        return BandedTransition(log_transition.log_incoming.to(like))
    return log_transition.to(like)


def _backtrack(last_state: torch.Tensor, backpointers: torch.Tensor) -> torch.Tensor:
    path = [last_state]
    for t in range(backpointers.shape[0] - 1, -1, -1):
        path.append(backpointers[t].gather(-1, path[-1][:, None]).squeeze(-1).long())
    return torch.stack(path[::-1], dim=1)
