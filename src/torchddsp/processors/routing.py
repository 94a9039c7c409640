"""Routing processors: ``Add`` and ``Mix`` two signals."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..functional._checks import check_choice, check_tensor
from ..functional.core import RESAMPLE_METHODS, resample_frames, unscaled
from .base import Processor, State, append_frames, controls_at_samples, join_audio, stream_hop_size

ScaleFn = Callable[[torch.Tensor], torch.Tensor]
AUDIO_SHAPE = "[batch, n_samples]"


def _check_same_shape(signal_one: torch.Tensor, signal_two: torch.Tensor) -> None:
    # Strict equality: broadcasting [b, n] with [b, n, 1] would silently give [b, n, n].
    if signal_one.shape != signal_two.shape:
        raise ValueError(
            "signal_one and signal_two must have the same shape, "
            f"found {tuple(signal_one.shape)} and {tuple(signal_two.shape)}"
        )


class Add(Processor):
    """Sum of two signals (DDSP ``processors.Add``).

    Shape: signal_one and signal_two of one shape (audio [batch, n_samples] or
    controls [batch, n_frames, channels]) -> that shape.
    """

    def __init__(self):
        super().__init__()

    def get_controls(
        self, signal_one: torch.Tensor, signal_two: torch.Tensor, sample_rate: float | None = None
    ) -> dict[str, torch.Tensor]:
        if not torch.jit.is_scripting():
            shape = "[batch, n_samples] or [batch, n_frames, channels]"
            check_tensor(signal_one, "signal_one", (2, 3), shape)
            check_tensor(signal_two, "signal_two", (2, 3), shape)
            _check_same_shape(signal_one, signal_two)
        return {"signal_one": signal_one, "signal_two": signal_two}

    def get_signal(
        self, signal_one: torch.Tensor, signal_two: torch.Tensor, sample_rate: float | None = None
    ) -> torch.Tensor:
        return signal_one + signal_two

    @torch.jit.export
    def forward_stream(
        self, inputs: list[torch.Tensor], state: State, final: bool = False
    ) -> tuple[torch.Tensor, State]:
        """Sum the samples both signals have delivered; buffer the rest.

        Shape: inputs [signal_one, signal_two], each [batch, n_new_i] -> [batch, n_out].
        """
        signals, state = join_audio(state, ["signal_one", "signal_two"], inputs)
        return signals[0] + signals[1], state


class Mix(Processor):
    """Time-varying crossfade: ``signal_one * (1 - mix) + signal_two * mix``.

    ``mix = scale_fn(mix_level)`` (default sigmoid, so any network output is a
    valid mix in [0, 1]); frame-rate mix levels are upsampled to audio rate with
    ``resample_method``. Difference from DDSP ``processors.Mix``: DDSP weighs the
    signals by ``sqrt(mix)`` and ``1 - sqrt(1 - mix)``, which silences both at
    ``mix = 0``; this is the plain linear crossfade (``mix = 1`` is all signal_two).
    ``sample_rate`` and ``frame_rate`` place the frames when streaming.
    Shape: signal_one and signal_two [batch, n_samples], mix_level
    [batch, n_frames, 1] (n_frames may equal n_samples) -> [batch, n_samples].
    """

    def __init__(
        self,
        scale_fn: ScaleFn | None = torch.sigmoid,
        resample_method: str = "linear",
        sample_rate: float = 16000,
        frame_rate: float = 250,
    ):
        super().__init__(sample_rate)
        check_choice(resample_method, "resample_method", RESAMPLE_METHODS)
        self.scale_fn = unscaled if scale_fn is None else scale_fn
        self.resample_method = resample_method
        self.hop_size = stream_hop_size(self.sample_rate, frame_rate)

    def get_controls(
        self,
        signal_one: torch.Tensor,
        signal_two: torch.Tensor,
        mix_level: torch.Tensor,
        sample_rate: float | None = None,
    ) -> dict[str, torch.Tensor]:
        if not torch.jit.is_scripting():
            _check_mix_inputs(signal_one, signal_two, mix_level)
        return {
            "signal_one": signal_one,
            "signal_two": signal_two,
            "mix_level": self.scale_fn(mix_level),
        }

    def get_signal(
        self,
        signal_one: torch.Tensor,
        signal_two: torch.Tensor,
        mix_level: torch.Tensor,
        sample_rate: float | None = None,
    ) -> torch.Tensor:
        n_samples = signal_one.shape[1]
        if mix_level.shape[1] != n_samples:
            mix_level = resample_frames(mix_level, n_samples, self.resample_method)
        mix = mix_level[..., 0]
        return signal_one + mix * (signal_two - signal_one)

    @torch.jit.export
    def forward_stream(
        self, inputs: list[torch.Tensor], state: State, final: bool = False
    ) -> tuple[torch.Tensor, State]:
        """Crossfade the samples both signals have delivered whose mix is known.

        Shape: inputs [signal_one, signal_two [batch, n_new_i], mix_level
        [batch, n_new_frames, 1]] -> [batch, n_out].
        """
        state = append_frames(state, {"mix_level": self.scale_fn(inputs[2])})
        if "emitted" not in state:
            state["emitted"] = torch.zeros(1, dtype=torch.int64)
        signals, state = join_audio(state, ["signal_one", "signal_two"], inputs[:2])
        n_out, mix, state = controls_at_samples(
            state, ["mix_level"], self.hop_size, final, signals[0].shape[1], self.resample_method
        )
        # Samples past the known mix wait for the next frames.
        state["signal_one"] = torch.cat([signals[0][:, n_out:], state["signal_one"]], dim=1)
        state["signal_two"] = torch.cat([signals[1][:, n_out:], state["signal_two"]], dim=1)
        one, two = signals[0][:, :n_out], signals[1][:, :n_out]
        return one + mix[0] * (two - one), state

    def stream_lag(self, input_lags: list[int], frame_channels: list[int]) -> int:
        """The later signal's lag, or the mix level's next frame, whichever is longer."""
        return max(input_lags[0], input_lags[1], self.hop_size)


def _check_mix_inputs(signal_one: object, signal_two: object, mix_level: object) -> None:
    check_tensor(signal_one, "signal_one", 2, AUDIO_SHAPE)
    check_tensor(signal_two, "signal_two", 2, AUDIO_SHAPE)
    _check_same_shape(signal_one, signal_two)
    check_tensor(mix_level, "mix_level", 3, "[batch, n_frames, 1]")
    if mix_level.shape[0] != signal_one.shape[0] or mix_level.shape[2] != 1:
        raise ValueError(
            f"mix_level must have shape [batch={signal_one.shape[0]}, n_frames, 1], "
            f"found {tuple(mix_level.shape)}"
        )
