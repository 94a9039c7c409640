"""Zero-latency uniformly partitioned convolution: a long impulse response, block by block.

``y[t] = sum_m h[m] x[t - m]``, output as long as the input, for input blocks of any size. The
impulse response is cut into partitions of ``P`` taps. The head (taps ``0 .. P-1``) filters each
incoming block directly in the time domain, so no output sample waits for future input. The
tail partitions ``k >= 1`` act with a delay of at least ``P`` samples, so they run as
uniformly partitioned overlap-save FFT convolution (FFT size ``2P``) over a frequency-domain
delay line holding the spectra of the last complete input blocks: once input block ``b`` is
complete, the tail of output block ``b + 1`` is ``irfft(sum_k X[b + 1 - k] H[k])[P:]``, with
``X[b] = rfft([x_{b-1}, x_b])`` and ``H[k] = rfft([h_k, 0])`` (Gardner 1995, "Efficient
convolution without input-output delay"; Wefers 2015, "Partitioned convolution algorithms
for real-time auralization").

All functions compile with ``torch.jit.script``. The state is a ``dict[str, Tensor]`` whose
tensors keep their shapes from call to call: the filter (``head``: the first partition
reversed, ``[1, 1, P]``; ``spectra``: ``H[K] .. H[1]``, furthest first, ``[K, P + 1]``), the
``input`` (last complete block, then the current partial block zero-padded, ``[batch, 2P]``),
``fill`` (samples in the partial block, int64), the ``delay_line`` (``X`` of the last ``K``
complete blocks, oldest first, ``[batch, K, P + 1]``) and the ``tail`` of the current output
block (``[batch, P]``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_positive, check_positive_int, check_tensor


def partition_impulse_response(
    ir: torch.Tensor, partition_size: int = 256
) -> dict[str, torch.Tensor]:
    """Cut an impulse response into its head taps and the spectra of its tail partitions.

    Computed once per impulse response; differentiable with respect to ``ir``.

    Shape: ir [ir_size] -> {"head": [1, 1, partition_size] (reversed taps),
    "spectra": [K, partition_size + 1] (complex, furthest partition first)},
    K = ceil(ir_size / partition_size) - 1.
    """
    if not torch.jit.is_scripting():
        check_tensor(ir, "ir", 1, "[ir_size]")
        check_positive(ir.shape[0], "ir ir_size")
        check_positive_int(partition_size, "partition_size")
    n_partitions = -(-ir.shape[0] // partition_size)
    padded = F.pad(ir, (0, n_partitions * partition_size - ir.shape[0]))
    partitions = padded.reshape(n_partitions, partition_size)
    head = partitions[0].flip(0).reshape(1, 1, partition_size)
    # The head's spectrum is dropped after the FFT: an FFT of zero partitions would fail.
    spectra = torch.fft.rfft(partitions.flip(0), n=2 * partition_size)[:-1]
    return {"head": head, "spectra": spectra}


def init_partitioned_state(
    partitioned_ir: dict[str, torch.Tensor], batch_size: int
) -> dict[str, torch.Tensor]:
    """The state of a silent past: the filter of ``partition_impulse_response`` and zero buffers.

    Dtype and device follow the filter (float32 filters keep complex64 spectra).

    Shape: partitioned_ir {"head": [1, 1, P], "spectra": [K, P + 1]} -> state with
    "input" [batch_size, 2P], "fill" [], "delay_line" [batch_size, K, P + 1], "tail"
    [batch_size, P] and the filter.
    """
    if not torch.jit.is_scripting():
        check_positive_int(batch_size, "batch_size")
    head, spectra = partitioned_ir["head"], partitioned_ir["spectra"]
    partition_size = head.shape[-1]
    return {
        "head": head,
        "spectra": spectra,
        "input": head.new_zeros(batch_size, 2 * partition_size),
        "fill": torch.zeros((), dtype=torch.int64, device=head.device),
        "delay_line": spectra.new_zeros(batch_size, spectra.shape[0], partition_size + 1),
        "tail": head.new_zeros(batch_size, partition_size),
    }


def partitioned_convolve(
    audio: torch.Tensor, state: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Convolve the next block of a stream with the state's impulse response, without latency.

    The blocks of successive calls (any sizes, 0 included) join into the causal convolution of
    the whole stream with the impulse response. The caller's state is left unchanged.

    Shape: audio [batch, n_samples], state from ``init_partitioned_state`` ->
    ([batch, n_samples], state).
    """
    if not torch.jit.is_scripting():
        _check_stream(audio, state)
    batch, n_samples = audio.shape
    partition_size = state["head"].shape[-1]
    chunk_size = _blocks_per_chunk(batch, state["spectra"]) * partition_size
    if 0 < n_samples <= chunk_size:
        return _convolve_chunk(audio, state)
    # Filled in place rather than concatenated: small chunk outputs kept alive among the large
    # freed temporaries fragment the heap, and a long call's memory would grow with its length.
    output = torch.empty_like(audio)
    for start in range(0, n_samples, chunk_size):
        stop = min(start + chunk_size, n_samples)
        output[:, start:stop], state = _convolve_chunk(audio[:, start:stop], state)
    return output, state


def partitioned_convolution(
    audio: torch.Tensor, ir: torch.Tensor, partition_size: int = 256
) -> torch.Tensor:
    """Causal convolution ``y[t] = sum_m ir[m] audio[t - m]`` by the streaming kernel, one call.

    Shape: audio [batch, n_samples], ir [ir_size] -> [batch, n_samples].
    """
    if not torch.jit.is_scripting():
        check_tensor(audio, "audio", 2, "[batch, n_samples]")
    state = init_partitioned_state(partition_impulse_response(ir, partition_size), audio.shape[0])
    return partitioned_convolve(audio, state)[0]


def _blocks_per_chunk(batch: int, spectra: torch.Tensor) -> int:
    """Partitions per chunk of a long call, so that its memory stays bounded.

    A chunk of n blocks multiplies [batch, n, K, P + 1] spectra: 2 ** 21 complex elements at
    most (16 MiB in complex64).
    """
    n_tail, n_bins = spectra.shape
    return max(1, (1 << 21) // (batch * max(n_tail, 1) * n_bins))


def _convolve_chunk(
    audio: torch.Tensor, state: dict[str, torch.Tensor]
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """``partitioned_convolve`` of one block that completes at most a chunk of partitions."""
    head, spectra = state["head"], state["spectra"]
    batch, n_samples = audio.shape
    partition_size = head.shape[-1]
    fill = int(state["fill"])
    n_completed, new_fill = divmod(fill + n_samples, partition_size)
    # The last complete block, the partial block, then the new samples: a stream whose
    # partitions start at multiples of partition_size. (narrow and select rather than
    # indexing: in TorchScript each ':' is one more op, and small blocks are overhead-bound.)
    stream = torch.cat([state["input"].narrow(1, 0, partition_size + fill), audio], 1)
    head_input = stream.narrow(1, fill + 1, partition_size - 1 + n_samples).unsqueeze(1)
    direct = F.conv1d(head_input, head).squeeze(1)
    tails = state["tail"].unsqueeze(1)
    delay_line = state["delay_line"]
    if n_completed > 0:
        completed = stream.narrow(1, 0, (n_completed + 1) * partition_size)
        new_tails, delay_line = _advance_delay_line(completed, delay_line, spectra)
        tails = torch.cat([tails, new_tails], 1)
    tail = tails.reshape(batch, -1).narrow(1, fill, n_samples)
    rest = stream.narrow(1, n_completed * partition_size, partition_size + new_fill)
    new_state = {
        "head": head,
        "spectra": spectra,
        "input": F.pad(rest, (0, partition_size - new_fill)),
        "fill": torch.full_like(state["fill"], new_fill),
        "delay_line": delay_line,
        "tail": tails.select(1, -1),
    }
    return direct + tail, new_state


def _advance_delay_line(
    stream: torch.Tensor, delay_line: torch.Tensor, spectra: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Push the spectra of newly completed blocks; the tails of the output blocks that follow.

    Shape: stream [batch, (n_new + 1) P] (the block before the new ones, then the new ones),
    delay_line [batch, K, P + 1], spectra [K, P + 1] ->
    (tails [batch, n_new, P], delay_line [batch, K, P + 1]).
    """
    batch = stream.shape[0]
    partition_size = spectra.shape[-1] - 1
    n_tail = spectra.shape[0]
    n_new = stream.shape[1] // partition_size - 1
    if n_tail == 0:
        return stream.new_zeros(batch, n_new, partition_size), delay_line
    pairs = stream.unfold(1, 2 * partition_size, partition_size)
    line = torch.cat([delay_line, torch.fft.rfft(pairs)], 1)
    # Window i: the K spectra up to new block i, oldest first, against H[K] .. H[1].
    windows = line[:, 1:].unfold(1, n_tail, 1).transpose(2, 3)
    summed = (windows * spectra).sum(2)
    tails = torch.fft.irfft(summed, n=2 * partition_size)[..., partition_size:]
    return tails, line[:, n_new:]


def _check_stream(audio: object, state: dict[str, torch.Tensor]) -> None:
    """Require audio [batch, n_samples] of the state's batch size, dtype and device."""
    check_tensor(audio, "audio", 2, "[batch, n_samples]")
    expected = state["tail"]
    if audio.shape[0] != expected.shape[0]:
        raise ValueError(
            f"audio batch must be the state's batch {expected.shape[0]}, found shape "
            f"{tuple(audio.shape)}"
        )
    if audio.dtype != expected.dtype or audio.device != expected.device:
        raise ValueError(
            f"audio must be {expected.dtype} on {expected.device} like the state, found "
            f"{audio.dtype} on {audio.device}"
        )
