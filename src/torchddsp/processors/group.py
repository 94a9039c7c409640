"""Routing processors (``Add``, ``Mix``) and ``ProcessorGroup``, a DAG of processors.

A group runs its nodes in the order given (the list must be topologically
sorted, as in DDSP). Every value a node produces is stored in a flat dict under
``<node>/signal`` and ``<node>/controls/<control>``; a node's inputs name keys
of that dict or plain keys of the input dict. Groups are built in Python or
from YAML (``ProcessorGroup.from_yaml``), including the DAGs shipped in
``torchddsp/processors/configs``.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..functional._checks import check_choice, check_tensor
from ..functional.core import RESAMPLE_METHODS, exp_sigmoid, resample_frames
from ..functional.sources import frequencies_sigmoid
from ..yaml_files import read_yaml, shipped_names
from .base import Processor
from .effects import ExpDecayReverb, FilteredNoiseReverb, FIRFilter, ModDelay, Reverb
from .harmonic import Harmonic
from .noise import FilteredNoise
from .sources import GlottalSource, Sinusoidal, Wavetable

ScaleFn = Callable[[torch.Tensor], torch.Tensor]
AUDIO_SHAPE = "[batch, n_samples]"


# Routing processors -----------------------------------------------------------------------------
def _check_same_shape(signal_one: torch.Tensor, signal_two: torch.Tensor) -> None:
    # Strict equality: broadcasting [b, n] with [b, n, 1] would silently give [b, n, n].
    if signal_one.shape != signal_two.shape:
        raise ValueError(
            "signal_one and signal_two must have the same shape, "
            f"found {tuple(signal_one.shape)} and {tuple(signal_two.shape)}"
        )


class Add(Processor):
    """Sum of two signals (DDSP ``processors.Add``).

    Shape: signal_one and signal_two of one shape (audio [batch, n_samples] or
    controls [batch, n_frames, channels]) -> that shape.
    """

    def __init__(self):
        super().__init__()

    def get_controls(
        self, signal_one: torch.Tensor, signal_two: torch.Tensor, sample_rate: float | None = None
    ) -> dict[str, torch.Tensor]:
        shape = "[batch, n_samples] or [batch, n_frames, channels]"
        check_tensor(signal_one, "signal_one", (2, 3), shape)
        check_tensor(signal_two, "signal_two", (2, 3), shape)
        _check_same_shape(signal_one, signal_two)
        return {"signal_one": signal_one, "signal_two": signal_two}

    def get_signal(
        self, signal_one: torch.Tensor, signal_two: torch.Tensor, sample_rate: float | None = None
    ) -> torch.Tensor:
        return signal_one + signal_two


class Mix(Processor):
    """Time-varying crossfade: ``signal_one * (1 - mix) + signal_two * mix``.

    ``mix = scale_fn(mix_level)`` (default sigmoid, so any network output is a
    valid mix in [0, 1]); frame-rate mix levels are upsampled to audio rate with
    ``resample_method``. Difference from DDSP ``processors.Mix``: DDSP weighs the
    signals by ``sqrt(mix)`` and ``1 - sqrt(1 - mix)``, which silences both at
    ``mix = 0``; this is the plain linear crossfade (``mix = 1`` is all signal_two).
    Shape: signal_one and signal_two [batch, n_samples], mix_level
    [batch, n_frames, 1] (n_frames may equal n_samples) -> [batch, n_samples].
    """

    def __init__(self, scale_fn: ScaleFn | None = torch.sigmoid, resample_method: str = "linear"):
        super().__init__()
        check_choice(resample_method, "resample_method", RESAMPLE_METHODS)
        self.scale_fn = scale_fn
        self.resample_method = resample_method

    def get_controls(
        self,
        signal_one: torch.Tensor,
        signal_two: torch.Tensor,
        mix_level: torch.Tensor,
        sample_rate: float | None = None,
    ) -> dict[str, torch.Tensor]:
        check_tensor(signal_one, "signal_one", 2, AUDIO_SHAPE)
        check_tensor(signal_two, "signal_two", 2, AUDIO_SHAPE)
        _check_same_shape(signal_one, signal_two)
        check_tensor(mix_level, "mix_level", 3, "[batch, n_frames, 1]")
        if mix_level.shape[0] != signal_one.shape[0] or mix_level.shape[2] != 1:
            raise ValueError(
                f"mix_level must have shape [batch={signal_one.shape[0]}, n_frames, 1], "
                f"found {tuple(mix_level.shape)}"
            )
        if self.scale_fn is not None:
            mix_level = self.scale_fn(mix_level)
        return {"signal_one": signal_one, "signal_two": signal_two, "mix_level": mix_level}

    def get_signal(
        self,
        signal_one: torch.Tensor,
        signal_two: torch.Tensor,
        mix_level: torch.Tensor,
        sample_rate: float | None = None,
    ) -> torch.Tensor:
        n_samples = signal_one.shape[1]
        if mix_level.shape[1] != n_samples:
            mix_level = resample_frames(mix_level, n_samples, self.resample_method)
        mix = mix_level[..., 0]
        return signal_one + mix * (signal_two - signal_one)


# Registry for configurations --------------------------------------------------------------------
PROCESSORS: Mapping[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        Harmonic,
        FilteredNoise,
        Reverb,
        ExpDecayReverb,
        FilteredNoiseReverb,
        FIRFilter,
        ModDelay,
        Sinusoidal,
        Wavetable,
        GlottalSource,
        Add,
        Mix,
    )
}
SCALE_FNS: Mapping[str, ScaleFn] = {
    "exp_sigmoid": exp_sigmoid,
    "sigmoid": torch.sigmoid,
    "softplus": F.softplus,
    "exp": torch.exp,
    "tanh": torch.tanh,
    "frequencies_sigmoid": frequencies_sigmoid,
}
CALL_OPTIONS = ("sample_rate", "n_samples", "generator")
NODE_KEYS = ("name", "processor", "inputs")
CONFIG_NODE_KEYS = ("name", "processor", "args", "inputs")
CONFIG_KEYS = ("nodes", "output")


# ProcessorGroup ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Node:
    name: str
    inputs: tuple[str, ...]
    controls_options: frozenset[str]  # CALL_OPTIONS that get_controls accepts
    signal_options: frozenset[str]  # CALL_OPTIONS that get_signal accepts


class ProcessorGroup(nn.Module):
    """A DAG of processors run in order (DDSP ``processors.ProcessorGroup``).

    ``nodes`` is a list of ``(processor, ["input_key", ...])`` tuples, named
    after the processor's ``name`` attribute or else its class in snake case
    (``FilteredNoise`` -> ``filtered_noise``), or of dicts ``{"name": ...,
    "processor": ..., "inputs": [...]}``. An input key is a plain name (a key
    of the input dict, without ``/``), ``<node>/signal`` or
    ``<node>/controls/<control>`` of an earlier node. ``output`` is the key
    :meth:`forward` returns, by default the last node's signal.

    Every call option (``sample_rate``, ``n_samples``, ``generator``) that is
    given is passed to each node's ``get_controls`` and ``get_signal`` whose
    signature accepts it, so processors that do not depend on the sample rate
    (or draw no noise) need not take it. Processors are submodules: their
    parameters are the group's and ``state_dict`` keys are
    ``processors.<node>.<parameter>``.
    """

    def __init__(self, nodes: Sequence[tuple | Mapping], output: str | None = None):
        super().__init__()
        if isinstance(nodes, (str, Mapping)) or not nodes:
            raise ValueError(f"nodes must be a non-empty list of nodes, found {nodes!r}")
        self.processors = nn.ModuleDict()
        self._nodes: list[_Node] = []
        for index, spec in enumerate(nodes):
            self._add_node(index, *_parse_node(spec, index))
        self.output = f"{self._nodes[-1].name}/signal" if output is None else output
        self._check_key(self.output, "output")

    @property
    def input_names(self) -> tuple[str, ...]:
        """The keys the input dict must provide, in order of first use."""
        plain = (key for node in self._nodes for key in node.inputs if "/" not in key)
        return tuple(dict.fromkeys(plain))

    def forward(
        self,
        inputs: Mapping[str, torch.Tensor],
        sample_rate: float | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Run the DAG and return the ``output`` signal.

        Shape: as the output node's signal, typically audio [batch, n_samples].
        """
        outputs = self.get_outputs(inputs, sample_rate, n_samples, generator)
        return _lookup(outputs, self.output, "output")

    def get_outputs(
        self,
        inputs: Mapping[str, torch.Tensor],
        sample_rate: float | None = None,
        n_samples: int | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Run the DAG; return the inputs plus every node's signal and controls.

        Keys: the input keys, ``<node>/signal`` and ``<node>/controls/<control>``.
        """
        if not isinstance(inputs, Mapping):
            raise ValueError(f"inputs must be a dict of tensors, found {type(inputs).__name__}")
        given = {"sample_rate": sample_rate, "n_samples": n_samples, "generator": generator}
        given = {key: value for key, value in given.items() if value is not None}
        outputs = dict(inputs)
        for node in self._nodes:
            args = [_lookup(outputs, key, f"node {node.name!r}") for key in node.inputs]
            processor = self.processors[node.name]
            controls = processor.get_controls(*args, **_accepted(given, node.controls_options))
            signal = processor.get_signal(**controls, **_accepted(given, node.signal_options))
            outputs[f"{node.name}/signal"] = signal
            outputs.update(
                {f"{node.name}/controls/{key}": value for key, value in controls.items()}
            )
        return outputs

    def extra_repr(self) -> str:
        return f"output={self.output!r}"

    def _add_node(
        self, index: int, name: str, processor: nn.Module, inputs: tuple[str, ...]
    ) -> None:
        label = f"node {index} ({name!r})"
        if name in self.processors:
            raise ValueError(f"{label}: duplicate node name {name!r}; give each node its own name")
        for key in inputs:
            self._check_key(key, label)
        _check_arity(processor, inputs, label)
        try:
            self.processors[name] = processor
        except KeyError as error:  # names such as "keys" or "items" clash with ModuleDict
            raise ValueError(f"{label}: {name!r} cannot be a node name ({error})") from error
        self._nodes.append(
            _Node(
                name,
                inputs,
                _call_options(processor.get_controls),
                _call_options(processor.get_signal),
            )
        )

    def _check_key(self, key: str, label: str) -> None:
        """A plain input name, or the signal or a control of an earlier node."""
        if "/" not in key:
            return
        node, _, rest = key.partition("/")
        kind, _, control = rest.partition("/")
        is_signal = kind == "signal" and not control
        is_control = kind == "controls" and control and "/" not in control
        if node in self.processors and (is_signal or is_control):
            return
        earlier = ", ".join(self.processors) or "none"
        raise ValueError(
            f"{label}: unknown key {key!r}: not a plain input name (no '/') nor "
            f"'<node>/signal' or '<node>/controls/<control>' of an earlier node "
            f"(earlier nodes: {earlier})"
        )

    @classmethod
    def from_config(
        cls, config: Mapping, processors: Mapping[str, type[nn.Module]] | None = None
    ) -> ProcessorGroup:
        """Build a group from a dict ``{"nodes": [...], "output": key}``.

        Each node is ``{"name", "processor" (a class name), "args" (optional
        constructor keyword arguments), "inputs"}``. Arguments named
        ``scale_fn`` or ``*_scale_fn`` may name a function of :data:`SCALE_FNS`
        (``exp_sigmoid``, ``sigmoid``, ``frequencies_sigmoid``, ...) or be null.
        ``processors`` adds or replaces classes of the registry :data:`PROCESSORS`
        (custom processors).
        """
        if not isinstance(config, Mapping) or "nodes" not in config:
            raise ValueError(
                f"a processor DAG config must be a mapping with 'nodes', found {config!r}"
            )
        _check_known_keys(config, CONFIG_KEYS, "processor DAG config")
        entries = config["nodes"]
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"'nodes' must be a non-empty list of nodes, found {entries!r}")
        registry = {**PROCESSORS, **(processors or {})}
        nodes = [_build_node(entry, index, registry) for index, entry in enumerate(entries)]
        return cls(nodes, output=config.get("output"))

    @classmethod
    def from_yaml(
        cls, path_or_name: str | Path, processors: Mapping[str, type[nn.Module]] | None = None
    ) -> ProcessorGroup:
        """Build a group from a YAML file, or from a shipped config by name.

        ``path_or_name`` is a path to a YAML file or the name of a config in
        ``torchddsp/processors/configs`` (see :func:`shipped_configs`), with or
        without ``.yaml``. Errors name the file and the node.
        """
        source, config = read_yaml(path_or_name, __package__, "processor DAG")
        try:
            return cls.from_config(config, processors)
        except ValueError as error:
            raise ValueError(f"{source}: {error}") from error


# Node parsing helpers ---------------------------------------------------------------------------
def _parse_node(spec: object, index: int) -> tuple[str, nn.Module, tuple[str, ...]]:
    """(name, processor, inputs) of a tuple or dict node, with types checked."""
    if isinstance(spec, Mapping):
        _check_known_keys(spec, NODE_KEYS, f"node {index}")
        if "processor" not in spec or "inputs" not in spec:
            raise ValueError(
                f"node {index}: needs 'processor' and 'inputs', found keys {list(spec)}"
            )
        processor, inputs = spec["processor"], spec["inputs"]
        name = spec.get("name") or _default_name(processor)
    elif isinstance(spec, (tuple, list)) and len(spec) == 2:
        processor, inputs = spec
        name = _default_name(processor)
    else:
        raise ValueError(
            f"node {index}: must be a (processor, inputs) tuple or a dict with "
            f"'name', 'processor', 'inputs', found {spec!r}"
        )
    label = f"node {index} ({name!r})"
    if not isinstance(name, str) or "/" in name or "." in name:
        raise ValueError(f"{label}: a node name must be a string without '/' or '.'")
    if not (
        isinstance(processor, nn.Module)
        and hasattr(processor, "get_controls")
        and hasattr(processor, "get_signal")
    ):
        raise ValueError(
            f"{label}: processor must be a Processor, found {type(processor).__name__}"
        )
    if not isinstance(inputs, (list, tuple)) or not all(isinstance(key, str) for key in inputs):
        raise ValueError(f"{label}: inputs must be a list of key strings, found {inputs!r}")
    return name, processor, tuple(inputs)


def _default_name(processor: object) -> str:
    """The processor's ``name`` attribute, else its class name in snake case."""
    name = getattr(processor, "name", None)
    if isinstance(name, str):
        return name
    return re.sub(
        r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", type(processor).__name__
    ).lower()


def _check_known_keys(mapping: Mapping, allowed: Sequence[str], label: str) -> None:
    unknown = [key for key in mapping if key not in allowed]
    if unknown:
        raise ValueError(f"{label}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")


def _check_arity(processor: nn.Module, inputs: tuple[str, ...], label: str) -> None:
    """The inputs must bind to get_controls' data parameters, never to a call option."""
    signature = inspect.signature(processor.get_controls)
    try:
        bound = signature.bind(*inputs)
        reason = "too many inputs" if set(bound.arguments) & set(CALL_OPTIONS) else ""
    except TypeError as error:
        reason = str(error)
    if reason:
        data = [name for name in signature.parameters if name not in CALL_OPTIONS]
        raise ValueError(
            f"{label}: {len(inputs)} inputs {list(inputs)} do not fit "
            f"{type(processor).__name__}.get_controls({', '.join(data)}): {reason}"
        )


def _call_options(method: Callable) -> frozenset[str]:
    """The CALL_OPTIONS a method takes as keywords (all of them if it takes **kwargs)."""
    parameters = inspect.signature(method).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return frozenset(CALL_OPTIONS)
    names = {p.name for p in parameters if p.kind is not inspect.Parameter.POSITIONAL_ONLY}
    return frozenset(names & set(CALL_OPTIONS))


def _accepted(given: dict, options: frozenset[str]) -> dict:
    return {key: value for key, value in given.items() if key in options}


def _lookup(outputs: Mapping[str, torch.Tensor], key: str, label: str) -> torch.Tensor:
    if key not in outputs:
        raise ValueError(
            f"{label}: missing input {key!r}; available: {', '.join(map(repr, outputs)) or 'none'}"
        )
    return outputs[key]


# Configuration helpers --------------------------------------------------------------------------
def _build_node(entry: object, index: int, registry: Mapping[str, type]) -> dict:
    """A config node -> a ``ProcessorGroup`` dict node with a constructed processor."""
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"node {index}: must be a mapping with {', '.join(CONFIG_NODE_KEYS)}, found {entry!r}"
        )
    label = f"node {index} ({entry.get('name')!r})"
    _check_known_keys(entry, CONFIG_NODE_KEYS, label)
    missing = [key for key in NODE_KEYS if key not in entry]
    if missing:
        raise ValueError(f"{label}: missing key {missing[0]!r}")
    kind = entry["processor"]
    if kind not in registry:
        raise ValueError(
            f"{label}: unknown processor {kind!r}; known: {', '.join(sorted(registry))}"
        )
    processor = _construct(registry[kind], entry.get("args") or {}, label)
    return {"name": entry["name"], "processor": processor, "inputs": entry["inputs"]}


def _construct(cls: type, args: object, label: str) -> nn.Module:
    if not isinstance(args, Mapping):
        raise ValueError(f"{label}: args must be a mapping of argument names, found {args!r}")
    accepted = inspect.signature(cls).parameters
    for key in args:
        if key not in accepted:
            raise ValueError(
                f"{label}: {cls.__name__} has no argument {key!r}; "
                f"its arguments: {', '.join(accepted)}"
            )
    kwargs = {key: _resolve_function(key, value, label) for key, value in args.items()}
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{label}: bad args for {cls.__name__}: {error}") from error


def _resolve_function(key: str, value: object, label: str) -> object:
    """Scale functions are given by name in configs."""
    if not (key == "scale_fn" or key.endswith("_scale_fn")) or value is None:
        return value
    if value not in SCALE_FNS:
        raise ValueError(
            f"{label}: unknown {key} {value!r}; choose one of {', '.join(SCALE_FNS)} or null"
        )
    return SCALE_FNS[value]


def shipped_configs() -> list[str]:
    """Names of the processor DAG configs shipped in ``torchddsp/processors/configs``."""
    return shipped_names(__package__)
