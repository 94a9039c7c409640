"""Source processors: free sinusoids (DDSP ``synths.Sinusoidal``), wavetables
(DDSP ``synths.Wavetable``) and a Rosenberg glottal source for voices."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from ..functional._checks import check_same_leading, check_single_channel, check_tensor
from ..functional.core import exp_sigmoid, remove_above_nyquist, unscaled
from ..functional.sources import (
    frequencies_sigmoid,
    glottal_pulse_synthesis,
    sinusoidal_synthesis,
    wavetable_synthesis,
)
from .base import State, Synthesizer, append_frames, empty_audio, frames_to_render, keep_from

ScaleFn = Callable[[torch.Tensor], torch.Tensor]


class Sinusoidal(Synthesizer):
    """Bank of free-frequency sinusoids (DDSP ``synths.Sinusoidal``).

    ``get_controls`` scales amplitudes with ``amp_scale_fn`` (default
    :func:`exp_sigmoid`) and frequencies with ``freq_scale_fn`` (default
    :func:`frequencies_sigmoid`: log-spaced in [20, 8000] Hz), then silences
    sinusoids at or above Nyquist. A ``None`` scale function passes values through.
    Shape: amplitudes, frequencies [batch, n_frames, n_sinusoids] -> audio [batch, n_samples].
    """

    def __init__(
        self,
        sample_rate: float = 16000,
        frame_rate: float = 250,
        amp_scale_fn: ScaleFn | None = exp_sigmoid,
        freq_scale_fn: ScaleFn | None = frequencies_sigmoid,
        amp_resample_method: str = "window",
    ):
        super().__init__(sample_rate, frame_rate)
        self.amp_scale_fn = unscaled if amp_scale_fn is None else amp_scale_fn
        self.freq_scale_fn = unscaled if freq_scale_fn is None else freq_scale_fn
        self.amp_resample_method = amp_resample_method

    def get_controls(
        self, amplitudes: torch.Tensor, frequencies: torch.Tensor, sample_rate: float | None = None
    ) -> dict[str, torch.Tensor]:
        if not torch.jit.is_scripting():
            check_tensor(amplitudes, "amplitudes", 3, "[batch, n_frames, n_sinusoids]")
            check_tensor(frequencies, "frequencies", 3, "[batch, n_frames, n_sinusoids]")
            check_same_leading(amplitudes, frequencies, "amplitudes", "frequencies", 3)
        amplitudes = self.amp_scale_fn(amplitudes)
        frequencies = self.freq_scale_fn(frequencies)
        amplitudes = remove_above_nyquist(frequencies, amplitudes, self.rate(sample_rate))
        return {"amplitudes": amplitudes, "frequencies": frequencies}

    def get_signal(
        self,
        amplitudes: torch.Tensor,
        frequencies: torch.Tensor,
        sample_rate: float | None = None,
        n_samples: int | None = None,
    ) -> torch.Tensor:
        rate = self.rate(sample_rate)
        length = self.n_samples_for(frequencies.shape[1], rate, n_samples)
        audio, _ = sinusoidal_synthesis(
            frequencies, amplitudes, length, rate, self.amp_resample_method
        )
        return audio

    @torch.jit.export
    def forward_stream(
        self, inputs: list[torch.Tensor], state: State, final: bool = False
    ) -> tuple[torch.Tensor, State]:
        """Render each frame once the next one is known; carry the phases.

        Shape: inputs [amplitudes, frequencies] as get_controls, each
        [batch, n_new_frames, n_sinusoids] -> audio [batch, n_out].
        """
        state = append_frames(state, self.get_controls(inputs[0], inputs[1]))
        names = ["amplitudes", "frequencies"]
        n_keep = frames_to_render(state["frequencies"].shape[1], final)
        if n_keep == 0:
            return empty_audio(inputs[0].shape[0], inputs[0]), state
        frames = state["frequencies"]
        audio, phase = sinusoidal_synthesis(
            frames,
            state["amplitudes"],
            frames.shape[1] * self.hop_size,
            self.sample_rate,
            self.amp_resample_method,
            state.get("phase"),
            n_keep * self.hop_size,
        )
        state = keep_from(state, names, n_keep)
        state["phase"] = phase
        return audio[:, : n_keep * self.hop_size], state


def _sine_cycle(n_wavetable: int) -> torch.Tensor:
    if n_wavetable < 2:
        raise ValueError(f"n_wavetable must be at least 2, found {n_wavetable}")
    cycle = torch.arange(n_wavetable, dtype=torch.float64) * (2.0 * math.pi / n_wavetable)
    return torch.sin(cycle).to(torch.get_default_dtype())


class Wavetable(Synthesizer):
    """Wavetable oscillator driven by f0 and amplitude (DDSP ``synths.Wavetable``).

    Wavetables come from the network ([batch, n_wavetable] or
    [batch, n_table_frames, n_wavetable], scaled by ``wavetable_scale_fn``,
    default ``tanh`` for a bipolar wave) or, when ``n_wavetable`` is given, from
    one learnable table owned by the processor (initialised to a sine cycle,
    used unscaled), in which case ``wavetables`` is left out. Amplitudes are
    scaled by ``scale_fn`` (default :func:`exp_sigmoid`). The optional
    wavetables come last (DDSP: amplitudes, wavetables, f0_hz) so that a DAG
    node with a learnable table takes just [amplitudes, f0_hz].
    Shape: amplitudes [batch, n_frames, 1], f0_hz [batch, n_frames, 1],
    wavetables as above or None -> audio [batch, n_samples].
    """

    def __init__(
        self,
        sample_rate: float = 16000,
        frame_rate: float = 250,
        scale_fn: ScaleFn | None = exp_sigmoid,
        wavetable_scale_fn: ScaleFn | None = torch.tanh,
        n_wavetable: int | None = None,
    ):
        super().__init__(sample_rate, frame_rate)
        self.scale_fn = unscaled if scale_fn is None else scale_fn
        self.wavetable_scale_fn = unscaled if wavetable_scale_fn is None else wavetable_scale_fn
        table = None if n_wavetable is None else nn.Parameter(_sine_cycle(n_wavetable))
        self.register_parameter("wavetable", table)

    def get_controls(
        self,
        amplitudes: torch.Tensor,
        f0_hz: torch.Tensor,
        wavetables: torch.Tensor | None = None,
        sample_rate: float | None = None,
    ) -> dict[str, torch.Tensor]:
        if not torch.jit.is_scripting():
            check_single_channel(amplitudes, "amplitudes")
            check_single_channel(f0_hz, "f0_hz")
            self._check_wavetables(wavetables)
        return {
            "amplitudes": self.scale_fn(amplitudes),
            "f0_hz": f0_hz,
            "wavetables": self._wavetables(wavetables, f0_hz),
        }

    def _wavetables(self, wavetables: torch.Tensor | None, f0_hz: torch.Tensor) -> torch.Tensor:
        table = self.wavetable
        if table is not None:
            return table.expand(f0_hz.shape[0], -1)
        assert wavetables is not None
        return self.wavetable_scale_fn(wavetables)

    @torch.jit.unused
    def _check_wavetables(self, wavetables: torch.Tensor | None) -> None:
        if self.wavetable is None:
            if wavetables is None:
                raise ValueError(
                    "wavetables must be given (this Wavetable has no learnable "
                    "table; pass n_wavetable to own one), found None"
                )
            check_tensor(
                wavetables,
                "wavetables",
                (2, 3),
                "[batch, n_wavetable] or [batch, n_table_frames, n_wavetable]",
            )
        elif wavetables is not None:
            raise ValueError(
                "this Wavetable owns a learnable table, so wavetables must be "
                f"left out, found a tensor of shape {tuple(wavetables.shape)}"
            )

    def get_signal(
        self,
        amplitudes: torch.Tensor,
        f0_hz: torch.Tensor,
        wavetables: torch.Tensor,
        sample_rate: float | None = None,
        n_samples: int | None = None,
    ) -> torch.Tensor:
        rate = self.rate(sample_rate)
        length = self.n_samples_for(f0_hz.shape[1], rate, n_samples)
        audio, _ = wavetable_synthesis(f0_hz, amplitudes, wavetables, length, rate)
        return audio

    @torch.jit.export
    def forward_stream(
        self, inputs: list[torch.Tensor], state: State, final: bool = False
    ) -> tuple[torch.Tensor, State]:
        """Render each frame once the next one is known; carry the phase.

        A table per frame ([batch, n_new_frames, n_wavetable]) is buffered like
        the other controls; one table for all frames ([batch, n_wavetable], or
        the learnable one) is kept as it comes.
        Shape: inputs [amplitudes, f0_hz(, wavetables)] as get_controls ->
        audio [batch, n_out].
        """
        wavetables = inputs[2] if len(inputs) > 2 else None
        controls = self.get_controls(inputs[0], inputs[1], wavetables)
        tables = controls.pop("wavetables")
        state = {name: value for name, value in state.items()}
        names = ["amplitudes", "f0_hz"]
        if tables.dim() == 3:
            controls["wavetables"] = tables
            names.append("wavetables")
        else:
            state["static_wavetables"] = tables
        state = append_frames(state, controls)
        n_keep = frames_to_render(state["f0_hz"].shape[1], final)
        if n_keep == 0:
            return empty_audio(inputs[0].shape[0], inputs[0]), state
        f0_hz = state["f0_hz"]
        audio, phase = wavetable_synthesis(
            f0_hz,
            state["amplitudes"],
            state["wavetables"] if tables.dim() == 3 else state["static_wavetables"],
            f0_hz.shape[1] * self.hop_size,
            self.sample_rate,
            state.get("phase"),
            n_keep * self.hop_size,
        )
        state = keep_from(state, names, n_keep)
        state["phase"] = phase
        return audio[:, : n_keep * self.hop_size], state


def _check_range(bounds: tuple[float, float], name: str, upper: float) -> None:
    low, high = bounds
    if not 0.0 < low < high <= upper:
        raise ValueError(f"{name} must satisfy 0 < low < high <= {upper}, found {bounds}")


def _sigmoid_into(x: torch.Tensor, bounds: tuple[float, float]) -> torch.Tensor:
    low, high = bounds  # float64: float32 sigmoid rounds by vector lane (see frequencies_sigmoid)
    return (low + (high - low) * torch.sigmoid(x.double())).to(x.dtype)


class GlottalSource(Synthesizer):
    """Rosenberg glottal pulse train, the voiced excitation of a source-filter voice.

    ``get_controls`` maps raw network outputs to valid ranges: amplitudes with
    ``scale_fn`` (default :func:`exp_sigmoid`), open quotient (open fraction of
    the period) by a sigmoid into ``open_quotient_range`` (default 0.3-0.9,
    pressed to breathy phonation) and speed quotient (opening / closing time)
    into ``speed_quotient_range`` (default 1-4, symmetric to skewed pulses).
    f0_hz passes through. See :func:`glottal_pulse_synthesis` for the pulse.
    Shape: amplitudes, f0_hz, open_quotient, speed_quotient [batch, n_frames, 1]
    -> audio [batch, n_samples].
    """

    def __init__(
        self,
        sample_rate: float = 16000,
        frame_rate: float = 250,
        scale_fn: ScaleFn | None = exp_sigmoid,
        open_quotient_range: tuple[float, float] = (0.3, 0.9),
        speed_quotient_range: tuple[float, float] = (1.0, 4.0),
        derivative: bool = True,
        antialias: bool = True,
    ):
        super().__init__(sample_rate, frame_rate)
        _check_range(open_quotient_range, "open_quotient_range", 1.0)
        _check_range(speed_quotient_range, "speed_quotient_range", math.inf)
        self.scale_fn = unscaled if scale_fn is None else scale_fn
        self.open_quotient_range = open_quotient_range
        self.speed_quotient_range = speed_quotient_range
        self.derivative = derivative
        self.antialias = antialias

    def get_controls(
        self,
        amplitudes: torch.Tensor,
        f0_hz: torch.Tensor,
        open_quotient: torch.Tensor,
        speed_quotient: torch.Tensor,
        sample_rate: float | None = None,
    ) -> dict[str, torch.Tensor]:
        controls = {
            "amplitudes": amplitudes,
            "f0_hz": f0_hz,
            "open_quotient": open_quotient,
            "speed_quotient": speed_quotient,
        }
        if not torch.jit.is_scripting():
            for name, x in controls.items():
                check_single_channel(x, name)
        controls["amplitudes"] = self.scale_fn(amplitudes)
        controls["open_quotient"] = _sigmoid_into(open_quotient, self.open_quotient_range)
        controls["speed_quotient"] = _sigmoid_into(speed_quotient, self.speed_quotient_range)
        return controls

    def get_signal(
        self,
        amplitudes: torch.Tensor,
        f0_hz: torch.Tensor,
        open_quotient: torch.Tensor,
        speed_quotient: torch.Tensor,
        sample_rate: float | None = None,
        n_samples: int | None = None,
    ) -> torch.Tensor:
        rate = self.rate(sample_rate)
        length = self.n_samples_for(f0_hz.shape[1], rate, n_samples)
        audio, _ = glottal_pulse_synthesis(
            f0_hz,
            amplitudes,
            open_quotient,
            speed_quotient,
            length,
            rate,
            self.derivative,
            self.antialias,
        )
        return audio

    @torch.jit.export
    def forward_stream(
        self, inputs: list[torch.Tensor], state: State, final: bool = False
    ) -> tuple[torch.Tensor, State]:
        """Render each frame once the next one is known; carry the phase.

        Shape: inputs [amplitudes, f0_hz, open_quotient, speed_quotient], each
        [batch, n_new_frames, 1] -> audio [batch, n_out].
        """
        controls = self.get_controls(inputs[0], inputs[1], inputs[2], inputs[3])
        state = append_frames(state, controls)
        names = ["amplitudes", "f0_hz", "open_quotient", "speed_quotient"]
        n_keep = frames_to_render(state["f0_hz"].shape[1], final)
        if n_keep == 0:
            return empty_audio(inputs[0].shape[0], inputs[0]), state
        f0_hz = state["f0_hz"]
        audio, phase = glottal_pulse_synthesis(
            f0_hz,
            state["amplitudes"],
            state["open_quotient"],
            state["speed_quotient"],
            f0_hz.shape[1] * self.hop_size,
            self.sample_rate,
            self.derivative,
            self.antialias,
            state.get("phase"),
            n_keep * self.hop_size,
        )
        state = keep_from(state, names, n_keep)
        state["phase"] = phase
        return audio[:, : n_keep * self.hop_size], state
