"""Audio effects: convolution reverbs, time-varying FIR filter, modulated delay.

Ports of Magenta's ``ddsp.effects``. Every effect maps ``audio [batch,
n_samples]`` to audio of the same length. ``get_controls`` and ``get_signal``
take the :class:`Processor` call's optional ``sample_rate``; only
:class:`ModDelay` depends on it (its delays are in milliseconds).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..functional._checks import check_positive, check_same_leading, check_tensor
from ..functional.core import exp_sigmoid, resample_frames, unscaled
from ..functional.filters import (
    fft_convolve,
    frequency_filter,
    frequency_impulse_response,
    overlap_add_filter,
    variable_length_delay,
)
from ..functional.partitioned import (
    init_partitioned_state,
    partition_impulse_response,
    partitioned_convolve,
)
from .base import (
    Processor,
    State,
    append_audio,
    append_frames,
    controls_at_samples,
    drop_leading,
    empty_audio,
    stream_hop_size,
)

AUDIO_SHAPE = "[batch, n_samples]"
ScaleFn = Callable[[torch.Tensor], torch.Tensor]


class _ConvolutionReverb(Processor):
    """Shared rendering of the reverbs: audio convolved with an impulse response.

    The first tap of the impulse response is zeroed (DDSP's "mask dry") so the
    dry path stays separate from the learned wet one. Streaming (trainable
    reverbs, whose impulse response is their own) runs a zero-latency
    partitioned convolution with ``partition_size``-tap partitions; the
    impulse response is read when the stream starts (``init_state``).
    """

    def __init__(
        self, reverb_length: int, trainable: bool, add_dry: bool, partition_size: int = 512
    ):
        super().__init__()
        check_positive(reverb_length, "reverb_length")
        self.reverb_length = int(reverb_length)
        self.trainable = trainable
        self.add_dry = add_dry
        self.partition_size = partition_size

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> State:
        """The partitioned impulse response and its empty delay line."""
        if not self.trainable:
            raise ValueError("streaming needs a trainable reverb: its impulse response is its own")
        probe = torch.zeros(1, 1, dtype=dtype, device=device)
        ir = dry_masked(self.get_controls(probe)["ir"]).detach()[0].to(dtype)
        return init_partitioned_state(
            partition_impulse_response(ir, self.partition_size), batch_size
        )

    @torch.jit.export
    def forward_stream(
        self, inputs: list[torch.Tensor], state: State, final: bool = False
    ) -> tuple[torch.Tensor, State]:
        """Convolve each block as it comes (no latency).

        Shape: inputs [audio [batch, n_new_samples]] -> [batch, n_new_samples].
        """
        wet, state = partitioned_convolve(inputs[0], state)
        return (wet + inputs[0] if self.add_dry else wet), state

    @torch.jit.unused
    def _check_inputs(self, **controls: torch.Tensor | None) -> None:
        """Learned controls must not be passed in; the others must be."""
        given = [name for name, value in controls.items() if value is not None]
        name = type(self).__name__
        if self.trainable and given:
            raise ValueError(
                f"{name}(trainable=True) learns {', '.join(controls)}, found {', '.join(given)} "
                "passed in; construct it with trainable=False to supply them"
            )
        missing = [key for key in controls if key not in given]
        if not self.trainable and missing:
            raise ValueError(
                f"{name}(trainable=False) needs {', '.join(controls)} as input, "
                f"found none for {', '.join(missing)}"
            )

    def get_signal(
        self, audio: torch.Tensor, ir: torch.Tensor, sample_rate: float | None = None
    ) -> torch.Tensor:
        """Convolve with the dry-masked impulse response, then add the dry audio.

        The impulse response is in samples, so ``sample_rate`` is only validated.
        A single FFT convolution: the output is the first ``n_samples`` of the
        full linear convolution (no delay compensation).
        Shape: audio [batch, n_samples], ir [batch or 1, ir_size] or [ir_size]
        -> [batch, n_samples].
        """
        check_tensor(audio, "audio", 2, AUDIO_SHAPE)
        check_tensor(ir, "ir", (1, 2), "[batch, ir_size] or [ir_size]")
        self.rate(sample_rate)
        ir = ir.reshape(-1, ir.shape[-1])
        wet = fft_convolve(audio, dry_masked(ir), padding="same", delay_compensation=0)
        return wet + audio if self.add_dry else wet


def dry_masked(ir: torch.Tensor) -> torch.Tensor:
    """The impulse response with its first (dry) tap zeroed: the reverbs add dry audio apart.

    Shape: ir [batch, ir_size] -> same.
    """
    return F.pad(ir[:, 1:], (1, 0))


class Reverb(_ConvolutionReverb):
    """Convolution reverb with a free impulse response (DDSP ``effects.Reverb``).

    ``trainable=True`` learns one impulse response of ``reverb_length`` taps for
    the whole dataset, initialised N(0, 1e-6) as in DDSP; otherwise the impulse
    response is an input. Difference from DDSP: ``trainable`` defaults to True,
    the common use in DDSP's configurations.
    """

    def __init__(self, reverb_length: int = 48000, trainable: bool = True, add_dry: bool = True):
        super().__init__(reverb_length, trainable, add_dry)
        learned = nn.Parameter(torch.randn(self.reverb_length) * 1e-6) if trainable else None
        self.register_parameter("ir", learned)

    def get_controls(
        self, audio: torch.Tensor, ir: torch.Tensor | None = None, sample_rate: float | None = None
    ) -> dict[str, torch.Tensor]:
        """The learned impulse response, or the given one.

        Shape: audio [batch, n_samples], ir [batch, ir_size] -> ir [batch or 1, ir_size].
        """
        if not torch.jit.is_scripting():
            self._check_inputs(ir=ir)
        learned = self.ir
        if learned is not None:
            return {"audio": audio, "ir": learned[None]}
        assert ir is not None
        return {"audio": audio, "ir": ir}


class ExpDecayReverb(_ConvolutionReverb):
    """Reverb whose impulse response is exponentially decaying white noise.

    ``ir = scale_fn(gain) * exp(-(2 + exp(decay)) * t) * noise`` with ``t`` from
    0 to 1 over ``reverb_length`` taps (DDSP ``effects.ExpDecayReverb``).
    ``trainable=True`` learns one ``gain`` (init 2) and ``decay`` (init 4).
    Differences from DDSP: ``trainable`` defaults to True, and the noise is
    drawn once at construction and kept as a buffer (saved with the model), so
    the reverb is deterministic instead of changing at every call.
    """

    def __init__(
        self,
        reverb_length: int = 48000,
        trainable: bool = True,
        add_dry: bool = True,
        scale_fn: ScaleFn | None = exp_sigmoid,
    ):
        super().__init__(reverb_length, trainable, add_dry)
        self.scale_fn = unscaled if scale_fn is None else scale_fn
        self.register_buffer("noise", 2.0 * torch.rand(self.reverb_length) - 1.0)
        self.register_parameter("gain", nn.Parameter(torch.full((1,), 2.0)) if trainable else None)
        self.register_parameter("decay", nn.Parameter(torch.full((1,), 4.0)) if trainable else None)

    def get_controls(
        self,
        audio: torch.Tensor,
        gain: torch.Tensor | None = None,
        decay: torch.Tensor | None = None,
        sample_rate: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """The impulse response from the learned or given gain and decay.

        Shape: audio [batch, n_samples], gain and decay [batch, 1] ->
        ir [batch or 1, reverb_length].
        """
        if not torch.jit.is_scripting():
            self._check_inputs(gain=gain, decay=decay)
        learned_gain, learned_decay = self.gain, self.decay
        if learned_gain is not None and learned_decay is not None:
            return {
                "audio": audio,
                "ir": self.impulse_response(learned_gain[None], learned_decay[None]),
            }
        assert gain is not None and decay is not None
        return {"audio": audio, "ir": self.impulse_response(gain, decay)}

    def impulse_response(self, gain: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
        """Shape: gain and decay [batch, 1] -> [batch, reverb_length]."""
        if not torch.jit.is_scripting():
            check_tensor(gain, "gain", 2, "[batch, 1]")
            check_tensor(decay, "decay", 2, "[batch, 1]")
            check_same_leading(gain, decay, "gain", "decay", 2)
        gain = self.scale_fn(gain)
        time = torch.linspace(0.0, 1.0, self.reverb_length, dtype=gain.dtype, device=gain.device)
        return gain * torch.exp(-(2.0 + torch.exp(decay)) * time) * self.noise


class FilteredNoiseReverb(_ConvolutionReverb):
    """Reverb whose impulse response is time-varying filtered noise.

    The impulse response is ``reverb_length`` samples of white noise filtered
    by ``scale_fn(magnitudes + initial_bias)``, ``magnitudes`` being
    ``[n_frames, n_freq_bands]`` gains over the reverb's duration (DDSP
    ``effects.FilteredNoiseReverb``, whose ``n_filter_banks`` is our
    ``n_freq_bands``). ``trainable=True`` learns them, initialised N(0, 1e-2).
    Differences from DDSP: ``trainable`` defaults to True, ``n_freq_bands`` to
    100 (DDSP: 16), and the noise is drawn once at construction and kept as a
    buffer, so the reverb is deterministic.
    """

    def __init__(
        self,
        reverb_length: int = 48000,
        window_size: int = 257,
        n_frames: int = 1000,
        n_freq_bands: int = 100,
        trainable: bool = True,
        add_dry: bool = True,
        scale_fn: ScaleFn | None = exp_sigmoid,
        initial_bias: float = -3.0,
    ):
        super().__init__(reverb_length, trainable, add_dry)
        check_positive(n_frames, "n_frames")
        check_positive(n_freq_bands, "n_freq_bands")
        self.window_size = window_size
        # Without a scale function, magnitudes pass through unchanged, bias included.
        self.scale_fn = unscaled if scale_fn is None else scale_fn
        self.initial_bias = 0.0 if scale_fn is None else float(initial_bias)
        self.register_buffer("noise", 2.0 * torch.rand(self.reverb_length) - 1.0)
        learned = nn.Parameter(torch.randn(n_frames, n_freq_bands) * 1e-2) if trainable else None
        self.register_parameter("magnitudes", learned)

    def get_controls(
        self,
        audio: torch.Tensor,
        magnitudes: torch.Tensor | None = None,
        sample_rate: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """The impulse response from the learned or given magnitudes.

        Shape: audio [batch, n_samples], magnitudes [batch, n_frames,
        n_freq_bands] -> ir [batch or 1, reverb_length].
        """
        if not torch.jit.is_scripting():
            self._check_inputs(magnitudes=magnitudes)
        learned = self.magnitudes
        if learned is not None:
            return {"audio": audio, "ir": self.impulse_response(learned[None])}
        assert magnitudes is not None
        return {"audio": audio, "ir": self.impulse_response(magnitudes)}

    def impulse_response(self, magnitudes: torch.Tensor) -> torch.Tensor:
        """Shape: magnitudes [batch, n_frames, n_freq_bands] -> [batch, reverb_length]."""
        if not torch.jit.is_scripting():
            check_tensor(magnitudes, "magnitudes", 3, "[batch, n_frames, n_freq_bands]")
        magnitudes = self.scale_fn(magnitudes + self.initial_bias)
        noise = self.noise.expand(magnitudes.shape[0], -1)
        return frequency_filter(noise, magnitudes, window_size=self.window_size)


class FIRFilter(Processor):
    """Linear time-varying FIR filter from frame-rate frequency responses.

    DDSP ``effects.FIRFilter``: each frame's ``n_bands`` gains (DC to Nyquist)
    become a centred linear-phase filter of at most ``window_size`` taps
    filtering that frame's share of the audio; the output is aligned with the
    input.
    """

    def __init__(
        self,
        window_size: int = 257,
        scale_fn: ScaleFn | None = exp_sigmoid,
        sample_rate: float = 16000,
        frame_rate: float = 250,
    ):
        super().__init__(sample_rate)
        self.window_size = window_size
        self.scale_fn = unscaled if scale_fn is None else scale_fn
        self.hop_size = stream_hop_size(self.sample_rate, frame_rate)

    def get_controls(
        self, audio: torch.Tensor, magnitudes: torch.Tensor, sample_rate: float | None = None
    ) -> dict[str, torch.Tensor]:
        """Network outputs to gains: ``scale_fn(magnitudes)``.

        Shape: audio [batch, n_samples], magnitudes [batch, n_frames, n_bands] -> same.
        """
        if not torch.jit.is_scripting():
            check_tensor(magnitudes, "magnitudes", 3, "[batch, n_frames, n_bands]")
        return {"audio": audio, "magnitudes": self.scale_fn(magnitudes)}

    def get_signal(
        self, audio: torch.Tensor, magnitudes: torch.Tensor, sample_rate: float | None = None
    ) -> torch.Tensor:
        """Filter the audio; gains are relative to Nyquist, so ``sample_rate`` is only validated.

        Shape: audio [batch, n_samples], magnitudes [batch, n_frames, n_bands]
        -> [batch, n_samples].
        """
        check_tensor(magnitudes, "magnitudes", 3, "[batch, n_frames, n_bands]")
        self.rate(sample_rate)
        return frequency_filter(audio, magnitudes, window_size=self.window_size)

    @torch.jit.export
    def forward_stream(
        self, inputs: list[torch.Tensor], state: State, final: bool = False
    ) -> tuple[torch.Tensor, State]:
        """Filter each frame of audio once both it and its response have arrived.

        Frame ``i`` covers samples ``[i * hop, (i + 1) * hop)``, ``hop =
        sample_rate / frame_rate``; the centred filter holds the output back
        by ``taps // 2`` samples.
        Shape: inputs [audio [batch, n_new_samples], magnitudes
        [batch, n_new_frames, n_bands]] -> audio [batch, n_out].
        """
        controls = self.get_controls(inputs[0], inputs[1])
        state = append_frames(state, {"magnitudes": controls["magnitudes"]})
        state = append_audio(state, "audio", inputs[0])
        hop = self.hop_size
        n_frames = min(state["audio"].shape[1] // hop, state["magnitudes"].shape[1])
        out = empty_audio(inputs[0].shape[0], inputs[0])
        if n_frames > 0:
            responses = frequency_impulse_response(
                state["magnitudes"][:, :n_frames], self.window_size
            )
            if "tail" not in state:
                state["tail"] = responses.new_zeros(out.shape[0], responses.shape[-1] - 1)
                state["drop"] = torch.full([1], responses.shape[-1] // 2, dtype=torch.int64)
            done, state["tail"] = overlap_add_filter(
                state["audio"][:, : n_frames * hop], responses, state["tail"]
            )
            out, state["drop"] = drop_leading(done, state["drop"])
            state["audio"] = state["audio"][:, n_frames * hop :]
            state["magnitudes"] = state["magnitudes"][:, n_frames:]
        if final and "tail" in state:
            delay = (state["tail"].shape[-1] + 1) // 2
            out = torch.cat([out, state["tail"][:, int(state["drop"].item()) : delay]], dim=1)
        return out, state

    def stream_lag(self, input_lags: list[int], frame_channels: list[int]) -> int:
        """The audio's lag, up to a frame's wait for its last sample, and the filter's delay."""
        taps = 2 * (frame_channels[1] - 1)
        if 0 < self.window_size < taps:
            taps = self.window_size
        return input_lags[0] + self.hop_size - 1 + taps // 2


class ModDelay(Processor):
    """Modulated delay: chorus, flanger and vibrato (DDSP ``effects.ModDelay``).

    The wet signal is the audio delayed by ``center_ms + (2 * phase - 1) *
    depth_ms`` (phase in [0, 1]) and scaled by ``gain``; the longest delay,
    ``center_ms + depth_ms``, is converted to samples at the call's sample rate.
    ``gain`` and ``phase`` may be frame-rate controls: they are linearly
    resampled to audio rate (audio-rate controls pass through unchanged).
    Difference from DDSP: DDSP's code maps phase [0, 1] to delays
    [center_ms, center_ms + depth_ms] although its docstring promises
    [center_ms - depth_ms, center_ms + depth_ms]; this implements the latter.
    """

    def __init__(
        self,
        center_ms: float = 15.0,
        depth_ms: float = 10.0,
        sample_rate: float = 16000,
        gain_scale_fn: ScaleFn | None = exp_sigmoid,
        phase_scale_fn: ScaleFn | None = torch.sigmoid,
        add_dry: bool = True,
        frame_rate: float = 250,
    ):
        super().__init__(sample_rate)
        check_positive(center_ms, "center_ms")
        if not 0.0 <= depth_ms <= center_ms:
            raise ValueError(
                f"depth_ms must be in [0, center_ms={center_ms}] so delays stay positive, "
                f"found {depth_ms}"
            )
        self.center_ms = float(center_ms)
        self.depth_ms = float(depth_ms)
        self.gain_scale_fn = unscaled if gain_scale_fn is None else gain_scale_fn
        self.phase_scale_fn = unscaled if phase_scale_fn is None else phase_scale_fn
        self.add_dry = add_dry
        self.hop_size = stream_hop_size(self.sample_rate, frame_rate)

    def get_controls(
        self,
        audio: torch.Tensor,
        gain: torch.Tensor,
        phase: torch.Tensor,
        sample_rate: float | None = None,
    ) -> dict[str, torch.Tensor]:
        """Network outputs to ``gain_scale_fn(gain)`` and ``phase_scale_fn(phase)``.

        Shape: audio [batch, n_samples], gain and phase [batch, n_frames, 1] -> same.
        """
        # The delay amplifies a last-bit difference of the phase by max_length samples; in
        # float64 a vectorised float32 scaling's rounding (which varies with the position of
        # a frame in a block) cannot make blocked and whole rendering differ.
        return {
            "audio": audio,
            "gain": self.gain_scale_fn(gain),
            "phase": self.phase_scale_fn(phase.double()).to(phase.dtype),
        }

    def get_signal(
        self,
        audio: torch.Tensor,
        gain: torch.Tensor,
        phase: torch.Tensor,
        sample_rate: float | None = None,
    ) -> torch.Tensor:
        """Delay by the phase-controlled time, scale by gain, add the dry audio.

        Shape: audio [batch, n_samples], gain and phase [batch, n_frames, 1]
        (n_frames may equal n_samples) -> [batch, n_samples].
        """
        check_tensor(audio, "audio", 2, AUDIO_SHAPE)
        for name, control in (("gain", gain), ("phase", phase)):
            check_tensor(control, name, 3, "[batch, n_frames, 1]")
            if control.shape[-1] != 1:
                shape = tuple(control.shape)
                raise ValueError(
                    f"{name} must have shape [batch, n_frames, 1], found shape {shape}"
                )
            check_same_leading(audio, control, "audio", name, 1)
        n_samples = audio.shape[1]
        gain = resample_frames(gain, n_samples)[..., 0]
        phase = resample_frames(phase, n_samples)[..., 0]
        wet = self._delayed(audio, phase, self.max_length(self.rate(sample_rate))) * gain
        return wet + audio if self.add_dry else wet

    def max_length(self, sample_rate: float) -> int:
        """The longest delay, ``center_ms + depth_ms``, in samples."""
        return int(sample_rate / 1000.0 * (self.center_ms + self.depth_ms))

    def _delayed(self, audio: torch.Tensor, phase: torch.Tensor, max_length: int) -> torch.Tensor:
        max_delay_ms = self.center_ms + self.depth_ms
        delay_fraction = (self.center_ms + (2.0 * phase - 1.0) * self.depth_ms) / max_delay_ms
        return variable_length_delay(audio, delay_fraction, max_length=max_length)

    @torch.jit.export
    def forward_stream(
        self, inputs: list[torch.Tensor], state: State, final: bool = False
    ) -> tuple[torch.Tensor, State]:
        """Delay each sample once its gain and phase are known (the next frame's, to
        interpolate); the last ``max_length`` samples are carried as the delay line.

        Shape: inputs [audio [batch, n_new_samples], gain, phase [batch,
        n_new_frames, 1]] -> audio [batch, n_out].
        """
        controls = self.get_controls(inputs[0], inputs[1], inputs[2])
        state = append_frames(state, {"gain": controls["gain"], "phase": controls["phase"]})
        state = append_audio(state, "audio", inputs[0])
        max_length = self.max_length(self.sample_rate)
        if "history" not in state:
            state["history"] = inputs[0].new_zeros(inputs[0].shape[0], max_length)
            state["emitted"] = torch.zeros(1, dtype=torch.int64)
        n_out, envelopes, state = controls_at_samples(
            state, ["gain", "phase"], self.hop_size, final, state["audio"].shape[1]
        )
        dry = state["audio"][:, :n_out]
        line = torch.cat([state["history"], dry], dim=1)
        phase = torch.cat([torch.zeros_like(state["history"]), envelopes[1]], dim=1)
        wet = self._delayed(line, phase, max_length)[:, max_length:] * envelopes[0]
        state["history"] = line[:, line.shape[1] - max_length :]
        state["audio"] = state["audio"][:, n_out:]
        return (wet + dry if self.add_dry else wet), state

    def stream_lag(self, input_lags: list[int], frame_channels: list[int]) -> int:
        """Causal in the audio; its gain and phase need the next frame."""
        return max(input_lags[0], self.hop_size)
