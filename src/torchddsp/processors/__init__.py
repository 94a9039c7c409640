"""Processors: synthesizers, effects, routing and the ``ProcessorGroup`` DAG."""

from .base import Processor, Synthesizer
from .effects import ExpDecayReverb, FilteredNoiseReverb, FIRFilter, ModDelay, Reverb
from .group import ProcessorGroup
from .harmonic import Harmonic
from .noise import FilteredNoise
from .registry import PROCESSORS, shipped_configs
from .routing import Add, Mix
from .sources import GlottalSource, Sinusoidal, Wavetable

__all__ = [
    "PROCESSORS",
    "Add",
    "ExpDecayReverb",
    "FIRFilter",
    "FilteredNoise",
    "FilteredNoiseReverb",
    "GlottalSource",
    "Harmonic",
    "Mix",
    "ModDelay",
    "Processor",
    "ProcessorGroup",
    "Reverb",
    "Sinusoidal",
    "Synthesizer",
    "Wavetable",
    "shipped_configs",
]
