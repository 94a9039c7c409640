"""The voice autoencoder: offline and streaming agree, the live engine streams exactly, the
conversion controls parse, labelled datasets carry their labels."""

import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from nn_host import NNHost, random_sizes
from torchddsp.config import ModelConfig
from torchddsp.data.dataset import DDSPDataset
from torchddsp.data.prepare import prepare_dataset
from torchddsp.errors import UserError
from torchddsp.export import export_nn
from torchddsp.live import LiveVoice
from torchddsp.models.encoder import MfccEncoder
from torchddsp.models.trained import TrainedModel
from torchddsp.models.voice import VoiceAutoencoder
from torchddsp.voice.commonvoice import voice_labels
from torchddsp.voice.convert import (
    control_value,
    render_voice_in_blocks,
    shifted_f0,
    speaking_pitch,
)

RATE, FRAME_RATE, HOP = 16000, 100, 160


def _tiny_config(**changes) -> ModelConfig:
    sizes = dict(mlp_units=32, gru_units=32, encoder_gru_units=16, n_mfcc=13)
    bands = dict(n_noise_bands=9, n_tract_bands=17, reverb_length=400)
    tract = dict(female_formant_ratio=1.17, child_formant_ratio=1.35)
    return ModelConfig(kind="voice", z_dims=4, **{**sizes, **bands, **tract, **changes})


@pytest.fixture(scope="module")
def model() -> VoiceAutoencoder:
    torch.manual_seed(0)
    return VoiceAutoencoder(_tiny_config(), RATE, FRAME_RATE).eval().requires_grad_(False)


@pytest.fixture(scope="module")
def trained(model) -> TrainedModel:
    return TrainedModel(
        "tiny", model, RATE, FRAME_RATE, "yin", None, Path("tiny.pt"), 0, None, None
    )


def _speech_like(n_frames: int, batch: int = 2) -> dict[str, torch.Tensor]:
    """Pulses with a wandering pitch, then noise: voiced and unvoiced parts."""
    generator = torch.Generator().manual_seed(1)
    f0 = 110.0 + 40.0 * torch.rand(batch, n_frames, generator=generator)
    phase = torch.cumsum(f0.repeat_interleave(HOP, 1) / RATE, 1)
    audio = 0.3 * torch.sin(2 * np.pi * phase) ** 15
    audio[:, audio.shape[1] // 2 :] = 0.05 * torch.randn(batch, audio.shape[1] // 2)
    return {
        "audio": audio,
        "f0_hz": f0,
        "loudness_db": -30.0 + 10.0 * torch.rand(batch, n_frames, generator=generator),
        "f0_confidence": torch.rand(batch, n_frames, generator=generator),
        "gender": torch.tensor([0.0, 1.0])[:batch],
        "age": torch.tensor([0.25, 0.6])[:batch],
    }


def _frames(features: dict[str, torch.Tensor]) -> torch.Tensor:
    n = features["f0_hz"].shape[1]
    labels = [features[name][:, None].expand(-1, n) for name in ("gender", "age")]
    columns = [features[k] for k in ("f0_hz", "loudness_db", "f0_confidence")] + labels
    return torch.stack(columns, -1)


def test_the_content_code_streams_as_it_is_computed_offline(single_thread):
    encoder = MfccEncoder(RATE, FRAME_RATE, z_dims=4, n_mfcc=13, gru_units=16, n_fft=512)
    audio = torch.randn(2, 50 * HOP) * 0.1
    offline = encoder(audio, 50)
    state, pieces, start = encoder.init_state(2), [], 0
    for size in random_sizes(audio.shape[1], seed=3, largest=700):
        z, state = encoder.forward_stream(audio[:, start : start + size], state)
        pieces.append(z)
        start += size
    z, _ = encoder.forward_stream(audio[:, :0], state, final=True)
    torch.testing.assert_close(torch.cat([*pieces, z], 1), offline, rtol=0, atol=1e-5)


def test_blocks_of_audio_and_frames_join_into_the_offline_output(model, single_thread):
    features = _speech_like(60)
    offline = model(features)["audio_synth"]
    frames, audio = _frames(features), features["audio"]
    state, pieces, sample, frame = model.init_state(2), [], 0, 0
    rng = np.random.default_rng(0)
    while sample < audio.shape[1] or frame < frames.shape[1]:
        n_samples, n_frames = int(rng.integers(0, 800)), int(rng.integers(0, 6))
        block = (audio[:, sample : sample + n_samples], frames[:, frame : frame + n_frames])
        signals, state = model.forward_stream(*block, state)
        pieces.append(signals["audio"])
        sample, frame = sample + n_samples, frame + n_frames
    signals, _ = model.forward_stream(audio[:, :0], frames[:, :0], state, final=True)
    streamed = torch.cat([*pieces, signals["audio"]], 1)
    assert offline.abs().max() > 1e-3
    torch.testing.assert_close(streamed, offline, rtol=0, atol=1e-5)
    by_blocks = render_voice_in_blocks(model, audio, frames, block_frames=7)
    torch.testing.assert_close(by_blocks, offline, rtol=0, atol=1e-5)


def test_gender_and_age_scale_the_vocal_tract_by_the_formant_ratios(model):
    bands = torch.arange(33, dtype=torch.float64)
    peak = torch.exp(-0.5 * (bands - 10.0) ** 2)  # a formant at band 10
    raw = {"tract_magnitudes": peak.expand(1, 5, -1), "noise_magnitudes": peak.expand(1, 5, -1)}
    gender = torch.tensor([[0.0, 1.0, 0.5, 0.0, 1.0]], dtype=torch.float64)
    age = torch.tensor([[0.4, 0.4, 0.4, 0.08, 0.14]], dtype=torch.float64)
    scaled = model.scale_tract(raw, gender, age)
    expected = 10.0 * np.array([1.0, 1.17, 1.17**0.5, 1.35, 1.17**0.5 * 1.35**0.5])
    for name in raw:  # band k takes the value at band k / scale: the formant moves to 10 x scale
        oracle = [np.interp(bands / (scale / 10), bands, peak) for scale in expected]
        np.testing.assert_allclose(scaled[name][0].numpy(), np.stack(oracle), atol=1e-9)
        centroid = (scaled[name][0] * bands).sum(-1) / scaled[name][0].sum(-1)
        np.testing.assert_allclose(centroid.numpy(), expected, atol=0.05)
    edge = model.scale_tract({**raw, "tract_magnitudes": torch.ones(1, 5, 33)}, gender, age)
    assert torch.equal(edge["tract_magnitudes"], torch.ones(1, 5, 33))  # no gap above the top


def test_unlabelled_examples_add_no_attribute_loss(model):
    features = _speech_like(30)
    outputs = model(features)
    unlabelled = {**features, "has_gender": torch.tensor([False, False])}
    unlabelled["has_age"] = unlabelled["has_gender"]
    losses = model.loss(unlabelled, outputs)
    assert losses["adversary"] == 0 and losses["estimator"] == 0
    labelled = {**unlabelled, "has_gender": torch.tensor([True, True])}
    losses = model.loss(labelled, outputs)
    assert losses["adversary"] > 0 and losses["estimator"] > 0
    assert losses["total"] == pytest.approx(
        float(losses["spectral"] + 0.1 * losses["adversary"] + losses["estimator"]), rel=1e-6
    )


def _host_signal(seconds: float = 1.5, rate: int = 48000) -> torch.Tensor:
    t = torch.arange(int(seconds * rate)) / rate
    audio = 0.3 * torch.sin(2 * np.pi * 140.0 * t) * (t > 0.2)
    controls = [torch.full_like(t, 4.0), torch.linspace(0, 1, len(t)), torch.full_like(t, 0.3)]
    return torch.stack([audio, *controls])[None]


def test_the_live_voice_streams_exactly_in_any_blocks(trained, single_thread):
    live = LiveVoice(trained, 48000)
    signal = _host_signal()
    whole = live(*signal[0, :, None])
    live.reset()
    pieces, start = [], 0
    for size in random_sizes(signal.shape[-1], seed=1):
        pieces.append(live(*signal[0, :, None, start : start + size]))
        start += size
    assert whole.abs().max() > 1e-3
    torch.testing.assert_close(torch.cat(pieces, 1), whole, rtol=0, atol=1e-5)


def test_the_nn_file_has_four_inputs_and_streams_exactly(trained, tmp_path, single_thread):
    path = export_nn(trained, tmp_path / "voice.ts")
    host = NNHost(str(path))
    assert host.methods == ["forward"] and host.params["forward"] == [4, 1, 1, 1]
    assert host.attributes == ["sample_rate"] and host.set("sample_rate", 44100) == 0
    assert host.set("sample_rate", 12345) != 0 and host.get("sample_rate") == [44100]
    host.set("sample_rate", 48000)
    signal = _host_signal()
    whole = host.run("forward", signal, [signal.shape[-1]])
    blocks = NNHost(str(path)).run("forward", signal, random_sizes(signal.shape[-1], seed=2))
    torch.testing.assert_close(blocks, whole, rtol=0, atol=1e-5)
    live = LiveVoice(trained, 48000)
    torch.testing.assert_close(whole[:, 0], live(*signal[0, :, None]), rtol=0, atol=1e-5)


@pytest.mark.skipif(
    "TORCHDDSP_COMPAT_PYTHON" not in os.environ,
    reason="set TORCHDDSP_COMPAT_PYTHON (scripts/compat_env.sh makes the environment)",
)
def test_the_nn_file_streams_under_libtorch_2_5(trained, tmp_path):
    path = export_nn(trained, tmp_path / "voice.ts")
    signal = _host_signal()
    torch.save(signal, tmp_path / "input.pt")
    host = Path(__file__).with_name("nn_host.py")
    command = [os.environ["TORCHDDSP_COMPAT_PYTHON"], "-I", str(host), "stream", str(path)]
    env = {"PATH": os.environ.get("PATH", ""), "OMP_NUM_THREADS": "1"}
    subprocess.run([*command, "input.pt", "output.pt"], cwd=tmp_path, env=env, check=True)
    result = torch.load(tmp_path / "output.pt")
    assert result["torch"].startswith("2.5.1")
    torch.testing.assert_close(result["blocks"], result["whole"], rtol=0, atol=1e-5)
    here = NNHost(str(path)).run("forward", signal, [signal.shape[-1]])
    torch.testing.assert_close(result["whole"], here, rtol=0, atol=1e-4)


def test_controls_take_numbers_and_words_and_refuse_the_rest():
    assert control_value("gender", "female") == 1.0 and control_value("gender", "male") == 0.0
    assert control_value("gender", "male_masculine") == 0.0
    assert control_value("age", "fourties") == 0.45 and control_value("age", "0.3") == 0.3
    assert control_value("pitch_shift", "-3.5") == -3.5
    assert control_value("pitch_shift", None) is None and control_value("gender", None) is None


def test_an_unset_pitch_shift_follows_the_typical_speaking_pitch():
    assert speaking_pitch(1.0, 0.4) - speaking_pitch(0.0, 0.4) == pytest.approx(
        12 * np.log2(210 / 120), abs=1e-4
    )
    child = 12 * np.log2(260 / 120)
    assert speaking_pitch(0.0, 0.08) - speaking_pitch(0.0, 0.4) == pytest.approx(child, abs=1e-4)
    assert speaking_pitch(1.0, 0.0) == pytest.approx(speaking_pitch(0.0, 0.05), abs=1e-4)
    halfway = speaking_pitch(0.0, 0.14) - speaking_pitch(0.0, 0.4)  # childness 0.5 at 0.14
    assert halfway == pytest.approx(child / 2, abs=1e-4)
    for name, value, words in [
        ("gender", "elf", ("unknown gender 'elf'", "female")),
        ("gender", "other", ("no gender value",)),
        ("age", "3", ("outside [0, 1]",)),
        ("pitch_shift", "up", ("semitones",)),
        ("pitch_shift", 30.0, ("within [-24, 24]",)),
    ]:
        with pytest.raises(UserError) as caught:
            control_value(name, value)
        assert "\n" not in str(caught.value)
        assert all(word in str(caught.value) for word in words), str(caught.value)


def test_pitch_shift_is_a_ratio_that_keeps_unvoiced_frames_at_zero():
    f0 = torch.tensor([0.0, 100.0, 440.0])
    shifted = shifted_f0(f0, torch.tensor(12.0))
    torch.testing.assert_close(shifted, torch.tensor([0.0, 200.0, 880.0]))
    assert shifted_f0(f0, torch.tensor(-7.0))[1] == pytest.approx(100 * 2 ** (-7 / 12))


def _write_tone(path: Path, hz: float, seconds: float = 1.5, silent: bool = False) -> None:
    t = np.arange(int(seconds * RATE)) / RATE
    audio = np.zeros_like(t) if silent else 0.3 * np.sin(2 * np.pi * hz * t)
    sf.write(path, audio.astype(np.float32), RATE)


def test_a_labels_csv_prepares_a_dataset_split_by_speaker(tmp_path):
    folder = tmp_path / "voices"
    folder.mkdir()
    rows = ["path,gender,age,speaker"]
    speakers = [("ann", "female", "twenties"), ("bob", "male", "sixties"), ("cy", "", "")]
    speakers += [("dee", "female", "teens"), ("ed", "male", "thirties")]
    for index, (speaker, gender, age) in enumerate(speakers):
        for take in range(2):
            name = f"{speaker}{take}.wav"
            _write_tone(folder / name, 100.0 + 30 * index, silent=speaker == "ed" and take == 1)
            rows.append(f"{name},{gender},{age},{speaker}")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    root, labels = voice_labels(folder / "labels.csv", val_fraction=0.4)
    settings = dict(frame_rate=FRAME_RATE, example_seconds=1.0, hop_seconds=0.25)
    done = prepare_dataset(root, tmp_path / "data", labels=labels, **settings)
    skipped = {entry["path"]: entry["reason"] for entry in done.manifest["skipped"]}
    assert skipped["ed1.wav"].startswith("silent") and len(skipped) == 2  # and labels.csv
    assert skipped["ed1.wav"].endswith("remove its row from the list of clips to drop this note")
    by_split = {}
    for entry in done.manifest["files"]:
        by_split.setdefault(entry["labels"]["split"], set()).add(entry["labels"]["speaker"])
    assert not by_split["train"] & by_split["val"] and by_split["val"]
    examples = {split: DDSPDataset(tmp_path / "data", split) for split in ("train", "val")}
    seen = {}
    for dataset in examples.values():
        for index in range(len(dataset)):
            example = dataset[index]
            seen[(round(float(example["gender"]), 3), round(float(example["age"]), 3))] = (
                bool(example["has_gender"]),
                bool(example["has_age"]),
            )
    assert seen[(0.5, 0.5)] == (False, False)  # cy: unlabelled
    assert seen[(1.0, 0.25)] == (True, True) and seen[(0.0, 0.65)] == (True, True)


def test_a_voice_model_is_refused_where_an_instrument_plays(trained):
    from torchddsp.transfer import check_instrument

    with pytest.raises(UserError, match="is a voice model: convert voices with"):
        check_instrument(trained)


def test_conversion_measures_against_oracles():
    from torchddsp.voice.assess import content_distortion, pitch_change, voiced_pitch

    t = np.arange(RATE) / RATE
    tone = (0.3 * np.sin(2 * np.pi * 220.0 * t)).astype(np.float32)
    midi, voiced = voiced_pitch(tone, RATE)
    assert np.median(midi[voiced]) == pytest.approx(57.0, abs=0.05)  # A3
    higher = (0.3 * np.sin(2 * np.pi * 220.0 * 2 ** (3 / 12) * t)).astype(np.float32)
    half_silent = np.where(t < 0.5, higher, 0.0).astype(np.float32)  # voiced in half the frames
    assert pitch_change(tone, half_silent, RATE) == pytest.approx(3.0, abs=0.05)
    speech = _speech_like(100, batch=1)["audio"][0].numpy()
    assert content_distortion(speech, speech, RATE) == pytest.approx(0.0, abs=1e-6)
    louder = content_distortion(speech, 3.0 * speech, RATE)  # the mean removes a gain
    assert louder == pytest.approx(0.0, abs=0.1)  # but for the floor of quiet mel bands
    assert content_distortion(speech, speech[::-1].copy(), RATE) > 1.0
