"""A stand-in for nn~'s backend: an exported file called exactly as nn~ calls it.

It needs torch alone (run it where torchddsp is not installed). What nn~ does,
from its backend source: it reads ``get_methods()`` and each method's
``<method>_params`` ([in_channels, in_ratio, out_channels, out_ratio]), calls a
method under inference mode with one float32 tensor ``[batch, in_channels,
block / in_ratio]`` for every block of its buffer size (a power of two), and
drops a block whose output is not ``[batch, out_channels, block / out_ratio]``;
``set NAME VALUE`` messages reach ``set_<NAME>`` as one positional value per
type id of ``<NAME>_params`` (bool 0, int 1, float 2, str 3), each parsed from
its Pd text (numbers printed with six decimals), and a non-zero return is a
failure.

Command line (for tests in a fresh interpreter): ``python nn_host.py stream
MODEL INPUT.pt OUTPUT.pt`` streams the input ([batch, channels, n]) through
``forward`` whole and in random blocks and saves both outputs.
"""

import random
import sys

import torch


def _pd_text(atom) -> str:
    """A Pd atom as nn~ turns it into text: floats with six decimals."""
    return atom if isinstance(atom, str) else f"{float(atom):f}"


def _parse(text: str, type_id: int):
    if type_id == 0:
        return text not in ("0", "false")
    if type_id == 1:
        return int(float(text)) if "." in text else int(text)  # std::stoi stops at the dot
    if type_id == 2:
        return float(text)
    return text


class NNHost:
    """An exported model loaded and driven as nn~ drives it."""

    def __init__(self, path: str):
        self.model = torch.jit.load(path).eval()
        self.methods = list(self.model.get_methods())
        self.params = {
            method: [int(v) for v in getattr(self.model, f"{method}_params").tolist()]
            for method in self.methods
        }
        self.attributes = [name for name in self.model.get_attributes() if name != "none"]
        self.attribute_types = {
            name: [int(v) for v in getattr(self.model, f"{name}_params").tolist()]
            for name in self.attributes
        }

    def call(self, method: str, block: torch.Tensor) -> torch.Tensor:
        """One buffer through ``method``, its output shape checked as nn~ checks it.

        Shape: block [batch, in_channels, n] -> [batch, out_channels, n].
        """
        in_channels, in_ratio, out_channels, out_ratio = self.params[method]
        batch, channels, n = block.shape
        if channels != in_channels:
            raise ValueError(f"{method} takes {in_channels} channels, found {channels}")
        with torch.inference_mode():
            out = getattr(self.model, method)(block[..., ::in_ratio].float().contiguous())
        expected = (batch, out_channels, n // out_ratio)
        if tuple(out.shape) != expected or out.dtype != torch.float32:
            raise ValueError(
                f"{method} returned {tuple(out.shape)} {out.dtype}, nn~ needs {expected}"
            )
        return out

    def run(self, method: str, signal: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """A whole signal through ``method`` in blocks of the given sizes.

        Shape: signal [batch, in_channels, n] -> [batch, out_channels, n].
        """
        pieces, start = [], 0
        for size in sizes:
            pieces.append(self.call(method, signal[..., start : start + size]))
            start += size
        return torch.cat(pieces, -1)

    def set(self, name: str, *atoms) -> int:
        """``set NAME ATOM...`` as nn~ sends it; the setter's return code."""
        types = self.attribute_types[name]
        if len(atoms) != len(types):
            raise ValueError(f"{name} takes {len(types)} values, found {len(atoms)}")
        values = [
            _parse(_pd_text(atom), type_id) for atom, type_id in zip(atoms, types, strict=True)
        ]
        return int(getattr(self.model, f"set_{name}")(*values))

    def get(self, name: str) -> list:
        return list(getattr(self.model, f"get_{name}")())


def random_sizes(n_samples: int, seed: int, largest: int = 4096) -> list[int]:
    """Block sizes from 1 to ``largest`` covering ``n_samples``."""
    rng, sizes = random.Random(seed), []
    while sum(sizes) < n_samples:
        sizes.append(min(rng.randint(1, largest), n_samples - sum(sizes)))
    return sizes


def _stream(model_path: str, input_path: str, output_path: str) -> None:
    sys.modules["torchddsp"] = None  # the file must not need the package
    signal = torch.load(input_path)
    n = signal.shape[-1]
    whole = NNHost(model_path).run("forward", signal, [n])
    blocks = NNHost(model_path).run("forward", signal, random_sizes(n, seed=0))
    torch.save({"whole": whole, "blocks": blocks, "torch": str(torch.__version__)}, output_path)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "stream":
        sys.exit("usage: python nn_host.py stream MODEL INPUT.pt OUTPUT.pt")
    _stream(*sys.argv[2:])
