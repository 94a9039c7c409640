"""Mixed precision: the dtype the networks compute in, by device."""

from __future__ import annotations

import torch


def amp_dtype(amp: bool, device: torch.device) -> torch.dtype | None:
    """The networks' mixed-precision dtype, None for float32.

    bfloat16 on GPUs that have it (no loss scaling needed), else float16; on
    CPUs with native bfloat16 arithmetic (AVX512-BF16 or AMX), bfloat16, whose
    matrix products run about 3x faster there; float32 on other CPUs, where
    bfloat16 would be emulated and slower.
    """
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and _cpu_has_native_bfloat16() else None


def _cpu_has_native_bfloat16() -> bool:
    return torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
