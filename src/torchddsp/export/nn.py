"""A trained model as a TorchScript file that speaks nn~'s protocol (no nn-tilde package).

What nn~ (Pure Data, Max) reads of a model file:

- ``get_methods()`` and, per method, a buffer ``<method>_params = [in_channels,
  in_ratio, out_channels, out_ratio]``; the method takes one float tensor
  ``[batch, in_channels, n]`` and returns ``[batch, out_channels, n]`` (ratios 1).
- ``get_attributes()`` and, per attribute, a buffer ``<attr>_params`` of type
  ids (bool 0, int 1, float 2, str 3), ``get_<attr>()`` returning a list, and
  ``set_<attr>(value) -> int``, 0 on success; a value out of range returns 1
  and changes nothing.

An instrument's methods: ``forward`` (audio -> the timbre transfer),
``render`` (f0 in Hz and loudness in dB as two control channels -> audio) and
``features`` (audio -> f0, confidence, loudness). Attributes: the transfer
adjustments, the three mixes and ``sample_rate`` (nn~ does not pass Pd's rate
to a model it loads: patches send ``set sample_rate`` from ``[samplerate~]``).
``auto_adjust`` is an int (0 or 1), because nn~ reads any number sent to a bool
as true. A voice model's one method: ``forward``, channels ``[audio,
pitch_shift, gender, age]`` -> the converted voice; attribute ``sample_rate``.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from ..adjust import LIMITS
from ..data.atomic import atomic_output
from ..live import LiveModel, LiveVoice
from ..live.engine import MIX_RANGE
from ..models.voice import VoiceAutoencoder

INT, FLOAT = 1, 2  # nn~'s type ids (bool 0 is unused: see the module notes)
ATTRIBUTES = {  # name: (type id, low, high)
    "pitch_shift": (FLOAT, *LIMITS["pitch_shift"]),
    "octave_shift": (INT, *LIMITS["octave_shift"]),
    "loudness_shift": (FLOAT, *LIMITS["loudness_shift"]),
    "threshold": (FLOAT, *LIMITS["note_threshold"]),
    "auto_adjust": (INT, 0.0, 1.0),
    "quiet": (FLOAT, *LIMITS["quiet"]),
    "autotune": (FLOAT, *LIMITS["autotune"]),
    "harmonic_mix": (FLOAT, *MIX_RANGE),
    "noise_mix": (FLOAT, *MIX_RANGE),
    "reverb_mix": (FLOAT, *MIX_RANGE),
    "sample_rate": (INT, 0.0, 0.0),  # one of the host rates the file was built with
}
METHODS = {"forward": (1, 1, 1, 1), "render": (2, 1, 1, 1), "features": (1, 1, 3, 1)}
VOICE_FORWARD_PARAMS = (4, 1, 1, 1)


class NNModel(nn.Module):
    """The nn~ face of a :class:`~torchddsp.live.LiveModel` (see the module notes).

    Shape: forward, features: [batch, 1, n]; render: [batch, 2, n] (f0_hz,
    loudness_db) -> forward, render [batch, 1, n]; features [batch, 3, n].
    """

    def __init__(self, live: LiveModel):
        super().__init__()
        self.live = live
        for method, params in METHODS.items():
            self.register_buffer(f"{method}_params", torch.tensor(params))
        for name, (type_id, _, _) in ATTRIBUTES.items():
            self.register_buffer(f"{name}_params", torch.tensor([type_id]))
        self.method_names = list(METHODS)
        self.attribute_names = list(ATTRIBUTES)
        self.limits = {name: (low, high) for name, (_, low, high) in ATTRIBUTES.items()}

    @torch.jit.export
    def get_methods(self) -> list[str]:
        return self.method_names

    @torch.jit.export
    def get_attributes(self) -> list[str]:
        return self.attribute_names

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.live(x[:, 0])[:, None]

    @torch.jit.export
    def render(self, x: torch.Tensor) -> torch.Tensor:
        return self.live.render(x[:, 0], x[:, 1])[:, None]

    @torch.jit.export
    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.live.features(x[:, 0])

    @torch.jit.export
    def get_latency(self) -> int:
        """Samples from an input sample to its transfer (``forward``), at the current rate."""
        return self.live.latency_samples()

    def _in_range(self, name: str, value: float) -> bool:
        low, high = self.limits[name]
        return low <= value <= high

    # ---- the adjustments ----------------------------------------------------------------
    @torch.jit.export
    def set_pitch_shift(self, value: float) -> int:
        if not self._in_range("pitch_shift", value):
            return 1
        self.live.adjuster.pitch_shift = value
        return 0

    @torch.jit.export
    def get_pitch_shift(self) -> list[float]:
        return [self.live.adjuster.pitch_shift]

    @torch.jit.export
    def set_octave_shift(self, value: int) -> int:
        if not self._in_range("octave_shift", float(value)):
            return 1
        self.live.adjuster.octave_shift = float(value)
        return 0

    @torch.jit.export
    def get_octave_shift(self) -> list[int]:
        return [int(self.live.adjuster.octave_shift)]

    @torch.jit.export
    def set_loudness_shift(self, value: float) -> int:
        if not self._in_range("loudness_shift", value):
            return 1
        self.live.adjuster.loudness_shift = value
        return 0

    @torch.jit.export
    def get_loudness_shift(self) -> list[float]:
        return [self.live.adjuster.loudness_shift]

    @torch.jit.export
    def set_threshold(self, value: float) -> int:
        if not self._in_range("threshold", value):
            return 1
        self.live.adjuster.note_threshold = value
        return 0

    @torch.jit.export
    def get_threshold(self) -> list[float]:
        return [self.live.adjuster.note_threshold]

    @torch.jit.export
    def set_auto_adjust(self, value: int) -> int:
        if not self._in_range("auto_adjust", float(value)):
            return 1
        self.live.adjuster.auto_adjust = value == 1
        return 0

    @torch.jit.export
    def get_auto_adjust(self) -> list[int]:
        return [int(self.live.adjuster.auto_adjust)]

    @torch.jit.export
    def set_quiet(self, value: float) -> int:
        if not self._in_range("quiet", value):
            return 1
        self.live.adjuster.quiet = value
        return 0

    @torch.jit.export
    def get_quiet(self) -> list[float]:
        return [self.live.adjuster.quiet]

    @torch.jit.export
    def set_autotune(self, value: float) -> int:
        if not self._in_range("autotune", value):
            return 1
        self.live.adjuster.autotune = value
        return 0

    @torch.jit.export
    def get_autotune(self) -> list[float]:
        return [self.live.adjuster.autotune]

    # ---- the mixes ----------------------------------------------------------------------
    @torch.jit.export
    def set_harmonic_mix(self, value: float) -> int:
        if not self._in_range("harmonic_mix", value):
            return 1
        self.live.harmonic_mix = value
        return 0

    @torch.jit.export
    def get_harmonic_mix(self) -> list[float]:
        return [self.live.harmonic_mix]

    @torch.jit.export
    def set_noise_mix(self, value: float) -> int:
        if not self._in_range("noise_mix", value):
            return 1
        self.live.noise_mix = value
        return 0

    @torch.jit.export
    def get_noise_mix(self) -> list[float]:
        return [self.live.noise_mix]

    @torch.jit.export
    def set_reverb_mix(self, value: float) -> int:
        if not self._in_range("reverb_mix", value):
            return 1
        self.live.reverb_mix = value
        return 0

    @torch.jit.export
    def get_reverb_mix(self) -> list[float]:
        return [self.live.reverb_mix]

    # ---- the host's sample rate ----------------------------------------------------------
    @torch.jit.export
    def set_sample_rate(self, value: int) -> int:
        """A host rate the file was built with; the streams restart. nn~ itself never calls it
        on load: patches send ``set sample_rate`` (see the module notes)."""
        return 0 if self.live.set_host_rate(value) else 1

    @torch.jit.export
    def get_sample_rate(self) -> list[int]:
        return [self.live.host_rate]


class VoiceNNModel(nn.Module):
    """The nn~ face of a :class:`~torchddsp.live.LiveVoice` (see the module notes).

    Shape: forward: [batch, 4, n] (audio, pitch_shift, gender, age) -> [batch, 1, n].
    """

    def __init__(self, live: LiveVoice):
        super().__init__()
        self.live = live
        self.register_buffer("forward_params", torch.tensor(VOICE_FORWARD_PARAMS))
        self.register_buffer("sample_rate_params", torch.tensor([INT]))

    @torch.jit.export
    def get_methods(self) -> list[str]:
        return ["forward"]

    @torch.jit.export
    def get_attributes(self) -> list[str]:
        return ["sample_rate"]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.live(x[:, 0], x[:, 1], x[:, 2], x[:, 3])[:, None]

    @torch.jit.export
    def get_latency(self) -> int:
        """Samples from an input sample to its conversion, at the current rate."""
        return self.live.latency_samples()

    @torch.jit.export
    def set_sample_rate(self, value: int) -> int:
        """A host rate the file was built with; the stream restarts (see the module notes)."""
        return 0 if self.live.set_host_rate(value) else 1

    @torch.jit.export
    def get_sample_rate(self) -> list[int]:
        return [self.live.host_rate]


def export_nn(trained, target: str | Path, host_rate: int = 48000) -> Path:
    """Script ``trained`` (a :class:`~torchddsp.models.TrainedModel`) as an nn~ model file,
    written atomically. Shape: see :class:`NNModel`, :class:`VoiceNNModel`."""
    if isinstance(trained.model, VoiceAutoencoder):
        module = VoiceNNModel(LiveVoice(trained, host_rate).requires_grad_(False))
    else:
        module = NNModel(LiveModel(trained, host_rate).requires_grad_(False))
    scripted = torch.jit.script(module)
    target = Path(target)
    with atomic_output(target) as tmp:
        scripted.save(str(tmp))
    return target
