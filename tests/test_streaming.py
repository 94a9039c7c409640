"""Streaming == offline: every processor, the DAG and the whole model, for any split into blocks.

Blocks are random lengths of audio time (1 to 4096 samples, never aligned to
the hop): a block delivers the audio samples it spans and the frames whose
hops it completes. The blocks' outputs, then a final call, must join into the
offline output within 1e-5, eager and scripted.
"""

import dataclasses

import numpy as np
import pytest
import scipy.signal
import torch

from torchddsp.config import load_config
from torchddsp.models import Autoencoder
from torchddsp.models.autoencoder import render_in_blocks
from torchddsp.processors import (
    Add,
    ExpDecayReverb,
    FilteredNoise,
    FilteredNoiseReverb,
    FIRFilter,
    GlottalSource,
    Harmonic,
    Mix,
    ModDelay,
    ProcessorGroup,
    Reverb,
    Sinusoidal,
    Wavetable,
)

HOP = 64  # 16 kHz at 250 frames/s
N_FRAMES = 150  # 0.6 s
ATOL = 1e-5


def _frames(channels: int, low: float = -3.0, high: float = 3.0) -> torch.Tensor:
    return low + (high - low) * torch.rand(2, N_FRAMES, channels)


def _f0() -> torch.Tensor:
    return 80.0 * 2.0 ** (4.0 * torch.rand(2, N_FRAMES, 1))  # 80 Hz .. 1.3 kHz, jumping


def _audio() -> torch.Tensor:
    return torch.randn(2, N_FRAMES * HOP)


def _reverb_ir(length: int) -> torch.Tensor:
    decay = torch.exp(-torch.arange(length) / (0.3 * 16000))
    return 0.1 * torch.randn(length) * decay


def _loud(reverb):
    """A trainable reverb loud enough that comparing it at 1e-5 means something."""
    with torch.no_grad():
        if isinstance(reverb, Reverb):
            reverb.ir.copy_(_reverb_ir(reverb.reverb_length))
        elif isinstance(reverb, ExpDecayReverb):
            reverb.gain.fill_(-1.0)
            reverb.decay.fill_(1.0)
    return reverb


# name -> (processor, inputs, kinds: "f" frames / "a" audio)
CASES = {
    "harmonic": lambda: (Harmonic(16000, 250), [_frames(1), _frames(40), _f0()], "fff"),
    "filtered_noise_full": lambda: (
        FilteredNoise(16000, 250, window_size=0, initial_bias=0.0),
        [_frames(65)],
        "f",
    ),
    "filtered_noise_short": lambda: (
        FilteredNoise(16000, 250, window_size=31, initial_bias=0.0),
        [_frames(65)],
        "f",
    ),
    "sinusoidal": lambda: (Sinusoidal(16000, 250), [_frames(6), _frames(6)], "ff"),
    "wavetable_per_frame": lambda: (
        Wavetable(16000, 250),
        [_frames(1), _f0(), _frames(64)],
        "fff",
    ),
    "wavetable_learnable": lambda: (
        Wavetable(16000, 250, n_wavetable=64),
        [_frames(1), _f0()],
        "ff",
    ),
    "glottal": lambda: (
        GlottalSource(16000, 250),
        [_frames(1), _f0(), _frames(1), _frames(1)],
        "ffff",
    ),
    "reverb_48000": lambda: (_loud(Reverb(48000)), [_audio()], "a"),
    "reverb_short": lambda: (_loud(Reverb(300)), [_audio()], "a"),
    "exp_decay_reverb": lambda: (_loud(ExpDecayReverb(8000)), [_audio()], "a"),
    "filtered_noise_reverb": lambda: (FilteredNoiseReverb(8000, n_frames=20), [_audio()], "a"),
    "fir_filter": lambda: (
        FIRFilter(window_size=63, sample_rate=16000, frame_rate=250),
        [_audio(), _frames(33)],
        "af",
    ),
    "mod_delay": lambda: (
        ModDelay(sample_rate=16000, frame_rate=250),
        [_audio(), _frames(1), _frames(1)],
        "aff",
    ),
    "add": lambda: (Add(), [_audio(), _audio()], "aa"),
    "mix": lambda: (
        Mix(sample_rate=16000, frame_rate=250),
        [_audio(), _audio(), _frames(1)],
        "aaf",
    ),
}


def _random_splits(n_samples: int, seed: int) -> list[int]:
    """Block lengths 1..4096 covering n_samples, a few of them empty."""
    rng = np.random.default_rng(seed)
    sizes, total = [], 0
    while total < n_samples:
        size = 0 if rng.random() < 0.05 else int(rng.integers(1, 4097))
        sizes.append(min(size, n_samples - total))
        total += sizes[-1]
    return sizes


def _blocks(inputs, kinds, sizes):
    """Each block's new audio samples and the frames its samples complete."""
    start = 0
    for size in sizes:
        stop = start + size
        yield [
            x[:, start // HOP : stop // HOP] if kind == "f" else x[:, start:stop]
            for x, kind in zip(inputs, kinds, strict=True)
        ]
        start = stop


def _stream(processor, inputs, kinds, sizes):
    state = processor.init_state(inputs[0].shape[0])
    pieces = []
    for block in _blocks(inputs, kinds, sizes):
        out, state = processor.forward_stream(block, state)
        pieces.append(out)
    out, _ = processor.forward_stream([x[:, :0] for x in inputs], state, True)
    return torch.cat([*pieces, out], dim=1)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("seed", [0, 1])
def test_every_processor_streams_exactly(single_thread, name, seed):
    torch.manual_seed(seed)
    processor, inputs, kinds = CASES[name]()
    processor.eval()
    with torch.no_grad():
        offline = processor(*inputs)
        streamed = _stream(processor, inputs, kinds, _random_splits(N_FRAMES * HOP, seed))
    torch.testing.assert_close(streamed, offline, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", sorted(CASES))
def test_every_processor_streams_exactly_when_scripted(single_thread, name):
    processor, inputs, kinds = CASES[name]()
    scripted = torch.jit.script(processor.eval())
    with torch.no_grad():
        offline = processor(*inputs)
        streamed = _stream(scripted, inputs, kinds, _random_splits(N_FRAMES * HOP, 7))
    torch.testing.assert_close(streamed, offline, rtol=0, atol=ATOL)


@pytest.mark.parametrize("name", ["harmonic", "filtered_noise_full", "fir_filter", "mod_delay"])
def test_output_never_lags_more_than_stream_lag(single_thread, name):
    processor, inputs, kinds = CASES[name]()
    channels = [x.shape[-1] if kind == "f" else 0 for x, kind in zip(inputs, kinds, strict=True)]
    lag = processor.stream_lag([0] * len(inputs), channels)
    state, delivered, emitted = processor.init_state(2), 0, 0
    with torch.no_grad():
        for block in _blocks(inputs, kinds, [HOP * 3 + 5] * (N_FRAMES // 4)):
            out, state = processor.forward_stream(block, state)
            delivered, emitted = delivered + HOP * 3 + 5, emitted + out.shape[1]
            assert emitted >= (delivered // HOP) * HOP - lag


def test_scipy_is_the_reverb_oracle(single_thread):
    reverb = _loud(Reverb(3000)).eval()
    audio = _audio()
    ir = reverb.ir.detach().double().numpy().copy()
    ir[0] = 0.0  # the node masks the dry tap and adds the dry signal instead
    expected = scipy.signal.fftconvolve(audio.double().numpy(), ir[None])[:, : audio.shape[1]]
    with torch.no_grad():
        streamed = _stream(reverb, [audio], "a", _random_splits(audio.shape[1], 3))
    expected = torch.from_numpy(expected) + audio.double()
    torch.testing.assert_close(streamed.double(), expected, rtol=0, atol=ATOL)


# ---- the DAG -------------------------------------------------------------------------------


def _dag() -> ProcessorGroup:
    """Every kind of streaming join: synths lagging differently, a filter, a delay, a mix."""
    return ProcessorGroup(
        [
            {
                "name": "harmonic",
                "processor": Harmonic(16000, 250),
                "inputs": ["amps", "dist", "f0"],
            },
            {
                "name": "noise",
                "processor": FilteredNoise(16000, 250, window_size=0, initial_bias=0.0),
                "inputs": ["noise"],
            },
            {
                "name": "fir",
                "processor": FIRFilter(63, sample_rate=16000, frame_rate=250),
                "inputs": ["harmonic/signal", "filter"],
            },
            {"name": "add", "processor": Add(), "inputs": ["fir/signal", "noise/signal"]},
            {
                "name": "chorus",
                "processor": ModDelay(sample_rate=16000, frame_rate=250),
                "inputs": ["add/signal", "gain", "phase"],
            },
            {
                "name": "mix",
                "processor": Mix(sample_rate=16000, frame_rate=250),
                "inputs": ["chorus/signal", "noise/signal", "mix"],
            },
            {"name": "reverb", "processor": _loud(Reverb(5000)), "inputs": ["mix/signal"]},
        ]
    )


def _dag_inputs() -> dict[str, torch.Tensor]:
    sizes = {"amps": 1, "dist": 30, "noise": 65, "filter": 33, "gain": 1, "phase": 1, "mix": 1}
    inputs = {name: _frames(channels) for name, channels in sizes.items()}
    return {**inputs, "f0": _f0()}


def _stream_dag(dag, inputs, sizes, gains=None):
    state = dag.init_state(2)
    pieces, start = [], 0
    for size in sizes:
        block = {key: x[:, start // HOP : (start + size) // HOP] for key, x in inputs.items()}
        signals, state = dag.forward_stream(block, state, gains=gains)
        pieces.append(signals[dag.output])
        start += size
    empty = {key: x[:, :0] for key, x in inputs.items()}
    signals, _ = dag.forward_stream(empty, state, True, gains)
    return torch.cat([*pieces, signals[dag.output]], dim=1)


@pytest.mark.parametrize("scripted", [False, True])
def test_the_dag_streams_exactly(single_thread, scripted):
    dag, inputs = _dag().eval(), _dag_inputs()
    runner = torch.jit.script(dag) if scripted else dag
    with torch.no_grad():
        offline = dag(inputs)
        streamed = _stream_dag(runner, inputs, _random_splits(N_FRAMES * HOP, 11))
    torch.testing.assert_close(streamed, offline, rtol=0, atol=ATOL)


def test_gains_scale_synths_and_the_wet_part_of_effects(single_thread):
    dag, inputs = _dag().eval(), _dag_inputs()
    sizes = _random_splits(N_FRAMES * HOP, 5)
    with torch.no_grad():
        unity = _stream_dag(dag, inputs, sizes, {"noise": torch.ones(1), "reverb": torch.ones(1)})
        plain = _stream_dag(dag, inputs, sizes)
        dry = _stream_dag(dag, inputs, sizes, {"reverb": torch.zeros(1)})
        outputs = dag.get_outputs(inputs)
    torch.testing.assert_close(unity, plain, rtol=0, atol=ATOL)
    torch.testing.assert_close(dry, outputs["mix/signal"], rtol=0, atol=ATOL)


def test_dag_lag_is_the_slowest_path():
    dag = _dag()
    channels = {"amps": 1, "dist": 30, "noise": 65, "filter": 33, "gain": 1, "phase": 1, "mix": 1}
    # harmonic (one hop) -> FIR (a frame's last sample, half of 63 taps) -> add -> chorus -> mix
    assert dag.stream_lag(channels) == HOP + HOP - 1 + 31


# ---- the whole model ---------------------------------------------------------------------------


def _model(reverb_length: int) -> Autoencoder:
    config = dataclasses.replace(
        load_config("solo_instrument_magenta").model,
        mlp_units=64,
        gru_units=64,
        reverb_length=reverb_length,
    )
    torch.manual_seed(1)
    model = Autoencoder(config, 16000, 250).eval()
    model.synth.processors["noise"].initial_bias = 0.0  # as loud as the harmonics
    if reverb_length:
        _loud(model.synth.processors["reverb"])
    return model


def _features(n_frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    f0_hz = 80.0 * 2.0 ** (4.0 * torch.rand(1, n_frames, generator=generator))
    loudness_db = -75.0 + 70.0 * torch.rand(1, n_frames, generator=generator)
    return f0_hz, loudness_db


@pytest.mark.parametrize("reverb_length", [0, 48000])
def test_the_model_streams_exactly_in_random_blocks(single_thread, reverb_length):
    model = _model(reverb_length)
    f0_hz, loudness_db = _features(400)
    with torch.no_grad():
        offline = model({"f0_hz": f0_hz, "loudness_db": loudness_db})["audio_synth"]
    state, pieces, start = model.init_state(1), [], 0
    with torch.no_grad():
        for size in _random_splits(400 * HOP, reverb_length):
            stop = start + size
            frames = slice(start // HOP, stop // HOP)
            signals, state = model.forward_stream(
                f0_hz[:, frames, None], loudness_db[:, frames, None], state
            )
            pieces.append(signals["audio"])
            start = stop
        signals, _ = model.forward_stream(f0_hz[:, :0, None], loudness_db[:, :0, None], state, True)
    streamed = torch.cat([*pieces, signals["audio"]], dim=1)
    torch.testing.assert_close(streamed, offline, rtol=0, atol=ATOL)


def test_phase_stays_exact_over_a_minute(single_thread):
    model = _model(0)
    n_frames = 15000  # 60 s at 250 frames/s
    f0_hz, loudness_db = torch.full((1, n_frames), 440.0), torch.full((1, n_frames), -20.0)
    blocks = render_in_blocks(model, f0_hz, loudness_db, block_frames=37)
    whole = render_in_blocks(model, f0_hz, loudness_db, block_frames=n_frames)
    torch.testing.assert_close(blocks, whole, rtol=0, atol=ATOL)


def test_a_model_with_a_z_encoder_does_not_stream():
    config = dataclasses.replace(
        load_config("solo_instrument_fast").model,
        z_dims=4,
        mlp_units=16,
        gru_units=16,
        n_mfcc=13,
        encoder_gru_units=16,
    )
    with pytest.raises(ValueError, match=r"without a z encoder.*found z_dims=4"):
        Autoencoder(config, 16000, 100).init_state(1)


def test_a_node_reading_controls_does_not_stream():
    dag = ProcessorGroup(
        [
            {"name": "harmonic", "processor": Harmonic(), "inputs": ["amps", "dist", "f0"]},
            {
                "name": "add",
                "processor": Add(),
                "inputs": ["harmonic/signal", "harmonic/controls/f0_hz"],
            },
        ]
    )
    with pytest.raises(ValueError, match=r"node 'add' \(Add\): streaming takes plain inputs"):
        dag.init_state(1)


def test_render_in_blocks_checks_the_block_size():
    with pytest.raises(ValueError, match="block_frames must be a positive integer, found 0"):
        render_in_blocks(_model(0), torch.zeros(1, 3), torch.zeros(1, 3), block_frames=0)
