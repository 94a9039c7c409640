import numpy as np
import pytest
import torch

from torchddsp.adjust import (
    Adjuster,
    Adjustments,
    _centred_mean,
    adjust_features,
    repair_harmonic_errors,
)
from torchddsp.functional.core import hz_to_midi, midi_to_hz
from torchddsp.models import DatasetStatistics

D_MAJOR = np.array([62, 64, 66, 67, 69, 71, 73])
STATISTICS = DatasetStatistics(
    mean_pitch=72.0,
    loudness_quantile_levels=tuple(np.linspace(0, 1, 101)),
    loudness_quantiles=tuple(np.linspace(-30, -10, 101)),
)
F64 = torch.float64


def _melody(notes, frames_per_note=50, detune=0.0, vibrato=0.2, frame_rate=100):
    """MIDI pitch of held notes with a 5 Hz vibrato of +-``vibrato`` semitones."""
    midi = np.repeat(np.asarray(notes, dtype=float), frames_per_note) + detune
    t = np.arange(len(midi)) / frame_rate
    return torch.from_numpy(midi + vibrato * np.sin(2 * np.pi * 5 * t))


def _features(midi, loudness, confidence=None) -> dict[str, torch.Tensor]:
    midi, loudness = torch.as_tensor(midi, dtype=F64), torch.as_tensor(loudness, dtype=F64)
    confidence = torch.ones_like(midi) if confidence is None else torch.as_tensor(confidence)
    return {
        "f0_hz": midi_to_hz(midi),
        "f0_confidence": confidence.double(),
        "loudness_db": loudness,
    }


def _note_sums(adjuster, midi, loudness, confidence=None):
    """The offline statistics of frames that are all notes."""
    midi, loudness = torch.as_tensor(midi)[None].double(), torch.as_tensor(loudness)[None].double()
    confidence = torch.ones_like(midi) if confidence is None else torch.as_tensor(confidence)[None]
    sums = adjuster.accumulate_frames(adjuster.empty_statistics(1), loudness, 0.0)
    notes = torch.ones_like(midi, dtype=torch.bool)
    return adjuster.accumulate_notes(sums, midi, confidence, loudness, notes, 0.0)


# ---- note detection ---------------------------------------------------------------------------


def test_note_ratio_by_hand():
    adjuster = Adjuster(100)
    loudness = torch.cat([torch.full((200,), -20.0), torch.full((200,), -100.0)])[None].double()
    sums = adjuster.accumulate_frames(adjuster.empty_statistics(1), loudness, 0.0)
    ratio = adjuster.note_ratio(
        _centred_mean(torch.ones_like(loudness), 16), loudness, adjuster.mean_loudness(sums)
    )[0]
    reference = (loudness.mean() + 120) * 0.7**2  # a mean-loudness frame at confidence 0.7
    assert ratio[100] == pytest.approx(100 / reference)
    assert ratio[300] == pytest.approx(20 / reference)
    assert ratio[0] == pytest.approx(ratio[100])  # the edges are not faded
    _, notes, _ = adjust_features(_features(torch.full((400,), 60.0), loudness[0]), 100)
    assert notes[:200].all() and not notes[220:].any()


def test_notes_need_confidence():
    confidence = torch.cat([torch.ones(150), torch.full((150,), 0.2)])
    features = _features(torch.full((300,), 60.0), torch.full((300,), -20.0), confidence)
    _, notes, _ = adjust_features(features, 100)
    assert notes[:140].all() and not notes[160:].any()


# ---- auto-adjust ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("notes_mean", "target", "octaves"),
    [(60, 71.5, 1), (60, 64, 0), (60, 45, -1), (48, 72, 2), (75, 60, -1)],
)
def test_register_shift_picks_the_nearest_register(notes_mean, target, octaves):
    statistics = DatasetStatistics(target, STATISTICS.loudness_quantile_levels, (-30.0,) * 101)
    adjuster = Adjuster(100, statistics)
    sums = _note_sums(
        adjuster, notes_mean + torch.tensor([-2.0, 0.0, 2.0]), torch.full((3,), -20.0)
    )
    assert adjuster.register(sums).item() == octaves


def test_quantile_mapping_of_a_uniform_range_is_a_shift():
    adjuster = Adjuster(100, STATISTICS)
    loudness = torch.linspace(-40, -20, 2001, dtype=F64)
    sums = _note_sums(adjuster, torch.full((2001,), 60.0), loudness)
    mapped = adjuster.map_loudness(loudness[None], sums)[0]
    torch.testing.assert_close(mapped, loudness + 10, rtol=0, atol=0.06)  # 0.1 dB histogram bins


def test_quantile_mapping_gives_the_note_frames_the_target_distribution():
    rng = np.random.default_rng(0)
    levels = np.linspace(0, 1, 101)
    target = np.quantile(rng.normal(-15, 6, 100000), levels)
    adjuster = Adjuster(100, DatasetStatistics(72.0, tuple(levels), tuple(target)))
    notes = torch.from_numpy(rng.uniform(-50, -10, 20000))
    sums = _note_sums(adjuster, torch.full((20000,), 60.0), notes)
    mapped = adjuster.map_loudness(notes[None], sums)[0].numpy()
    reached = np.quantile(mapped, levels[1:-1])
    np.testing.assert_allclose(reached[4:-4], target[5:-5], atol=0.1)  # 0.1 dB histogram bins
    np.testing.assert_allclose(reached, target[1:-1], atol=0.4)  # the steep tails
    rests = adjuster.map_loudness(torch.full((1, 5), -90.0, dtype=F64), sums)
    assert torch.all(rests == target[0])  # below every note: the target's quietest
    order = np.argsort(notes.numpy())
    assert np.all(np.diff(mapped[order]) >= 0)  # order preserved


def test_adjust_features_auto_adjust_then_manual_shifts():
    midi = _melody(D_MAJOR - 12, vibrato=0.0)  # an octave below the model's register
    loudness = torch.linspace(-40, -20, len(midi), dtype=F64)
    settings = Adjustments(pitch_shift=2.0, loudness_shift=-3.0)
    adjusted, notes, report = adjust_features(_features(midi, loudness), 100, STATISTICS, settings)
    assert notes.all() and report.octave_shift == 1
    torch.testing.assert_close(hz_to_midi(adjusted["f0_hz"]), midi + 14, rtol=0, atol=1e-4)
    torch.testing.assert_close(adjusted["loudness_db"], loudness + 10 - 3, rtol=0, atol=0.06)


def test_octave_shift_adds_whole_octaves():
    midi = torch.full((300,), 60.0, dtype=F64)
    settings = Adjustments(auto_adjust=False, octave_shift=-2)
    adjusted, _, _ = adjust_features(
        _features(midi, torch.full((300,), -20.0)), 100, None, settings
    )
    torch.testing.assert_close(hz_to_midi(adjusted["f0_hz"]), midi - 24)


def test_adjust_features_without_statistics_or_notes_says_so():
    midi = torch.full((300,), 60.0)
    features = _features(midi, torch.full((300,), -50.0), torch.full((300,), 0.1))
    adjusted, notes, report = adjust_features(features, 100, STATISTICS)
    assert not notes.any() and "no notes" in report.notes[0]
    torch.testing.assert_close(adjusted["loudness_db"], features["loudness_db"])
    _, _, report = adjust_features(_features(midi, torch.full((300,), -20.0)), 100, None)
    assert "no dataset statistics" in report.notes[0]


def test_adjust_features_quiets_frames_outside_notes():
    loudness = torch.cat([torch.full((200,), -20.0), torch.full((200,), -100.0)]).double()
    features = _features(torch.full((400,), 60.0), loudness)
    adjusted, notes, _ = adjust_features(features, 100, STATISTICS, Adjustments(quiet=20.0))
    adjuster = Adjuster(100)
    sums = adjuster.accumulate_frames(adjuster.empty_statistics(1), loudness[None], 0.0)
    ratio = adjuster.note_ratio(
        _centred_mean(torch.ones(1, 400), 16), loudness[None], adjuster.mean_loudness(sums)
    )[0]
    rests = ~notes
    expected = -30.0 - 20.0 * (1 - ratio[rests]).clamp(0, 1)  # quietest target, then quiet
    torch.testing.assert_close(adjusted["loudness_db"][rests], expected, rtol=0, atol=1e-4)


def test_f0_is_clipped_at_midi_110():
    features = _features(torch.full((100,), 100.0), torch.full((100,), -20.0))
    adjusted, _, _ = adjust_features(features, 100, None, Adjustments(pitch_shift=24))
    torch.testing.assert_close(hz_to_midi(adjusted["f0_hz"]), torch.full((100,), 110.0, dtype=F64))


# ---- autotune ---------------------------------------------------------------------------------


def test_tuning_offset_finds_a_detuned_melody():
    adjuster = Adjuster(100)
    midi = _melody(D_MAJOR, detune=0.25)
    offset = adjuster.tuning_offset(_note_sums(adjuster, midi, torch.full_like(midi, -20.0)))
    assert offset.item() == pytest.approx(0.25, abs=0.011)


def test_autotune_amounts():
    midi = _melody(D_MAJOR, detune=0.3)[None]
    offset = torch.tensor([[0.3]], dtype=F64)
    outputs = {}
    for amount in (0.0, 0.5, 1.0):
        adjuster = Adjuster(100, settings=Adjustments(autotune=amount))
        sums = _note_sums(adjuster, midi[0], torch.full_like(midi[0], -20.0))
        key = adjuster.major_key(sums, offset)
        assert key.item() == 2  # D
        outputs[amount] = adjuster.autotune_pitch(midi, offset, key)[0]
    torch.testing.assert_close(outputs[0.0], midi[0])
    expected = torch.from_numpy(np.repeat(D_MAJOR + 0.3, 50))
    torch.testing.assert_close(outputs[1.0], expected, rtol=0, atol=1e-9)
    torch.testing.assert_close(outputs[0.5], 0.5 * (midi[0] + outputs[1.0]), rtol=0, atol=1e-9)


def test_chromatic_autotune_lands_on_semitones():
    midi = torch.linspace(60, 72, 999, dtype=F64)[None]
    adjuster = Adjuster(100, settings=Adjustments(autotune=1.0, autotune_mode="chromatic"))
    offset = torch.tensor([[-0.1]], dtype=F64)
    tuned = adjuster.autotune_pitch(midi, offset, torch.zeros(1, dtype=torch.long))
    torch.testing.assert_close(tuned + 0.1, torch.round(tuned + 0.1), rtol=0, atol=1e-9)
    assert (tuned - midi).abs().max() <= 0.5 + 1e-9


def test_major_autotune_moves_out_of_key_notes_to_the_key():
    midi = _melody([62, 64, 66, 67, 69, 71, 73, 63], vibrato=0.0)  # D major and one Eb
    settings = Adjustments(autotune=1.0, auto_adjust=False)
    adjusted, _, report = adjust_features(
        _features(midi, torch.full_like(midi, -20.0)), 100, None, settings
    )
    assert report.key == "D" and report.tuning_offset_cents == 0.0
    tuned = torch.round(hz_to_midi(adjusted["f0_hz"]), decimals=6)
    assert set(tuned.tolist()) <= set(D_MAJOR.tolist())


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"autotune": 1.5}, "autotune must be within [0, 1], found 1.5"),
        ({"autotune_mode": "minor"}, "autotune_mode must be one of"),
        ({"quiet": -1}, "quiet must be within [0, 60], found -1"),
        ({"octave_shift": 40}, "octave_shift must be within [-4, 4], found 40"),
        ({"octave_shift": 1.5}, "octave_shift must be a whole number, found 1.5"),
        ({"pitch_shift": -30}, "pitch_shift must be within [-24, 24], found -30"),
    ],
)
def test_adjustments_refuse_bad_settings(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        Adjustments(**kwargs)


# ---- harmonic repair --------------------------------------------------------------------------


def test_repair_moves_unsure_harmonics_to_the_neighbouring_notes():
    # The bundled choir's note change 307 -> 270 Hz: YIN reports 135 Hz, then 805 Hz.
    f0 = torch.tensor([307.0] * 10 + [135.0] * 10 + [805.0] * 5 + [270.0] * 10, dtype=F64)
    confidence = torch.tensor([1.0] * 10 + [0.6] * 15 + [1.0] * 10, dtype=F64)
    expected = [307.0] * 10 + [270.0] * 10 + [805 / 3] * 5 + [270.0] * 10
    repaired = repair_harmonic_errors(f0[None], confidence[None])[0]
    torch.testing.assert_close(repaired, torch.tensor(expected, dtype=F64))


def test_repair_keeps_sure_leaps_and_unrelated_pitches():
    leap = torch.tensor([220.0] * 10 + [440.0] * 10 + [110.0] * 10)[None]
    assert torch.equal(repair_harmonic_errors(leap, torch.ones_like(leap)), leap)
    unrelated = torch.tensor([220.0] * 10 + [300.0] * 5 + [220.0] * 10)[None]
    confidence = torch.tensor([1.0] * 10 + [0.3] * 5 + [1.0] * 10)[None]
    assert torch.equal(repair_harmonic_errors(unrelated, confidence), unrelated)
    assert torch.equal(repair_harmonic_errors(leap, torch.zeros_like(leap)), leap)


# ---- live ---------------------------------------------------------------------------------------


def _live_input(seconds: float = 30.0, frame_rate: int = 100) -> dict[str, torch.Tensor]:
    """A D-major melody an octave below the model, notes of 0.5 s with 0.1 s rests."""
    n = int(seconds * frame_rate)
    rng = np.random.default_rng(0)
    midi = np.repeat(rng.choice(D_MAJOR - 12, size=n // 50 + 1), 50)[:n].astype(float)
    rest = (np.arange(n) % 50) >= 40
    loudness = np.where(rest, -90.0, rng.uniform(-45, -25, size=n))
    confidence = np.where(rest, 0.1, 0.95)
    return _features(
        torch.from_numpy(midi), torch.from_numpy(loudness), torch.from_numpy(confidence)
    )


def _stream(adjuster, features, sizes):
    state = adjuster.init_state(1)
    f0, loudness, start = [], [], 0
    for size in sizes:
        block = [
            features[k][None, start : start + size]
            for k in ("f0_hz", "f0_confidence", "loudness_db")
        ]
        out_f0, out_loudness, state = adjuster.forward_stream(*block, state)
        f0.append(out_f0)
        loudness.append(out_loudness)
        start += size
    return torch.cat(f0, 1)[0], torch.cat(loudness, 1)[0]


def test_live_adjustment_is_the_same_for_any_blocks_and_scripted():
    features = _live_input(5.0)
    adjuster = Adjuster(100, STATISTICS, Adjustments(autotune=0.5))
    one_by_one = _stream(adjuster, features, [1] * 500)
    blocks = _stream(torch.jit.script(adjuster), features, [7, 0, 100, 393])
    torch.testing.assert_close(blocks[0], one_by_one[0], rtol=0, atol=1e-9)
    torch.testing.assert_close(blocks[1], one_by_one[1], rtol=0, atol=1e-9)


def test_live_adjustment_starts_as_the_identity_and_converges_to_offline():
    features = _live_input(40.0)
    adjuster = Adjuster(100, STATISTICS, horizon_seconds=20.0)
    f0, loudness = _stream(adjuster, features, [10] * 400)
    first = slice(0, 30)  # the first notes: the prior says nothing to change yet
    torch.testing.assert_close(f0[first], features["f0_hz"][first], rtol=1e-6, atol=0)
    offline, notes, report = adjust_features(features, 100, STATISTICS)
    assert report.octave_shift == 1
    late = slice(3500, 4000)
    cents = 1200 * torch.log2(f0[late] / offline["f0_hz"][late]).abs()
    assert cents.max() < 1e-3  # the same register
    error = (loudness[late] - offline["loudness_db"][late])[notes[late]].abs()
    assert error.median() < 1.0


def test_live_register_changes_between_notes_only():
    features = _live_input(20.0)
    adjuster = Adjuster(100, STATISTICS)
    f0, _ = _stream(adjuster, features, [1] * 2000)
    shift = torch.round(hz_to_midi(f0) - hz_to_midi(features["f0_hz"]))
    changes = torch.nonzero(torch.diff(shift)).flatten() + 1
    assert len(changes) >= 1
    assert all(features["f0_confidence"][i] < 0.5 for i in changes.tolist())  # in rests
