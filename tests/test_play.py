"""`torchddsp play`: MIDI notes -> f0 and loudness curves -> the bundled violin, checked against
hand-computed note times, re-tracked pitch, glide and vibrato shapes, and bad files."""

import struct

import numpy as np
import pytest
import soundfile as sf
import torch

from torchddsp.cli import main
from torchddsp.config import config_to_dict, load_config
from torchddsp.data.midi import NOTE_OFF, NOTE_ON, TEMPO, MidiEvent, MidiFile, midi_bytes
from torchddsp.data.midi_line import TickNote, track_notes
from torchddsp.errors import UserError
from torchddsp.features import CONFIDENT, compute_features
from torchddsp.models import load_model
from torchddsp.models.autoencoder import render_in_blocks
from torchddsp.models.saved import FORMAT, VERSION
from torchddsp.models.voice import VoiceAutoencoder
from torchddsp.play import Performance, play_midi

TPQ = 480
# (tick, microseconds per quarter): 120 bpm, then 75 bpm from tick 1920, 150 bpm from 3840.
TEMPI = ((0, 500_000), (1920, 800_000), (3840, 400_000))


def _seconds(tick: int) -> float:
    """Hand-computed tempo map, independent of torchddsp.data.midi.tick_seconds."""
    seconds = 0.0
    for k, (start, tempo) in enumerate(TEMPI):
        end = TEMPI[k + 1][0] if k + 1 < len(TEMPI) else float("inf")
        seconds += max(0, min(tick, end) - start) * tempo / 1e6 / TPQ
    return seconds


def _midi(notes, channel=0, tempi=TEMPI) -> MidiFile:
    """notes: (on tick, off tick, pitch, velocity)."""
    events = [MidiEvent(tick, TEMPO, value=tempo) for tick, tempo in tempi]
    for on, off, pitch, velocity in notes:
        events += [MidiEvent(on, NOTE_ON, channel, pitch, velocity)]
        events += [MidiEvent(off, NOTE_OFF, channel, pitch, 0)]
    return MidiFile(TPQ, sorted(events, key=lambda e: e.tick))


def _format_1(tracks: list[list[MidiEvent]]) -> bytes:
    """A format-1 file: the MTrk chunk of each track written alone as format 0."""
    chunks = b"".join(midi_bytes(MidiFile(TPQ, events))[14:] for events in tracks)
    return b"MThd" + struct.pack(">IHHH", 6, 1, len(tracks), TPQ) + chunks


def _cents(f0_hz, pitch):
    return 1200.0 * np.log2(np.asarray(f0_hz) / (440.0 * 2.0 ** ((pitch - 69) / 12)))


@pytest.fixture(scope="module")
def violin(single_thread):
    return load_model("violin")


# Detached notes at off-grid times (tempo changes), a second apart or more: each release ends
# in silence before the next onset. Pitches span the violin's range.
DETACHED = [(300, 900, 67, 100), (1500, 1900, 72, 60), (2500, 3100, 64, 127), (4000, 4700, 79, 40)]


@pytest.fixture(scope="module")
def detached(violin):
    return play_midi(_midi(DETACHED), violin)


def test_onsets_in_the_loudness_curve_and_the_audio_are_within_one_frame(detached, violin):
    rate, frame_rate = violin.sample_rate, violin.frame_rate
    times = np.arange(len(detached.loudness_db)) / frame_rate
    floor = detached.loudness_db.min()
    midi_onsets = np.array([_seconds(on) for on, *_ in DETACHED])
    # The curve leads by a frame (LOUDNESS_LEAD_FRAMES): it rises in the frame before the onset.
    rising = np.flatnonzero(np.diff((detached.loudness_db > floor + 1.0).astype(int)) == 1) + 1
    curve_error = times[rising] - midi_onsets
    assert len(rising) == len(DETACHED)
    assert np.all((curve_error > -1 / frame_rate) & (curve_error <= 0))
    # f0 steps to each note at the first frame at or after its onset.
    steps = np.flatnonzero(np.diff(detached.f0_hz) != 0) + 1
    assert np.allclose(times[steps], np.ceil(midi_onsets[1:] * frame_rate) / frame_rate)
    # Audio: where the 2.5 ms RMS first comes within 40 dB of the note's median level.
    rms = np.sqrt(np.convolve(detached.audio.astype(np.float64) ** 2, np.ones(40) / 40, "same"))
    level_db = 20 * np.log10(rms + 1e-12)
    audio_error = []
    for onset, (_, off, *_) in zip(midi_onsets, DETACHED, strict=True):
        note = np.median(level_db[round((onset + 0.1) * rate) : round(_seconds(off) * rate)])
        window = level_db[round((onset - 0.1) * rate) : round((onset + 0.1) * rate)]
        assert window[: round(0.08 * rate)].max() < note - 50  # silent before the onset
        audio_error.append(np.argmax(window > note - 40) / rate - 0.1)
    print(
        f"onset error: loudness curve {np.round(1e3 * curve_error, 1)} ms, "
        f"audio {np.round(1e3 * np.array(audio_error), 1)} ms"
    )
    assert np.all(np.abs(audio_error) < 1 / frame_rate)


def test_sustained_pitch_retracked_within_10_cents(detached, violin):
    features = compute_features(
        torch.from_numpy(detached.audio)[None], violin.sample_rate, violin.frame_rate
    )
    f0, confidence = features["f0_hz"][0].numpy(), features["f0_confidence"][0].numpy()
    errors = []
    for on, off, pitch, _ in DETACHED:  # sustained: after the attack, before the release
        frames = slice(round((_seconds(on) + 0.1) * 100), round((_seconds(off) - 0.03) * 100))
        assert confidence[frames].min() >= CONFIDENT
        errors.append(np.abs(_cents(f0[frames], pitch)))
    errors = np.concatenate(errors)
    print(
        f"re-tracked pitch on {errors.size} sustained frames: median {np.median(errors):.2f}, "
        f"max {errors.max():.2f} cents"
    )
    assert errors.max() < 10.0


def test_velocity_picks_model_loudness_quantiles_and_release_decays(detached, violin):
    statistics = violin.statistics
    frame_rate = violin.frame_rate
    loudness = detached.loudness_db
    lead = 1 / frame_rate  # LOUDNESS_LEAD_FRAMES

    def quantile(level):
        return np.interp(level, statistics.loudness_quantile_levels, statistics.loudness_quantiles)

    for _, off, _, velocity in DETACHED:  # 1 -> quantile 0.1, 127 -> 0.95, linear in between
        held = loudness[round((_seconds(off) - 0.05) * frame_rate)]
        assert held == pytest.approx(quantile(0.1 + 0.85 * (velocity - 1) / 126), abs=1e-6)
    floor = min(statistics.loudness_quantiles) - 20.0  # the quietest note, less transfer's quiet
    assert loudness.min() == pytest.approx(floor) and floor == pytest.approx(-80.0, abs=0.1)
    for _, off, _, _ in DETACHED:  # linear in dB from the note's level to the floor in 0.3 s
        off = _seconds(off) - lead
        start, stop = int(np.ceil(off * frame_rate)), int(np.ceil((off + 0.3) * frame_rate))
        release = loudness[start - 1 : stop]
        level = loudness[start - 1]
        expected = level + (floor - level) * (np.arange(start, stop) / frame_rate - off) / 0.3
        np.testing.assert_allclose(release[1:], expected, atol=1e-6)
        assert np.all(np.diff(release) < 0) and loudness[stop] == pytest.approx(floor)


def test_legato_glides_monotonically_and_detached_notes_step(violin):
    # 60 -> 67 overlapping by 40 ms (legato), 67 -> 62 touching (detached), 62 -> 57 legato down.
    notes = [(0, 1000, 60, 90), (960, 1920, 67, 90), (1920, 2880, 62, 90), (2840, 3840, 57, 90)]
    performance = Performance(glide_s=0.08)
    result = play_midi(_midi(notes, tempi=((0, 500_000),)), violin, performance)
    frame_rate, f0 = violin.frame_rate, result.f0_hz
    midi = 69 + 12 * np.log2(f0 / 440.0)
    times = np.arange(len(f0)) / frame_rate

    def during(start, stop):
        return (times >= start - 1e-9) & (times < stop - 1e-9)

    for start, before, after in ((1.0, 60, 67), (2840 / 960, 62, 57)):  # the later onset
        glide = midi[during(start, start + 0.08)]
        steps = np.diff(np.concatenate([[before], glide, [after]]))
        assert np.all(np.sign(steps) * np.sign(after - before) >= 0)  # monotonic
        assert np.all((glide - before) * (after - glide) >= 0) and len(glide) == 8  # in between
        assert np.allclose(midi[during(start - 0.2, start)], before)
        assert np.allclose(midi[during(start + 0.08, start + 0.3)], after)
        level = result.loudness_db[during(start - 0.1, start + 0.1)]
        assert level.min() > level.max() - 1.0  # no new attack: same velocity, same level
    step = during(1.9, 2.2)  # detached: the old pitch, then the new one from the onset frame
    assert np.allclose(midi[step], np.where(times[step] < 2.0 - 1e-9, 67, 62))
    assert result.loudness_db[round(1.99 * frame_rate) : round(2.04 * frame_rate)].min() < -20
    assert [run.legato for run in result.line] == [False, True, False, True]


def test_vibrato_rate_and_depth(violin):
    performance = Performance(vibrato_hz=5.5, vibrato_cents=40.0, vibrato_delay_s=0.3)
    result = play_midi(
        _midi([(0, 3 * TPQ * 2, 69, 100)], tempi=((0, 500_000),)), violin, performance
    )
    frame_rate = violin.frame_rate
    cents = _cents(result.f0_hz, 69)
    delay, full = round(0.3 * frame_rate), round(0.55 * frame_rate)  # 0.25 s fade-in
    assert np.allclose(cents[:delay], 0.0, atol=1e-9)
    sustained = cents[full : 3 * frame_rate]
    k = np.flatnonzero(np.diff(np.signbit(sustained)))
    crossings = k + sustained[k] / (sustained[k] - sustained[k + 1])  # in frames, interpolated
    rate = (len(crossings) - 1) / 2 / ((crossings[-1] - crossings[0]) / frame_rate)
    spectrum = np.abs(np.fft.rfft(sustained * np.hanning(len(sustained)), 8192))
    peak_hz = np.argmax(spectrum) * frame_rate / 8192
    print(
        f"vibrato: {rate:.2f} Hz by zero crossings, {peak_hz:.2f} Hz by FFT, "
        f"depth {np.abs(sustained).max():.1f} cents"
    )
    assert rate == pytest.approx(5.5, abs=0.05) and peak_hz == pytest.approx(5.5, abs=0.05)
    assert np.abs(sustained).max() == pytest.approx(40.0, abs=1.0)
    assert np.all(np.abs(cents[delay:full]) <= 40.0 * (np.arange(delay, full) - delay) / 25 + 1e-9)
    tracked = compute_features(torch.from_numpy(result.audio)[None], violin.sample_rate, frame_rate)
    heard = _cents(tracked["f0_hz"][0].numpy()[full : 3 * frame_rate], 69)
    spectrum = np.abs(np.fft.rfft((heard - heard.mean()) * np.hanning(len(heard)), 8192))
    heard_hz = np.argmax(spectrum) * frame_rate / 8192
    print(f"re-tracked vibrato: {heard_hz:.2f} Hz, depth {np.abs(heard).max():.1f} cents")
    assert heard_hz == pytest.approx(5.5, abs=0.05)
    assert np.abs(heard).max() == pytest.approx(40, abs=6)  # YIN's window rounds the peaks


def test_highest_note_rule_and_part_selection(violin):
    # Channel 1: a C major chord rolled over 10 ms, then G let go of while C and E are held,
    # then a low A struck under the held E; channel 2 a higher line; channel 10 drums higher.
    chord = [(0, 960, 60, 80), (5, 1440, 64, 80), (10, 960, 67, 80), (1200, 1920, 57, 80)]
    events = _midi(chord).events
    events += _midi([(0, 1920, 84, 80)], channel=1).events
    events += _midi([(0, 1920, 88, 80)], channel=9).events
    midi = MidiFile(TPQ, sorted(events, key=lambda e: e.tick))
    line = play_midi(midi, violin, channel=1).line
    assert [(run.pitch, run.legato) for run in line] == [(67, False), (64, True), (57, True)]
    assert [run.start_s for run in line] == [0.0, _seconds(960), _seconds(1440)]
    assert [run.pitch for run in play_midi(midi, violin).line] == [84]  # drums never play
    with pytest.raises(UserError, match="channel 10 holds General MIDI drums"):
        play_midi(midi, violin, channel=10)


def test_a_key_struck_again_ends_its_note_and_a_hung_note_ends_with_the_song():
    events = [
        MidiEvent(0, NOTE_ON, 0, 60, 90),
        MidiEvent(480, NOTE_ON, 0, 60, 70),  # again, before its note-off
        MidiEvent(480, NOTE_OFF, 0, 60),  # the first note's
        MidiEvent(960, NOTE_OFF, 0, 60),
        MidiEvent(960, NOTE_ON, 3, 62, 50),  # never let go of
    ]
    assert track_notes(events, 2, end_tick=1200) == [
        TickNote(0, 480, 60, 90, 0, 2),
        TickNote(480, 960, 60, 70, 0, 2),
        TickNote(960, 1200, 62, 50, 3, 2),
    ]


def test_track_selection_in_a_format_1_file(tmp_path, violin):
    tempo = [MidiEvent(0, TEMPO, value=400_000)]
    low = _midi([(0, 480, 55, 80)], tempi=()).events
    high = _midi([(0, 480, 76, 80)], channel=1, tempi=()).events
    path = tmp_path / "two.mid"
    path.write_bytes(_format_1([tempo, low, high]))
    assert [run.pitch for run in play_midi(path, violin, track=2).line] == [55]
    result = play_midi(path, violin, track=3)
    assert [run.pitch for run in result.line] == [76]
    assert result.line[0].end_s == pytest.approx(0.4)
    with pytest.raises(
        UserError, match="track 1 has no melodic notes; they are on tracks 2, 3, channels 1, 2"
    ):
        play_midi(path, violin, track=1)
    with pytest.raises(UserError, match="no track 4; it has tracks 1..3"):
        play_midi(path, violin, track=4)


def test_output_is_the_model_rendering_its_controls(detached, violin):
    f0, loudness = (
        torch.from_numpy(x).float()[None] for x in (detached.f0_hz, detached.loudness_db)
    )
    whole = render_in_blocks(violin.model, f0, loudness, block_frames=len(detached.f0_hz))
    assert len(detached.audio) == len(detached.f0_hz) * violin.hop_size
    np.testing.assert_allclose(detached.audio, whole[0, : len(detached.audio)].numpy(), atol=1e-5)


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "the file is empty"),
        (midi_bytes(_midi([])), "no notes to play"),
        (midi_bytes(_midi([(0, 480, 38, 100)], channel=9)), "only drum notes"),
        (
            b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x09\x00\x90\x40",
            "runs past the end",
        ),
        (bytes(range(256)), "not a readable MIDI file"),
    ],
    ids=["empty", "no-notes", "drums-only", "truncated", "corrupt"],
)
def test_bad_midi_is_one_line(tmp_path, violin, content, message):
    path = tmp_path / "bad.mid"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message) as caught:
        play_midi(path, violin)
    assert "\n" not in str(caught.value) and str(path) in str(caught.value)


def test_play_command_writes_audio_and_refuses_voice_models(tmp_path, capsys, single_thread):
    song, output = tmp_path / "song.mid", tmp_path / "song.wav"
    song.write_bytes(
        midi_bytes(_midi([(0, 480, 69, 100), (480, 960, 72, 100)], tempi=((0, 500_000),)))
    )
    assert main(["play", str(song), "--model", "violin", "-o", str(output)]) == 0
    audio, rate = sf.read(output)
    assert rate == 16000 and len(audio) == round((_seconds(960) + 0.3) * 100) * 160
    assert "2 notes" in capsys.readouterr().out
    voice = tmp_path / "voice.pt"
    _save_voice_model(voice)
    assert main(["play", str(song), "--model", str(voice), "-o", str(tmp_path / "v.wav")]) == 2
    err = capsys.readouterr().err
    assert "is a voice model" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "v.wav").exists()
    with pytest.raises(SystemExit) as exited:
        main(["play", str(song), "--model", "violin", "--vibrato-depth", "500"])
    err = capsys.readouterr().err
    assert exited.value.code == 2 and len(err.strip().splitlines()) == 1
    assert "argument --vibrato-depth: must be within 0 .. 200, found 500" in err


def _save_voice_model(path) -> None:
    config = load_config(
        "voice_fast",
        [
            "model.mlp_units=16",
            "model.gru_units=16",
            "model.encoder_gru_units=8",
            "model.n_mfcc=13",
        ],
    )
    model = VoiceAutoencoder(config.model, config.data.sample_rate, config.data.frame_rate)
    dataset = {"settings": {"f0_method": "yin"}, "statistics": None}
    contents = {"format": FORMAT, "version": VERSION, "torchddsp_version": "test", "step": 0}
    contents |= {"model": model.state_dict(), "config": config_to_dict(config), "dataset": dataset}
    torch.save(contents, path)
