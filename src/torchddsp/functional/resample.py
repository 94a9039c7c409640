"""Rational resampling by a Kaiser-windowed sinc, offline or streamed block by block.

Output sample ``j`` is the band-limited interpolation of the input at time
``j / out_rate`` (input sample ``n`` sits at ``n / in_rate``): zero phase, so a
round trip host rate -> model rate -> host rate stays aligned. It is a weighted
sum of the input samples within ``half_width`` periods of the lower rate of that
time, zeros before the start and after the end. With ``up / down = out_rate /
in_rate`` in lowest terms, output ``j`` sits ``(j * down) % up / up`` input
samples after input ``(j * down) // up``, so the weights come from a table of
``up`` phases (polyphase), each normalised to unity gain at DC.

The filter is designed once, in Python, by :func:`resampling_filter`; the stream
kernel :func:`resample_stream` takes it as an argument, so a scripted model can
hold several (one per host rate) and pick one at run time.

Two presets, the band edges relative to the lower Nyquist:

- default (cutoff ``0.945``, ``52`` periods each side, Kaiser ``beta = 8.5``): flat
  within 0.02 dB up to 0.9, 85 dB or more of attenuation from 1 up; a latency of
  52-53 periods of the lower rate (3.3 ms at 16 kHz).
- live (cutoff ``0.92``, ``24`` periods, ``beta = 6``: ``LIVE_*``): flat within
  0.07 dB up to 0.85, 62 dB or more of attenuation from 1 up; a latency of 24-25
  periods (1.5 ms at 16 kHz), for a model that resamples on the way in and out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._checks import check_positive_int, check_stream_state, check_tensor

DEFAULT_ROLLOFF = 0.945
DEFAULT_HALF_WIDTH = 52
DEFAULT_BETA = 8.5
LIVE_ROLLOFF = 0.92
LIVE_HALF_WIDTH = 24
LIVE_BETA = 6.0
CHUNK_OUTPUTS = 2048  # outputs gathered at once: bounds memory on long signals


def polyphase_taps(
    up: int, down: int, rolloff: float, half_width: int, beta: float
) -> tuple[torch.Tensor, int]:
    """Kaiser-windowed sinc weights of the inputs around each output phase, and the first offset.

    ``up / down = out_rate / in_rate`` in lowest terms. Row ``p`` weighs inputs
    ``base + first + k`` for an output at input time ``base + p / up``; the cutoff is
    ``rolloff`` times the lower Nyquist. Equal rates give the identity, ``[[1.0]]``.
    Shape: -> taps [up, n_taps] (float64), first (int, <= 0).
    """
    if up == down:
        return torch.ones(1, 1, dtype=torch.float64), 0
    width = half_width * down / min(up, down)  # in input samples
    first, last = math.ceil(-width), math.floor(width + (up - 1) / up)
    phases = torch.arange(up, dtype=torch.float64).unsqueeze(-1) / up
    offsets = torch.arange(first, last + 1, dtype=torch.float64) - phases  # input - output time
    x = offsets / width
    window = torch.i0(beta * (1 - x * x).clamp(min=0).sqrt()).masked_fill(x.abs() > 1, 0.0)
    taps = torch.sinc(rolloff * min(up, down) / down * offsets) * window
    return taps / taps.sum(-1, keepdim=True), first


def resampling_filter(
    in_rate: int,
    out_rate: int,
    rolloff: float = DEFAULT_ROLLOFF,
    half_width: int = DEFAULT_HALF_WIDTH,
    beta: float = DEFAULT_BETA,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """The filter that resamples ``in_rate`` -> ``out_rate`` (integers, Hz); see module notes.

    ``rolloff``: cutoff over the lower Nyquist; ``half_width``: periods of the lower
    rate each side; ``beta``: of the Kaiser window. The table is computed in float64
    and stored in ``dtype`` (that of the audio) on ``device``; the geometry, all the
    integers the stream needs, stays on the CPU so reading it never waits.
    Shape: -> {"taps": [up, n_taps], "geometry": [7] (int64: in_rate, out_rate, up, down,
    first, n_taps, lookahead_samples)}.
    """
    check_positive_int(in_rate, "in_rate")
    check_positive_int(out_rate, "out_rate")
    check_positive_int(half_width, "half_width")
    if not 0 < rolloff <= 1:
        raise ValueError(f"rolloff must be in (0, 1], found {rolloff}")
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, found {beta}")
    divisor = math.gcd(in_rate, out_rate)
    up, down = out_rate // divisor, in_rate // divisor
    taps, first = polyphase_taps(up, down, rolloff, half_width, beta)
    n_taps = taps.shape[-1]
    geometry = [in_rate, out_rate, up, down, first, n_taps, first + n_taps - 1]
    return {
        "taps": taps.to(dtype=dtype, device=device),
        "geometry": torch.tensor(geometry, dtype=torch.int64),
    }


def resampler_lookahead(filter: dict[str, torch.Tensor]) -> int:
    """Input samples after an output's time that must arrive before it is emitted."""
    return int(filter["geometry"][-1])


def resampler_latency_seconds(filter: dict[str, torch.Tensor]) -> float:
    """The latency the filter adds: its lookahead, in seconds."""
    return resampler_lookahead(filter) / float(filter["geometry"][0])


def resampler_inputs_needed(
    filter: dict[str, torch.Tensor], state: dict[str, torch.Tensor], n_outputs: int
) -> int:
    """Input samples still to come before a stream has emitted ``n_outputs`` more outputs."""
    geometry: list[int] = filter["geometry"].tolist()
    up, down, lookahead = geometry[2], geometry[3], geometry[6]
    if n_outputs <= 0:
        return 0
    # Output j (0-based) is emitted once inputs up to j * down / up + lookahead have arrived.
    last = int(state["n_out"]) + n_outputs - 1
    return max(0, last * down // up + 1 + lookahead - int(state["n_in"]))


def init_resampler_state(
    filter: dict[str, torch.Tensor],
    batch_size: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> dict[str, torch.Tensor]:
    """State before the first block: zeros before the start, nothing received yet.

    ``history`` holds the last input samples; ``n_in`` and ``n_out`` count the samples
    received and emitted (int64, on the CPU, so reading them never waits).
    Shape: -> history [batch_size, n_taps - 1], n_in and n_out [] (int64).
    """
    if not torch.jit.is_scripting():
        _check_filter(filter)
        check_positive_int(batch_size, "batch_size")
    n_taps = filter["taps"].shape[-1]
    count = torch.zeros((), dtype=torch.int64)
    history = torch.zeros(batch_size, n_taps - 1, dtype=dtype, device=device)
    return {"history": history, "n_in": count, "n_out": count.clone()}


def resample_stream(
    audio: torch.Tensor,
    state: dict[str, torch.Tensor],
    filter: dict[str, torch.Tensor],
    final: bool = False,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Feed a block (any length, 0 too); get the outputs it completes and the new state.

    Each output is emitted as soon as its input window has arrived (lookahead
    samples after its time). ``final=True`` ends the signal (zeros after it) and
    emits all outputs left, ``ceil(n_in * out_rate / in_rate)`` in all; the
    concatenated blocks equal :func:`resample` of the whole signal. The caller's
    state is left as it was; the taps follow the audio's dtype and device (a copy
    per call if they differ).
    Shape: audio [batch, n_samples] -> [batch, n_emitted], with n_emitted varying.
    """
    if not torch.jit.is_scripting():
        _check_stream_inputs(audio, state, filter)
    geometry: list[int] = filter["geometry"].tolist()  # one read for all the integers
    _, _, up, down, first, n_taps, lookahead = geometry
    n_in, n_out, n_block = int(state["n_in"]), int(state["n_out"]), audio.shape[-1]
    buffer = torch.cat([state["history"], audio], dim=-1)
    buffer_start = n_in + n_block - buffer.shape[-1]  # the input index of buffer[:, 0]
    # A copy, not a view that would keep the whole block alive.
    history = buffer[:, buffer.shape[-1] - n_taps + 1 :].clone()
    # Outputs timed before input n_ready have their whole window (final: zeros after the end).
    n_ready = n_in + n_block - (0 if final else lookahead)
    n_emit = max(0, _ceil_div(n_ready * up, down) - n_out)
    if final:
        buffer = F.pad(buffer, (0, lookahead))
    taps = filter["taps"].to(dtype=audio.dtype, device=audio.device)  # no-op when they match
    out = _interpolate(buffer, buffer_start, n_out, n_emit, taps, first, down)
    new_state = {
        "history": history,
        "n_in": state["n_in"] + n_block,
        "n_out": state["n_out"] + n_emit,
    }
    return out, new_state


def _check_filter(filter: object) -> None:
    if not (isinstance(filter, dict) and {"taps", "geometry"} <= filter.keys()):
        found = f"keys {sorted(filter)}" if isinstance(filter, dict) else type(filter).__name__
        expected = "the dict from resampling_filter (keys 'geometry', 'taps')"
        raise ValueError(f"filter must be {expected}, found {found}")


def _check_stream_inputs(audio: object, state: object, filter: object) -> None:
    _check_filter(filter)
    check_tensor(audio, "audio", 2, "[batch, n_samples]")
    check_stream_state(state, "history", filter["taps"].shape[-1] - 1, audio.shape[0])


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def _interpolate(
    buffer: torch.Tensor,
    buffer_start: int,
    n_out: int,
    n_emit: int,
    taps: torch.Tensor,
    first: int,
    down: int,
    chunk: int = CHUNK_OUTPUTS,  # a default: TorchScript reads no global ints
) -> torch.Tensor:
    """Outputs ``n_out .. n_out + n_emit - 1`` from ``buffer``, which starts at input
    ``buffer_start`` and holds their windows; in chunks that bound the memory used."""
    if n_emit <= chunk:  # the live path
        return _interpolate_chunk(buffer, buffer_start, n_out, n_emit, taps, first, down)
    chunks: list[torch.Tensor] = []
    for start in range(n_out, n_out + n_emit, chunk):
        size = min(chunk, n_out + n_emit - start)
        chunks.append(_interpolate_chunk(buffer, buffer_start, start, size, taps, first, down))
    return torch.cat(chunks, dim=-1)


def _interpolate_chunk(
    buffer: torch.Tensor,
    buffer_start: int,
    n_out: int,
    n_emit: int,
    taps: torch.Tensor,
    first: int,
    down: int,
) -> torch.Tensor:
    if n_emit == 0:  # the buffer may be shorter than one window
        return buffer[:, :0]
    up, n_taps = taps.shape
    # Output n_out + i is at input time base_0 + (phase_0 + i * down) / up.
    base_0, phase_0 = divmod(n_out * down, up)
    position = torch.arange(phase_0, phase_0 + n_emit * down, down, device=buffer.device)
    base = torch.div(position, up, rounding_mode="floor")  # relative to base_0
    # Slice out the inputs these outputs read (index_select never sees a long signal),
    # then gather along dim 0, index_select's fast path: [n_emit, batch, n_taps].
    lo = base_0 + first - buffer_start
    hi = lo + (phase_0 + (n_emit - 1) * down) // up + n_taps
    windows = buffer[:, lo:hi].T.unfold(0, n_taps, 1).index_select(0, base)
    weights = taps.index_select(0, position.remainder(up))
    return (windows * weights.unsqueeze(1)).sum(-1).T


def resample(audio: torch.Tensor, in_rate: int, out_rate: int) -> torch.Tensor:
    """``audio`` at ``in_rate`` resampled to ``out_rate`` (Hz, integers), zero phase.

    One final :func:`resample_stream` call with the default filter, zeros outside the signal.
    Shape: audio [batch, n_samples] -> [batch, ceil(n_samples * out_rate / in_rate)].
    """
    check_tensor(audio, "audio", 2, "[batch, n_samples]")
    filter = resampling_filter(in_rate, out_rate, dtype=audio.dtype, device=audio.device)
    state = init_resampler_state(filter, audio.shape[0], audio.dtype, audio.device)
    return resample_stream(audio, state, filter, final=True)[0]
