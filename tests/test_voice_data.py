"""Common Voice style data: TSV/CSV parsing, labels, filtering, split, clips, Festival."""

import random
import shutil
from dataclasses import replace

import numpy as np
import pytest
import soundfile as sf

from torchddsp.data.audio import load_audio
from torchddsp.errors import UserError
from torchddsp.voice import commonvoice as cv
from torchddsp.voice import festival
from torchddsp.voice.festival_sentences import SENTENCES

# Release 7-ish header (accent, no sentence_id/variant) and the one from release 17 on.
OLD_COLUMNS = (
    "client_id",
    "path",
    "sentence",
    "up_votes",
    "down_votes",
    "age",
    "gender",
    "accent",
    "locale",
    "segment",
)
AGES = {
    "teens": 0.15,
    "twenties": 0.25,
    "thirties": 0.35,
    "fourties": 0.45,
    "forties": 0.45,
    "fifties": 0.55,
    "sixties": 0.65,
    "seventies": 0.75,
    "eighties": 0.85,
    "nineties": 0.95,
}


def _row(speaker, name, gender="male", age="twenties", up=2, down=0, sentence="Hi."):
    return {
        "client_id": speaker,
        "path": name,
        "sentence": sentence,
        "up_votes": str(up),
        "down_votes": str(down),
        "age": age,
        "gender": gender,
    }


def _release(tmp_path, rows, columns=cv.COMMON_VOICE_COLUMNS, missing=(), clips=True):
    """A Common Voice language folder: validated.tsv and empty clip files (not read)."""
    folder = tmp_path / "cv"
    (folder / "clips").mkdir(parents=True)
    lines = ["\t".join(columns)]
    lines += ["\t".join(row.get(c, "") for c in columns) for row in rows]
    (folder / "validated.tsv").write_text("\n".join(lines) + "\n")
    for row in rows:
        if row["path"] not in missing:
            (folder / "clips" / row["path"]).touch()
    if not clips:
        shutil.rmtree(folder / "clips")
    return folder


def _one_line_error(call, *match):
    with pytest.raises(UserError) as caught:
        call()
    message = str(caught.value)
    assert "\n" not in message
    for text in match:
        assert text in message, message
    return message


# ---------------------------------------------------------------- labels


def test_gender_words_of_old_and_new_releases():
    assert cv.parse_gender("male") == cv.parse_gender("male_masculine") == 0.0
    assert cv.parse_gender("female") == cv.parse_gender(" Female_Feminine ") == 1.0
    for word in ("other", "non-binary", "transgender", "intersex", "do_not_wish_to_say", ""):
        assert cv.parse_gender(word) is None


def test_every_age_bucket_maps_to_its_midpoint():
    for word, value in AGES.items():
        assert cv.parse_age(word) == pytest.approx(value)
    assert cv.parse_age("child") < cv.parse_age("teens") < cv.parse_age("adult")
    assert cv.parse_age("") is None


def test_numbers_are_scalars_and_must_lie_in_unit_range():
    assert cv.parse_gender("0.3") == 0.3 and cv.parse_age("1") == 1.0
    _one_line_error(lambda: cv.parse_age("30"), "outside [0, 1]", "years / 100")
    _one_line_error(lambda: cv.parse_gender("nan"), "outside [0, 1]")


def test_unknown_word_names_it_and_the_accepted_ones():
    _one_line_error(lambda: cv.parse_gender("robot"), "'robot'", "male_masculine", "intersex")
    _one_line_error(lambda: cv.parse_age("old"), "'old'", "fourties", "nineties")


def test_vocabularies_are_exposed_for_the_conversion_options():
    assert {"male", "female", "male_masculine", "do_not_wish_to_say"} <= set(cv.GENDER_VALUES)
    assert set(AGES) <= set(cv.AGE_VALUES)


# ---------------------------------------------------------------- TSV


@pytest.mark.parametrize("columns", [OLD_COLUMNS, cv.COMMON_VOICE_COLUMNS])
def test_tsv_of_old_and_new_releases_parses(tmp_path, columns):
    new_words = ["male_masculine", "female_feminine", "non-binary"]
    genders = ["male", "female", "other"] if columns is OLD_COLUMNS else new_words
    rows = [
        _row(f"s{i}", f"c{i}.mp3", gender, age, sentence='He said "hi".')
        for i, (gender, age) in enumerate(zip(genders * 4, list(AGES) + ["", ""], strict=True))
    ]
    clips = cv.read_common_voice(_release(tmp_path, rows, columns), val_fraction=0)
    assert [c.path.name for c in clips] == [r["path"] for r in rows]
    assert [c.gender for c in clips] == [0.0, 1.0, None] * 4
    assert [c.age for c in clips] == pytest.approx(list(AGES.values()) + [None, None])
    assert clips[0].sentence == 'He said "hi".'  # unquoted, quotes kept
    assert clips[0].labelled and not clips[2].labelled
    assert {c.split for c in clips} == {"train"}


def test_down_voted_rows_are_dropped(tmp_path):
    votes = [(2, 0), (3, 1), (2, 2), (1, 2), (0, 0), (1, 1)]
    rows = [_row("a", f"c{i}.mp3", up=up, down=down) for i, (up, down) in enumerate(votes)]
    clips = cv.read_common_voice(_release(tmp_path, rows), val_fraction=0)
    assert [c.path.name for c in clips] == ["c0.mp3", "c1.mp3", "c4.mp3"]


def test_unlabelled_rows_are_kept_and_marked(tmp_path):
    rows = [_row("a", "c0.mp3"), _row("a", "c1.mp3", gender=""), _row("a", "c2.mp3", age="")]
    clips = cv.read_common_voice(_release(tmp_path, rows), val_fraction=0)
    assert [c.labelled for c in clips] == [True, False, False]
    assert clips[1].gender is None and clips[1].age == 0.25
    assert clips[2].age is None and clips[2].gender == 0.0


def test_per_speaker_cap_is_seeded_and_independent_of_row_order(tmp_path):
    rows = [_row("a", f"a{i}.mp3") for i in range(12)] + [_row("b", "b0.mp3")]
    folder = _release(tmp_path, rows)

    def kept(seed):
        clips = cv.read_common_voice(folder, max_clips_per_speaker=4, val_fraction=0, seed=seed)
        return {c.path.name for c in clips}

    assert len(kept(0)) == 5 and "b0.mp3" in kept(0)
    assert kept(0) == kept(0) and kept(0) != kept(1)
    shuffled = [replace(c, split="") for c in cv.read_common_voice(folder, None, val_fraction=0)]
    random.Random(3).shuffle(shuffled)
    assert {c.path.name for c in cv.process_tsv(shuffled, 4, val_fraction=0)} == kept(0)


def test_split_is_by_speaker_seeded_and_holds_out_both_genders(tmp_path):
    genders = ["male"] * 12 + ["female"] * 6 + [""] * 2
    rows = [_row(f"s{k}", f"s{k}_{i}.mp3", g) for k, g in enumerate(genders) for i in range(3)]
    folder = _release(tmp_path, rows)
    clips = cv.read_common_voice(folder, val_fraction=0.2, seed=0)
    val = {c.speaker for c in clips if c.split == "val"}
    train = {c.speaker for c in clips if c.split == "train"}
    assert not val & train and len(val | train) == 20
    val_genders = {c.gender for c in clips if c.split == "val"}
    assert {0.0, 1.0} <= val_genders
    assert len(val) == 2 + 1 + 1  # round(0.2 * 12), round(0.2 * 6), at least one of 2
    again = cv.read_common_voice(folder, val_fraction=0.2, seed=0)
    assert [c.split for c in again] == [c.split for c in clips]
    other = cv.read_common_voice(folder, val_fraction=0.2, seed=1)
    assert {c.speaker for c in other if c.split == "val"} != val


def test_one_speaker_cannot_be_split(tmp_path):
    folder = _release(tmp_path, [_row("a", "c0.mp3"), _row("a", "c1.mp3")])
    _one_line_error(lambda: cv.read_common_voice(folder), "one speaker", "val_fraction=0")
    assert {c.split for c in cv.read_common_voice(folder, val_fraction=0)} == {"train"}


# ---------------------------------------------------------------- bad input


def test_tsv_without_the_needed_columns(tmp_path):
    columns = ("path", "sentence", "age")
    folder = _release(tmp_path, [_row("a", "c0.mp3")], columns)
    _one_line_error(lambda: cv.read_common_voice(folder), "client_id, gender", "first line")


def test_missing_clips_are_skipped_and_all_missing_is_an_error(tmp_path, capsys):
    rows = [_row("a", "c0.mp3"), _row("b", "c1.mp3"), _row("b", "c2.mp3")]
    clips = cv.read_common_voice(_release(tmp_path / "some", rows, missing={"c1.mp3"}))
    assert [c.path.name for c in clips] == ["c0.mp3", "c2.mp3"]
    assert "1 of the 3 clips" in capsys.readouterr().err
    folder = _release(tmp_path / "none", rows, missing={"c0.mp3", "c1.mp3", "c2.mp3"})
    _one_line_error(lambda: cv.read_common_voice(folder), "none of the 3 clips", "put the audio")
    folder = _release(tmp_path / "nodir", rows, clips=False)
    _one_line_error(lambda: cv.read_common_voice(folder), "no clips/ folder", "extract")
    _one_line_error(lambda: cv.read_common_voice(tmp_path), "no validated.tsv", "CSV")


def test_unknown_gender_word_in_a_tsv_names_file_and_line(tmp_path):
    folder = _release(tmp_path, [_row("a", "c0.mp3"), _row("a", "c1.mp3", gender="robot")])
    _one_line_error(lambda: cv.read_common_voice(folder), "validated.tsv:3", "'robot'", "female")


# ---------------------------------------------------------------- audio and CSV


def _tone(path, hz=220.0, rate=48000, seconds=0.5):
    t = np.arange(int(rate * seconds)) / rate
    sf.write(path, (0.5 * np.sin(2 * np.pi * hz * t)).astype(np.float32), rate)
    return t


def test_mp3_clips_are_read(tmp_path):
    folder = _release(tmp_path, [_row("a", "c0.mp3")])
    t = _tone(folder / "clips" / "c0.mp3")
    (clip,) = cv.read_common_voice(folder, val_fraction=0)
    audio, rate = load_audio(clip.path)
    assert rate == 48000 and audio.shape == t.shape  # libsndfile trims the MP3 padding
    spectrum = np.abs(np.fft.rfft(audio))
    assert np.fft.rfftfreq(len(audio), 1 / rate)[spectrum.argmax()] == pytest.approx(220, abs=2)
    at_16k, rate_16k = load_audio(clip.path, 16000)
    assert rate_16k == 16000 and len(at_16k) == len(t) // 3


def test_csv_of_path_gender_age(tmp_path):
    (tmp_path / "audio").mkdir()
    for name in ("a.wav", "b.wav", "c.wav", "d.wav"):
        _tone(tmp_path / "audio" / name, seconds=0.1)
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text(
        "path,gender,age,speaker\n"
        "audio/a.wav,female,thirties,x\naudio/b.wav,0.25,0.6,x\n"
        "audio/c.wav,,,y\naudio/d.wav,male,child,y\n"
    )
    clips = cv.read_voice_clips(csv_path, seed=0)
    expected = [(1.0, 0.35), (0.25, 0.6), (None, None), (0.0, 0.08)]
    assert [(c.gender, c.age) for c in clips] == expected
    assert clips[0].split == clips[1].split != clips[2].split == clips[3].split
    csv_path.write_text("path,gender,age\naudio/a.wav,female,30\n")
    _one_line_error(lambda: cv.read_voice_clips(csv_path, val_fraction=0), "labels.csv:2", "30")


def test_csv_without_speakers_splits_by_file(tmp_path):
    for name in ("a.wav", "b.wav"):
        _tone(tmp_path / name, seconds=0.1)
    (tmp_path / "labels.csv").write_text("path,gender,age\na.wav,male,teens\nb.wav,male,teens\n")
    clips = cv.read_labelled_csv(tmp_path / "labels.csv", val_fraction=0.5)
    assert sorted(c.split for c in clips) == ["train", "val"]


# ---------------------------------------------------------------- Festival


def test_festival_voices_carry_valid_labels_and_distinct_ids():
    for voice in festival.VOICES:
        assert cv.parse_gender(voice.gender) is not None
        assert cv.parse_age(voice.age) is not None
        assert voice.locale in SENTENCES and voice.locale in festival.TEXT_ENCODINGS
        assert len(voice.client_id) == 128
    for field in ("name", "number", "client_id"):
        assert len({getattr(v, field) for v in festival.VOICES}) == len(festival.VOICES)
    genders = [v.gender for v in festival.VOICES]
    assert genders.count(festival.MALE) >= 2 and genders.count(festival.FEMALE) >= 2


def test_sentences_are_plain_text_each_voice_can_read():
    for locale, sentences in SENTENCES.items():
        assert len(sentences) >= 70 and len(set(sentences)) == len(sentences)
        for sentence in sentences:
            sentence.encode(festival.TEXT_ENCODINGS[locale])  # raises if it cannot
            assert not any(ch.isdigit() or ch in '"\\\t\n' for ch in sentence), sentence


def test_missing_festival_names_the_packages(monkeypatch):
    monkeypatch.setattr(festival.shutil, "which", lambda name: None)
    _one_line_error(festival.festival_binary, "apt-get install festival", "festvox-kallpc16k")


def test_missing_voices_are_skipped_only_while_two_of_each_gender_remain(monkeypatch, capsys):
    everything = {v.name for v in festival.VOICES}
    monkeypatch.setattr(festival, "installed_voices", lambda: everything - {"czech_ph"})
    assert "czech_ph" not in [v.name for v in festival.select_voices(None)]
    assert "festvox-czech-ph" in capsys.readouterr().err
    females = {v.name for v in festival.VOICES if v.gender == festival.FEMALE}
    monkeypatch.setattr(festival, "installed_voices", lambda: everything - females | {"lp_diphone"})
    _one_line_error(lambda: festival.select_voices(None), "two female", "festvox-us-slt-hts")
    _one_line_error(lambda: festival.select_voices(["czech_dita"]), "festvox-czech-dita")
    _one_line_error(lambda: festival.select_voices(["nobody"]), "unknown", "kal_diphone")


def _tiny_voices_installed() -> bool:
    if shutil.which("festival") is None:
        return False
    return set(festival.TINY_VOICES) <= festival.installed_voices()


needs_festival = pytest.mark.skipif(
    not _tiny_voices_installed(),
    reason="needs Festival and its voices: apt-get install festival festvox-kallpc16k "
    "festvox-us-slt-hts festvox-czech-krb",
)


@needs_festival
def test_tiny_festival_dataset_reads_back_as_common_voice(tmp_path):
    out = tmp_path / "festival"
    make = dict(voices=festival.TINY_VOICES, max_clips_per_voice=3, seed=0)
    done = festival.make_festival_dataset(out, **make)
    assert done.n_clips == done.n_synthesized == 9
    header = (out / "validated.tsv").read_text().splitlines()[0]
    assert tuple(header.split("\t")) == cv.COMMON_VOICE_COLUMNS
    clips = cv.read_common_voice(out, val_fraction=0.3)
    assert len(clips) == 9 and len({c.speaker for c in clips}) == 3
    labels = {(c.gender, c.age) for c in clips}
    assert labels == {(0.0, 0.40), (1.0, 0.40), (0.0, 0.08)}
    info = sf.info(str(clips[0].path))
    assert (info.format, info.samplerate, info.channels) == ("MP3", 48000, 1)
    audio, _ = load_audio(clips[0].path)
    assert np.abs(audio).max() == pytest.approx(festival.PEAK, abs=0.05)
    assert 1.0 < done.seconds / 9 < 5.0
    tsv = (out / "validated.tsv").read_bytes()
    again = festival.make_festival_dataset(out, **make)
    assert again.n_synthesized == 0 and (out / "validated.tsv").read_bytes() == tsv
    assert not [p for p in (out / "clips").iterdir() if p.name.startswith(".")]
    _one_line_error(
        lambda: festival.make_festival_dataset(out, **{**make, "seed": 1}), "seed", "delete it"
    )
