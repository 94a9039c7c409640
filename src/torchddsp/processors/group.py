"""``ProcessorGroup``: a DAG of processors, offline and streaming.

A group runs its nodes in the order given (the list must be topologically
sorted, as in DDSP). Every value a node produces is stored in a flat dict under
``<node>/signal`` and ``<node>/controls/<control>``; a node's inputs name keys
of that dict or plain keys of the input dict. Groups are built in Python or
from YAML (``ProcessorGroup.from_yaml``), including the DAGs shipped in
``torchddsp/processors/configs``.

Streaming carries a dict of the nodes' states (see :mod:`.base`): each call
takes the new frames of the plain inputs, passes each node the new part of
its inputs, and returns what the output node emits. Nodes that lag differently
(a harmonic oscillator one frame, a centred noise filter half its taps) are
lined up by the nodes that join them.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..yaml_files import read_yaml
from .registry import (
    CONFIG_KEYS,
    NODE_KEYS,
    PROCESSORS,
    build_node,
    check_known_keys,
)

CALL_OPTIONS = ("sample_rate", "n_samples", "generator")
StreamStates = dict[str, dict[str, torch.Tensor]]


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

    __jit_unused_properties__ = ["input_names"]

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
        # What streaming reads, in types TorchScript knows.
        self._stream_inputs: dict[str, list[str]] = {n.name: list(n.inputs) for n in self._nodes}
        self._adds_dry: dict[str, bool] = {
            n.name: bool(getattr(self.processors[n.name], "add_dry", False)) for n in self._nodes
        }

    @property
    def input_names(self) -> tuple[str, ...]:
        """The keys the input dict must provide, in order of first use."""
        plain = (key for node in self._nodes for key in node.inputs if "/" not in key)
        return tuple(dict.fromkeys(plain))

    @torch.jit.unused
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

    @torch.jit.unused
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

    @torch.jit.export
    def init_state(
        self,
        batch_size: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
    ) -> StreamStates:
        """Every node's stream state, by node name. Shape: see :mod:`.base`."""
        if not torch.jit.is_scripting():
            self._check_streamable()
        states: StreamStates = {}
        for name, processor in self.processors.items():
            states[name] = processor.init_state(batch_size, dtype, device)
        return states

    @torch.jit.export
    def forward_stream(
        self,
        inputs: dict[str, torch.Tensor],
        state: StreamStates,
        final: bool = False,
        gains: dict[str, torch.Tensor] | None = None,
    ) -> tuple[dict[str, torch.Tensor], StreamStates]:
        """Stream the DAG: the new frames of the plain inputs in, every node's new audio out.

        ``gains`` (optional, by node name, each broadcastable to [batch, 1])
        scale a node's contribution as it streams: a synthesizer's signal, or
        the wet part of an effect that adds its dry input (live mix controls).
        Returns the signals by ``<node>/signal`` (the ``output`` key among
        them) and the new state.
        Shape: inputs {plain key: [batch, n_new_frames, channels]} ->
        {key: [batch, n_out_node]}.
        """
        signals: dict[str, torch.Tensor] = {}
        new_state: StreamStates = {}
        for name, processor in self.processors.items():
            args: list[torch.Tensor] = []
            for key in self._stream_inputs[name]:
                args.append(signals[key] if key in signals else inputs[key])
            out, new_state[name] = processor.forward_stream(args, state[name], final)
            if gains is not None and name in gains:
                gain = gains[name]
                out = args[0] + gain * (out - args[0]) if self._adds_dry[name] else gain * out
            signals[name + "/signal"] = out
        return signals, new_state

    def stream_lag(self, frame_channels: Mapping[str, int]) -> int:
        """Samples the streamed output lags behind the frames pushed in (see :mod:`.base`).

        ``frame_channels`` gives each plain input's channel count (the noise
        filter's length follows its band count).
        """
        lags: dict[str, int] = {}
        for node in self._nodes:
            input_lags = [lags.get(key, 0) for key in node.inputs]
            channels = [frame_channels.get(key, 0) for key in node.inputs]
            processor = self.processors[node.name]
            lags[f"{node.name}/signal"] = processor.stream_lag(input_lags, channels)
        return lags[self.output]

    def _check_streamable(self) -> None:
        for node in self._nodes:
            processor = self.processors[node.name]
            label = f"node {node.name!r} ({type(processor).__name__})"
            if not hasattr(processor, "forward_stream"):
                raise ValueError(f"{label}: this processor does not stream")
            for key in node.inputs:
                if "/controls/" in key:
                    raise ValueError(
                        f"{label}: streaming takes plain inputs and '<node>/signal', found {key!r}"
                    )
        if not self.output.endswith("/signal"):
            raise ValueError(f"streaming outputs a node's signal, found output {self.output!r}")

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
        check_known_keys(config, CONFIG_KEYS, "processor DAG config")
        entries = config["nodes"]
        if not isinstance(entries, list) or not entries:
            raise ValueError(f"'nodes' must be a non-empty list of nodes, found {entries!r}")
        registry = {**PROCESSORS, **(processors or {})}
        nodes = [build_node(entry, index, registry) for index, entry in enumerate(entries)]
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
        check_known_keys(spec, NODE_KEYS, f"node {index}")
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
