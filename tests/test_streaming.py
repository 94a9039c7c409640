import dataclasses

import numpy as np
import pytest
import scipy.signal
import torch

from torchddsp.config import load_config
from torchddsp.functional.filters import frequency_filter
from torchddsp.models import Autoencoder, synthesis_config
from torchddsp.processors import ProcessorGroup
from torchddsp.streaming import StreamingRenderer, indexed_noise, render

N_FRAMES = {"fast": 130, "reverb": 260}  # about a second of each
REVERB_LENGTH = 3000


def _audible_noise(model: Autoencoder) -> Autoencoder:
    # Without the -5 bias of a fresh model the noise is as loud as the harmonics,
    # so comparing it at atol 1e-5 means something.
    model.synth.processors["noise"].initial_bias = 0.0
    return model


def _fast_model() -> Autoencoder:
    torch.manual_seed(0)
    return _audible_noise(Autoencoder(load_config("solo_instrument_fast").model, 16000, 100))


def _reverb_model() -> Autoencoder:
    """Magenta's layout (250 frames/s, trainable reverb), small networks and a short reverb."""
    config = dataclasses.replace(
        load_config("solo_instrument_magenta").model,
        mlp_units=64,
        mlp_layers=2,
        gru_units=64,
        reverb_length=REVERB_LENGTH,
    )
    torch.manual_seed(1)
    model = Autoencoder(config, 16000, 250)
    # A reverb loud enough to matter, instead of the 1e-6 initialisation.
    decay = torch.exp(-torch.arange(REVERB_LENGTH) / 600.0)
    with torch.no_grad():
        model.synth.processors["reverb"].ir.copy_(0.1 * torch.randn(REVERB_LENGTH) * decay)
    return _audible_noise(model)


@pytest.fixture(scope="module")
def models() -> dict[str, Autoencoder]:
    return {"fast": _fast_model(), "reverb": _reverb_model()}


def _features(n_frames: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """f0 jumping between 80 Hz and 1.3 kHz every frame, loudness -75..-5 dB."""
    generator = torch.Generator().manual_seed(seed)
    f0_hz = 80.0 * 2.0 ** (4.0 * torch.rand(n_frames, generator=generator))
    loudness_db = -75.0 + 70.0 * torch.rand(n_frames, generator=generator)
    return f0_hz, loudness_db


def _stream(model: Autoencoder, f0_hz, loudness_db, sizes, seed: int = 3) -> dict:
    """Push blocks of the given sizes, then flush; check what each push returns."""
    renderer = StreamingRenderer(model, seed=seed)
    pieces, position = [], 0
    for size in sizes:
        block = slice(position, position + size)
        pieces.append(renderer.push(f0_hz[block], loudness_db[block], components=True))
        position += size
        n_out = sum(len(piece["audio"]) for piece in pieces)
        assert n_out == max(0, position - renderer.latency_frames) * model.hop_size
    pieces.append(renderer.flush(components=True))
    return {key: torch.cat([piece[key] for piece in pieces]) for key in pieces[0]}


def _sizes(n_frames: int, split: str) -> list[int]:
    if split == "random":
        rng = np.random.default_rng(n_frames)
        sizes = rng.integers(0, 30, size=n_frames).tolist()  # zeros: empty pushes
        cut = int(np.searchsorted(np.cumsum(sizes), n_frames))
        return [*sizes[:cut], n_frames - sum(sizes[:cut])]
    size = int(split)
    return [size] * (n_frames // size) + [n_frames % size]


def _close(actual: torch.Tensor, expected: torch.Tensor, atol: float = 1e-5) -> None:
    torch.testing.assert_close(actual, expected.to(actual.dtype), atol=atol, rtol=0.0)


# ---- block splits -------------------------------------------------------------------------


@pytest.mark.parametrize("split", ["1", "7", "100", "random"])
@pytest.mark.parametrize("name", ["fast", "reverb"])
def test_any_block_split_equals_one_call(models, name, split):
    model, n_frames = models[name], N_FRAMES[name]
    f0_hz, loudness_db = _features(n_frames)
    whole = _stream(model, f0_hz, loudness_db, [n_frames])
    blocks = _stream(model, f0_hz, loudness_db, _sizes(n_frames, split))
    assert set(blocks) == set(whole) >= {"harmonic", "noise", "audio"}
    for key, value in whole.items():
        assert value.shape == (n_frames * model.hop_size,)
        _close(blocks[key], value)


def test_latency_is_one_frame_for_the_shipped_configs(models):
    # The noise filters (128 taps) reach 64 samples ahead, less than a hop of 160 or 64.
    assert StreamingRenderer(models["fast"]).latency_frames == 1
    assert StreamingRenderer(models["reverb"]).latency_frames == 1


def test_render_pushes_blocks_and_flushes(models):
    model = models["reverb"]
    f0_hz, loudness_db = _features(90, seed=2)
    audio = render(model, f0_hz, loudness_db, block_frames=16, seed=4)
    _close(audio, _stream(model, f0_hz, loudness_db, [90], seed=4)["audio"])
    assert render(model, f0_hz[:0], loudness_db[:0]).shape == (0,)


def test_reset_starts_a_new_stream(models):
    model = models["reverb"]
    f0_hz, loudness_db = _features(40, seed=5)
    renderer = StreamingRenderer(model, seed=1)
    first = torch.cat([renderer.push(f0_hz, loudness_db), renderer.flush()])
    renderer.reset()
    pieces = [renderer.push(f0_hz[:11], loudness_db[:11])]
    pieces += [renderer.push(f0_hz[11:], loudness_db[11:]), renderer.flush()]
    again = torch.cat(pieces)
    _close(again, first)


# ---- against the offline model --------------------------------------------------------------


@pytest.mark.parametrize("name", ["fast", "reverb"])
def test_components_equal_the_offline_synthesis(models, name):
    model, n_frames = models[name], N_FRAMES[name]
    f0_hz, loudness_db = _features(n_frames, seed=1)
    with torch.no_grad():
        offline = model({"f0_hz": f0_hz[None], "loudness_db": loudness_db[None]})
    streamed = render(model, f0_hz, loudness_db, block_frames=23, seed=5, components=True)
    _close(streamed["harmonic"], offline["harmonic"][0])
    # The offline noise is torch.rand; filter the renderer's noise the offline way instead.
    noise = indexed_noise(0, n_frames * model.hop_size, seed=5)[None]
    window_size = model.synth.processors["noise"].window_size
    filtered = frequency_filter(noise, offline["noise_magnitudes"], window_size=window_size)
    _close(streamed["noise"], filtered[0])
    dry = (offline["harmonic"] + filtered)[0].double().numpy()
    expected = dry
    if name == "reverb":
        ir = model.synth.processors["reverb"].ir.detach().double().numpy().copy()
        ir[0] = 0.0  # the node masks the dry tap and adds the dry signal instead
        expected = scipy.signal.fftconvolve(dry, ir)[: len(dry)] + dry
    _close(streamed["audio"], torch.from_numpy(expected))


def test_phase_stays_exact_over_a_minute(models):
    model, n_frames = models["fast"], 6000  # 60 s
    f0_hz, loudness_db = torch.full((n_frames,), 440.0), torch.full((n_frames,), -20.0)
    blocks = render(model, f0_hz, loudness_db, block_frames=37, components=True)
    whole = render(model, f0_hz, loudness_db, block_frames=n_frames, components=True)
    _close(blocks["audio"], whole["audio"])  # measured 7e-7
    with torch.no_grad():
        offline = model({"f0_hz": f0_hz[None], "loudness_db": loudness_db[None]})
    _close(blocks["harmonic"], offline["harmonic"][0])


# ---- indexed noise --------------------------------------------------------------------------


def _splitmix_reference(index: int, seed: int) -> float:
    """Sample ``index`` of indexed_noise, in exact integer arithmetic."""
    mask = (1 << 64) - 1

    def mix(z: int) -> int:
        z &= mask
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
        return z ^ (z >> 31)

    word = mix(mix(seed) + (index + 1) * 0x9E3779B97F4A7C15)
    return (word >> 40) * 2.0**-23 - 1.0


def test_indexed_noise_is_splitmix64_of_the_sample_index():
    for start, seed in [(0, 0), (12345, 7), (10**12, 2**40 + 3), (5, -1)]:
        expected = [_splitmix_reference(start + i, seed) for i in range(4)]
        actual = indexed_noise(start, 4, seed=seed, dtype=torch.float64)
        assert actual.tolist() == expected


def test_indexed_noise_is_the_same_for_any_block_split():
    whole = indexed_noise(0, 20000, seed=3)
    bounds = np.sort(np.random.default_rng(1).integers(0, 20000, size=12)).tolist()
    edges = [0, *bounds, 20000]
    blocks = [indexed_noise(a, b - a, seed=3) for a, b in zip(edges[:-1], edges[1:], strict=True)]
    assert torch.equal(torch.cat(blocks), whole)
    assert torch.equal(indexed_noise(0, 20000, seed=3, dtype=torch.float64).float(), whole)


def test_indexed_noise_is_uniform_white_noise():
    noise = indexed_noise(0, 1_000_000, seed=0, dtype=torch.float64)
    assert noise.min() >= -1.0 and noise.max() < 1.0
    assert abs(noise.mean().item()) < 3e-3  # standard error 6e-4
    assert abs(noise.var().item() - 1.0 / 3.0) < 3e-3  # standard error 3e-4
    lag_one = torch.corrcoef(torch.stack([noise[:-1], noise[1:]]))[0, 1].item()
    assert abs(lag_one) < 5e-3  # standard error 1e-3
    other = indexed_noise(0, 1_000_000, seed=1, dtype=torch.float64)
    assert abs(torch.corrcoef(torch.stack([noise, other]))[0, 1].item()) < 5e-3


def test_indexed_noise_rejects_negative_positions():
    with pytest.raises(ValueError, match="start=-1"):
        indexed_noise(-1, 10)


# ---- errors ---------------------------------------------------------------------------------


def test_a_model_with_a_z_encoder_is_refused():
    config = dataclasses.replace(
        load_config("solo_instrument_fast").model,
        z_dims=4,
        mlp_units=16,
        gru_units=16,
        n_mfcc=13,
        encoder_gru_units=16,
    )
    with pytest.raises(ValueError, match=r"without a z encoder.*found z_dims=4"):
        StreamingRenderer(Autoencoder(config, 16000, 100))


@pytest.mark.parametrize(
    ("f0_hz", "loudness_db", "message"),
    [
        (torch.zeros(1, 5), torch.zeros(5), r"f0_hz must have shape \[n_frames\], found.*\(1, 5\)"),
        (torch.zeros(5), torch.zeros(5, 1), r"loudness_db must have shape .*found shape \(5, 1\)"),
        (torch.zeros(5), torch.zeros(4), r"same number of frames, found shapes \(5,\) and \(4,\)"),
        (np.zeros(5), torch.zeros(5), r"f0_hz must be a torch.Tensor .*found ndarray"),
        (torch.zeros(5, dtype=torch.int64), torch.zeros(5), r"found dtype torch.int64"),
    ],
)
def test_bad_frames_raise_naming_what_was_found(models, f0_hz, loudness_db, message):
    with pytest.raises(ValueError, match=message):
        StreamingRenderer(models["fast"]).push(f0_hz, loudness_db)
    with pytest.raises(ValueError, match=message):
        render(models["fast"], f0_hz, loudness_db)


def test_unsupported_nodes_and_misuse_raise(models):
    model = _fast_model()
    dag = synthesis_config(model.config, 16000, 100)
    dag["nodes"][2] = {
        "name": "mix",
        "processor": "Mix",
        "inputs": ["harmonic/signal", "noise/signal", "amplitudes"],
    }
    dag["output"] = "mix/signal"
    model.synth = ProcessorGroup.from_config(dag)
    with pytest.raises(ValueError, match=r"node 'mix' \(Mix\): streaming supports .*found Mix"):
        StreamingRenderer(model)
    renderer = StreamingRenderer(models["fast"])
    renderer.flush()
    with pytest.raises(ValueError, match="call reset"):
        renderer.push(torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match="block_frames must be a positive integer, found 0"):
        render(models["fast"], torch.zeros(3), torch.zeros(3), block_frames=0)
