"""SoundFont rendering: MIDI files, melodies, FluidSynth audio and its ground truth."""

import shutil

import librosa
import numpy as np
import pytest
import soundfile as sf

from torchddsp.cli import main
from torchddsp.data import soundfont as sfont
from torchddsp.data.midi import (
    CONTROL_CHANGE,
    NOTE_OFF,
    NOTE_ON,
    PITCH_BEND,
    PROGRAM_CHANGE,
    TEMPO,
    MidiEvent,
    MidiFile,
    bend_range_events,
    midi_bytes,
    parse_midi,
    read_midi,
    write_midi,
)
from torchddsp.errors import UserError

needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not sfont.DEFAULT_SOUNDFONT.is_file(),
    reason="needs fluidsynth and FluidR3_GM.sf2: apt-get install fluidsynth fluid-soundfont-gm",
)

PIANO, FLUTE = 0, 73
TPQ = 480  # At 120 bpm a tick is 1/960 s; after the tempo change to 60 bpm, 1/480 s.
PIANO_ONSETS = (240, 715, 1190)  # ticks at 120 bpm: 0.25, 0.745, 1.24 s (off the block grid)
TEMPO_CHANGE_TICK = 1680  # 1.75 s
FLUTE_ON, FLUTE_OFF = 1800, 2880  # 2.0 s to 4.25 s at 60 bpm


def _test_midi() -> MidiFile:
    """Piano notes at 120 bpm, then a tempo change and a flute note bent +2 semitones."""
    events = [
        MidiEvent(0, TEMPO, value=500_000),
        MidiEvent(0, PROGRAM_CHANGE, 0, PIANO),
        MidiEvent(0, PROGRAM_CHANGE, 1, FLUTE),
        *bend_range_events(0, 1, 4),
        MidiEvent(0, CONTROL_CHANGE, 1, 7, 110),
        MidiEvent(0, CONTROL_CHANGE, 1, 11, 90),
    ]
    for k, tick in enumerate(PIANO_ONSETS):
        events += [
            MidiEvent(tick, NOTE_ON, 0, 60 + 4 * k, 100),
            MidiEvent(tick + 200, NOTE_OFF, 0, 60 + 4 * k),
        ]
    events += [
        MidiEvent(TEMPO_CHANGE_TICK, TEMPO, value=1_000_000),
        MidiEvent(FLUTE_ON - 10, PITCH_BEND, 1, value=4096),  # +2 of 4 semitones
        MidiEvent(FLUTE_ON, NOTE_ON, 1, 72, 100),
        MidiEvent(FLUTE_OFF, NOTE_OFF, 1, 72, 64),
    ]
    return MidiFile(TPQ, events, end_tick=FLUTE_OFF + 100)


def _fake_soundfont(path):
    """A file with a SoundFont header and nothing FluidSynth can load."""
    path.write_bytes(b"RIFF" + (1000).to_bytes(4, "little") + b"sfbk" + bytes(1000))
    return path


def _cents(f0_hz, truth_hz):
    return 1200 * np.log2(f0_hz / truth_hz)


# ---------------------------------------------------------------- MIDI files


def test_midi_bytes_round_trip_through_the_reader():
    midi = _test_midi()
    back = parse_midi(midi_bytes(midi))
    assert back == midi


def test_reader_handles_running_status_and_note_on_velocity_zero():
    track = bytes([0x00, 0x90, 60, 100, 0x60, 62, 90, 0x60, 60, 0, 0x00, 0xFF, 0x2F, 0x00])
    data = (
        b"MThd" + bytes([0, 0, 0, 6, 0, 1, 0, 1, 0, 96]) + b"MTrk" + len(track).to_bytes(4, "big")
    )
    midi = parse_midi(data + track)
    assert midi.events == [
        MidiEvent(0, NOTE_ON, 0, 60, 100),
        MidiEvent(96, NOTE_ON, 0, 62, 90),
        MidiEvent(192, NOTE_OFF, 0, 60, 0),
    ]
    assert midi.ticks_per_quarter == 96 and midi.end_tick == 192


def test_corrupt_midi_file_is_a_user_error(tmp_path):
    path = tmp_path / "bad.mid"
    path.write_bytes(
        b"MThd\x00\x00\x00\x06\x00\x00\x00\x01\x01\xe0MTrk\x00\x00\x00\x09\x00\x90\x3c"
    )
    with pytest.raises(UserError, match="not a readable MIDI file"):
        read_midi(path)


@needs_fluidsynth
def test_written_midi_renders_with_aligned_onsets_and_bend_range(tmp_path):
    """FluidSynth plays our file: onsets (across a tempo change) and RPN bend range match."""
    write_midi(tmp_path / "test.mid", _test_midi())
    assert read_midi(tmp_path / "test.mid") == _test_midi()
    rate, frame_rate = 22050, 225  # Not the default rates: any that divide.
    done = sfont.render(tmp_path / "test.mid", tmp_path / "test.wav", rate, frame_rate=frame_rate)
    audio, file_rate = sf.read(done.audio_path)
    truth = np.load(done.truth_path)
    hop = rate // frame_rate
    assert file_rate == rate and len(truth["f0_hz"]) == len(audio) // hop
    onsets = np.flatnonzero(np.diff(truth["note"], prepend=0) > 0) * hop / rate
    assert len(onsets) == len(PIANO_ONSETS) + 1
    for onset in onsets:
        window = np.abs(audio[int((onset - 0.02) * rate) : int((onset + 0.2) * rate)])
        heard = onset - 0.02 + np.argmax(window > 0.05 * window.max()) / rate
        assert abs(heard - onset) < 0.010
    sustained = truth["sustained"] & (truth["note"] == 72)
    assert np.allclose(truth["f0_hz"][sustained], librosa.midi_to_hz(74))
    held = audio[int(2.5 * rate) : int(4.0 * rate)] * np.hanning(int(1.5 * rate))
    spectrum = np.abs(np.fft.rfft(held, 8 * len(held)))
    freqs = np.fft.rfftfreq(8 * len(held), 1 / rate)
    near = (freqs > 500) & (freqs < 700)
    assert abs(_cents(freqs[near][np.argmax(spectrum[near])], librosa.midi_to_hz(74))) < 20


def test_ground_truth_follows_the_latest_note_bend_range_and_controllers():
    events = [  # 120 bpm, 480 ticks per quarter: 960 ticks per second.
        *bend_range_events(0, 0, 7),
        MidiEvent(0, CONTROL_CHANGE, 0, 7, 127),
        MidiEvent(0, CONTROL_CHANGE, 0, 11, 64),
        MidiEvent(96, NOTE_ON, 0, 60, 127),  # 0.1 s
        MidiEvent(480, NOTE_ON, 0, 67, 127),  # 0.5 s, overlapping legato
        MidiEvent(500, NOTE_OFF, 0, 60),
        MidiEvent(720, PITCH_BEND, 0, value=-4096),  # 0.75 s: -3.5 semitones
        MidiEvent(960, NOTE_OFF, 0, 67),  # 1 s
    ]
    truth = sfont.ground_truth(MidiFile(TPQ, events), 16000 * 2, 16000, frame_rate=100)
    assert len(truth["note"]) == 200
    assert list(truth["note"][[5, 10, 49, 50, 60, 99, 100]]) == [0, 60, 60, 67, 67, 67, 0]
    assert truth["f0_hz"][60] == pytest.approx(librosa.midi_to_hz(67))
    assert truth["f0_hz"][80] == pytest.approx(librosa.midi_to_hz(63.5))
    assert truth["f0_hz"][100] == 0
    sustained = np.flatnonzero(truth["sustained"])
    assert sustained[0] == 16 and 50 not in sustained and 56 in sustained and sustained[-1] == 99
    assert truth["loudness_expression"][60] == pytest.approx(40 * np.log10(64 / 127))
    assert truth["loudness_expression"][150] == sfont.SILENCE_DB


# ---------------------------------------------------------------- melodies


@pytest.mark.parametrize("name", sorted(sfont.INSTRUMENTS))
def test_melodies_are_playable_phrased_and_articulated(name):
    preset = sfont.INSTRUMENTS[name]
    melody = sfont.generate_melody(name, 40, seed=3)
    pitches = [n.pitch for n in melody.notes]
    assert preset.low <= min(pitches) and max(pitches) <= preset.high
    starts, ends = (np.array([getattr(n, k) for n in melody.notes]) for k in ("start_s", "end_s"))
    gaps = starts[1:] - ends[:-1]
    assert (gaps >= 0.25).any(), "no rests (breaths)"
    assert (gaps <= 0).any(), "no legato"
    assert ((gaps > 0) & (gaps < 0.25)).any(), "no detached notes"
    assert gaps.min() >= -0.04, "more than a legato overlap: not monophonic"
    assert melody.notes[-1].end_s <= melody.seconds - 0.5
    assert len(set(n.velocity for n in melody.notes)) > 3
    assert len(set(value for _, value in melody.expression)) > 10


def test_melodies_are_deterministic_per_seed():
    assert sfont.generate_melody("violin", 20, 5) == sfont.generate_melody("violin", 20, 5)
    assert sfont.generate_melody("violin", 20, 5) != sfont.generate_melody("violin", 20, 6)


@pytest.mark.parametrize("name", ["violin", "clarinet"])
def test_vibrato_only_where_idiomatic_and_on_long_notes(name):
    preset = sfont.INSTRUMENTS[name]
    melodies = [sfont.generate_melody(name, 40, seed) for seed in range(3)]
    vibrato = [n for m in melodies for n in m.notes if n.vibrato_cents > 0]
    assert bool(vibrato) == preset.vibrato
    for note in vibrato:
        assert 5 <= note.vibrato_hz <= 6 and 20 <= note.vibrato_cents <= 40
        assert note.vibrato_delay_s >= 0.12 and note.end_s - note.start_s >= sfont.VIBRATO_MIN_S
    for melody in melodies:  # The MIDI bends only inside glides where there is no vibrato.
        midi = sfont.melody_to_midi(melody)
        truth = sfont.ground_truth(midi, int(melody.seconds * 16000), 16000, 250)
        times = np.arange(len(truth["note"])) / 250
        in_glide = np.zeros(len(times), dtype=bool)
        for start, end in melody.glide_spans():
            in_glide |= (times >= start) & (times < end + 0.01)
        bend = truth["note"] > 0
        deviation = _cents(truth["f0_hz"][bend], librosa.midi_to_hz(truth["note"][bend]))
        steady = np.abs(deviation[~in_glide[bend]])
        assert steady.max() <= (40.05 if preset.vibrato else 0.01)
        assert (steady > 15).any() == preset.vibrato


# ---------------------------------------------------------------- rendering


@pytest.fixture(scope="module")
def violin_render(tmp_path_factory):
    melody = sfont.generate_melody("violin", 4, seed=2)
    return melody, sfont.render(melody, tmp_path_factory.mktemp("violin") / "violin.wav")


@needs_fluidsynth
def test_render_writes_audio_and_ground_truth(violin_render):
    melody, done = violin_render
    audio, rate = sf.read(done.audio_path)
    truth = np.load(done.truth_path)
    assert rate == 16000 and len(audio) == 4 * rate and 0.01 < done.peak < 1
    assert int(truth["sample_rate"]) == 16000 and int(truth["frame_rate"]) == 250
    assert {len(truth[k]) for k in ("f0_hz", "note", "sustained", "loudness_expression")} == {1000}
    assert truth["sustained"].dtype == bool and truth["sustained"].any()
    silent = truth["note"] == 0
    assert silent.any() and (truth["f0_hz"][silent] == 0).all()
    assert not truth["sustained"][silent].any()
    assert (truth["loudness_expression"][~silent] > -60).all()
    assert read_midi(done.midi_path) == sfont.melody_to_midi(melody)
    assert sorted(p.name for p in done.audio_path.parent.iterdir()) == [
        "violin.mid",
        "violin.npz",
        "violin.wav",
    ]


@needs_fluidsynth
def test_same_seed_renders_identical_audio(violin_render, tmp_path):
    _, first = violin_render
    again = sfont.render(sfont.generate_melody("violin", 4, seed=2), tmp_path / "again.wav")
    assert again.audio_path.read_bytes() == first.audio_path.read_bytes()
    np.testing.assert_array_equal(
        np.load(again.truth_path)["f0_hz"], np.load(first.truth_path)["f0_hz"]
    )


@needs_fluidsynth
def test_audio_pitch_matches_ground_truth_on_sustained_frames(violin_render):
    _, done = violin_render
    audio, rate = sf.read(done.audio_path)
    truth = np.load(done.truth_path)
    f0 = librosa.yin(audio, fmin=150, fmax=3000, sr=rate, frame_length=1024, hop_length=64)
    sustained = truth["sustained"]
    assert (
        np.median(np.abs(_cents(f0[: len(sustained)][sustained], truth["f0_hz"][sustained]))) < 25
    )


# ---------------------------------------------------------------- failures


@needs_fluidsynth
def test_fluidsynth_failure_leaves_no_file(tmp_path):
    out = tmp_path / "out"
    melody = sfont.generate_melody("flute", 2, seed=0)
    with pytest.raises(UserError, match="fluidsynth failed") as failure:
        sfont.render(melody, out / "a.wav", soundfont=_fake_soundfont(tmp_path / "fake.sf2"))
    assert "\n" not in str(failure.value)
    assert not out.exists() or not any(out.iterdir())


def test_corrupt_midi_leaves_no_file(tmp_path):
    (tmp_path / "bad.mid").write_bytes(b"MThd junk")
    with pytest.raises(UserError, match="bad.mid: not a readable MIDI file"):
        sfont.render(
            tmp_path / "bad.mid", tmp_path / "a.wav", soundfont=_fake_soundfont(tmp_path / "f.sf2")
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mid", "f.sf2"]


def test_missing_fluidsynth_is_a_one_line_user_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    melody = sfont.generate_melody("flute", 2, seed=0)
    with pytest.raises(UserError) as failure:
        sfont.render(melody, tmp_path / "a.wav", soundfont=_fake_soundfont(tmp_path / "f.sf2"))
    expected = "fluidsynth not found: install it (Debian/Ubuntu: apt-get install fluidsynth)"
    assert str(failure.value) == expected
    assert not (tmp_path / "a.wav").exists()


def test_missing_or_bogus_soundfont_is_a_user_error(tmp_path):
    melody = sfont.generate_melody("flute", 2, seed=0)
    with pytest.raises(UserError) as failure:
        sfont.render(melody, tmp_path / "a.wav", soundfont=tmp_path / "none.sf2")
    message = str(failure.value)
    assert "none.sf2" in message and "apt-get install fluid-soundfont-gm" in message
    assert "--soundfont PATH" in message and "\n" not in message
    (tmp_path / "text.sf2").write_text("not a soundfont")
    with pytest.raises(UserError, match="text.sf2: not a SoundFont"):
        sfont.render(melody, tmp_path / "a.wav", soundfont=tmp_path / "text.sf2")


# ---------------------------------------------------------------- command line


@needs_fluidsynth
def test_cli_renders_a_dataset_resumably_and_a_midi_file(tmp_path, capsys):
    out = tmp_path / "flute"
    args = ["render", "--instrument", "flute", "--minutes", "0.05", "--out", str(out)]
    assert main(args) == 0
    assert "1 clips" in capsys.readouterr().out
    manifest = (out / "manifest.json").read_text()
    assert '"flute_0000.wav"' in manifest and sf.info(str(out / "flute_0000.wav")).duration == 3
    assert main(args) == 0
    assert "0 rendered now" in capsys.readouterr().out
    assert main([*args, "--seed", "1"]) == 2
    assert "other settings (seed 0, not 1)" in capsys.readouterr().err
    write_midi(tmp_path / "t.mid", _test_midi())
    assert (
        main(
            [
                "render",
                "--midi",
                str(tmp_path / "t.mid"),
                "--program",
                "40",
                "-o",
                str(tmp_path / "t.wav"),
            ]
        )
        == 0
    )
    assert "t.npz" in capsys.readouterr().out and (tmp_path / "t.wav").is_file()


@pytest.mark.parametrize(
    "args, message",
    [
        (["--midi", "missing.mid", "-o", "x.wav"], "missing.mid: no such MIDI file"),
        (["--instrument", "banjo", "-o", "x"], "unknown instrument 'banjo'"),
        (["--instrument", "violin", "--program", "3", "-o", "x"], "--program applies to --midi"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _fake_soundfont(tmp_path / "f.sf2")
    assert main(["render", *args, "--soundfont", "f.sf2"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
