"""Block-by-block rendering of a trained :class:`~torchddsp.models.Autoencoder`.

:class:`StreamingRenderer` takes f0 and loudness frames as they arrive and
returns the audio it can already finish; the blocks it returns join into
exactly (to float32 rounding) what one call over all the frames renders, for
any split of the frames. Memory stays bounded however long the input.

How each part of the synthesis DAG is made exact across blocks:

- decoder: the GRU's hidden state is carried from block to block;
- ``Harmonic``: sample ``n * hop + r`` mixes frames ``n`` and ``n + 1``
  (the last frame held), so a frame is rendered once the next one is known,
  and the fundamental's phase after exactly the emitted samples is carried;
- ``FilteredNoise``: the noise is :func:`indexed_noise`, a pure function of
  the absolute sample index, and each block is filtered with enough frames of
  context on both sides (the file's true edges at its start and end) that the
  centred FIR filters of neighbouring frames overlap as in one call;
- ``Add``: a sum, sample by sample;
- ``Reverb``, ``ExpDecayReverb``, ``FilteredNoiseReverb``: causal convolution
  with the node's dry-masked impulse response, whose tail is carried into the
  next blocks and dropped at the end (the offline output is cut to the input's
  length the same way).

The offline model draws its noise from ``torch.rand``; the renderer uses
:func:`indexed_noise` instead, so its noise is the offline filtering of
``indexed_noise(0, n_frames * hop, seed)`` rather than the same random draw.
"""

from __future__ import annotations

import math

import torch

from .functional._checks import check_tensor
from .functional.filters import fft_convolve, frequency_impulse_response
from .functional.oscillators import harmonic_synthesis
from .models.autoencoder import Autoencoder
from .processors import (
    Add,
    ExpDecayReverb,
    FilteredNoise,
    FilteredNoiseReverb,
    Harmonic,
    Reverb,
)
from .processors.effects import dry_masked

FRAMES_SHAPE = "[n_frames]"
REVERBS = (Reverb, ExpDecayReverb, FilteredNoiseReverb)
SUPPORTED = ("Harmonic", "FilteredNoise", "Add", *(cls.__name__ for cls in REVERBS))

# splitmix64 (Steele, Lea and Flood 2014): a counter-based generator whose
# finaliser turns consecutive counters into independent 64-bit words.
_MASK64 = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15
_MIX = ((30, 0xBF58476D1CE4E5B9), (27, 0x94D049BB133111EB), (31, None))
_NOISE_BITS = 24  # exact in float32, so every dtype gets the same values
_NOISE_CHUNK = {"cpu": 1 << 16, "cuda": 1 << 24}  # cache-sized chunks on CPU: several times faster


# Counter-based noise ----------------------------------------------------------------------------
def _to_int64(value: int) -> int:
    """An unsigned 64-bit word as the int64 with the same bits."""
    value &= _MASK64
    return value - (1 << 64) if value >> 63 else value


def _mix_scalar(value: int) -> int:
    """The splitmix64 finaliser on a Python int (unsigned 64-bit arithmetic)."""
    value &= _MASK64
    for shift, multiplier in _MIX:
        value ^= value >> shift
        if multiplier is not None:
            value = (value * multiplier) & _MASK64
    return value


def _mix_(words: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser, in place on int64 words (multiplication wraps).

    torch's ``>>`` on int64 is arithmetic; masking off the sign-extended bits
    makes it the logical shift of the unsigned words.
    """
    for shift, multiplier in _MIX:
        words ^= (words >> shift) & ((1 << (64 - shift)) - 1)
        if multiplier is not None:
            words *= _to_int64(multiplier)
    return words


def _uniform_(
    start: int, n_samples: int, key: int, dtype: torch.dtype, device, out: torch.Tensor
) -> None:
    """Write samples ``start .. start + n_samples - 1`` of :func:`indexed_noise` into ``out``."""
    counters = torch.arange(start + 1, start + 1 + n_samples, dtype=torch.int64, device=device)
    counters *= _to_int64(_GOLDEN)
    counters += key
    words = _mix_(counters)
    top = (words >> (64 - _NOISE_BITS)) & ((1 << _NOISE_BITS) - 1)
    torch.mul(top.to(dtype), 2.0 ** (1 - _NOISE_BITS), out=out)
    out -= 1.0


def indexed_noise(
    start: int,
    n_samples: int,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Uniform white noise in [-1, 1) that depends only on the sample index and seed.

    Sample ``i`` is the top 24 bits of ``splitmix64(key + (i + 1) * golden)``
    with ``key = splitmix64(seed)``, scaled to ``[-1, 1 - 2**-23]``: any split
    of a signal into blocks ``(start, n_samples)`` gives the same samples, and
    every dtype the same values (24 bits are exact in float32).
    Shape: -> [n_samples].
    """
    if start < 0 or n_samples < 0:
        raise ValueError(
            f"start and n_samples must be >= 0, found start={start}, n_samples={n_samples}"
        )
    key = _to_int64(_mix_scalar(int(seed)))
    work = torch.float64 if dtype == torch.float64 else torch.float32
    out = torch.empty(n_samples, dtype=work, device=device)
    chunk = _NOISE_CHUNK.get(out.device.type, _NOISE_CHUNK["cuda"])
    for lo in range(0, n_samples, chunk):
        hi = min(lo + chunk, n_samples)
        _uniform_(start + lo, hi - lo, key, work, out.device, out[lo:hi])
    return out.to(dtype)


# Frame buffers and DAG nodes --------------------------------------------------------------------
class _Frames:
    """A node's frame-rate controls from absolute frame ``base`` on.

    Shape: each control [1, n_buffered, channels].
    """

    def __init__(self) -> None:
        self.base = 0
        self.controls: dict[str, torch.Tensor] = {}

    def append(self, controls: dict[str, torch.Tensor]) -> None:
        if not self.controls:
            self.controls = dict(controls)
            return
        self.controls = {
            key: torch.cat([value, controls[key]], dim=1) for key, value in self.controls.items()
        }

    def get(self, lo: int, hi: int) -> dict[str, torch.Tensor]:
        """Frames ``[lo, hi)`` (absolute indices)."""
        start, stop = lo - self.base, hi - self.base
        return {key: value[:, start:stop] for key, value in self.controls.items()}

    def drop_before(self, index: int) -> None:
        if index > self.base:
            self.controls = {
                key: value[:, index - self.base :] for key, value in self.controls.items()
            }
            self.base = index


class _SynthNode:
    """A synthesizer node: its controls are computed as frames arrive and buffered."""

    lookahead = 0  # frames after the last emitted one that rendering needs
    lookbehind = 0  # emitted frames that later blocks still need

    def __init__(self, name: str, processor, inputs: tuple[str, ...], hop: int):
        self.name = name
        self.processor = processor
        self.inputs = inputs
        self.hop = hop
        self.reset()

    def reset(self) -> None:
        self.frames = _Frames()

    def add_frames(self, values: dict[str, torch.Tensor]) -> None:
        args = [values[key] for key in self.inputs]
        self.frames.append(self.processor.get_controls(*args))

    def trim(self, n_emitted: int) -> None:
        self.frames.drop_before(max(0, n_emitted - self.lookbehind))


class _HarmonicNode(_SynthNode):
    """``Harmonic``: frame ``n`` is rendered once frame ``n + 1`` is known; phase carried."""

    lookahead = 1

    def reset(self) -> None:
        super().reset()
        self.phase: torch.Tensor | None = None  # fundamental's phase after the emitted samples

    def render(self, lo: int, hi: int, final: bool, n_known: int) -> torch.Tensor:
        """Samples of frames ``[lo, hi)``. Shape: -> [1, (hi - lo) * hop]."""
        # One frame more than emitted supplies the next-frame half of the interpolation;
        # its own samples (the frame held) are dropped. At the end the last frame is held.
        stop = hi if final else hi + 1
        controls = self.frames.get(lo, stop)
        n_samples, n_keep = (stop - lo) * self.hop, (hi - lo) * self.hop
        rate = self.processor.sample_rate
        audio, phase = harmonic_synthesis(
            controls["f0_hz"],
            controls["amplitudes"],
            controls["harmonic_distribution"],
            n_samples,
            rate,
            self.processor.amp_resample_method,
            initial_phase=self.phase,
            final_samples=n_keep,
        )
        if not final:
            self.phase = phase
        return audio[:, :n_keep]


class _NoiseNode(_SynthNode):
    """``FilteredNoise`` on :func:`indexed_noise`, filtered with frames of context.

    Its centred FIR filter of ``taps`` taps spreads sample ``s`` over outputs
    ``s - taps // 2 .. s + taps - 1 - taps // 2``, so an output needs the noise
    and filters of frames up to ``taps // 2`` samples ahead and ``taps - 1 -
    taps // 2`` behind.
    """

    def __init__(
        self, name: str, processor, inputs: tuple[str, ...], hop: int, n_bands: int, seed: int
    ):
        super().__init__(name, processor, inputs, hop)
        self.seed = seed
        probe = torch.ones(1, n_bands)  # the filter length frequency_filter will use
        self.taps = frequency_impulse_response(probe, processor.window_size).shape[-1]
        self.delay = self.taps // 2
        self.lookahead = math.ceil(self.delay / hop)
        self.lookbehind = math.ceil((self.taps - 1 - self.delay) / hop)

    def render(self, lo: int, hi: int, final: bool, n_known: int) -> torch.Tensor:
        """Samples of frames ``[lo, hi)``. Shape: -> [1, (hi - lo) * hop]."""
        first = max(0, lo - self.lookbehind)
        last = n_known if final else hi + self.lookahead
        magnitudes = self.frames.get(first, last)["magnitudes"]
        noise = indexed_noise(
            first * self.hop,
            (last - first) * self.hop,
            self.seed,
            magnitudes.dtype,
            magnitudes.device,
        )
        ir = frequency_impulse_response(magnitudes, window_size=self.processor.window_size)
        # Full convolution: index i is sample first * hop + i - delay.
        full = fft_convolve(noise[None], ir, padding="valid", delay_compensation=0)
        offset = (lo - first) * self.hop + self.delay
        return full[:, offset : offset + (hi - lo) * self.hop]


class _ReverbNode:
    """A convolution reverb as an exact streaming causal convolution."""

    def __init__(self, name: str, processor, source: str):
        self.name = name
        self.processor = processor
        self.source = source
        self.reset()

    def reset(self) -> None:
        """Read the impulse response as the node does, dry tap masked; clear the tail."""
        probe = torch.zeros(1, 1)
        ir = self.processor.get_controls(probe)["ir"]
        ir = ir.reshape(-1, ir.shape[-1])
        if ir.shape[0] != 1:
            raise ValueError(
                f"node {self.name!r}: streaming needs one impulse response, found shape "
                f"{tuple(ir.shape)}"
            )
        self.ir = dry_masked(ir)
        self.tail = ir.new_zeros(1, ir.shape[-1] - 1)

    def render(self, dry: torch.Tensor) -> torch.Tensor:
        """Shape: dry [1, n] -> [1, n]."""
        n_samples = dry.shape[-1]
        wet = fft_convolve(dry, self.ir, padding="valid", delay_compensation=0)
        wet[:, : self.tail.shape[-1]] += self.tail
        self.tail = wet[:, n_samples:]
        wet = wet[:, :n_samples]
        return wet + dry if self.processor.add_dry else wet


class _AddNode:
    """``Add``: the sum of two earlier nodes' signals."""

    def __init__(self, name: str, sources: tuple[str, ...]):
        self.name = name
        self.sources = sources

    def reset(self) -> None:
        pass


# The renderer -----------------------------------------------------------------------------------
class StreamingRenderer:
    """Render an :class:`Autoencoder` (without z encoder) from frames as they arrive.

    :meth:`push` takes any number of new frames and returns the audio that is
    final so far; :meth:`flush` ends the input and returns the rest, the last
    frame held as offline; :meth:`reset` starts a new stream. The pieces
    concatenate to ``n_frames * hop`` samples equal to pushing all frames at
    once, whatever the split. Frame ``n``'s audio comes out once frame ``n +
    latency_frames`` has been pushed.

    The model is put in eval mode and runs without gradients; the reverbs'
    impulse responses are read when the renderer is built and at :meth:`reset`.
    Supported DAG nodes: ``Harmonic``, ``FilteredNoise``, ``Add`` and the
    trainable convolution reverbs, which is what the shipped DAGs use.

    Shape: push(f0_hz [n_frames], loudness_db [n_frames]) -> [n_out * hop];
    with ``components=True`` a dict of every node's signal by node name
    (``harmonic``, ``noise``, ...) and ``audio`` (the DAG's output), each
    [n_out * hop].
    """

    def __init__(self, model: Autoencoder, seed: int = 0):
        if not isinstance(model, Autoencoder):
            raise ValueError(f"model must be a torchddsp Autoencoder, found {type(model).__name__}")
        if model.encoder is not None:
            raise ValueError(
                "streaming needs a model without a z encoder (z_dims = 0), found z_dims="
                f"{model.config.z_dims}: z is computed from the audio being synthesised"
            )
        self.model = model.eval()
        self.seed = int(seed)
        self.hop = model.hop_size
        weight = model.decoder.dense_out.weight
        self.dtype, self.device = weight.dtype, weight.device
        with torch.no_grad():
            self._nodes, self._output = _build_nodes(model, self.hop, self.seed)
        self._synths = [node for node in self._nodes if isinstance(node, _SynthNode)]
        self._start()

    @property
    def latency_frames(self) -> int:
        """Frames of lookahead held back: 1 for the harmonic interpolation, or the
        noise filter's ``ceil((taps // 2) / hop)`` if larger (1 for the shipped configs).
        """
        return max((node.lookahead for node in self._synths), default=0)

    def reset(self) -> None:
        """Forget the stream: hidden state, phase, buffered frames, reverb tails."""
        with torch.no_grad():
            for node in self._nodes:
                node.reset()
        self._start()

    def push(
        self, f0_hz: torch.Tensor, loudness_db: torch.Tensor, components: bool = False
    ) -> torch.Tensor | dict[str, torch.Tensor]:
        """Add frames; return the audio now final (possibly none).

        Shape: f0_hz [n_frames], loudness_db [n_frames] -> see the class.
        """
        _check_frames(f0_hz, loudness_db)
        if self._flushed:
            raise ValueError("the stream was flushed; call reset() to start a new one")
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            if len(f0_hz):
                self._decode(f0_hz, loudness_db)
            ready = self._n_frames - self.latency_frames
            signals = self._advance(ready, final=False)
        return signals if components else signals["audio"]

    def flush(self, components: bool = False) -> torch.Tensor | dict[str, torch.Tensor]:
        """End the input: return the remaining audio, the last frame held.

        Shape: -> see the class.
        """
        if self._flushed:
            raise ValueError("the stream was flushed already; call reset() to start a new one")
        with torch.no_grad(), torch.autocast(self.device.type, enabled=False):
            signals = self._advance(self._n_frames, final=True)
        self._flushed = True
        return signals if components else signals["audio"]

    def _start(self) -> None:
        self._hidden: torch.Tensor | None = None
        self._n_frames = 0  # frames pushed
        self._n_emitted = 0  # frames whose audio was returned
        self._flushed = False

    def _decode(self, f0_hz: torch.Tensor, loudness_db: torch.Tensor) -> None:
        """Run the decoder on new frames and buffer every synthesizer's controls."""
        f0 = f0_hz.to(self.device, self.dtype)[None, :, None]
        loudness = loudness_db.to(self.device, self.dtype)[None, :, None]
        raw, self._hidden = self.model.decoder(f0, loudness, None, self._hidden)
        values = {**raw, "f0_hz": f0}
        for node in self._synths:
            node.add_frames(values)
        self._n_frames += len(f0_hz)

    def _advance(self, stop: int, final: bool) -> dict[str, torch.Tensor]:
        """Render frames ``[n_emitted, stop)``; 1-D signals by node name and ``audio``."""
        lo = self._n_emitted
        if stop <= lo:
            empty = torch.zeros(0, dtype=self.dtype, device=self.device)
            return {**{node.name: empty for node in self._nodes}, "audio": empty}
        signals: dict[str, torch.Tensor] = {}
        for node in self._nodes:
            if isinstance(node, _SynthNode):
                signals[node.name] = node.render(lo, stop, final, self._n_frames)
            elif isinstance(node, _ReverbNode):
                signals[node.name] = node.render(signals[node.source])
            else:  # Add
                one, two = node.sources
                signals[node.name] = signals[one] + signals[two]
        self._n_emitted = stop
        for node in self._synths:
            node.trim(stop)
        flat = {name: signal[0] for name, signal in signals.items()}
        return {**flat, "audio": flat[self._output]}


def _check_frames(f0_hz: object, loudness_db: object) -> None:
    check_tensor(f0_hz, "f0_hz", 1, FRAMES_SHAPE)
    check_tensor(loudness_db, "loudness_db", 1, FRAMES_SHAPE)
    if f0_hz.shape != loudness_db.shape:
        raise ValueError(
            "f0_hz and loudness_db must have the same number of frames, found shapes "
            f"{tuple(f0_hz.shape)} and {tuple(loudness_db.shape)}"
        )


# Reading the DAG --------------------------------------------------------------------------------
def _build_nodes(model: Autoencoder, hop: int, seed: int) -> tuple[list, str]:
    """Streaming nodes for the model's DAG, in its order, and the output node's name."""
    group = model.synth
    plain = {*model.decoder.output_sizes, "f0_hz"}  # what the Autoencoder feeds the DAG
    nodes: list = []
    for spec in group._nodes:
        processor = group.processors[spec.name]
        label = f"node {spec.name!r} ({type(processor).__name__})"
        kind = type(processor)
        audio_nodes = {node.name for node in nodes}
        if kind in (Harmonic, FilteredNoise):
            node = _synth_node(spec.name, processor, spec.inputs, hop, plain, model, seed, label)
            nodes.append(node)
        elif kind is Add:
            sources = tuple(_signal_source(key, audio_nodes, label) for key in spec.inputs)
            nodes.append(_AddNode(spec.name, sources))
        elif kind in REVERBS:
            if not processor.trainable or len(spec.inputs) != 1:
                raise ValueError(
                    f"{label}: streaming supports trainable reverbs with one audio input, "
                    f"found trainable={processor.trainable}, inputs {list(spec.inputs)}"
                )
            source = _signal_source(spec.inputs[0], audio_nodes, label)
            nodes.append(_ReverbNode(spec.name, processor, source))
        else:
            raise ValueError(
                f"{label}: streaming supports the node types {', '.join(SUPPORTED)}, "
                f"found {kind.__name__}"
            )
    output = _signal_source(group.output, {node.name for node in nodes}, "DAG output")
    return nodes, output


def _synth_node(name, processor, inputs, hop, plain, model, seed, label) -> _SynthNode:
    unknown = [key for key in inputs if key not in plain]
    if unknown:
        raise ValueError(
            f"{label}: streaming needs inputs among the decoder's controls and f0_hz "
            f"({', '.join(sorted(plain))}), found {unknown[0]!r}"
        )
    if processor.sample_rate != hop * processor.frame_rate:
        raise ValueError(
            f"{label}: sample_rate / frame_rate must be the model's hop {hop}, found "
            f"{processor.sample_rate} / {processor.frame_rate}"
        )
    if isinstance(processor, Harmonic):
        return _HarmonicNode(name, processor, inputs, hop)
    n_bands = model.decoder.output_sizes.get(inputs[0], 1)
    return _NoiseNode(name, processor, inputs, hop, n_bands, seed)


def _signal_source(key: str, audio_nodes: set[str], label: str) -> str:
    """The node whose audio ``key`` (``<node>/signal``) names."""
    node, _, rest = key.partition("/")
    if rest != "signal" or node not in audio_nodes:
        raise ValueError(
            f"{label}: streaming needs the signal of an earlier node ('<node>/signal'), "
            f"found {key!r}"
        )
    return node


# Convenience ------------------------------------------------------------------------------------
def render(
    model: Autoencoder,
    f0_hz: torch.Tensor,
    loudness_db: torch.Tensor,
    block_frames: int = 1000,
    seed: int = 0,
    components: bool = False,
) -> torch.Tensor | dict[str, torch.Tensor]:
    """Render a whole input through :class:`StreamingRenderer`, ``block_frames`` at a time.

    Shape: f0_hz [n_frames], loudness_db [n_frames] -> [n_frames * hop], or
    with ``components=True`` a dict of every node's signal and ``audio``.
    """
    _check_frames(f0_hz, loudness_db)
    if isinstance(block_frames, bool) or not isinstance(block_frames, int) or block_frames < 1:
        raise ValueError(f"block_frames must be a positive integer, found {block_frames!r}")
    renderer = StreamingRenderer(model, seed)
    pieces = [
        renderer.push(f0_hz[lo : lo + block_frames], loudness_db[lo : lo + block_frames], True)
        for lo in range(0, len(f0_hz), block_frames)
    ]
    pieces.append(renderer.flush(True))
    signals = {key: torch.cat([piece[key] for piece in pieces]) for key in pieces[0]}
    return signals if components else signals["audio"]
