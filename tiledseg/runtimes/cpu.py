"""Which reduced precisions this CPU computes natively, detected at run time.

bfloat16 pays on a CPU only where it multiplies in bfloat16 itself: Intel AMX (``amx_bf16``,
Sapphire Rapids and later) or AVX512-BF16 (``avx512_bf16``: Cooper Lake, AMD Zen 4 and later).
Elsewhere a runtime emulates it (slower than float32) or quietly computes in float32, so
``precision="auto"`` picks it only where a probe finds one of these flags. The probe is a plain
function returning the CPU's feature flags, so a test (or a deployment that knows better) can
pass its own.
"""

from __future__ import annotations

import functools
import platform
from collections.abc import Callable, Iterable
from pathlib import Path

__all__ = ["BF16_FLAGS", "CpuProbe", "native_bfloat16", "read_cpu_flags"]

# Linux /proc/cpuinfo names of the features that compute bfloat16 natively.
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
CpuProbe = Callable[[], Iterable[str]]


@functools.cache  # a process runs on one CPU model
def read_cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> frozenset[str]:
    """The feature flags the kernel reports for the first CPU (empty where unknown).

    Args:
        cpuinfo: str, the file to read; ``/proc/cpuinfo`` on Linux.

    Returns:
        frozenset of flag names (``{"avx2", "amx_bf16", ...}``); empty off Linux or where the
        file cannot be read, so nothing is assumed.
    """
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("flags", "Features"):  # x86 / ARM spelling
            return frozenset(value.split())
    return frozenset()


def native_bfloat16(probe: CpuProbe | None = None) -> bool:
    """Whether this CPU multiplies in bfloat16 natively (AMX or AVX512-BF16).

    Args:
        probe: a function returning the CPU's feature flags, or None for
            :func:`read_cpu_flags`.

    Returns:
        bool.

    Example:
        >>> native_bfloat16(lambda: {"avx2", "fma"})
        False
        >>> native_bfloat16(lambda: {"avx512f", "amx_tile", "amx_bf16"})
        True
    """
    flags = set((probe or read_cpu_flags)())
    return any(flag in flags for flag in BF16_FLAGS)


def cpu_name() -> str:
    """The CPU model, for benchmark reports (``platform.processor()`` where /proc has none)."""
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()
