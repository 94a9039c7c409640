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
from ..functional.core import exp_sigmoid, resample_frames
from ..functional.filters import fft_convolve, frequency_filter, variable_length_delay
from .base import Processor

AUDIO_SHAPE = "[batch, n_samples]"
ScaleFn = Callable[[torch.Tensor], torch.Tensor]


class _ConvolutionReverb(Processor):
    """Shared rendering of the reverbs: audio convolved with an impulse response.

    The first tap of the impulse response is zeroed (DDSP's "mask dry") so the
    dry path stays separate from the learned wet one.
    """

    def __init__(self, reverb_length: int, trainable: bool, add_dry: bool):
        super().__init__()
        check_positive(reverb_length, "reverb_length")
        self.reverb_length = int(reverb_length)
        self.trainable = trainable
        self.add_dry = add_dry

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
        if trainable:
            self.ir = nn.Parameter(torch.randn(self.reverb_length) * 1e-6)

    def get_controls(
        self, audio: torch.Tensor, ir: torch.Tensor | None = None, sample_rate: float | None = None
    ) -> dict[str, torch.Tensor]:
        """The learned impulse response, or the given one.

        Shape: audio [batch, n_samples], ir [batch, ir_size] -> ir [batch or 1, ir_size].
        """
        self._check_inputs(ir=ir)
        return {"audio": audio, "ir": self.ir[None] if self.trainable else ir}


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
        self.scale_fn = scale_fn
        self.register_buffer("noise", 2.0 * torch.rand(self.reverb_length) - 1.0)
        if trainable:
            self.gain = nn.Parameter(torch.full((1,), 2.0))
            self.decay = nn.Parameter(torch.full((1,), 4.0))

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
        self._check_inputs(gain=gain, decay=decay)
        if self.trainable:
            gain, decay = self.gain[None], self.decay[None]
        return {"audio": audio, "ir": self.impulse_response(gain, decay)}

    def impulse_response(self, gain: torch.Tensor, decay: torch.Tensor) -> torch.Tensor:
        """Shape: gain and decay [batch, 1] -> [batch, reverb_length]."""
        check_tensor(gain, "gain", 2, "[batch, 1]")
        check_tensor(decay, "decay", 2, "[batch, 1]")
        check_same_leading(gain, decay, "gain", "decay", 2)
        if self.scale_fn is not None:
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
        self.scale_fn = scale_fn
        self.initial_bias = initial_bias
        self.register_buffer("noise", 2.0 * torch.rand(self.reverb_length) - 1.0)
        if trainable:
            self.magnitudes = nn.Parameter(torch.randn(n_frames, n_freq_bands) * 1e-2)

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
        self._check_inputs(magnitudes=magnitudes)
        if self.trainable:
            magnitudes = self.magnitudes[None]
        return {"audio": audio, "ir": self.impulse_response(magnitudes)}

    def impulse_response(self, magnitudes: torch.Tensor) -> torch.Tensor:
        """Shape: magnitudes [batch, n_frames, n_freq_bands] -> [batch, reverb_length]."""
        check_tensor(magnitudes, "magnitudes", 3, "[batch, n_frames, n_freq_bands]")
        if self.scale_fn is not None:
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

    def __init__(self, window_size: int = 257, scale_fn: ScaleFn | None = exp_sigmoid):
        super().__init__()
        self.window_size = window_size
        self.scale_fn = scale_fn

    def get_controls(
        self, audio: torch.Tensor, magnitudes: torch.Tensor, sample_rate: float | None = None
    ) -> dict[str, torch.Tensor]:
        """Network outputs to gains: ``scale_fn(magnitudes)``.

        Shape: audio [batch, n_samples], magnitudes [batch, n_frames, n_bands] -> same.
        """
        check_tensor(magnitudes, "magnitudes", 3, "[batch, n_frames, n_bands]")
        if self.scale_fn is not None:
            magnitudes = self.scale_fn(magnitudes)
        return {"audio": audio, "magnitudes": magnitudes}

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
    ):
        super().__init__(sample_rate)
        check_positive(center_ms, "center_ms")
        if not 0.0 <= depth_ms <= center_ms:
            raise ValueError(
                f"depth_ms must be in [0, center_ms={center_ms}] so delays stay positive, "
                f"found {depth_ms}"
            )
        self.center_ms = center_ms
        self.depth_ms = depth_ms
        self.gain_scale_fn = gain_scale_fn
        self.phase_scale_fn = phase_scale_fn
        self.add_dry = add_dry

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
        if self.gain_scale_fn is not None:
            gain = self.gain_scale_fn(gain)
        if self.phase_scale_fn is not None:
            phase = self.phase_scale_fn(phase)
        return {"audio": audio, "gain": gain, "phase": phase}

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
        max_delay_ms = self.center_ms + self.depth_ms
        max_length = int(self.rate(sample_rate) / 1000.0 * max_delay_ms)
        delay_fraction = (self.center_ms + (2.0 * phase - 1.0) * self.depth_ms) / max_delay_ms
        wet = variable_length_delay(audio, delay_fraction, max_length=max_length) * gain
        return wet + audio if self.add_dry else wet
