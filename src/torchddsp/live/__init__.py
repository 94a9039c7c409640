"""The realtime engine: host audio in, a trained model's timbre out, block by block.

:class:`LiveModel` runs features, causal pitch repair, the transfer
adjustments and the model's synthesis as one stream at the model's rate,
between resamplers to and from the host's rate, with a fixed, reported
latency; :class:`LiveVoice` does the same for a voice model, with pitch
shift, gender and age as audio-rate controls. Both are TorchScript-compatible;
:mod:`torchddsp.export` wraps them for nn~ (and the instrument for Neutone).
"""

from .engine import LiveModel
from .repair import CausalPitchRepair
from .voice import LiveVoice

__all__ = ["CausalPitchRepair", "LiveModel", "LiveVoice"]
