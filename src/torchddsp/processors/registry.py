"""Processors by name, for DAGs described in YAML: the registry and node construction."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..functional.core import exp_sigmoid
from ..functional.sources import frequencies_sigmoid
from ..yaml_files import shipped_names
from .effects import ExpDecayReverb, FilteredNoiseReverb, FIRFilter, ModDelay, Reverb
from .harmonic import Harmonic
from .noise import FilteredNoise
from .routing import Add, Mix
from .sources import GlottalSource, Sinusoidal, Wavetable

ScaleFn = Callable[[torch.Tensor], torch.Tensor]

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
NODE_KEYS = ("name", "processor", "inputs")
CONFIG_NODE_KEYS = ("name", "processor", "args", "inputs")
CONFIG_KEYS = ("nodes", "output")


def check_known_keys(mapping: Mapping, allowed: Sequence[str], label: str) -> None:
    unknown = [key for key in mapping if key not in allowed]
    if unknown:
        raise ValueError(f"{label}: unknown key {unknown[0]!r}; allowed keys: {', '.join(allowed)}")


def build_node(entry: object, index: int, registry: Mapping[str, type]) -> dict:
    """A config node -> a ``ProcessorGroup`` dict node with a constructed processor."""
    if not isinstance(entry, Mapping):
        raise ValueError(
            f"node {index}: must be a mapping with {', '.join(CONFIG_NODE_KEYS)}, found {entry!r}"
        )
    label = f"node {index} ({entry.get('name')!r})"
    check_known_keys(entry, CONFIG_NODE_KEYS, label)
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
