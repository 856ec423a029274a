"""Timing and peak memory for the benchmarks, on a CPU or a GPU, and what machine they ran on.

A method is a function of no arguments that returns its result on the host (a NumPy array):
converting to NumPy waits for the device, so wall-clock times include all the work. Peak memory
is the GPU allocator's peak over all of a method's calls where there is one (PyTorch:
``max_memory_allocated`` after ``reset_peak_memory_stats``; JAX: ``peak_bytes_in_use``, which
cannot be reset, so it is the process's peak so far and ``peak_rose`` says whether this method
raised it) and the process's resident-set growth during the timed calls on a CPU (sampled every
5 ms).
"""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from benchmarks.bench_tiling import PeakMemory
from tiledseg._device import on_gpu

__all__ = ["Timing", "machine_info", "memory_kind", "time_method", "to_host"]


@dataclass
class Timing:
    """One method's figures: first call (fresh instance), median of ``runs`` calls, peak MB."""

    first_s: float
    median_s: float
    runs: int
    peak_mb: float | None
    peak_rose: bool | None
    output: np.ndarray | None


def to_host(value: Any) -> np.ndarray | None:
    """``value`` as a NumPy array, which waits for the device to finish."""
    if value is None or isinstance(value, np.ndarray):
        return value
    return np.asarray(keras.ops.convert_to_numpy(value))


def memory_kind() -> str:
    """Which peak the ``peak_memory_mb`` figures are."""
    backend = keras.backend.backend()
    if on_gpu() and backend == "torch":
        return "torch.cuda.max_memory_allocated, reset before each method's first call"
    if on_gpu() and backend == "jax":
        return "jax peak_bytes_in_use: the process's peak so far (JAX cannot reset it)"
    return "resident-set growth of the process during the timed runs (CPU)"


class _Peak:
    """The peak memory between :meth:`start` and :meth:`stop`, by :func:`memory_kind`'s rule."""

    def __init__(self):
        self.kind = keras.backend.backend() if on_gpu() else "cpu"
        self.mb = self.rose = None

    def start(self) -> None:
        if self.kind == "torch":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        elif self.kind == "jax":
            self._before = _jax_peak()
        else:
            self._rss = PeakMemory().__enter__()

    def stop(self) -> None:
        if self.kind == "torch":
            import torch

            self.mb = torch.cuda.max_memory_allocated() / 2**20
        elif self.kind == "jax":
            peak = _jax_peak()
            self.mb = None if peak is None else peak / 2**20
            self.rose = None if peak is None or self._before is None else peak > self._before
        else:
            self._rss.__exit__(None, None, None)
            self.mb = self._rss.grown_mb


def _jax_peak() -> int | None:
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    return stats.get("peak_bytes_in_use")


def time_method(function: Callable[[], Any], repeats: int) -> Timing:
    """Time ``function``: its first call, then the median of ``repeats`` calls.

    The first call is the warm-up: on a fresh instance it includes tracing and compilation.
    A GPU's peak covers all calls; the resident-set growth on a CPU only the timed ones (the
    first call's growth is mostly compiled code and caches that stay).
    """
    peak = _Peak()
    if peak.kind != "cpu":
        peak.start()
    started = time.perf_counter()
    output = to_host(function())
    first = time.perf_counter() - started
    if peak.kind == "cpu":
        peak.start()
    times = []
    for _ in range(max(1, repeats)):
        started = time.perf_counter()
        output = to_host(function())
        times.append(time.perf_counter() - started)
    peak.stop()
    return Timing(first, statistics.median(times), len(times), peak.mb, peak.rose, output)


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def cpu_report() -> dict[str, Any]:
    """The CPU model, its core count and the bfloat16 / AMX flags it reports, for CPU rows."""
    from tiledseg.runtimes.cpu import cpu_name, read_cpu_flags

    flags = read_cpu_flags()
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "bf16_flags": sorted(f for f in flags if "bf16" in f or f.startswith("amx")),
    }


def machine_info() -> dict[str, Any]:
    """Platform, versions, the accelerator's name and the float32 math settings in force."""
    backend = keras.backend.backend()
    info: dict[str, Any] = {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "backend": backend,
        "on_gpu": on_gpu(),
        "gpu": None,
        "versions": {
            name: _version(name)
            for name in ("keras", "numpy", "jax", "jaxlib", "torch", "monai", "tensorflow")
        },
    }
    if backend == "jax":
        import jax

        device = jax.devices()[0]
        info["device"] = f"{device.platform}: {device.device_kind}"
        info["gpu"] = device.device_kind if device.platform == "gpu" else None
        # None means XLA's default, which lets float32 convolutions use TF32 on NVIDIA GPUs.
        info["float32_math"] = {
            "jax_default_matmul_precision": jax.config.jax_default_matmul_precision
        }
    elif backend == "torch":
        import torch

        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        info["device"] = info["gpu"] or "cpu"
        info["float32_math"] = {
            "cudnn.allow_tf32": torch.backends.cudnn.allow_tf32,
            "cuda.matmul.allow_tf32": torch.backends.cuda.matmul.allow_tf32,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        }
    return info
