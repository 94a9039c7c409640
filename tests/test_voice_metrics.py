"""Voice measures against librosa, formulas by hand, a brute-force DTW and synthetic vowels."""

from __future__ import annotations

import math

import librosa
import numpy as np
import pytest
import scipy.signal
import torch

from torchddsp.voice import metrics

SR = 16000
FRAME_RATE = 100
HOP = SR // FRAME_RATE
# Formants (Hz) of three vowels, adult male (Peterson & Barney); a "female" voice scales them.
VOWELS = ((730.0, 1090.0, 2440.0), (270.0, 2290.0, 3010.0), (300.0, 870.0, 2240.0))


def vowel(f0_hz, formants_hz, seconds=0.3, rng=None):
    """A pulse train at f0 through a glottal low-pass and one resonator per formant."""
    n = int(seconds * SR)
    pulses = np.zeros(n)
    pulses[(np.arange(0, seconds, 1.0 / f0_hz) * SR).astype(int)] = 1.0
    signal = scipy.signal.lfilter([1.0], [1.0, -0.95], pulses)
    for formant in formants_hz:
        r, theta = math.exp(-math.pi * 80.0 / SR), 2 * math.pi * formant / SR
        signal = scipy.signal.lfilter([1.0 - r], [1.0, -2 * r * math.cos(theta), r * r], signal)
    if rng is not None:
        signal = signal + 1e-3 * signal.std() * rng.standard_normal(n)
    return signal / np.abs(signal).max()


def utterance(f0_hz, formant_scale, rng):
    """Three vowels at a jittered f0 and formant scale, each jittered by up to 4 %."""
    parts = []
    for formants in VOWELS:
        jitter = formant_scale * rng.uniform(0.96, 1.04)
        parts.append(
            vowel(f0_hz * rng.uniform(0.95, 1.05), [f * jitter for f in formants], rng=rng)
        )
    return np.concatenate(parts)


def voice_set(f0_hz, scales, rng):
    audio = torch.tensor(np.stack([utterance(f0_hz, s, rng) for s in scales]), dtype=torch.float32)
    return metrics.UtteranceFeatures(SR, FRAME_RATE)(audio, torch.ones(len(scales), 90, dtype=bool))


def test_mel_cepstrum_matches_librosa_mfcc_rescaled():
    x = np.random.default_rng(0).standard_normal((2, 8000)).astype(np.float32)
    got = metrics.mel_cepstrum(torch.from_numpy(x), SR, FRAME_RATE, n_coefficients=25, n_mels=40)
    assert got.shape == (2, 8000 // HOP, 25)
    for i in range(2):
        mel = librosa.feature.melspectrogram(
            y=x[i], sr=SR, n_fft=512, hop_length=HOP, n_mels=40, pad_mode="constant", htk=True,
            norm=None,
        )  # fmt: skip
        expected = librosa.feature.mfcc(S=librosa.power_to_db(mel, top_db=None), n_mfcc=25).T
        scale = (math.log(10) / 20) / math.sqrt(2 * 40)
        np.testing.assert_allclose(got[i].numpy(), expected[: 8000 // HOP] * scale, atol=1e-5)


def test_full_order_mcd_is_half_the_std_of_the_log_mel_difference_in_db():
    # Parseval for the orthonormal DCT: with all n_mels coefficients, the MCD of a frame is
    # half the standard deviation over the mel bands of the dB difference of the two spectra.
    x = np.random.default_rng(1).standard_normal((2, 4800)).astype(np.float32)
    y = scipy.signal.lfilter([1.0, -0.9], [1.0], x).astype(np.float32)
    all_frames = torch.ones(2, 4800 // HOP, dtype=bool)
    got = metrics.mel_cepstral_distortion(
        torch.from_numpy(x), torch.from_numpy(y), SR, mask=all_frames, n_coefficients=32, n_mels=32
    )
    for i in range(2):
        mel_db = [
            librosa.power_to_db(
                librosa.feature.melspectrogram(
                    y=s[i], sr=SR, n_fft=512, hop_length=HOP, n_mels=32, pad_mode="constant",
                    htk=True, norm=None,
                ),
                top_db=None,
            )[:, : 4800 // HOP]
            for s in (x, y)
        ]  # fmt: skip
        expected = 0.5 * (mel_db[0] - mel_db[1]).std(axis=0).mean()
        assert got[i].item() == pytest.approx(expected, rel=1e-4)


def test_mcd_of_known_cepstral_offsets_is_the_formula_and_ignores_c0():
    rng = np.random.default_rng(2)
    reference = rng.normal(size=(2, 7, 25))
    offsets = rng.normal(scale=0.1, size=(2, 7, 25))
    mask = rng.random((2, 7)) < 0.6
    mask[:, 0] = True
    per_frame = 10 / np.log(10) * np.sqrt(2 * (offsets[..., 1:] ** 2).sum(-1))
    expected = [per_frame[i][mask[i]].mean() for i in range(2)]
    got = metrics.cepstral_distortion(
        torch.tensor(reference), torch.tensor(reference + offsets), torch.tensor(mask)
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-12)
    shifted_c0 = reference.copy()
    shifted_c0[..., 0] += 3.0
    same = metrics.cepstral_distortion(torch.tensor(reference), torch.tensor(shifted_c0))
    np.testing.assert_allclose(same.numpy(), 0.0)


def test_mcd_of_identical_and_rescaled_audio_is_zero():
    audio = torch.from_numpy(utterance(120.0, 1.0, np.random.default_rng(3)))[None].float()
    assert metrics.mel_cepstral_distortion(audio, audio, SR).item() == 0.0
    assert metrics.mel_cepstral_distortion(audio, 0.3 * audio, SR).item() < 1e-3  # c0 only


def test_mcd_needs_equal_lengths_without_dtw():
    audio = torch.randn(1, 4800)
    with pytest.raises(ValueError, match="dtw=True"):
        metrics.mel_cepstral_distortion(audio, audio[:, :3200], SR)


def test_dtw_path_cost_equals_brute_force_dynamic_program():
    cost = np.random.default_rng(4).random((6, 9))
    best = np.full((7, 10), np.inf)
    best[0, 0] = 0.0
    for i in range(1, 7):
        for j in range(1, 10):
            previous = min(best[i - 1, j - 1], best[i - 1, j], best[i, j - 1])
            best[i, j] = cost[i - 1, j - 1] + (0.0 if i == j == 1 else previous)
    rows, cols = metrics.dtw_path(cost)
    assert (rows[0], cols[0], rows[-1], cols[-1]) == (0, 0, 5, 8)
    assert set(np.diff(rows)) <= {0, 1} and set(np.diff(cols)) <= {0, 1}
    assert np.all(np.diff(rows) + np.diff(cols) > 0)
    assert cost[rows, cols].sum() == pytest.approx(best[6, 9], rel=1e-12)


def test_dtw_recovers_near_zero_mcd_on_a_time_stretched_copy():
    # The same vowels, 1.4 times longer each: timing drifts, spectra do not.
    def sequence(stretch):
        parts = [vowel(110.0, f, seconds=0.25 * stretch) for f in VOWELS]
        return torch.tensor(np.concatenate(parts), dtype=torch.float32)[None]

    reference, stretched = sequence(1.0), sequence(1.4)
    other = torch.tensor(vowel(110.0, VOWELS[1], seconds=1.05), dtype=torch.float32)[None]
    aligned = metrics.mel_cepstral_distortion(reference, stretched, SR, dtw=True).item()
    unrelated = metrics.mel_cepstral_distortion(reference, other, SR, dtw=True).item()
    print(f"DTW MCD: stretched copy {aligned:.3f} dB, different vowels {unrelated:.2f} dB")
    assert aligned < 0.3 and unrelated > 10 * aligned


def test_f0_rmse_cents_by_hand():
    reference = torch.tensor([[100.0, 200.0, 300.0, 400.0], [220.0] * 4], dtype=torch.float64)
    ratios = [2 ** (10 / 1200), 2 ** (-30 / 1200), 2.0, 1.0]
    estimate = reference * torch.tensor([ratios] * 2, dtype=torch.float64)
    mask = torch.tensor([[True, True, False, True], [True, False, False, False]])
    expected = [math.sqrt((10**2 + 30**2 + 0**2) / 3), 10.0]
    got = metrics.f0_rmse_cents(reference, estimate, mask)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-9)


def test_voicing_error_rate_by_hand():
    reference = metrics.voiced_frames(torch.tensor([[0.9, 0.2, 0.5, 0.7], [0.1, 0.1, 0.9, 0.9]]))
    estimate = torch.tensor([[True, True, True, False], [False, False, True, True]])
    got = metrics.voicing_error_rate(reference, estimate)
    np.testing.assert_allclose(got.numpy(), [0.5, 0.0])


def test_gender_classifier_separates_formant_groups_at_an_unseen_pitch():
    rng = np.random.default_rng(5)
    labels = torch.tensor([0, 1] * 20)
    scales = [1.0 if label == 0 else 1.2 for label in labels.tolist()]
    train = voice_set(120.0, scales, rng)  # both groups at one pitch, so pitch cannot decide
    test = voice_set(230.0, scales, rng)
    classifier = metrics.GenderClassifier().fit(train, labels)
    accuracy = classifier.accuracy(test, labels)
    print(f"gender classifier: train {classifier.accuracy(train, labels):.0%}, "
          f"test at 230 Hz (trained at 120 Hz) {accuracy:.0%}")  # fmt: skip
    assert accuracy >= 0.95
    again = metrics.GenderClassifier().fit(train, labels)
    assert torch.equal(again.weights, classifier.weights)  # deterministic


def test_gender_logit_moves_monotonically_with_the_formant_scale():
    rng = np.random.default_rng(6)
    labels = torch.tensor([0, 1] * 15)
    scales = [1.0 if label == 0 else 1.2 for label in labels.tolist()]
    classifier = metrics.GenderClassifier().fit(voice_set(150.0, scales, rng), labels)
    sweep = [1.0, 1.05, 1.1, 1.15, 1.2]
    logits = [classifier.logit(voice_set(150.0, [s] * 5, rng)).mean().item() for s in sweep]
    print("gender axis along the formant scale:", [f"{v:+.1f}" for v in logits])
    assert np.all(np.diff(logits) > 0)


def test_age_regressor_recovers_a_linear_trend():
    rng = np.random.default_rng(7)
    features = rng.normal(loc=3.0, scale=[1.0, 5.0, 0.1, 2.0], size=(200, 4))
    ages = features @ np.array([2.0, -0.5, 30.0, 0.0]) + 40.0 + rng.normal(scale=0.1, size=200)
    model = metrics.AgeRegressor(l2=1e-3).fit(
        torch.tensor(features[:150]), torch.tensor(ages[:150])
    )
    error = model.predict(torch.tensor(features[150:])).numpy() - ages[150:]
    print(f"age regressor: held-out RMSE {np.sqrt(np.mean(error**2)):.3f} (noise 0.1)")
    assert np.sqrt(np.mean(error**2)) < 0.15


def test_utterance_features_default_voicing_ignores_silence_and_errors_name_the_fix():
    audio = torch.tensor(utterance(150.0, 1.0, np.random.default_rng(8)), dtype=torch.float32)
    padded = torch.cat([torch.zeros(4000), audio, torch.zeros(4000)])[None]
    features = metrics.UtteranceFeatures(SR, FRAME_RATE)
    alone = features(audio[None])
    with_silence = features(padded, torch.ones(1, padded.shape[1] // HOP, dtype=bool))
    # YIN's voicing drops the silence; only the frames at the edges of the sound differ.
    assert (features(padded) - alone).norm() < 0.25 * (with_silence - alone).norm()
    with pytest.raises(ValueError, match="no voiced frame"):
        features(torch.zeros(1, 4800))
    with pytest.raises(ValueError, match="not fitted"):
        metrics.GenderClassifier().predict_proba(features(audio[None]))
    with pytest.raises(ValueError, match="voiced_mask must be a bool"):
        metrics.f0_rmse_cents(torch.ones(1, 3), torch.ones(1, 3), torch.ones(1, 3))


def test_envelope_scale_finds_the_factor_between_two_formant_patterns():
    rate, t = 16000, np.arange(32000) / 16000

    def vowel(formants_hz, f0_hz):  # a pulse train through three resonances
        source = scipy.signal.sawtooth(2 * np.pi * f0_hz * t)
        out = np.zeros_like(source)
        for hz in formants_hz:
            b, a = scipy.signal.iirpeak(hz, 8.0, fs=rate)
            out += scipy.signal.lfilter(b, a, source)
        return out.astype(np.float32)

    man = vowel([500, 1500, 2500], 110.0)
    envelope_scale = metrics.envelope_scale
    assert envelope_scale(man, man, rate) == 1.0
    woman = vowel([600, 1800, 3000], 110.0)
    assert envelope_scale(man, woman, rate) == pytest.approx(1.2, abs=0.03)
    higher = vowel([500, 1500, 2500], 190.0)  # the pitch alone does not move the envelope
    assert envelope_scale(man, higher, rate) == pytest.approx(1.0, abs=0.03)
