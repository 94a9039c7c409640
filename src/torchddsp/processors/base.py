"""Base classes of the processors: ``get_controls`` -> ``get_signal``.

A processor separates the mapping of raw network outputs to physical controls
(``get_controls``: scalings, normalisation, band-limiting) from rendering
(``get_signal``); ``forward`` does both. Sample rate is a default of the
processor that every call may override, so one processor serves any rate.
"""

from __future__ import annotations

from torch import nn

from ..functional._checks import check_positive


class Processor(nn.Module):
    """A differentiable DSP element.

    Subclasses implement ``get_controls(*inputs, sample_rate=None) -> dict``
    (tensors only) and ``get_signal(**controls, sample_rate=None) -> audio``;
    a :class:`Synthesizer`'s ``get_signal`` also takes ``n_samples=None``.
    """

    def __init__(self, sample_rate: float = 16000):
        super().__init__()
        check_positive(sample_rate, "sample_rate")
        self.sample_rate = sample_rate

    def get_controls(self, *inputs, sample_rate: float | None = None) -> dict:
        raise NotImplementedError

    def get_signal(self, **controls):
        raise NotImplementedError

    def forward(self, *inputs, sample_rate: float | None = None, **signal_kwargs):
        controls = self.get_controls(*inputs, sample_rate=sample_rate)
        return self.get_signal(**controls, sample_rate=sample_rate, **signal_kwargs)

    def rate(self, sample_rate: float | None) -> float:
        """The call's sample rate, or the processor's default."""
        if sample_rate is None:
            return self.sample_rate
        check_positive(sample_rate, "sample_rate")
        return sample_rate


class Synthesizer(Processor):
    """A processor that renders audio from frame-rate controls.

    The output length follows the controls: ``n_frames * sample_rate /
    frame_rate`` samples (rounded) unless ``n_samples`` is given.
    """

    def __init__(self, sample_rate: float = 16000, frame_rate: float = 250):
        super().__init__(sample_rate)
        check_positive(frame_rate, "frame_rate")
        self.frame_rate = frame_rate

    def n_samples_for(self, n_frames: int, sample_rate: float, n_samples: int | None) -> int:
        """Output length for ``n_frames`` controls at ``sample_rate``."""
        if n_samples is not None:
            check_positive(n_samples, "n_samples")
            return int(n_samples)
        return round(n_frames * sample_rate / self.frame_rate)
