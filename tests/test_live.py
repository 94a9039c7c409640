"""The live engine: host rates, latency, and the causal pitch repair."""

import numpy as np
import pytest
import torch

from torchddsp.adjust import Adjustments
from torchddsp.live import CausalPitchRepair, LiveModel
from torchddsp.models import load_model
from torchddsp.models.autoencoder import render_in_blocks
from torchddsp.transfer import transfer

MODEL_RATE = 16000


@pytest.fixture(scope="module")
def violin():
    return load_model("violin")


@pytest.fixture(scope="module")
def live(violin):
    return torch.jit.script(LiveModel(violin).requires_grad_(False))


def _render(live, rate: int, f0_hz: float, seconds: float = 1.5) -> np.ndarray:
    """A held note through ``render`` at ``rate``, the first half second dropped."""
    assert live.set_host_rate(rate)
    n = int(seconds * rate)
    with torch.inference_mode():
        out = live.render(torch.full((1, n), f0_hz), torch.full((1, n), -20.0))
    return out[0, rate // 2 :].numpy()


def _spectrum_db(audio: np.ndarray, rate: int) -> tuple[np.ndarray, np.ndarray]:
    window = np.hanning(len(audio))
    power = np.abs(np.fft.rfft(audio * window)) ** 2
    return np.fft.rfftfreq(len(audio), 1 / rate), 10 * np.log10(power / power.max() + 1e-30)


def _band_db(freqs, spectrum_db, low, high) -> float:
    band = (freqs >= low) & (freqs < high)
    return 10 * np.log10(np.sum(10 ** (spectrum_db[band] / 10)) + 1e-30)


@pytest.mark.parametrize("rate", [44100, 48000])
def test_a_model_sounds_the_same_at_any_host_rate(live, violin, rate, single_thread):
    """Rule: the model runs at its own rate between windowed-sinc resamplers, so its partials and
    noise bands keep their frequencies in Hz and nothing sounds above its Nyquist (8 kHz). The
    live resamplers are flat to 0.1 dB up to 6.8 kHz and roll off above it."""
    f0 = 1300.0  # five partials up to 6.5 kHz
    at_model = render_in_blocks(violin.model, torch.full((1, 150), f0), torch.full((1, 150), -20.0))
    reference = at_model[0, MODEL_RATE // 2 :].numpy()
    played = _render(live, rate, f0)
    ref_freqs, ref_db = _spectrum_db(reference, MODEL_RATE)
    freqs, db = _spectrum_db(played, rate)
    for k in range(1, 6):  # each partial at the same frequency and level
        near = np.abs(freqs - k * f0) < 20
        ref_near = np.abs(ref_freqs - k * f0) < 20
        assert abs(freqs[near][np.argmax(db[near])] - k * f0) < 5
        assert abs(db[near].max() - ref_db[ref_near].max()) < 0.5
    for low, high in [(0, 2000), (2000, 4000), (4000, 6800)]:
        level = _band_db(freqs, db, low, high) - _band_db(ref_freqs, ref_db, low, high)
        assert abs(level) < 1.0, (low, high)  # both 1 s long: the same bins per band
    above = _band_db(freqs, db, 8300, rate / 2) - _band_db(freqs, db, 0, 8000)
    assert above < -60  # nothing above what the model knows, no images


def test_render_latency_is_the_reported_one(live, violin, single_thread):
    """A note starting at a frame boundary starts that many samples late, to the sample."""
    assert live.set_host_rate(48000)
    n, onset = 48000, 24000
    loudness = torch.full((1, n), -120.0)
    loudness[:, onset:] = -10.0
    with torch.inference_mode():
        out = live.render(torch.full((1, n), 440.0), loudness)[0].numpy()
    silent_until = np.argmax(np.abs(out) > 1e-4)
    latency = live.render_latencies[48000]
    # The frame at the onset is the first loud one; its samples blend in from the frame before.
    frame = 48000 // 100
    assert onset - frame + latency <= silent_until <= onset + latency


def test_transfer_latency_measured_by_an_onset(live, violin, single_thread):
    """Live against offline transfer of a tone after silence: the same start, ``latency`` later."""
    assert live.set_host_rate(48000)
    assert live.adjuster.pitch_shift == 0.0
    t = np.arange(2 * 48000) / 48000
    tone = sum(np.sin(2 * np.pi * 220 * k * t) / k for k in range(1, 6))
    audio = np.where(t >= 1.0, 0.2 * tone, 0.0).astype(np.float32)
    live.adjuster.auto_adjust = False
    live.adjuster.quiet = 0.0
    live.reset()
    with torch.inference_mode():
        blocks = [
            live(torch.from_numpy(audio[None, i : i + 512])) for i in range(0, len(audio), 512)
        ]
    live.adjuster.auto_adjust, live.adjuster.quiet = True, 20.0
    played = torch.cat(blocks, 1)[0].numpy()
    offline = transfer(audio[::3].copy(), violin, Adjustments(auto_adjust=False, quiet=0.0)).audio

    def onset(x, rate):
        return np.argmax(np.abs(x) > 0.05 * np.abs(x).max()) / rate

    measured = onset(played, 48000) - onset(offline, MODEL_RATE)
    assert abs(measured - live.latency_samples() / 48000) < 512 / 48000  # within one block


# ---- causal pitch repair ---------------------------------------------------------------------


def _repair(f0, confidence=None, sizes=None):
    repair = CausalPitchRepair()
    f0 = torch.tensor([f0], dtype=torch.float32)
    confidence = torch.ones_like(f0) if confidence is None else torch.tensor([confidence])
    sizes = sizes or [f0.shape[1]]
    state, out, start = repair.init_state(1), [], 0
    for size in sizes:
        block, state = repair.forward_stream(
            f0[:, start : start + size], confidence[:, start : start + size], state
        )
        out.append(block)
        start += size
    return torch.cat(out, 1)[0].tolist()


def test_a_one_frame_glitch_goes_and_a_note_change_is_one_frame_late():
    out = _repair([220.0] * 5 + [110.0] + [220.0] * 4 + [330.0] * 5)
    assert out[:10] == [220.0] * 10
    assert out[10] == 220.0 and out[11:] == [330.0] * 4


def test_an_octave_jump_is_held_until_it_lasts():
    glitch = _repair([220.0] * 5 + [440.0] * 2 + [220.0] * 5)
    assert glitch == [220.0] * 12
    leap = _repair([220.0] * 5 + [440.0] * 8)
    assert leap[:8] == [220.0] * 8 and leap[8:] == [440.0] * 5  # three frames late


def test_unsure_frames_keep_the_last_sure_pitch_and_a_new_note_is_taken_at_once():
    out = _repair([220.0] * 4 + [2000.0] * 4 + [110.0] * 4, [1.0] * 4 + [0.1] * 4 + [1.0] * 4)
    assert out[:8] == [220.0] * 8  # the tracker's guess in the rest is not played
    assert out[9:] == [110.0] * 3  # after a rest, an octave below is a new note (median: one late)


def test_the_repair_is_the_same_for_any_blocks():
    f0 = list(200.0 * 2.0 ** np.random.default_rng(0).integers(-1, 2, 60))
    confidence = list(np.random.default_rng(1).uniform(0, 1, 60))
    assert _repair(f0, confidence, [60]) == _repair(f0, confidence, [1, 7, 0, 20, 32])


def test_an_engine_refuses_a_host_rate_it_was_not_built_for(violin):
    with pytest.raises(ValueError, match="host_rate must be one of"):
        LiveModel(violin, host_rate=12345)
    assert not LiveModel(violin).set_host_rate(12345)
