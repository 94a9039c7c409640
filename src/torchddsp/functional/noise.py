"""Counter-based white noise: sample ``i`` is a pure function of ``i`` and a seed.

Any split of a signal into blocks draws the same samples, so a noise source
renders offline and block by block alike, on any device, without carrying a
generator's state. The generator is splitmix64 (Steele, Lea and Flood 2014),
whose finaliser turns consecutive counters into independent 64-bit words.
"""

from __future__ import annotations

import torch


def _logical_shift(words: torch.Tensor, shift: int) -> torch.Tensor:
    # torch's >> on int64 is arithmetic; masking off the sign-extended bits makes it logical.
    return (words >> shift) & ((1 << (64 - shift)) - 1)


def _finalise(words: torch.Tensor) -> torch.Tensor:
    """splitmix64's finaliser on int64 words (the unsigned constants' int64 images;
    multiplication wraps as unsigned arithmetic does)."""
    words = words ^ _logical_shift(words, 30)
    words = words * -4658895280553007687  # 0xBF58476D1CE4E5B9
    words = words ^ _logical_shift(words, 27)
    words = words * -7723592293110705685  # 0x94D049BB133111EB
    return words ^ _logical_shift(words, 31)


def noise_key(seed: int) -> int:
    """The key ``splitmix64(seed)`` of a seed, as :func:`indexed_noise` takes it."""
    return int(_finalise(torch.tensor([seed], dtype=torch.int64)).item())


def indexed_noise(
    start: int,
    n_samples: int,
    key: int,
    dtype: torch.dtype = torch.float32,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Uniform white noise in [-1, 1) at sample indices ``start .. start + n_samples - 1``.

    Sample ``i`` is the top 24 bits of ``splitmix64(key + (i + 1) * golden)``
    (``golden`` = 0x9E3779B97F4A7C15, ``key`` from :func:`noise_key`) scaled to
    ``[-1, 1 - 2**-23]``: every split into blocks gives the same samples, and
    every dtype the same values (24 bits are exact in float32).
    Shape: -> [n_samples].
    """
    if not torch.jit.is_scripting() and (start < 0 or n_samples < 0):
        raise ValueError(
            f"start and n_samples must be >= 0, found start={start}, n_samples={n_samples}"
        )
    work = torch.float64 if dtype == torch.float64 else torch.float32
    out = torch.empty(n_samples, dtype=work, device=device)
    chunk = 1 << 16  # cache-sized: several times faster than one pass over long signals
    for lo in range(0, n_samples, chunk):
        hi = min(lo + chunk, n_samples)
        counters = torch.arange(start + lo + 1, start + hi + 1, dtype=torch.int64, device=device)
        words = _finalise(counters * -7046029254386353131 + key)  # 0x9E3779B97F4A7C15
        top = _logical_shift(words, 40)  # the top 24 bits
        out[lo:hi] = top.to(work) * (2.0**-23) - 1.0
    return out.to(dtype)
