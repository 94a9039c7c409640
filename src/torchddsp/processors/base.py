"""Base classes of the processors: ``get_controls`` -> ``get_signal``, offline and streaming.

A processor separates the mapping of raw network outputs to physical controls
(``get_controls``: scalings, normalisation, band-limiting) from rendering
(``get_signal``); ``forward`` does both. Sample rate is a default of the
processor that every call may override, so one processor serves any rate.

Streaming (the same kernels, block by block, with explicit state):

- ``init_state(batch_size, dtype, device) -> state``, a dict of tensors;
- ``forward_stream(inputs, state, final=False) -> (audio, state)``: ``inputs``
  are the new part of each ``get_controls`` input, in its order: frames of
  controls ``[batch, n_new_frames, channels]`` or samples of audio
  ``[batch, n_new_samples]``. A stream emits every output sample that its
  inputs so far determine, so the number of samples out varies from call to
  call; ``final=True`` ends the inputs (the last frame held, zeros after the
  audio, as offline). The pieces concatenate to what ``forward`` gives for the
  whole input, for any split; frame ``i`` covers samples ``[i * hop, (i + 1) *
  hop)`` with ``hop = sample_rate / frame_rate`` at the processor's own rates.
- ``stream_lag(input_lags, frame_channels)``: how many samples the output
  lags behind what the inputs have delivered (a frame counts as ``hop``
  samples; an audio input delivered ``lag`` samples late adds its lag).

Streaming methods are TorchScript-compatible, so a model exports with them.
"""

from __future__ import annotations

import torch
from torch import nn

from ..functional._checks import check_positive
from ..functional.core import frames_to_samples

State = dict[str, torch.Tensor]


class Processor(nn.Module):
    """A differentiable DSP element.

    Subclasses implement ``get_controls(*inputs, sample_rate=None) -> dict``
    (tensors only) and ``get_signal(**controls, sample_rate=None) -> audio``;
    a :class:`Synthesizer`'s ``get_signal`` also takes ``n_samples=None``.
    Streaming ones also implement ``forward_stream`` (see the module notes).
    """

    def __init__(self, sample_rate: float = 16000):
        super().__init__()
        check_positive(sample_rate, "sample_rate")
        self.sample_rate = float(sample_rate)

    def get_controls(self, *inputs, sample_rate: float | None = None) -> dict:
        raise NotImplementedError

    def get_signal(self, **controls):
        raise NotImplementedError

    @torch.jit.unused
    def forward(self, *inputs, sample_rate: float | None = None, **signal_kwargs):
        controls = self.get_controls(*inputs, sample_rate=sample_rate)
        return self.get_signal(**controls, sample_rate=sample_rate, **signal_kwargs)

    def rate(self, sample_rate: float | None) -> float:
        """The call's sample rate, or the processor's default."""
        if sample_rate is None:
            return self.sample_rate
        if not torch.jit.is_scripting():
            check_positive(sample_rate, "sample_rate")
        return sample_rate

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> State:
        """The state before the first block (none by default). Shape: see the module notes."""
        return {}

    def stream_lag(self, input_lags: list[int], frame_channels: list[int]) -> int:
        """Samples the output lags behind the inputs (``frame_channels`` 0 for audio inputs)."""
        return max(input_lags) if input_lags else 0


class Synthesizer(Processor):
    """A processor that renders audio from frame-rate controls.

    The output length follows the controls: ``n_frames * sample_rate /
    frame_rate`` samples (rounded) unless ``n_samples`` is given.
    """

    def __init__(self, sample_rate: float = 16000, frame_rate: float = 250):
        super().__init__(sample_rate)
        check_positive(frame_rate, "frame_rate")
        self.frame_rate = float(frame_rate)

    def n_samples_for(self, n_frames: int, sample_rate: float, n_samples: int | None) -> int:
        """Output length for ``n_frames`` controls at ``sample_rate``."""
        if n_samples is not None:
            if not torch.jit.is_scripting():
                check_positive(n_samples, "n_samples")
            return int(n_samples)
        return int(round(n_frames * sample_rate / self.frame_rate))

    @property
    def hop_size(self) -> int:
        """Samples per frame, which streaming needs to be a whole number."""
        return stream_hop_size(self.sample_rate, self.frame_rate)

    def stream_lag(self, input_lags: list[int], frame_channels: list[int]) -> int:
        """A frame's samples mix it with the next frame: one hop."""
        return self.hop_size


def stream_hop_size(sample_rate: float, frame_rate: float) -> int:
    """``sample_rate / frame_rate``, which must be whole for frames to map onto samples."""
    hop = sample_rate / frame_rate
    if not torch.jit.is_scripting() and hop != int(hop):
        raise ValueError(
            f"streaming needs sample_rate / frame_rate to be a whole number of samples, "
            f"found {sample_rate} / {frame_rate}"
        )
    return int(hop)


def append_frames(state: State, frames: dict[str, torch.Tensor]) -> State:
    """The state with each control's new frames appended to its buffered ones.

    Shape: state[name] [batch, n_buffered, channels], frames[name]
    [batch, n_new, channels] -> state[name] [batch, n_buffered + n_new, channels].
    """
    out = {name: value for name, value in state.items()}
    for name, value in frames.items():
        if name in state and state[name].shape[1] > 0:
            out[name] = torch.cat([state[name], value], dim=1)
        else:
            out[name] = value
    return out


def frames_to_render(n_buffered: int, final: bool) -> int:
    """Buffered frames whose samples are final: all but the last, whose next is unknown."""
    if final:
        return n_buffered
    return max(0, n_buffered - 1)


def hold_last_frame(frames: torch.Tensor, final: bool) -> torch.Tensor:
    """At the end of a stream the last frame is held, as offline; before it, the frames as they are.

    Shape: [batch, n, channels] -> [batch, n + 1 if final else n, channels].
    """
    if final and frames.shape[1] > 0:
        return torch.cat([frames, frames[:, -1:]], dim=1)
    return frames


def keep_from(state: State, names: list[str], first: int) -> State:
    """The state with the buffered frames of ``names`` before frame ``first`` dropped."""
    out = {name: value for name, value in state.items()}
    for name in names:
        out[name] = state[name][:, first:]
    return out


def drop_leading(samples: torch.Tensor, to_drop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """A stream's samples without its first ``to_drop`` (a centred filter's delay), and
    how many are still to drop after this block.

    Shape: samples [batch, n], to_drop [1] int64 -> ([batch, n - dropped], [1] int64).
    """
    n_drop = min(int(to_drop.item()), samples.shape[1])
    return samples[:, n_drop:], to_drop - n_drop


def append_audio(state: State, name: str, audio: torch.Tensor) -> State:
    """The state with new samples appended to the buffered audio ``state[name]``.

    Shape: state[name] [batch, n_buffered], audio [batch, n_new] -> [batch, n_buffered + n_new].
    """
    out = {key: value for key, value in state.items()}
    out[name] = torch.cat([state[name], audio], dim=1) if name in state else audio
    return out


def controls_at_samples(
    state: State,
    names: list[str],
    hop_size: int,
    final: bool,
    n_wanted: int,
    method: str = "linear",
) -> tuple[int, list[torch.Tensor], State]:
    """Audio-rate values of buffered frame controls for the next samples to emit.

    ``state["emitted"]`` counts the samples emitted so far and the buffers
    start at the frame holding the next one. Returns how many samples (at most
    ``n_wanted``) the known frames determine (a hop mixes its frame and the
    next by ``method``; at the end the last frame is held), their values, and the
    state with ``emitted`` advanced and spent frames dropped.
    Shape: state[name] [batch, n_buffered, channels] -> values [batch, n, channels].
    """
    emitted = int(state["emitted"].item())
    offset = emitted % hop_size
    n_frames = frames_to_render(state[names[0]].shape[1], final)
    n_out = max(0, min(n_wanted, n_frames * hop_size - offset))
    values: list[torch.Tensor] = []
    for name in names:
        frames = hold_last_frame(state[name], final)[:, : n_frames + 1]
        if n_out == 0:
            values.append(frames[:, :0, 0])
        else:
            samples = frames_to_samples(frames, hop_size, method)
            values.append(samples[:, offset : offset + n_out, 0])
    state = {key: value for key, value in state.items()}
    state["emitted"] = state["emitted"] + n_out
    spent = (offset + n_out) // hop_size
    for name in names:
        state[name] = state[name][:, spent:]
    return n_out, values, state


def join_audio(
    state: State, names: list[str], signals: list[torch.Tensor]
) -> tuple[list[torch.Tensor], State]:
    """The samples that every audio input has delivered, the rest buffered.

    Inputs arriving with different lags (a synthesizer holding back a frame, a
    filter its delay) line up: the output advances as far as the latest one.
    Shape: signals [batch, n_new_i] -> segments [batch, n] each.
    """
    state = {key: value for key, value in state.items()}
    for index in range(len(names)):
        state = append_audio(state, names[index], signals[index])
    n_ready = min([state[name].shape[1] for name in names])
    segments = [state[name][:, :n_ready] for name in names]
    for name in names:
        state[name] = state[name][:, n_ready:]
    return segments, state


def empty_audio(batch_size: int, like: torch.Tensor) -> torch.Tensor:
    """No samples. Shape: -> [batch_size, 0]."""
    return torch.zeros(batch_size, 0, dtype=like.dtype, device=like.device)
