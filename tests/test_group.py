import math
import re
from pathlib import Path

import numpy as np
import pytest
import scipy.signal
import torch

from torchddsp.processors import (
    Add,
    FilteredNoise,
    Harmonic,
    Mix,
    Processor,
    ProcessorGroup,
    Reverb,
    shipped_configs,
)

CONFIGS = Path(__file__).resolve().parents[1] / "src/torchddsp/processors/configs"
FRAME_RATE = 250


def make_inputs(n_frames=20, batch=2, n_harmonics=8, n_bands=17, f0_hz=220.0):
    return {
        "amplitudes": torch.randn(batch, n_frames, 1),
        "harmonic_distribution": torch.randn(batch, n_frames, n_harmonics),
        "f0_hz": torch.full((batch, n_frames, 1), f0_hz),
        "noise_magnitudes": torch.randn(batch, n_frames, n_bands),
    }


def seeded(seed=1):
    return torch.Generator().manual_seed(seed)


def python_group(reverb_length=300):
    return ProcessorGroup(
        [
            (Harmonic(), ["amplitudes", "harmonic_distribution", "f0_hz"]),
            (FilteredNoise(), ["noise_magnitudes"]),
            (Add(), ["harmonic/signal", "filtered_noise/signal"]),
            (Reverb(reverb_length=reverb_length), ["add/signal"]),
        ]
    )


def reverb_oracle(dry, ir):
    """Dry plus the dry signal convolved with the impulse response minus its first tap."""
    wet_ir = ir.copy()
    wet_ir[0] = 0.0
    wet = np.stack([scipy.signal.fftconvolve(row, wet_ir)[: dry.shape[1]] for row in dry])
    return dry + wet


def write(tmp_path, text, name="dag.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


# Add and Mix -----------------------------------------------------------------------------------
def test_add_is_the_sum():
    a, b = torch.randn(2, 50), torch.randn(2, 50)
    np.testing.assert_array_equal(Add()(a, b).numpy(), a.numpy() + b.numpy())
    with pytest.raises(ValueError, match=r"same shape.*\(2, 50\).*\(2, 50, 1\)"):
        Add()(a, b[..., None])


def test_mix_crossfades_with_upsampled_sigmoid_mix_against_numpy():
    n_frames, hop = 5, 8
    one, two = torch.randn(2, n_frames * hop), torch.randn(2, n_frames * hop)
    level = torch.randn(2, n_frames, 1)
    mixed = Mix()(one, two, level).numpy()
    frame_mix = 1.0 / (1.0 + np.exp(-level.numpy()[..., 0]))
    # Linear interpolation between frame centres at hop spacing, last frame held.
    positions = np.arange(n_frames * hop) / hop
    mix = np.stack([np.interp(positions, np.arange(n_frames), row) for row in frame_mix])
    expected = one.numpy() * (1.0 - mix) + two.numpy() * mix
    np.testing.assert_allclose(mixed, expected, rtol=1e-5, atol=1e-6)


def test_mix_audio_rate_level_without_scaling_and_shape_errors():
    one, two = torch.randn(1, 12), torch.randn(1, 12)
    level = torch.rand(1, 12, 1)
    mixed = Mix(scale_fn=None)(one, two, level)
    torch.testing.assert_close(mixed, one * (1 - level[..., 0]) + two * level[..., 0])
    with pytest.raises(ValueError, match=r"mix_level must have shape .*found \(1, 12, 2\)"):
        Mix()(one, two, torch.rand(1, 12, 2))
    with pytest.raises(ValueError, match="resample_method"):
        Mix(resample_method="cubic")


# The DAG ---------------------------------------------------------------------------------------
def test_group_equals_manual_chain_with_scipy_reverb():
    group = python_group()
    with torch.no_grad():  # an audible IR, so the wet path is checked too
        group.processors["reverb"].ir.normal_(0.0, 0.1)
    inputs = make_inputs()
    out = group(inputs, generator=seeded())
    harmonic = Harmonic()(inputs["amplitudes"], inputs["harmonic_distribution"], inputs["f0_hz"])
    noise = FilteredNoise()(inputs["noise_magnitudes"], generator=seeded())
    ir = group.processors["reverb"].ir.detach().numpy()
    expected = reverb_oracle((harmonic + noise).numpy(), ir)
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-4, atol=1e-6)


def test_outputs_hold_inputs_signals_and_controls():
    group = python_group()
    inputs = make_inputs()
    outputs = group.get_outputs(inputs, generator=seeded())
    expected = set(inputs) | {
        "harmonic/signal",
        "harmonic/controls/amplitudes",
        "harmonic/controls/harmonic_distribution",
        "harmonic/controls/f0_hz",
        "filtered_noise/signal",
        "filtered_noise/controls/magnitudes",
        "add/signal",
        "add/controls/signal_one",
        "add/controls/signal_two",
        "reverb/signal",
        "reverb/controls/audio",
        "reverb/controls/ir",
    }
    assert set(outputs) == expected
    assert outputs["harmonic/controls/harmonic_distribution"].sum(-1).allclose(torch.tensor(1.0))
    assert group.output == "reverb/signal"
    assert group.input_names == ("amplitudes", "harmonic_distribution", "f0_hz", "noise_magnitudes")


def test_controls_can_feed_later_nodes_and_output_can_be_any_key():
    group = ProcessorGroup(
        [
            {"name": "osc", "processor": Harmonic(), "inputs": ["amps", "dist", "f0"]},
            {
                "name": "sum",
                "processor": Add(),
                "inputs": ["osc/controls/f0_hz", "osc/controls/f0_hz"],
            },
        ],
        output="osc/controls/f0_hz",
    )
    inputs = {
        "amps": torch.randn(1, 4, 1),
        "dist": torch.randn(1, 4, 3),
        "f0": torch.full((1, 4, 1), 100.0),
    }
    assert group(inputs) is inputs["f0"]
    torch.testing.assert_close(group.get_outputs(inputs)["sum/signal"], 2 * inputs["f0"])


def test_generator_makes_noise_reproducible():
    group = python_group()
    inputs = make_inputs()
    torch.testing.assert_close(
        group(inputs, generator=seeded(3)), group(inputs, generator=seeded(3))
    )
    assert not torch.allclose(
        group(inputs, generator=seeded(3)), group(inputs, generator=seeded(4))
    )


def test_one_group_renders_any_rate_and_length():
    group = ProcessorGroup.from_yaml("harmonic_noise_reverb")
    for sample_rate in (16000, 22050, 44100, 48000):
        hop = round(sample_rate / FRAME_RATE)  # whole-sample hop; 22.05 and 44.1 kHz need n_samples
        for n_frames in (9, 40):
            out = group(
                make_inputs(n_frames=n_frames),
                sample_rate=sample_rate,
                n_samples=n_frames * hop,
                generator=seeded(),
            )
            assert out.shape == (2, n_frames * hop) and torch.isfinite(out).all()
    assert group(make_inputs(n_frames=13)).shape == (2, 13 * 64)  # default 16 kHz


def test_sample_rate_reaches_band_limiting():
    group = ProcessorGroup.from_yaml("harmonic_noise")
    inputs = make_inputs(n_frames=4, batch=1, n_harmonics=60, f0_hz=300.0)
    for sample_rate in (16000, 48000):
        dist = group.get_outputs(inputs, sample_rate=sample_rate, generator=seeded())[
            "harmonic/controls/harmonic_distribution"
        ]
        above = torch.arange(1, 61) * 300.0 >= sample_rate / 2
        assert (dist[..., above] == 0).all() and (dist[..., ~above] > 0).all()


def test_harmonic_at_each_rate_is_the_numpy_sine():
    group = ProcessorGroup.from_yaml("harmonic_noise")
    for sample_rate in (16000, 22050, 44100, 48000):
        hop = round(sample_rate / FRAME_RATE)
        n_frames = 12
        inputs = make_inputs(n_frames=n_frames, batch=1, n_harmonics=1, f0_hz=440.0)
        inputs["amplitudes"] = torch.zeros(1, n_frames, 1)  # constant: no envelope to model
        outputs = group.get_outputs(inputs, sample_rate=sample_rate, n_samples=n_frames * hop)
        amplitude = 2.0 * 0.5 ** math.log(10.0) + 1e-7  # exp_sigmoid(0)
        t = np.arange(1, n_frames * hop + 1)
        expected = amplitude * np.sin(2 * math.pi * 440.0 * t / sample_rate)
        np.testing.assert_allclose(outputs["harmonic/signal"][0].numpy(), expected, atol=1e-4)


def test_gradients_flow_to_reverb_ir_and_inputs():
    group = python_group()
    inputs = {key: value.requires_grad_() for key, value in make_inputs().items()}
    group(inputs, generator=seeded()).square().sum().backward()
    ir = dict(group.named_parameters())["processors.reverb.ir"]
    assert ir.grad is not None and ir.grad[1:].abs().sum() > 0
    for key, value in inputs.items():
        assert value.grad is not None and torch.isfinite(value.grad).all(), key


def test_call_options_go_only_where_accepted():
    class Gain(Processor):
        def get_controls(self, audio):
            return {"audio": audio}

        def get_signal(self, audio):
            return 2.0 * audio

    group = ProcessorGroup([(Gain(), ["audio"])])
    audio = torch.randn(1, 10)
    torch.testing.assert_close(group({"audio": audio}, sample_rate=44100, n_samples=5), 2 * audio)


# YAML ------------------------------------------------------------------------------------------
def test_shipped_yaml_by_name_and_path_round_trips_state_dict():
    assert {"harmonic_noise", "harmonic_noise_reverb"} <= set(shipped_configs())
    by_name = ProcessorGroup.from_yaml("harmonic_noise_reverb")
    by_path = ProcessorGroup.from_yaml(CONFIGS / "harmonic_noise_reverb.yaml")
    assert by_name.processors["reverb"].ir.shape == (48000,)
    assert by_name.output == "reverb/signal"
    assert not torch.equal(by_name.processors["reverb"].ir, by_path.processors["reverb"].ir)
    by_path.load_state_dict(by_name.state_dict())
    inputs = make_inputs()
    torch.testing.assert_close(
        by_name(inputs, generator=seeded()), by_path(inputs, generator=seeded())
    )


def test_yaml_group_equals_python_group():
    from_yaml = ProcessorGroup.from_yaml("harmonic_noise_reverb.yaml")
    assert isinstance(from_yaml.processors["noise"], FilteredNoise)
    python = ProcessorGroup(
        [
            {
                "name": "harmonic",
                "processor": Harmonic(),
                "inputs": ["amplitudes", "harmonic_distribution", "f0_hz"],
            },
            {
                "name": "noise",
                "processor": FilteredNoise(window_size=0),
                "inputs": ["noise_magnitudes"],
            },
            {"name": "add", "processor": Add(), "inputs": ["harmonic/signal", "noise/signal"]},
            {"name": "reverb", "processor": Reverb(), "inputs": ["add/signal"]},
        ]
    )
    python.load_state_dict(from_yaml.state_dict())
    inputs = make_inputs()
    torch.testing.assert_close(
        from_yaml(inputs, generator=seeded()), python(inputs, generator=seeded())
    )


def test_config_with_mix_scale_fn_names_and_custom_processor(tmp_path):
    class Gain(Processor):
        def __init__(self, gain: float = 1.0):
            super().__init__()
            self.gain = gain

        def get_controls(self, audio, sample_rate=None):
            return {"audio": audio}

        def get_signal(self, audio, sample_rate=None):
            return self.gain * audio

    path = write(
        tmp_path,
        """
nodes:
  - {name: a, processor: Gain, args: {gain: 2.0}, inputs: [x]}
  - {name: b, processor: Gain, args: {gain: -1.0}, inputs: [x]}
  - {name: mix, processor: Mix, args: {scale_fn: null}, inputs: [a/signal, b/signal, level]}
""",
    )
    group = ProcessorGroup.from_yaml(path, processors={"Gain": Gain})
    x, level = torch.randn(1, 8), torch.full((1, 8, 1), 0.25)
    torch.testing.assert_close(group({"x": x, "level": level}), 0.75 * 2 * x - 0.25 * x)
    noise = ProcessorGroup.from_config(
        {
            "nodes": [
                {
                    "name": "n",
                    "processor": "FilteredNoise",
                    "args": {"scale_fn": "softplus"},
                    "inputs": ["m"],
                }
            ]
        }
    )
    assert noise.processors["n"].scale_fn is torch.nn.functional.softplus


# Errors ----------------------------------------------------------------------------------------
def test_duplicate_node_name():
    with pytest.raises(ValueError, match="node 1 .*duplicate node name 'harmonic'"):
        ProcessorGroup([(Harmonic(), ["a", "d", "f"]), (Harmonic(), ["a", "d", "f"])])


@pytest.mark.parametrize(
    "key", ["harmonc/signal", "harmonic/sign", "harmonic/controls/", "reverb/signal"]
)
def test_unknown_input_key(key):
    with pytest.raises(ValueError, match=f"node 1 .*unknown key '{key}'.*earlier nodes: harmonic"):
        ProcessorGroup([(Harmonic(), ["a", "d", "f"]), (Reverb(reverb_length=8), [key])])


def test_unknown_output_key_and_bad_node_specs():
    with pytest.raises(ValueError, match="output: unknown key 'add/signal'"):
        ProcessorGroup([(Harmonic(), ["a", "d", "f"])], output="add/signal")
    with pytest.raises(ValueError, match="non-empty list"):
        ProcessorGroup([])
    with pytest.raises(ValueError, match="node 0 .*inputs must be a list"):
        ProcessorGroup([(Reverb(), "add/signal")])
    with pytest.raises(ValueError, match="node 0 .*processor must be a Processor, found str"):
        ProcessorGroup([{"name": "x", "processor": "Reverb", "inputs": ["a"]}])
    with pytest.raises(ValueError, match="node 0 .*'keys' cannot be a node name"):
        ProcessorGroup([{"name": "keys", "processor": Reverb(), "inputs": ["a"]}])


def test_wrong_number_of_inputs():
    with pytest.raises(ValueError, match=r"node 0 .*Harmonic.get_controls\(amplitudes, "):
        ProcessorGroup([(Harmonic(), ["a", "d"])])
    with pytest.raises(ValueError, match="node 0 .*too many inputs"):
        ProcessorGroup([(Reverb(), ["audio", "ir", "extra"])])


def test_missing_input_at_call_time_lists_available():
    group = python_group()
    inputs = make_inputs()
    del inputs["f0_hz"]
    with pytest.raises(
        ValueError,
        match="node 'harmonic': missing input 'f0_hz'; available: "
        "'amplitudes', 'harmonic_distribution'",
    ):
        group(inputs)
    with pytest.raises(ValueError, match="inputs must be a dict of tensors, found Tensor"):
        group(torch.zeros(1))


def test_unknown_processor_names_node_and_known_ones(tmp_path):
    path = write(tmp_path, "nodes:\n  - {name: osc, processor: Harmonik, inputs: [a, d, f]}\n")
    with pytest.raises(
        ValueError,
        match=f"{re.escape(str(path))}: node 0 \\('osc'\\): unknown processor "
        "'Harmonik'; known: .*Harmonic",
    ):
        ProcessorGroup.from_yaml(path)


def test_bad_args_name_node_and_key(tmp_path):
    path = write(
        tmp_path,
        "nodes:\n  - name: osc\n    processor: Harmonic\n"
        "    args: {sample_rat: 16000}\n    inputs: [a, d, f]\n",
    )
    with pytest.raises(
        ValueError, match=r"node 0 \('osc'\): Harmonic has no argument 'sample_rat'"
    ):
        ProcessorGroup.from_yaml(path)
    bad = {
        "nodes": [
            {
                "name": "osc",
                "processor": "Harmonic",
                "args": {"sample_rate": -1},
                "inputs": ["a", "d", "f"],
            }
        ]
    }
    with pytest.raises(ValueError, match=r"node 0 \('osc'\): bad args for Harmonic: sample_rate"):
        ProcessorGroup.from_config(bad)
    bad["nodes"][0]["args"] = {"scale_fn": "relu"}
    with pytest.raises(ValueError, match="node 0 .*unknown scale_fn 'relu'; choose one of"):
        ProcessorGroup.from_config(bad)


def test_malformed_yaml_is_one_line_naming_file(tmp_path):
    path = write(tmp_path, "nodes:\n  - name: osc\n   processor: Harmonic\n")
    with pytest.raises(
        ValueError, match=f"{re.escape(str(path))}: malformed YAML, line 3"
    ) as error:
        ProcessorGroup.from_yaml(path)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("nodes:\n  - [osc, Harmonic]\n", r"node 0: must be a mapping"),
        (
            "nodes:\n  - {name: osc, processor: Harmonic}\n",
            r"node 0 \('osc'\): missing key 'inputs'",
        ),
        (
            "nodes:\n  - {name: r, processor: Reverb, inputs: [a], gain: 2}\n",
            r"node 0 \('r'\): unknown key 'gain'",
        ),
        (
            "nodes:\n  - {name: r, processor: Reverb, args: [1], inputs: [a]}\n",
            r"node 0 \('r'\): args must be a mapping",
        ),
        ("node: []\n", "must be a mapping with 'nodes'"),
        ("nodes: []\nouput: x\n", "unknown key 'ouput'"),
        ("", "must be a mapping with 'nodes', found None"),
    ],
)
def test_malformed_config_names_file_and_node(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(ValueError, match=f"{re.escape(str(path))}: .*{message}"):
        ProcessorGroup.from_yaml(path)


def test_unknown_config_name_lists_shipped_ones():
    with pytest.raises(
        ValueError,
        match="no processor DAG file 'harmonic_noise_reverbb'.*"
        "one of: harmonic_noise, harmonic_noise_reverb",
    ):
        ProcessorGroup.from_yaml("harmonic_noise_reverbb")
