import numpy as np
import pytest
import scipy.signal
import torch

from torchddsp.functional.partitioned import (
    init_partitioned_state,
    partition_impulse_response,
    partitioned_convolution,
    partitioned_convolve,
)

SAMPLE_RATE = 16000
pytestmark = pytest.mark.usefixtures("single_thread")


def reverb_ir(ir_size, rng):
    """A realistic reverb: 0.1 * white noise decaying by 1/e every 0.5 s."""
    time_s = np.arange(ir_size) / SAMPLE_RATE
    return 0.1 * rng.standard_normal(ir_size) * np.exp(-time_s / 0.5)


def scipy_causal(audio, ir):
    """Float64 oracle: the full linear convolution cut to the input's length."""
    return np.stack([scipy.signal.fftconvolve(x, ir)[: len(x)] for x in audio])


def block_sizes(n_samples, rng):
    """Log-uniform sizes 1..4096 (many small blocks, a few long ones) and some 0-size blocks."""
    sizes = []
    while sum(sizes) < n_samples:
        sizes.append(0 if rng.random() < 0.1 else int(np.exp(rng.uniform(0, np.log(4096)))))
    return sizes


def stream(audio, ir, sizes, partition_size=256, convolve=partitioned_convolve):
    state = init_partitioned_state(partition_impulse_response(ir, partition_size), len(audio))
    outputs, start = [], 0
    for size in sizes:
        output, state = convolve(audio[:, start : start + size], state)
        outputs.append(output)
        start += size
    return torch.cat(outputs, 1), state


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("ir_size", [1, 100, 256, 257, 3000, 48000])
def test_equals_scipy_in_one_call_and_in_random_blocks(ir_size, batch):
    rng = np.random.default_rng(ir_size + batch)
    audio, ir = rng.uniform(-1, 1, (batch, 60000)), reverb_ir(ir_size, rng)
    expected = scipy_causal(audio, ir)
    audio32, ir32 = torch.tensor(audio, dtype=torch.float32), torch.tensor(ir, dtype=torch.float32)
    whole = partitioned_convolution(audio32, ir32)
    blocks, _ = stream(audio32, ir32, block_sizes(audio.shape[1], rng))
    np.testing.assert_allclose(whole.numpy(), expected, rtol=0, atol=1e-5)
    np.testing.assert_allclose(blocks.numpy(), expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("partition_size", [1, 7, 64, 1000])
def test_any_partition_size(partition_size):
    rng = np.random.default_rng(partition_size)
    audio, ir = rng.uniform(-1, 1, (2, 5000)), reverb_ir(700, rng)
    audio64, ir64 = torch.tensor(audio), torch.tensor(ir)
    blocks, _ = stream(audio64, ir64, block_sizes(audio.shape[1], rng), partition_size)
    np.testing.assert_allclose(blocks.numpy(), scipy_causal(audio, ir), rtol=0, atol=1e-12)


def test_impulse_gives_the_impulse_response_at_once():
    rng = np.random.default_rng(0)
    ir = torch.tensor(reverb_ir(1000, rng), dtype=torch.float32)
    audio = torch.zeros(1, 3000)
    audio[0, 517] = 1.0
    # The impulse opens a one-sample call: its output is h[0] in that very call.
    output, _ = stream(audio, ir, [517, 1, 99, 2383])
    expected = torch.cat([torch.zeros(517), ir, torch.zeros(3000 - 517 - 1000)])
    np.testing.assert_allclose(output[0].numpy(), expected.numpy(), rtol=0, atol=1e-7)
    assert output[0, 517] == ir[0] != 0


def test_state_keeps_its_size_and_the_callers_state():
    rng = np.random.default_rng(1)
    ir = torch.tensor(reverb_ir(3000, rng), dtype=torch.float32)
    state = init_partitioned_state(partition_impulse_response(ir, 128), 2)
    shapes = {key: value.shape for key, value in state.items()}
    for size in block_sizes(30000, rng):
        before = {key: value.clone() for key, value in state.items()}
        _, new_state = partitioned_convolve(torch.rand(2, size) * 2 - 1, state)
        for key, value in state.items():
            assert torch.equal(value, before[key])
        assert {key: value.shape for key, value in new_state.items()} == shapes
        state = new_state


@pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
def test_torchscript_equals_eager():
    rng = np.random.default_rng(2)
    audio = torch.tensor(rng.uniform(-1, 1, (2, 20000)), dtype=torch.float32)
    ir = torch.tensor(reverb_ir(5000, rng), dtype=torch.float32)
    sizes = block_sizes(audio.shape[1], rng)
    scripted = torch.jit.script(partitioned_convolve)
    eager_blocks, _ = stream(audio, ir, sizes)
    scripted_blocks, _ = stream(audio, ir, sizes, convolve=scripted)
    assert torch.equal(scripted_blocks, eager_blocks)
    whole = torch.jit.script(partitioned_convolution)(audio, ir, 256)
    assert torch.equal(whole, partitioned_convolution(audio, ir))


def test_gradients_match_finite_differences():
    audio = torch.randn(2, 24, dtype=torch.float64, requires_grad=True)
    ir = torch.randn(9, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, h: partitioned_convolution(x, h, 4), (audio, ir))


@pytest.mark.parametrize(
    ("make_call", "message"),
    [
        (lambda: partition_impulse_response(torch.zeros(2, 100)), r"ir .*found shape \(2, 100\)"),
        (lambda: partition_impulse_response(torch.zeros(0)), "ir ir_size .*found 0"),
        (lambda: partition_impulse_response(torch.zeros(9), 0), "partition_size .*found 0"),
        (lambda: partitioned_convolution(torch.zeros(100), torch.zeros(9)), r"found shape \(100,"),
        (
            lambda: partitioned_convolve(
                torch.zeros(3, 10),
                init_partitioned_state(partition_impulse_response(torch.ones(9)), 2),
            ),
            r"state's batch 2, found shape \(3, 10\)",
        ),
        (
            lambda: partitioned_convolution(torch.zeros(1, 10, dtype=torch.float64), torch.ones(9)),
            "found torch.float64",
        ),
    ],
)
def test_wrong_arguments_raise(make_call, message):
    with pytest.raises(ValueError, match=message):
        make_call()
