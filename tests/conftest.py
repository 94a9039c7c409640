import numpy as np
import pytest
import torch


@pytest.fixture(autouse=True)
def _deterministic():
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="module")
def single_thread():
    """Tiny models and inputs run fastest on one thread and do not stall a busy 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def assert_batched_equals_looped(fn, *batched_inputs, atol=1e-6):
    """fn on a batch equals fn on each example, concatenated along the batch."""
    whole = fn(*batched_inputs)
    looped = torch.cat(
        [fn(*(x[i : i + 1] for x in batched_inputs)) for i in range(len(batched_inputs[0]))]
    )
    torch.testing.assert_close(whole, looped, atol=atol, rtol=1e-5)
