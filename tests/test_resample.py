from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.signal import upfirdn
from scipy.signal.windows import kaiser
from torch import nn

from torchddsp.functional.resample import (
    LIVE_BETA,
    LIVE_HALF_WIDTH,
    LIVE_ROLLOFF,
    init_resampler_state,
    resample,
    resample_stream,
    resampler_latency_seconds,
    resampler_lookahead,
    resampling_filter,
)

RATE_PAIRS = [
    (48000, 16000),
    (16000, 48000),
    (44100, 16000),
    (16000, 44100),
    (96000, 16000),
    (16000, 22050),
]
LIVE = {"rolloff": LIVE_ROLLOFF, "half_width": LIVE_HALF_WIDTH, "beta": LIVE_BETA}
NO_JIT_WARNING = "ignore:`torch.jit.script` is deprecated:DeprecationWarning"
pytestmark = pytest.mark.usefixtures("single_thread")  # many small ops


def prototype(filter: dict[str, torch.Tensor]) -> tuple[np.ndarray, int]:
    """The polyphase table interleaved into one filter at rate ``up * in_rate``.

    Input ``n`` weighs output ``j`` by ``h[centre - (n * up - j * down)]``; ``centre`` is a
    multiple of ``down``, so upfirdn's output ``j + centre // down`` is our output ``j``.
    """
    taps = filter["taps"].double().numpy()
    _, _, up, down, first, _, _ = filter["geometry"].tolist()
    offsets = (first + np.arange(taps.shape[1])) * up - np.arange(up)[:, None]
    shift = -(-np.abs(offsets).max() // down)
    h = np.zeros(2 * shift * down + 1)
    h[shift * down - offsets] = taps
    return h, shift


def gain_db(filter: dict[str, torch.Tensor]) -> tuple[np.ndarray, np.ndarray]:
    """The prototype's gain and its frequencies over the lower Nyquist."""
    in_rate, out_rate, up = filter["geometry"].tolist()[:3]
    h, _ = prototype(filter)
    n_fft = 1 << 20
    gain = 20 * np.log10(np.abs(np.fft.rfft(h, n_fft)) / up + 1e-300)
    return gain, np.fft.rfftfreq(n_fft, 1 / (up * in_rate)) / (min(in_rate, out_rate) / 2)


def interior(n_in: int, in_rate: int, out_rate: int, margin: int) -> slice:
    """Outputs at least ``margin`` input samples away from both ends of the signal."""
    first = math.ceil(margin * out_rate / in_rate)
    return slice(first, math.floor((n_in - 1 - margin) * out_rate / in_rate))


def sine(n_samples: int, rate: int, freq_hz: float) -> np.ndarray:
    return np.sin(2 * np.pi * freq_hz * np.arange(n_samples) / rate + 0.3)


def block_sizes(n_samples: int, rng: np.random.Generator) -> list[int]:
    """Log-uniform sizes 0..4096 (many small, some large) that add up to ``n_samples``."""
    sizes = []
    while sum(sizes) < n_samples:
        sizes.append(min(int(np.exp(rng.uniform(0, np.log(4097)))) - 1, n_samples - sum(sizes)))
    return sizes


def stream(
    filter: dict[str, torch.Tensor],
    audio: torch.Tensor,
    sizes: list[int],
    step=resample_stream,
    init=init_resampler_state,
) -> torch.Tensor:
    """``audio`` fed in blocks of ``sizes``, the last one final, through ``init`` and ``step``."""
    state = init(filter, audio.shape[0], audio.dtype)
    outputs, start = [], 0
    for i, size in enumerate(sizes):
        block = audio[:, start : start + size]
        out, state = step(block, state, filter, final=i == len(sizes) - 1)
        outputs.append(out)
        start += size
    return torch.cat(outputs, dim=-1)


@pytest.mark.parametrize(("in_rate", "out_rate"), [*RATE_PAIRS, (7, 5), (44100, 48000)])
@pytest.mark.parametrize("n_samples", [1, 7, 3000])
def test_equals_upfirdn_with_the_same_prototype(in_rate, out_rate, n_samples):
    filter = resampling_filter(in_rate, out_rate, dtype=torch.float64)
    audio = np.random.uniform(-1, 1, (2, n_samples))
    h, shift = prototype(filter)
    up, down = filter["geometry"].tolist()[2:4]
    n_out = math.ceil(n_samples * out_rate / in_rate)
    expected = upfirdn(h, audio, up, down)[:, shift : shift + n_out]
    actual = resample(torch.from_numpy(audio), in_rate, out_rate)
    assert actual.shape == (2, n_out)
    np.testing.assert_allclose(actual.numpy(), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
def test_filter_is_flat_to_0p9_nyquist_and_stops_80_db_above_nyquist(in_rate, out_rate):
    gain, freqs = gain_db(resampling_filter(in_rate, out_rate, dtype=torch.float64))
    assert np.abs(gain[freqs <= 0.9]).max() < 0.1
    assert gain[freqs >= 1].max() < -80


@pytest.mark.parametrize(("in_rate", "out_rate"), [*RATE_PAIRS, (22050, 16000), (16000, 32000)])
def test_live_filter_is_flat_to_0p85_nyquist_and_stops_60_db_above_nyquist(in_rate, out_rate):
    gain, freqs = gain_db(resampling_filter(in_rate, out_rate, dtype=torch.float64, **LIVE))
    assert np.abs(gain[freqs <= 0.85]).max() < 0.1
    assert gain[freqs >= 1].max() < -60


@pytest.mark.parametrize(("in_rate", "out_rate"), [(48000, 16000), (16000, 48000), (44100, 16000)])
def test_live_filter_adds_1p5_ms_each_way(in_rate, out_rate):
    filter = resampling_filter(in_rate, out_rate, **LIVE)
    back = resampling_filter(out_rate, in_rate, **LIVE)
    assert resampler_latency_seconds(filter) == pytest.approx(0.0015, abs=3e-5)
    assert resampler_latency_seconds(back) == pytest.approx(0.0015, abs=3e-5)


@pytest.mark.parametrize(("in_rate", "out_rate"), RATE_PAIRS)
@pytest.mark.parametrize("freq_hz", [1000.0, 5000.0])
def test_passband_sine_becomes_the_analytic_sine_at_the_new_rate(in_rate, out_rate, freq_hz):
    n_samples = in_rate // 10
    audio = torch.tensor(sine(n_samples, in_rate, freq_hz), dtype=torch.float32)[None]
    lookahead = resampler_lookahead(resampling_filter(in_rate, out_rate))
    inner = interior(n_samples, in_rate, out_rate, lookahead)
    out = resample(audio, in_rate, out_rate)[0].numpy()
    error = out - sine(len(out), out_rate, freq_hz)
    assert 20 * np.log10(np.abs(error[inner]).max()) < -70


@pytest.mark.parametrize(
    ("in_rate", "freq_hz"),
    [(48000, 8100.0), (48000, 10000.0), (48000, 20000.0), (44100, 9000.0), (96000, 30000.0)],
)
def test_downsampling_stops_tones_above_the_new_nyquist(in_rate, freq_hz):
    n_samples = in_rate // 10
    audio = torch.tensor(sine(n_samples, in_rate, freq_hz))[None]
    margin = resampler_lookahead(resampling_filter(in_rate, 16000))
    out = resample(audio, in_rate, 16000)[0].numpy()
    assert 20 * np.log10(np.abs(out[interior(n_samples, in_rate, 16000, margin)]).max()) < -80


@pytest.mark.parametrize("out_rate", [48000, 44100])
@pytest.mark.parametrize("freq_hz", [1000.0, 5000.0, 7000.0])
def test_upsampling_leaves_no_image_above_the_old_nyquist(out_rate, freq_hz):
    audio = torch.tensor(sine(3200, 16000, freq_hz))[None]
    out = resample(audio, 16000, out_rate)[0].numpy()
    steady = out[out_rate // 100 : out_rate // 100 + 8192]  # away from the ends
    spectrum = np.abs(np.fft.rfft(steady * kaiser(len(steady), 20)))
    image_db = 20 * np.log10(spectrum[np.fft.rfftfreq(len(steady), 1 / out_rate) > 8000].max())
    assert image_db - 20 * np.log10(spectrum.max()) < -80


@pytest.mark.parametrize(("in_rate", "out_rate"), [*RATE_PAIRS, (16000, 16000)])
@pytest.mark.parametrize("preset", [{}, LIVE], ids=["default", "live"])
def test_stream_in_random_blocks_equals_one_call(in_rate, out_rate, preset):
    rng = np.random.default_rng(in_rate + out_rate)
    audio = torch.tensor(rng.uniform(-1, 1, (2, 15000)), dtype=torch.float32)
    filter = resampling_filter(in_rate, out_rate, **preset)
    sizes = block_sizes(audio.shape[1], rng) + [0]
    whole = stream(filter, audio, [audio.shape[1]])
    assert whole.shape[-1] == math.ceil(15000 * out_rate / in_rate)
    if not preset:
        torch.testing.assert_close(whole, resample(audio, in_rate, out_rate), rtol=0, atol=0)
    torch.testing.assert_close(stream(filter, audio, sizes), whole, rtol=0, atol=1e-6)


def test_stream_emits_each_output_once_its_window_has_arrived():
    filter = resampling_filter(44100, 16000)
    lookahead, state = resampler_lookahead(filter), init_resampler_state(filter, 1)
    n_in, n_emitted = 0, 0
    before = {key: value.clone() for key, value in state.items()}
    for size in [0, 1, 100, 143, 1, 4096, 0, 2, 999]:
        out, new_state = resample_stream(torch.randn(1, size), state, filter)
        for key, value in state.items():  # the caller's state is left as it was
            torch.testing.assert_close(value, before[key], rtol=0, atol=0)
        n_in, n_emitted = n_in + size, n_emitted + out.shape[-1]
        # Output j (at input time j * 44100 / 16000) needs input floor(time) + lookahead.
        times = np.arange(4000) * 44100 / 16000
        assert n_emitted == np.count_nonzero(np.floor(times) + lookahead < n_in)
        assert new_state["history"].shape == (1, filter["taps"].shape[1] - 1)
        assert new_state["n_in"].dtype == new_state["n_out"].dtype == torch.int64
        state, before = new_state, {key: value.clone() for key, value in new_state.items()}
    assert resampler_latency_seconds(filter) == pytest.approx(lookahead / 44100)
    assert resampler_latency_seconds(filter) < 0.004


@pytest.mark.filterwarnings(NO_JIT_WARNING)
@pytest.mark.parametrize(("in_rate", "out_rate"), [(48000, 16000), (16000, 44100)])
def test_torchscript_equals_eager(in_rate, out_rate):
    step, init = torch.jit.script(resample_stream), torch.jit.script(init_resampler_state)
    filter = resampling_filter(in_rate, out_rate)
    audio = torch.randn(2, 5000)
    eager = resample(audio, in_rate, out_rate)
    scripted = stream(filter, audio, [5000], step, init)
    torch.testing.assert_close(scripted, eager, rtol=0, atol=1e-6)
    sizes = block_sizes(5000, np.random.default_rng(3))
    torch.testing.assert_close(stream(filter, audio, sizes, step, init), eager, rtol=0, atol=1e-6)
    state = init(filter, 3, torch.float64, torch.device("cpu"))
    assert state["history"].dtype == torch.float64
    assert torch.jit.script(resampler_lookahead)(filter) == resampler_lookahead(filter)
    latency = torch.jit.script(resampler_latency_seconds)(filter)
    assert latency == resampler_latency_seconds(filter)


class HostRateResampler(nn.Module):
    """The live model's use: one filter per host rate, picked at run time."""

    def __init__(self, host_rates: list[int], model_rate: int) -> None:
        super().__init__()
        self.filters = {rate: resampling_filter(rate, model_rate, **LIVE) for rate in host_rates}

    def forward(
        self, audio: torch.Tensor, state: dict[str, torch.Tensor], host_rate: int
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return resample_stream(audio, state, self.filters[host_rate])

    @torch.jit.export
    def init_state(self, batch_size: int, host_rate: int) -> dict[str, torch.Tensor]:
        return init_resampler_state(self.filters[host_rate], batch_size)


@pytest.mark.filterwarnings(NO_JIT_WARNING)
def test_scripted_model_picks_the_filter_of_the_host_rate_at_run_time():
    scripted = torch.jit.script(HostRateResampler([44100, 48000], 16000))
    audio = torch.randn(1, 2000)
    for host_rate in [48000, 44100]:
        filter = resampling_filter(host_rate, 16000, **LIVE)
        expected, _ = resample_stream(audio, init_resampler_state(filter, 1), filter)
        out, _ = scripted(audio, scripted.init_state(1, host_rate), host_rate)
        torch.testing.assert_close(out, expected, rtol=0, atol=0)


def test_gradients_match_finite_differences():
    filter = resampling_filter(3, 2, half_width=4, dtype=torch.float64)

    def offline(audio: torch.Tensor) -> torch.Tensor:
        state = init_resampler_state(filter, audio.shape[0], audio.dtype)
        return resample_stream(audio, state, filter, final=True)[0]

    audio = torch.randn(2, 30, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(offline, (audio,))


def test_equal_rates_pass_the_signal_through():
    audio = torch.randn(2, 100)
    torch.testing.assert_close(resample(audio, 16000, 16000), audio, rtol=0, atol=0)
    assert resampler_lookahead(resampling_filter(16000, 16000)) == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"in_rate": 0, "out_rate": 16000}, "in_rate must be a positive integer, found 0"),
        ({"in_rate": 48000, "out_rate": -1}, "out_rate must be a positive integer, found -1"),
        ({"in_rate": 48000.0, "out_rate": 16000}, "in_rate must be a positive .* found 48000.0"),
        ({"in_rate": 48000, "out_rate": 16000, "rolloff": 1.5}, "rolloff must be in"),
        ({"in_rate": 48000, "out_rate": 16000, "beta": -1.0}, "beta must be >= 0"),
        ({"in_rate": 48000, "out_rate": 16000, "half_width": 0}, "half_width must be a positive"),
    ],
)
def test_bad_rates_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        resampling_filter(**kwargs)


def test_bad_shapes_raise():
    filter = resampling_filter(48000, 16000)
    state = init_resampler_state(filter, 1)
    with pytest.raises(ValueError, match=r"audio must have shape \[batch, n_samples\], found"):
        resample(torch.zeros(10), 48000, 16000)
    with pytest.raises(ValueError, match=r"audio must have shape .* found shape \(1, 1, 10\)"):
        resample_stream(torch.zeros(1, 1, 10), state, filter)
    with pytest.raises(ValueError, match=r"state\['history'\] must have shape \[batch=2, >= 312\]"):
        resample_stream(torch.zeros(2, 10), state, filter)
    with pytest.raises(ValueError, match=r"state\['history'\] must be a torch.Tensor .* NoneType"):
        resample_stream(torch.zeros(1, 10), {"n_in": torch.zeros(())}, filter)
    with pytest.raises(ValueError, match="batch_size must be a positive integer, found 0"):
        init_resampler_state(filter, 0)
    with pytest.raises(ValueError, match=r"filter must be the dict from .* found keys \['taps'\]"):
        resample_stream(torch.zeros(1, 10), state, {"taps": filter["taps"]})
    with pytest.raises(ValueError, match="filter must be the dict .* found Tensor"):
        init_resampler_state(filter["taps"], 1)
