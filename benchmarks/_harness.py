"""Shared benchmark harness: each case runs in a fresh process so peak memory is its own.

A case is a zero-argument factory returning a callable; the harness reports the
median wall time over repeats and the peak memory above the process's resident
size after setup (CPU: the kernel's VmHWM, reset after setup; CUDA: the allocator's peak).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time

import numpy as np
import torch

SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def machine_description(device: str = "cpu") -> str:
    if device == "cuda":
        return f"{torch.cuda.get_device_name()} (torch {torch.__version__})"
    cpu = _cpu_model() or platform.machine()
    threads = torch.get_num_threads()
    flags = " ".join(flag for flag in SIMD_FLAGS if flag in _cpu_flags()) or "none of " + ", ".join(
        SIMD_FLAGS
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {threads} threads, flags: {flags}, "
        f"load average {os.getloadavg()[0]:.1f} (torch {torch.__version__})"
    )


def _cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            line = next((line for line in f if line.startswith("flags")), "")
    except OSError:
        return set()
    return set(line.split(":", 1)[-1].split())


def _cpu_model() -> str | None:
    try:
        with open("/proc/cpuinfo") as f:
            return next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None
            )
    except OSError:
        return None


def _current_rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss() -> None:
    """Reset the kernel's high-water mark (VmHWM) to the current resident size."""
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as f:
        line = next(line for line in f if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def measure(run, device: str, repeats: int) -> dict:
    """Median seconds and peak extra memory (MiB) of ``run()``."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
    else:
        base = _current_rss_bytes()
        _reset_peak_rss()
    times = []
    for _ in range(repeats + 1):  # first run is warm-up
        sync()
        start = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - start)
    if device == "cuda":
        peak = torch.cuda.max_memory_allocated() - base
    else:
        peak = _peak_rss_bytes() - base
    return {"seconds": statistics.median(times[1:]), "peak_mib": max(peak, 0) / 2**20}


def run_case_in_subprocess(
    script: str, case: str, device: str, repeats: int, extra_args: list[str] = ()
) -> dict:
    cmd = [sys.executable, script, "--case", case, "--device", device, "--repeats", str(repeats)]
    cmd += list(extra_args)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def time_stream(call, signal: torch.Tensor, block: int, repeats: int, rate: int) -> dict:
    """Per-call times of ``call`` streaming ``signal`` ([..., n] at ``rate``) in blocks, after
    a warm-up pass: x realtime (wall clock and this thread's CPU time), median and p99 ms."""
    passes: list[list[float]] = []
    cpu_seconds: list[float] = []  # this thread's CPU time per pass: blind to other jobs' load

    def one_pass():
        times, cpu_start = [], time.thread_time()
        for start in range(0, signal.shape[-1] - block + 1, block):
            chunk = signal[..., start : start + block]
            begin = time.perf_counter()
            call(chunk)
            times.append(time.perf_counter() - begin)
        cpu_seconds.append(time.thread_time() - cpu_start)
        passes.append(times)

    result = measure(one_pass, "cpu", repeats)
    times = np.concatenate(passes[1:])  # the first pass is the warm-up
    audio_seconds = len(passes[0]) * block / rate
    return {
        "realtime": audio_seconds / result["seconds"],
        "cpu_realtime": audio_seconds / float(np.median(cpu_seconds[1:])),
        "median_ms": 1e3 * float(np.median(times)),
        "p99_ms": 1e3 * float(np.percentile(times, 99)),
        "peak_mib": result["peak_mib"],
    }


def print_table(title: str, rows: list[tuple[str, dict]]) -> None:
    print(f"\n{title}")
    print(f"{'case':<42}{'median s':>12}{'peak MiB':>12}")
    for name, result in rows:
        print(f"{name:<42}{result['seconds']:>12.4f}{result['peak_mib']:>12.1f}")
