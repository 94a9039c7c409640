"""The realtime engine: host audio in, a trained model's timbre out, block by block.

:class:`LiveModel` runs features, causal pitch repair, the transfer
adjustments and the model's synthesis as one stream at the model's rate,
between resamplers to and from the host's rate, with a fixed, reported
latency. It is TorchScript-compatible; :mod:`torchddsp.export` wraps it for
nn~ and Neutone.
"""

from .engine import LiveModel
from .repair import CausalPitchRepair

__all__ = ["CausalPitchRepair", "LiveModel"]
