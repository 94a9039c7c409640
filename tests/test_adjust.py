import numpy as np
import pytest

from torchddsp.adjust import (
    Adjustments,
    adjust_features,
    autotune,
    detect_notes,
    hz_to_midi,
    map_loudness_quantiles,
    midi_to_hz,
    register_shift,
    repair_harmonic_errors,
    tuning_offset,
)

D_MAJOR = np.array([62, 64, 66, 67, 69, 71, 73])


def _melody(notes, frames_per_note=50, detune=0.0, vibrato=0.2, frame_rate=100):
    """MIDI pitch of held notes with a 5 Hz vibrato of +-``vibrato`` semitones."""
    midi = np.repeat(np.asarray(notes, dtype=float), frames_per_note) + detune
    t = np.arange(len(midi)) / frame_rate
    return midi + vibrato * np.sin(2 * np.pi * 5 * t)


def test_detect_notes_by_hand():
    loudness = np.r_[np.full(200, -20.0), np.full(200, -100.0)]
    mask, ratio = detect_notes(loudness, np.ones(400), frame_rate=100)
    reference = (loudness.mean() + 120) * 0.7**2  # a mean-loudness frame at confidence 0.7
    assert ratio[100] == pytest.approx(100 / reference)
    assert ratio[300] == pytest.approx(20 / reference)
    assert mask[:200].all() and not mask[220:].any()
    assert ratio[0] == pytest.approx(ratio[100])  # the edges are not faded


def test_detect_notes_needs_confidence():
    loudness = np.full(300, -20.0)
    confidence = np.r_[np.ones(150), np.full(150, 0.2)]
    mask, _ = detect_notes(loudness, confidence, frame_rate=100)
    assert mask[:140].all() and not mask[160:].any()


@pytest.mark.parametrize(
    ("notes_mean", "target", "octaves"),
    [(60, 71.5, 1), (60, 64, 0), (60, 45, -1), (48, 72, 2), (75, 60, -1)],
)
def test_register_shift_picks_the_nearest_register(notes_mean, target, octaves):
    pitch = notes_mean + np.array([-2.0, 0.0, 2.0, 50.0])  # the last frame is not a note
    mask = np.array([True, True, True, False])
    assert register_shift(pitch, mask, target) == octaves


def test_quantile_mapping_of_a_uniform_range_is_a_shift():
    levels = np.linspace(0, 1, 101)
    loudness = np.linspace(-40, -20, 2001)
    mapped = map_loudness_quantiles(
        loudness, np.ones(2001, bool), levels, np.linspace(-30, -10, 101)
    )
    np.testing.assert_allclose(mapped, loudness + 10, atol=1e-9)


def test_quantile_mapping_gives_the_note_frames_the_target_distribution():
    rng = np.random.default_rng(0)
    loudness = np.r_[rng.uniform(-50, -10, 20000), np.full(500, -90.0)]  # notes, then rests
    mask = loudness > -80
    levels = np.linspace(0, 1, 101)
    target = np.quantile(rng.normal(-15, 6, 100000), levels)
    mapped = map_loudness_quantiles(loudness, mask, levels, target)
    np.testing.assert_allclose(np.quantile(mapped[mask], levels[1:-1]), target[1:-1], atol=0.05)
    assert np.all(mapped[~mask] == target[0])  # below every note: the target's quietest
    assert np.all(np.diff(mapped[np.argsort(loudness)]) >= 0)  # order preserved


def test_quantile_mapping_with_ties_stays_monotone():
    loudness = np.r_[np.full(50, -30.0), np.linspace(-30, -10, 50)]
    levels = np.linspace(0, 1, 11)
    mapped = map_loudness_quantiles(loudness, np.ones(100, bool), levels, np.linspace(0, 10, 11))
    assert np.all(np.diff(mapped[np.argsort(loudness, kind="stable")]) >= 0)


def test_tuning_offset_finds_a_detuned_melody():
    midi = _melody(D_MAJOR, detune=0.25)
    offset = tuning_offset(midi, np.ones_like(midi), np.ones_like(midi, bool))
    assert offset == pytest.approx(0.25, abs=0.011)


def test_autotune_amounts():
    midi = _melody(D_MAJOR, detune=0.3)
    mask = np.ones_like(midi, bool)
    unchanged, _ = autotune(midi, mask, 0.0, "major", offset=0.3)
    np.testing.assert_array_equal(unchanged, midi)
    tuned, key = autotune(midi, mask, 1.0, "major", offset=0.3)
    assert key == "D"
    np.testing.assert_allclose(tuned, np.repeat(D_MAJOR + 0.3, 50), atol=1e-9)
    half, _ = autotune(midi, mask, 0.5, "major", offset=0.3)
    np.testing.assert_allclose(half, 0.5 * (midi + tuned), atol=1e-9)


def test_chromatic_autotune_lands_on_semitones():
    midi = np.linspace(60, 72, 999)
    tuned, key = autotune(midi, np.ones(999, bool), 1.0, "chromatic", offset=-0.1)
    assert key is None
    np.testing.assert_allclose(tuned + 0.1, np.round(tuned + 0.1), atol=1e-9)
    assert np.abs(tuned - midi).max() <= 0.5 + 1e-9


def test_major_autotune_moves_out_of_key_notes_to_the_key():
    midi = _melody([62, 64, 66, 67, 69, 71, 73, 63], vibrato=0.0)  # D major and one Eb
    tuned, key = autotune(midi, np.ones_like(midi, bool), 1.0)
    assert key == "D"
    assert set(np.unique(tuned)) <= set(D_MAJOR.tolist())


STATISTICS = {
    "mean_pitch": 72.0,
    "loudness_quantile_levels": np.linspace(0, 1, 101).tolist(),
    "loudness_quantiles": np.linspace(-30, -10, 101).tolist(),
}


def _features(midi, loudness):
    return {
        "f0_hz": midi_to_hz(midi).astype(np.float32),
        "f0_confidence": np.ones(len(midi), np.float32),
        "loudness_db": loudness.astype(np.float32),
    }


def test_adjust_features_auto_adjust_then_manual_shifts():
    midi = _melody(D_MAJOR - 12, vibrato=0.0)  # an octave below the model's register
    loudness = np.linspace(-40, -20, len(midi))
    settings = Adjustments(pitch_shift=2.0, loudness_shift=-3.0)
    adjusted, mask, report = adjust_features(_features(midi, loudness), 100, STATISTICS, settings)
    assert mask.all() and report.octave_shift == 1
    np.testing.assert_allclose(hz_to_midi(adjusted["f0_hz"]), midi + 14, atol=1e-4)
    np.testing.assert_allclose(adjusted["loudness_db"], loudness + 10 - 3, atol=1e-3)


def test_adjust_features_without_statistics_or_notes_says_so():
    midi = np.full(300, 60.0)
    features = _features(midi, np.full(300, -50.0))
    features["f0_confidence"][:] = 0.1  # unpitched throughout
    adjusted, mask, report = adjust_features(features, 100, STATISTICS)
    assert not mask.any() and "no notes" in report.notes[0]
    np.testing.assert_array_equal(adjusted["loudness_db"], features["loudness_db"])
    _, _, report = adjust_features(_features(midi, np.full(300, -20.0)), 100, None)
    assert "no dataset statistics" in report.notes[0]


def test_adjust_features_quiets_frames_outside_notes():
    loudness = np.r_[np.full(200, -20.0), np.full(200, -100.0)]
    features = _features(np.full(400, 60.0), loudness)
    adjusted, mask, _ = adjust_features(features, 100, STATISTICS, Adjustments(quiet=20.0))
    _, ratio = detect_notes(loudness, np.ones(400), 100)
    rests = ~mask
    expected = -30.0 - 20.0 * np.clip(1 - ratio[rests], 0, 1)  # quietest target, then quiet
    np.testing.assert_allclose(adjusted["loudness_db"][rests], expected, atol=1e-4)


def test_f0_is_clipped_at_midi_110():
    adjusted, _, _ = adjust_features(
        _features(np.full(100, 100.0), np.full(100, -20.0)),
        100,
        None,
        Adjustments(pitch_shift=24),
    )
    np.testing.assert_allclose(hz_to_midi(adjusted["f0_hz"]), 110.0, atol=1e-4)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"autotune": 1.5}, "autotune must be within [0, 1], found 1.5"),
        ({"autotune_mode": "minor"}, "autotune_mode must be one of"),
        ({"quiet": -1}, "quiet must be >= 0 dB"),
    ],
)
def test_adjustments_refuse_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Adjustments(**kwargs)


def test_repair_moves_unsure_harmonics_to_the_neighbouring_notes():
    # The bundled choir's note change 307 -> 270 Hz: YIN reports 135 Hz, then 805 Hz.
    f0 = np.r_[np.full(10, 307.0), np.full(10, 135.0), np.full(5, 805.0), np.full(10, 270.0)]
    confidence = np.r_[np.ones(10), np.full(15, 0.6), np.ones(10)]
    expected = np.r_[np.full(10, 307.0), np.full(10, 270.0), np.full(5, 805 / 3), np.full(10, 270)]
    np.testing.assert_allclose(repair_harmonic_errors(f0, confidence), expected)


def test_repair_keeps_sure_leaps_and_unrelated_pitches():
    leap = np.r_[np.full(10, 220.0), np.full(10, 440.0), np.full(10, 110.0)]
    np.testing.assert_array_equal(repair_harmonic_errors(leap, np.ones(30)), leap)
    unrelated = np.r_[np.full(10, 220.0), np.full(5, 300.0), np.full(10, 220.0)]
    confidence = np.r_[np.ones(10), np.full(5, 0.3), np.ones(10)]
    np.testing.assert_array_equal(repair_harmonic_errors(unrelated, confidence), unrelated)
    np.testing.assert_array_equal(repair_harmonic_errors(leap, np.zeros(30)), leap)
