"""Filtered noise synthesizer (DDSP ``synths.FilteredNoise``)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from ..functional._checks import check_tensor
from ..functional.core import exp_sigmoid, unscaled
from ..functional.filters import frequency_filter, frequency_impulse_response, overlap_add_filter
from ..functional.noise import indexed_noise, noise_key
from .base import State, Synthesizer, drop_leading, empty_audio

MAGNITUDES_SHAPE = "[batch, n_frames, n_bands]"


class FilteredNoise(Synthesizer):
    """Uniform white noise shaped by a time-varying linear-phase FIR filter.

    Each frame's ``n_bands`` magnitudes are the filter's gains from DC to
    Nyquist at the call's sample rate, so one processor serves any rate and any
    number of frames. ``window_size`` (taps) is clipped to ``2 * (n_bands - 1)``.

    The noise: in training mode a fresh ``torch.rand`` draw per call (or from
    the ``generator`` given), as DDSP; in eval mode :func:`indexed_noise` of the
    sample index and ``seed``, the same for every batch row, so that offline
    and streamed rendering give the same samples.
    Differences from DDSP: the output length follows the number of frames
    (``n_frames * sample_rate / frame_rate``, rounded) rather than a constructor
    ``n_samples``, and the filter is centred (see
    :func:`torchddsp.functional.filters.fft_convolve`), which delays streamed
    output by ``taps // 2`` samples.
    Call as ``forward(magnitudes, sample_rate=None, n_samples=None, generator=None)``.
    Shape: magnitudes [batch, n_frames, n_bands] -> [batch, n_samples].
    """

    def __init__(
        self,
        sample_rate: float = 16000,
        frame_rate: float = 250,
        window_size: int = 257,
        scale_fn: Callable[[torch.Tensor], torch.Tensor] | None = exp_sigmoid,
        initial_bias: float = -5.0,
        seed: int = 0,
    ):
        super().__init__(sample_rate, frame_rate)
        if window_size < 0:
            raise ValueError(f"window_size must be >= 0 (0: the full filter), found {window_size}")
        self.window_size = window_size
        # Without a scale function, magnitudes pass through unchanged, bias included.
        self.scale_fn = unscaled if scale_fn is None else scale_fn
        self.initial_bias = 0.0 if scale_fn is None else float(initial_bias)
        self.seed = seed
        self.noise_key = noise_key(seed)

    def get_controls(
        self, magnitudes: torch.Tensor, sample_rate: float | None = None
    ) -> dict[str, torch.Tensor]:
        """Network outputs to filter gains: ``scale_fn(magnitudes + initial_bias)``.

        Without a ``scale_fn`` the magnitudes pass through unchanged (no bias).
        Shape: magnitudes [batch, n_frames, n_bands] -> same.
        """
        if not torch.jit.is_scripting():
            check_tensor(magnitudes, "magnitudes", 3, MAGNITUDES_SHAPE)
        return {"magnitudes": self.scale_fn(magnitudes + self.initial_bias)}

    @torch.jit.unused
    def get_signal(
        self,
        magnitudes: torch.Tensor,
        sample_rate: float | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Filter uniform noise in [-1, 1) by the per-frame gains.

        ``n_samples`` defaults to ``round(n_frames * sample_rate / frame_rate)``.
        Shape: magnitudes [batch, n_frames, n_bands] -> [batch, n_samples].
        """
        check_tensor(magnitudes, "magnitudes", 3, MAGNITUDES_SHAPE)
        batch, n_frames, _ = magnitudes.shape
        n_samples = self.n_samples_for(n_frames, self.rate(sample_rate), n_samples)
        dtype, device = magnitudes.dtype, magnitudes.device
        if self.training or generator is not None:
            uniform = torch.rand(batch, n_samples, generator=generator, dtype=dtype, device=device)
            noise = 2.0 * uniform - 1.0
        else:
            noise = indexed_noise(0, n_samples, self.noise_key, dtype, device).expand(batch, -1)
        return frequency_filter(noise, magnitudes, window_size=self.window_size)

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> State:
        """The next noise sample's index; the filter's tail comes with the first frames."""
        return {"position": torch.zeros(1, dtype=torch.int64, device=device)}

    @torch.jit.export
    def forward_stream(
        self, inputs: list[torch.Tensor], state: State, final: bool = False
    ) -> tuple[torch.Tensor, State]:
        """Filter each frame's noise once; overlap-add; emit what later frames leave alone.

        Shape: inputs [magnitudes [batch, n_new_frames, n_bands]] -> audio [batch, n_out].
        """
        magnitudes = self.get_controls(inputs[0])["magnitudes"]
        batch, n_frames = magnitudes.shape[0], magnitudes.shape[1]
        state = {name: value for name, value in state.items()}
        out = empty_audio(batch, magnitudes)
        if n_frames > 0:
            impulse_responses = frequency_impulse_response(magnitudes, self.window_size)
            if "tail" not in state:
                taps = impulse_responses.shape[-1]
                state["tail"] = magnitudes.new_zeros(batch, taps - 1)
                state["drop"] = torch.full_like(state["position"], taps // 2)
            n_samples = n_frames * self.hop_size
            start = int(state["position"].item())
            noise = indexed_noise(start, n_samples, self.noise_key, magnitudes.dtype, out.device)
            done, state["tail"] = overlap_add_filter(
                noise.expand(batch, -1), impulse_responses, state["tail"]
            )
            out, state["drop"] = drop_leading(done, state["drop"])
            state["position"] = state["position"] + n_samples
        if final and "tail" in state:
            delay = (state["tail"].shape[-1] + 1) // 2
            rest = state["tail"][:, int(state["drop"].item()) : delay]
            out = torch.cat([out, rest], dim=1)
        return out, state

    def stream_lag(self, input_lags: list[int], frame_channels: list[int]) -> int:
        """The centred filter's delay, ``taps // 2``, where ``taps`` follows the band count."""
        taps = 2 * (frame_channels[0] - 1)
        if 0 < self.window_size < taps:
            taps = self.window_size
        return taps // 2
