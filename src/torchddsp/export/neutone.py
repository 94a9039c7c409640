"""A trained model as a Neutone FX model file (``.nm``), through neutone-sdk (an optional extra).

The file wraps a :class:`~torchddsp.live.LiveModel`: mono in, mono out, the
timbre transfer of whatever melody comes in. neutone-sdk scripts it inside its
``SampleQueueWrapper``, which rebuffers the DAW's blocks to a native buffer
size, resamples other DAW rates to the closest native one and reports the
delay to the DAW; the plain TorchScript file loads without neutone-sdk.

Native sample rates: 48000 and 44100 Hz, the rates DAWs run at. There the
SDK passes the audio through, and the engine's windowed-sinc filters take it
to the model's rate and back. At other rates the SDK resamples to the closest
(88.2 and 96 kHz to 48 kHz): so a native buffer lasts as long at every DAW
rate, which matters because the engine's cost is per block, not per sample;
and the SDK's cubic interpolation is accurate on the model's output, which
holds nothing above 8 kHz.

Native buffer sizes: 2048 and 1024 (2048 first: the SDK renders its demo
audio at the first). A block that completes a frame costs about 7 ms, and
1 ms per further frame, on one thread of a busy 2-core EPYC: at 48 kHz the
file runs 2.5 times faster than realtime at 1024 and 4.2 times at 2048, but
only 1.4 times at 512, where 4 blocks in 160 came late. The SDK queues a
smaller DAW buffer up to 1024 samples: 512 to 896 samples of delay on top of
the engine's own 1396 (29 ms at 48 kHz, for the bundled models).

Knobs: Neutone passes each as its mean over the buffer, a value ``v`` in 0..1,
mapped linearly onto the setting's range (:func:`knob_mappings`):

========  ===========================  ====================  =========================
knob      sets                         value at ``v``        default ``v``
========  ===========================  ====================  =========================
Pitch     ``adjuster.pitch_shift``     -24 + 48 v semitones  0.5 (no shift)
Autotune  ``adjuster.autotune``        v                     0 (off)
Loudness  ``adjuster.loudness_shift``  -30 + 60 v dB         0.5 (no shift)
Noise     ``noise_mix``                2 v                   0.5 (1: as trained)
========  ===========================  ====================  =========================

Pitch and loudness shift apply after auto-adjust, which moves the input to
the model's register and level by octaves and decibels.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch

from .. import __version__
from ..adjust import LIMITS
from ..errors import UserError
from ..live import LiveModel
from ..live.engine import MIX_RANGE
from ..transfer import check_instrument

SAMPLE_RATES = [48000, 44100]
BUFFER_SIZES = [2048, 1024]  # the SDK renders its sample audio at the first
AUTHORS = ["torchddsp"]
CITATION = (
    "Engel, J., Hantrakul, L., Gu, C., & Roberts, A. (2020). DDSP: Differentiable Digital "
    "Signal Processing. International Conference on Learning Representations (ICLR)."
)
MISSING_SDK = (
    "the Neutone export needs neutone-sdk: pip install 'torchddsp[neutone]' (neutone-sdk needs "
    "torchaudio, which pins torch, so it usually lives in a virtual environment of its own)"
)
NAME_CHARS, SHORT_CHARS, LONG_CHARS, TAG_CHARS = 30, 150, 500, 15  # neutone-sdk's limits


class Knob(NamedTuple):
    """A Neutone knob: ``v`` in 0..1 sets ``target`` to ``low + (high - low) * v``."""

    name: str
    target: str
    low: float
    high: float
    default: float  # in the target's units
    unit: str
    description: str

    def value(self, v: float) -> float:
        return self.low + (self.high - self.low) * v


def knob_mappings() -> tuple[Knob, ...]:
    """The four knobs of the Neutone model, in Neutone's order (see the module notes)."""
    semitones, autotune = LIMITS["pitch_shift"], LIMITS["autotune"]
    return (
        Knob("Pitch", "adjuster.pitch_shift", *semitones, default=0.0, unit="semitones",
             description="Pitch shift, -24..24 semitones (centre: none)"),
        Knob("Autotune", "adjuster.autotune", *autotune, default=0.0, unit="",
             description="Pull towards the notes of the key, 0 (off) .. 1 (exactly on them)"),
        Knob("Loudness", "adjuster.loudness_shift", -30.0, 30.0, default=0.0, unit="dB",
             description="Loudness shift, -30..30 dB (centre: none)"),
        Knob("Noise", "noise_mix", *MIX_RANGE, default=1.0, unit="",
             description="Noise (breath, bow) level, 0..2 (centre: as trained)"),
    )  # fmt: skip


def export_neutone(trained, target: str | Path) -> Path:
    """Wrap ``trained`` (a :class:`~torchddsp.models.TrainedModel`) for Neutone and write
    its ``.nm`` file, after neutone-sdk's own checks (reload, speed benchmark, offline
    render, saved == in-memory output). Written atomically: a failure leaves nothing.

    Shape: the plugin's audio [channels, n_samples] -> [channels, n_samples].
    """
    try:
        from neutone_sdk.utils import save_neutone_model
    except (ImportError, OSError) as error:  # OSError: a torchaudio built for another torch
        raise UserError(f"{MISSING_SDK}: {error}") from None
    check_instrument(trained)
    live = LiveModel(trained, SAMPLE_RATES[0], host_rates=tuple(SAMPLE_RATES)).requires_grad_(False)
    wrapper = _wrapper_class()(live, _metadata(trained, live))
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the engine's small ops: extra threads only contend (5x slower)
    try:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}.") as folder:
            save_neutone_model(wrapper, Path(folder), dump_samples=True, submission=True)
            os.replace(Path(folder) / "model.nm", target)
    finally:
        torch.set_num_threads(threads)
    return target


def _metadata(trained, live: LiveModel) -> dict[str, str | list[str]]:
    """Name, descriptions and tags from the model card (the model's name without one)."""
    title, paragraph = _card_title_and_paragraph(trained.card)
    name = title or trained.name
    summary = paragraph or f"A torchddsp timbre model: {name}."
    latency_ms = 1000.0 * live.latency_samples() / live.host_rate
    synths = ", ".join(live.model.synth.processors)
    tags = []
    for tag in ("ddsp", "timbre transfer", "torchddsp", name[:TAG_CHARS]):
        if tag not in tags:
            tags.append(tag)
    return {
        "name": _clip(f"torchddsp {name}", NAME_CHARS),
        "short": _clip(summary, SHORT_CHARS),
        "long": _clip(
            f"{summary} Sing or play one melodic line: it comes out in this timbre, "
            f"{latency_ms:.0f} ms later. Knobs: pitch shift, autotune, loudness shift, noise.",
            LONG_CHARS,
        ),
        "technical": _clip(
            "DDSP autoencoder (Engel et al., ICLR 2020) by torchddsp: the input's f0 "
            f"({trained.f0_method}) and A-weighted loudness drive a neural decoder whose "
            f"controls play the synthesis nodes {synths} at {trained.sample_rate} Hz, "
            f"{trained.frame_rate} frames/s. Windowed-sinc resampling to and from the host "
            f"rate; fixed latency {latency_ms:.1f} ms plus the plugin's buffering.",
            LONG_CHARS,
        ),
        "tags": tags,
    }


def _card_title_and_paragraph(card: Path | None) -> tuple[str, str]:
    """The card's ``#`` title and first paragraph, as plain text ("" when missing)."""
    if card is None:
        return "", ""
    title, lines = "", []
    for line in Path(card).read_text(encoding="utf-8").splitlines():
        if line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.strip() and not line.startswith("#"):
            lines.append(line.strip())
        elif lines:
            break
    return title, re.sub(r"[`*]", "", " ".join(lines))  # markdown's code and emphasis marks


def _clip(text: str, limit: int) -> str:
    """``text`` cut at a word boundary to fit ``limit`` characters."""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rsplit(" ", 1)[0].rstrip(",;:") + "…"


def _wrapper_class():
    """The ``WaveformToWaveformBase`` subclass, defined once neutone-sdk is importable."""
    from neutone_sdk import ContinuousNeutoneParameter, WaveformToWaveformBase

    class NeutoneLiveModel(WaveformToWaveformBase):
        """A :class:`~torchddsp.live.LiveModel` as a Neutone FX model (see the module notes).

        Shape: do_forward_pass: x [1, n_samples] -> [1, n_samples].
        """

        def __init__(self, live: LiveModel, metadata: dict[str, str | list[str]]):
            # The base class reads the metadata while it initialises.
            self.name, self.short, self.long = metadata["name"], metadata["short"], metadata["long"]
            self.technical, self.tags = metadata["technical"], metadata["tags"]
            self.version, self.authors, self.citation = __version__, AUTHORS, CITATION
            self.sample_rates, self.buffer_sizes = SAMPLE_RATES, BUFFER_SIZES
            super().__init__(live)
            self.knob_ranges = {knob.name: (knob.low, knob.high) for knob in knob_mappings()}

        def get_neutone_parameters(self) -> list[ContinuousNeutoneParameter]:
            return [
                ContinuousNeutoneParameter(
                    knob.name, knob.description, knob.default, knob.low, knob.high
                )
                for knob in knob_mappings()
            ]

        @torch.jit.export
        def get_model_name(self) -> str:
            return self.name

        @torch.jit.export
        def get_model_authors(self) -> list[str]:
            return self.authors

        @torch.jit.export
        def get_model_short_description(self) -> str:
            return self.short

        @torch.jit.export
        def get_model_long_description(self) -> str:
            return self.long

        @torch.jit.export
        def get_technical_description(self) -> str:
            return self.technical

        @torch.jit.export
        def get_technical_links(self) -> dict[str, str]:
            return {}  # the SDK would probe each link over the network while exporting

        @torch.jit.export
        def get_tags(self) -> list[str]:
            return self.tags

        @torch.jit.export
        def get_model_version(self) -> str:
            return self.version

        @torch.jit.export
        def is_experimental(self) -> bool:
            return False

        @torch.jit.export
        def get_citation(self) -> str:
            return self.citation

        @torch.jit.export
        def is_input_mono(self) -> bool:
            return True

        @torch.jit.export
        def is_output_mono(self) -> bool:
            return True

        @torch.jit.export
        def get_native_sample_rates(self) -> list[int]:
            return self.sample_rates

        @torch.jit.export
        def get_native_buffer_sizes(self) -> list[int]:
            return self.buffer_sizes

        @torch.jit.export
        def calc_model_delay_samples(self) -> int:
            return self.model.latency_samples()

        @torch.jit.export
        def set_model_sample_rate_and_buffer_size(self, sample_rate: int, n_samples: int) -> bool:
            return self.model.set_host_rate(sample_rate)

        @torch.jit.export
        def reset_model(self) -> bool:
            self.model.reset()
            return True

        def do_forward_pass(self, x: torch.Tensor, params: dict[str, torch.Tensor]) -> torch.Tensor:
            self.model.adjuster.pitch_shift = self._knob(params, "Pitch")
            self.model.adjuster.autotune = self._knob(params, "Autotune")
            self.model.adjuster.loudness_shift = self._knob(params, "Loudness")
            self.model.noise_mix = self._knob(params, "Noise")
            return self.model(x)

        def _knob(self, params: dict[str, torch.Tensor], name: str) -> float:
            """A knob's 0..1 value (the buffer's mean, a [1] tensor) in its target's units."""
            low, high = self.knob_ranges[name]
            return low + (high - low) * float(params[name].clamp(0.0, 1.0))

    return NeutoneLiveModel
