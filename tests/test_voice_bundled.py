"""The bundled voice model on the bundled example speech (a man reading a sentence, real
speech): what ``torchddsp convert --example --model voice`` does, measured."""

import numpy as np
import pytest
import soundfile as sf

from torchddsp.cli import main
from torchddsp.data.audio import load_audio
from torchddsp.models import load_model
from torchddsp.models.trained import example_voice, is_voice_model, pretrained_dir
from torchddsp.voice.assess import pitch_change
from torchddsp.voice.convert import convert_voice, speaking_pitch
from torchddsp.voice.metrics import envelope_scale


@pytest.fixture(scope="module")
def voice():
    return load_model("voice")


@pytest.fixture(scope="module")
def speech(voice) -> np.ndarray:
    audio, _ = load_audio(example_voice(), sample_rate=voice.sample_rate)
    return audio


def test_the_bundled_voice_model_loads_with_its_card(voice):
    path = pretrained_dir() / "voice.pt"
    assert is_voice_model(voice) and voice.path == path and path.stat().st_size < 8 * 2**20
    card = path.with_suffix(".md").read_text()
    assert "mcd_db" in card and "gender_converted_to_target" in card


def test_unchanged_it_resynthesises_the_speech_near_its_pitch(voice, speech):
    result = convert_voice(speech, voice)
    assert result.gender < 0.5  # the estimator hears a man
    assert result.pitch_shift == 0.0
    assert abs(pitch_change(speech, result.audio, voice.sample_rate)) < 0.4


@pytest.mark.parametrize("shift", [-4.0, 4.0])
def test_a_pitch_shift_moves_the_median_pitch_by_as_many_semitones(voice, speech, shift):
    rate = voice.sample_rate
    resynthesis = convert_voice(speech, voice).audio
    shifted = convert_voice(speech, voice, pitch_shift=shift).audio
    assert pitch_change(resynthesis, shifted, rate) == pytest.approx(shift, abs=0.2)


def test_female_moves_the_pitch_with_the_gender_and_a_child_raises_the_formants(voice, speech):
    rate = voice.sample_rate
    resynthesis = convert_voice(speech, voice, pitch_shift=0.0)
    female = convert_voice(speech, voice, gender="female")
    own = resynthesis.gender, resynthesis.age
    expected = speaking_pitch(1.0, own[1]) - speaking_pitch(*own)
    assert female.pitch_shift == pytest.approx(expected) and female.pitch_shift > 9
    moved = pitch_change(resynthesis.audio, female.audio, rate)
    assert moved == pytest.approx(female.pitch_shift, abs=0.3)
    child = convert_voice(speech, voice, age="child", pitch_shift=0.0)
    assert envelope_scale(resynthesis.audio, child.audio, rate) >= 1.06  # the tract alone


def test_the_readme_convert_command(tmp_path, capsys):
    out = tmp_path / "her.wav"
    command = ["convert", "--example", "--model", "voice", "-o", str(out)]
    assert main([*command, "--gender", "female", "--age", "0.3", "--pitch-shift", "4"]) == 0
    audio, rate = sf.read(out)
    assert rate == 16000 and len(audio) == sf.info(str(example_voice())).frames
    assert 0.01 < np.sqrt(np.mean(audio**2)) < 1.0
    assert "gender 1.00, age 0.30, pitch shift +4 semitones" in capsys.readouterr().out
