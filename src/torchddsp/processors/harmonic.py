"""Harmonic oscillator processor (DDSP ``synths.Harmonic``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..functional._checks import check_same_leading, check_tensor
from ..functional.core import (
    exp_sigmoid,
    interpolation_weights,
    normalize_harmonics,
    unscaled,
)
from ..functional.oscillators import harmonic_synthesis, render_harmonic_frames
from .base import (
    State,
    Synthesizer,
    append_frames,
    empty_audio,
    frames_to_render,
    hold_last_frame,
    keep_from,
)


class Harmonic(Synthesizer):
    """Additive harmonic synthesizer driven by f0, loudness and a spectral shape.

    ``get_controls`` scales amplitude and distribution with ``scale_fn``
    (default :func:`exp_sigmoid`), removes harmonics at or above Nyquist when
    ``normalize_below_nyquist`` and normalises the distribution to sum 1.
    Shape: amplitudes [batch, n_frames, 1], harmonic_distribution
    [batch, n_frames, n_harmonics], f0_hz [batch, n_frames, 1] -> audio [batch, n_samples].
    """

    def __init__(
        self,
        sample_rate: float = 16000,
        frame_rate: float = 250,
        scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = exp_sigmoid,
        normalize_below_nyquist: bool = True,
        amp_resample_method: str = "window",
    ):
        super().__init__(sample_rate, frame_rate)
        self.scale_fn = unscaled if scale_fn is None else scale_fn
        self.normalize_below_nyquist = normalize_below_nyquist
        self.amp_resample_method = amp_resample_method
        if self.sample_rate % self.frame_rate == 0:  # streamable: the hop's weights, once
            hop = self.hop_size
            f0_weights = torch.stack(interpolation_weights(hop, "linear"))
            amp_weights = torch.stack(interpolation_weights(hop, amp_resample_method))
            self.register_buffer("f0_weights", f0_weights, persistent=False)
            self.register_buffer("amp_weights", amp_weights, persistent=False)

    def get_controls(
        self,
        amplitudes: torch.Tensor,
        harmonic_distribution: torch.Tensor,
        f0_hz: torch.Tensor,
        sample_rate: float | None = None,
    ) -> dict[str, torch.Tensor]:
        if not torch.jit.is_scripting():
            _check_controls(amplitudes, harmonic_distribution, f0_hz)
        amplitudes = self.scale_fn(amplitudes)
        harmonic_distribution = self.scale_fn(harmonic_distribution)
        nyquist_rate = self.rate(sample_rate) if self.normalize_below_nyquist else None
        harmonic_distribution = normalize_harmonics(harmonic_distribution, f0_hz, nyquist_rate)
        return {
            "amplitudes": amplitudes,
            "harmonic_distribution": harmonic_distribution,
            "f0_hz": f0_hz,
        }

    def get_signal(
        self,
        amplitudes: torch.Tensor,
        harmonic_distribution: torch.Tensor,
        f0_hz: torch.Tensor,
        sample_rate: float | None = None,
        n_samples: int | None = None,
    ) -> torch.Tensor:
        rate = self.rate(sample_rate)
        length = self.n_samples_for(f0_hz.shape[1], rate, n_samples)
        audio, _ = harmonic_synthesis(
            f0_hz, amplitudes, harmonic_distribution, length, rate, self.amp_resample_method
        )
        return audio

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> State:
        """The fundamental's phase (float64); frames are buffered as they come."""
        return {"phase": torch.zeros(batch_size, 1, dtype=torch.float64, device=device)}

    @torch.jit.export
    def forward_stream(
        self, inputs: list[torch.Tensor], state: State, final: bool = False
    ) -> tuple[torch.Tensor, State]:
        """Render each frame once the next one is known; carry the phase.

        Shape: inputs [amplitudes, harmonic_distribution, f0_hz] as get_controls,
        each [batch, n_new_frames, channels] -> audio [batch, n_out].
        """
        controls = self.get_controls(inputs[0], inputs[1], inputs[2])
        frames = {
            "f0_hz": controls["f0_hz"],
            "harmonic_amplitudes": controls["amplitudes"] * controls["harmonic_distribution"],
        }
        state = append_frames(state, frames)
        n_render = frames_to_render(state["f0_hz"].shape[1], final)
        if n_render == 0:
            return empty_audio(inputs[2].shape[0], inputs[2]), state
        names = ["f0_hz", "harmonic_amplitudes"]
        ready = [hold_last_frame(state[name], final)[:, : n_render + 1] for name in names]
        audio, phase = render_harmonic_frames(
            ready[0],
            ready[1],
            self.sample_rate,
            (self.f0_weights[0], self.f0_weights[1]),
            (self.amp_weights[0], self.amp_weights[1]),
            state["phase"],
        )
        state = keep_from(state, names, n_render)
        state["phase"] = phase
        return audio, state


def _check_controls(amplitudes, harmonic_distribution, f0_hz) -> None:
    check_tensor(amplitudes, "amplitudes", 3, "[batch, n_frames, 1]")
    check_tensor(
        harmonic_distribution, "harmonic_distribution", 3, "[batch, n_frames, n_harmonics]"
    )
    check_tensor(f0_hz, "f0_hz", 3, "[batch, n_frames, 1]")
    check_same_leading(f0_hz, harmonic_distribution, "f0_hz", "harmonic_distribution", 2)
