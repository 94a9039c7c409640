import numpy as np
import pytest
import scipy.signal
import torch

from torchddsp.functional import filters

from conftest import assert_batched_equals_looped

F64 = torch.float64


def numpy_hann(window_size):
    """Independent oracle of the centred window: scipy's periodic Hann."""
    if window_size % 2 == 0:
        return scipy.signal.get_window("hann", window_size, fftbins=True)
    return scipy.signal.get_window("hann", window_size + 1, fftbins=True)[1:]


def numpy_frequency_ir(magnitudes, window_size):
    zero_phase = np.fft.irfft(magnitudes, axis=-1)
    size = zero_phase.shape[-1] if window_size <= 0 else min(window_size, zero_phase.shape[-1])
    return np.roll(zero_phase, size // 2, axis=-1)[..., :size] * numpy_hann(size)


def numpy_time_varying_convolve(audio, irs):
    """Per-frame loop: samples [i n / F, (i + 1) n / F) convolved with ir i, overlap-added."""
    n_frames, ir_size = irs.shape
    out = np.zeros(len(audio) + ir_size - 1)
    for i in range(n_frames):
        start, stop = i * len(audio) // n_frames, (i + 1) * len(audio) // n_frames
        if stop > start:
            out[start : stop + ir_size - 1] += scipy.signal.fftconvolve(audio[start:stop], irs[i])
    return out


# fft_convolve ------------------------------------------------------------------------------------


@pytest.mark.parametrize("ir_size", [1, 31, 64, 300])
def test_fft_convolve_single_ir_matches_scipy(ir_size):
    audio, ir = torch.randn(3, 257, dtype=F64), torch.randn(3, ir_size, dtype=F64)
    pairs = zip(audio.numpy(), ir.numpy(), strict=True)
    full = np.stack([scipy.signal.fftconvolve(a, h) for a, h in pairs])
    valid = filters.fft_convolve(audio, ir, padding="valid", delay_compensation=0)
    np.testing.assert_allclose(valid.numpy(), full, atol=1e-10)
    same = filters.fft_convolve(audio, ir)  # default delay: ir_size // 2
    np.testing.assert_allclose(same.numpy(), full[:, ir_size // 2 : ir_size // 2 + 257], atol=1e-10)
    causal = filters.fft_convolve(audio, ir, delay_compensation=0)
    np.testing.assert_allclose(causal.numpy(), full[:, :257], atol=1e-10)


def test_fft_convolve_valid_with_delay_is_shifted_full_convolution_zero_extended():
    audio, ir = torch.randn(1, 100, dtype=F64), torch.randn(1, 21, dtype=F64)
    full = scipy.signal.fftconvolve(audio[0].numpy(), ir[0].numpy())
    out = filters.fft_convolve(audio, ir, padding="valid")
    assert out.shape == (1, 120)
    expected = np.concatenate([full[10:], np.zeros(10)])
    np.testing.assert_allclose(out[0].numpy(), expected, atol=1e-10)


@pytest.mark.parametrize(
    ("n_samples", "n_frames"), [(256, 8), (250, 8), (1000, 1), (10, 4), (10, 6), (5, 9), (2205, 25)]
)
def test_fft_convolve_time_varying_matches_per_frame_loop(n_samples, n_frames):
    audio, irs = torch.randn(2, n_samples, dtype=F64), torch.randn(2, n_frames, 17, dtype=F64)
    out = filters.fft_convolve(audio, irs, padding="valid", delay_compensation=0)
    for a, h, o in zip(audio.numpy(), irs.numpy(), out.numpy(), strict=True):
        np.testing.assert_allclose(o, numpy_time_varying_convolve(a, h), atol=1e-10)


def test_fft_convolve_broadcasts_a_single_ir_and_keeps_float32():
    audio, ir = torch.randn(4, 128), torch.randn(1, 3, 9)
    out = filters.fft_convolve(audio, ir)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, filters.fft_convolve(audio, ir.expand(4, -1, -1)))


@pytest.mark.parametrize("n_samples", [24, 23])
def test_fft_convolve_batched_equals_looped_and_gradcheck(n_samples):
    audio, irs = torch.randn(3, n_samples, dtype=F64), torch.randn(3, 4, 7, dtype=F64)
    assert_batched_equals_looped(filters.fft_convolve, audio, irs, atol=1e-12)
    audio, irs = audio[:1].requires_grad_(), irs[:1, :, :5].requires_grad_()
    assert torch.autograd.gradcheck(filters.fft_convolve, (audio, irs))
    assert torch.autograd.gradcheck(lambda a, h: filters.fft_convolve(a, h, "valid"), (audio, irs))


@pytest.mark.parametrize(
    ("audio", "ir", "kwargs", "message"),
    [
        (torch.randn(2, 10, 1), torch.randn(2, 3), {}, r"audio .*found shape \(2, 10, 1\)"),
        (torch.randn(2, 10), torch.randn(3), {}, r"impulse_response .*found shape \(3,\)"),
        (torch.randn(2, 10), torch.randn(3, 4), {}, "must be 1 or the audio batch 2, found 3"),
        (torch.randn(2, 10), torch.randn(2, 3), {"padding": "full"}, "found 'full'"),
        (torch.randn(2, 10), torch.randn(2, 0), {}, "ir_size must be positive, found 0"),
        (torch.randn(2, 10), torch.ones(2, 3, dtype=torch.long), {}, "found dtype torch.int64"),
    ],
)
def test_fft_convolve_errors_name_what_was_found(audio, ir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        filters.fft_convolve(audio, ir, **kwargs)


# frequency_impulse_response -----------------------------------------------------------------------


@pytest.mark.parametrize("window_size", [0, 128, 500, 64, 33])
def test_frequency_impulse_response_matches_numpy(window_size):
    magnitudes = torch.rand(2, 3, 65, dtype=F64)
    ir = filters.frequency_impulse_response(magnitudes, window_size)
    expected = numpy_frequency_ir(magnitudes.numpy(), window_size)
    assert ir.shape == expected.shape
    np.testing.assert_allclose(ir.numpy(), expected, atol=1e-12)


def test_frequency_impulse_response_full_window_is_ddsp():
    """DDSP's apply_window_to_impulse_response for window_size == ir_size, in numpy."""
    magnitudes = torch.rand(2, 33, dtype=F64)
    zero_phase = np.fft.irfft(magnitudes.numpy(), axis=-1)
    window = scipy.signal.get_window("hann", 64, fftbins=True)
    ddsp = np.fft.fftshift(np.fft.fftshift(window) * zero_phase, axes=-1)
    ir = filters.frequency_impulse_response(magnitudes)
    np.testing.assert_allclose(ir.numpy(), ddsp, atol=1e-12)


@pytest.mark.parametrize("window_size", [0, 64, 65])
def test_flat_magnitudes_give_a_centred_delta(window_size):
    ir = filters.frequency_impulse_response(torch.ones(1, 65, dtype=F64), window_size)[0]
    size = ir.shape[-1]
    expected = np.zeros(size)
    expected[size // 2] = numpy_hann(size)[size // 2]
    np.testing.assert_allclose(ir.numpy(), expected, atol=1e-12)
    np.testing.assert_allclose(ir.numpy(), ir.flip(-1).roll(1 - size % 2).numpy(), atol=1e-12)


def test_frequency_impulse_response_is_linear_phase_and_differentiable():
    magnitudes = torch.rand(2, 3, 40, dtype=F64)
    for window_size in (0, 51, 50):
        ir = filters.frequency_impulse_response(magnitudes, window_size)
        odd = ir if ir.shape[-1] % 2 else ir[..., 1:]  # even sizes: tap 0 carries a zero weight
        torch.testing.assert_close(odd, odd.flip(-1))
    small = magnitudes[:1, :2, :8].requires_grad_()
    assert torch.autograd.gradcheck(lambda m: filters.frequency_impulse_response(m, 9), (small,))
    assert_batched_equals_looped(lambda m: filters.frequency_impulse_response(m, 51), magnitudes)


def test_frequency_impulse_response_errors():
    with pytest.raises(ValueError, match=r"magnitudes .*found shape \(65,\)"):
        filters.frequency_impulse_response(torch.ones(65))
    with pytest.raises(ValueError, match="2 frequencies or more .*found 1"):
        filters.frequency_impulse_response(torch.ones(1, 1))


# frequency_filter ---------------------------------------------------------------------------------


def test_frequency_filter_lowpass_attenuates_high_band():
    noise = torch.rand(2, 16000, dtype=F64) * 2 - 1
    magnitudes = torch.zeros(2, 10, 65, dtype=F64)
    magnitudes[..., :17] = 1.0  # pass below a quarter of Nyquist
    out = filters.frequency_filter(noise, magnitudes, window_size=129).numpy()
    freqs, power = scipy.signal.welch(out, nperseg=512)
    _, power_in = scipy.signal.welch(noise.numpy(), nperseg=512)
    gain_db = 10 * np.log10(power / power_in)
    assert np.all(np.abs(gain_db[:, (freqs > 0.02) & (freqs < 0.1)]) < 1.0)
    assert np.all(gain_db[:, freqs > 0.2] < -30.0)


def test_frequency_filter_flat_response_keeps_audio_aligned():
    audio = torch.randn(2, 400, dtype=F64)
    out = filters.frequency_filter(audio, torch.ones(2, 4, 33, dtype=F64), window_size=31)
    np.testing.assert_allclose(out.numpy(), audio.numpy() * numpy_hann(31)[15], atol=1e-12)
    valid = filters.frequency_filter(audio, torch.ones(2, 4, 33, dtype=F64), padding="valid")
    assert valid.shape == (2, 400 + 63)


def test_frequency_filter_gradcheck_and_batch():
    audio, magnitudes = torch.randn(3, 40, dtype=F64), torch.rand(3, 4, 9, dtype=F64)
    assert_batched_equals_looped(filters.frequency_filter, audio, magnitudes, atol=1e-12)
    inputs = (audio[:1].requires_grad_(), magnitudes[:1].requires_grad_())
    assert torch.autograd.gradcheck(filters.frequency_filter, inputs)


# sinc --------------------------------------------------------------------------------------------


def numpy_sinc_ir(cutoff_ratio, window_size):
    taps = np.arange(-(window_size // 2), window_size // 2 + 1)
    ir = np.sinc(cutoff_ratio * taps) * np.hamming(len(taps))
    return ir / np.abs(ir.sum(-1, keepdims=True))


@pytest.mark.parametrize("window_size", [64, 65, 1])
def test_sinc_impulse_response_matches_numpy(window_size):
    cutoff_hz = torch.tensor([[[1000.0], [3000.0]], [[7999.0], [0.0]]], dtype=F64)
    ir = filters.sinc_impulse_response(cutoff_hz, window_size, sample_rate=16000)
    expected = numpy_sinc_ir(cutoff_hz.numpy() / 8000.0, window_size)
    assert ir.shape == (2, 2, window_size // 2 * 2 + 1)
    np.testing.assert_allclose(ir.numpy(), expected, atol=1e-12)
    ratio = filters.sinc_impulse_response(cutoff_hz / 8000.0, window_size)
    np.testing.assert_allclose(ratio.numpy(), expected, atol=1e-12)


def test_sinc_impulse_response_scalar_high_pass_and_response():
    low = filters.sinc_impulse_response(0.25, 128).to(F64)
    assert low.shape == (1, 1, 129)
    high = filters.sinc_impulse_response(torch.tensor(0.25, dtype=F64), 128, high_pass=True)
    delta = np.zeros(129)
    delta[64] = 1.0
    np.testing.assert_allclose(high[0, 0].numpy(), delta - low[0, 0].numpy(), atol=1e-6)
    freqs, response = scipy.signal.freqz(low[0, 0].numpy(), worN=512)
    gain = np.abs(response)
    assert np.all(np.abs(gain[freqs < 0.2 * np.pi] - 1) < 0.01)
    assert np.all(gain[freqs > 0.3 * np.pi] < 0.01)


def test_sinc_filter_lowpass_matches_scipy_and_gradcheck():
    audio = torch.randn(2, 300, dtype=F64)
    out = filters.sinc_filter(audio, 1000.0, window_size=32, sample_rate=8000)
    ir = numpy_sinc_ir(0.25, 32)
    expected = [scipy.signal.fftconvolve(a, ir)[16:316] for a in audio.numpy()]
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-6)  # float32 scalar cutoff
    cutoff = torch.rand(2, 3, 1, dtype=F64)
    sinc_filter = lambda a, c: filters.sinc_filter(a, c, 16)  # noqa: E731
    assert_batched_equals_looped(sinc_filter, audio, cutoff, atol=1e-12)
    inputs = (audio[:1, :30].requires_grad_(), (0.1 + cutoff[:1]).requires_grad_())
    assert torch.autograd.gradcheck(lambda a, c: filters.sinc_filter(a, c, 8), inputs)


def test_sinc_errors():
    with pytest.raises(ValueError, match=r"found shape \(2, 3, 2\)"):
        filters.sinc_impulse_response(torch.rand(2, 3, 2))
    with pytest.raises(ValueError, match=r"found shape \(2, 3\)"):
        filters.sinc_impulse_response(torch.rand(2, 3))
    with pytest.raises(ValueError, match="sample_rate must be positive, found 0"):
        filters.sinc_impulse_response(100.0, sample_rate=0)
    with pytest.raises(ValueError, match="window_size must be positive, found 0"):
        filters.sinc_filter(torch.randn(1, 10), 0.5, window_size=0)


# variable_length_delay ---------------------------------------------------------------------------


def numpy_delay(audio, delay_samples):
    """np.interp of the audio preceded by silence at the delayed times."""
    time = np.arange(len(audio))
    padded = np.concatenate([[0.0], audio])
    return np.interp(time - delay_samples, np.arange(-1, len(audio)), padded, left=0.0)


@pytest.mark.parametrize("phase_value", [0.0, 0.25, 0.3, 0.999, 1.0])
def test_constant_delay_matches_numpy_interpolation(phase_value):
    audio = torch.randn(2, 200, dtype=F64)
    phase = torch.full((2, 200, 1), phase_value, dtype=F64)
    out = filters.variable_length_delay(audio, phase, max_length=40)
    for a, o in zip(audio.numpy(), out.numpy(), strict=True):
        np.testing.assert_allclose(o, numpy_delay(a, phase_value * 40), atol=1e-12)


def test_integer_delay_is_an_exact_shift_and_phase_is_clipped():
    audio = torch.arange(1.0, 11.0)[None]
    out = filters.variable_length_delay(audio, torch.full((1, 10), 0.5), max_length=6)
    assert out[0].tolist() == [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]
    clipped = filters.variable_length_delay(audio, torch.full((1, 10), 3.0), max_length=6)
    torch.testing.assert_close(clipped, filters.variable_length_delay(audio, torch.ones(1, 10), 6))


def test_time_varying_delay_matches_numpy_and_gradcheck():
    audio, phase = torch.randn(3, 60, dtype=F64), torch.rand(3, 60, dtype=F64)
    out = filters.variable_length_delay(audio, phase, max_length=9)
    for a, p, o in zip(audio.numpy(), phase.numpy(), out.numpy(), strict=True):
        np.testing.assert_allclose(o, numpy_delay(a, 9 * p), atol=1e-12)
    assert_batched_equals_looped(lambda a, p: filters.variable_length_delay(a, p, 9), audio, phase)
    inputs = (audio[:1, :20].requires_grad_(), (0.05 + 0.9 * phase[:1, :20]).requires_grad_())
    assert torch.autograd.gradcheck(lambda a, p: filters.variable_length_delay(a, p, 7), inputs)


def test_variable_length_delay_errors():
    with pytest.raises(ValueError, match=r"found shapes \(2, 10\) and \(2, 9\)"):
        filters.variable_length_delay(torch.randn(2, 10), torch.rand(2, 9))
    with pytest.raises(ValueError, match=r"phase must have shape .*found shape \(2, 10, 2\)"):
        filters.variable_length_delay(torch.randn(2, 10), torch.rand(2, 10, 2))
    with pytest.raises(ValueError, match="max_length must be positive, found 0"):
        filters.variable_length_delay(torch.randn(2, 10), torch.rand(2, 10), max_length=0)


def numpy_ddsp_frequency_filter(audio, magnitudes):
    """DDSP's frequency_filter (full-size window, default delay compensation), in numpy."""
    zero_phase = np.fft.irfft(magnitudes, axis=-1)
    ir_size = zero_phase.shape[-1]
    window = scipy.signal.get_window("hann", ir_size, fftbins=True)
    irs = np.fft.fftshift(np.fft.fftshift(window) * zero_phase, axes=-1)
    n_frames = irs.shape[0]
    hop = int(np.ceil(len(audio) / n_frames))
    frames = np.pad(audio, (0, n_frames * hop - len(audio))).reshape(n_frames, hop)
    fft_size = 2 ** int(np.ceil(np.log2(ir_size + hop - 1)))
    convolved = np.fft.irfft(np.fft.rfft(frames, fft_size) * np.fft.rfft(irs, fft_size), fft_size)
    out = np.zeros((n_frames - 1) * hop + fft_size)
    for i, block in enumerate(convolved):
        out[i * hop : i * hop + fft_size] += block
    start = (ir_size - 1) // 2 - 1
    return out[start : start + len(audio)]


def test_frequency_filter_reproduces_ddsp_with_its_delay_compensation():
    audio, magnitudes = torch.randn(1, 640, dtype=F64), torch.rand(1, 10, 33, dtype=F64)
    ddsp_delay = (64 - 1) // 2 - 1
    ir = filters.frequency_impulse_response(magnitudes)
    ours = filters.fft_convolve(audio, ir, "same", delay_compensation=ddsp_delay)
    expected = numpy_ddsp_frequency_filter(audio[0].numpy(), magnitudes[0].numpy())
    np.testing.assert_allclose(ours[0].numpy(), expected, atol=1e-12)
    aligned = filters.frequency_filter(audio, magnitudes)
    torch.testing.assert_close(aligned[:, :-2], ours[:, 2:])  # DDSP's output is 2 samples late
