"""Choose the runtime and precision for a network, and build the runtime's tile backend.

``runtime="auto"`` means Keras on a GPU, and OpenVINO on a CPU where it is installed. On a CPU,
``precision="auto"`` means bfloat16 only where the CPU computes it natively (AMX or AVX512-BF16,
:mod:`tiledseg.runtimes.cpu`) and the runtime uses it (OpenVINO lists ``BF16`` among its CPU
capabilities); otherwise float32. Both checks are injectable probes, so the choice can be tested
for any CPU.
"""

from __future__ import annotations

import functools
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tiledseg._validation import validate_choice
from tiledseg.errors import TiledsegError
from tiledseg.precision import PRECISIONS, resolve_precision
from tiledseg.runtimes._imports import import_runtime, installed, require_export_tools
from tiledseg.runtimes.cache import cache_root, convert
from tiledseg.runtimes.cpu import CpuProbe, native_bfloat16

__all__ = [
    "CONVERSION_TOLERANCE",
    "RUNTIMES",
    "RuntimeChoice",
    "choose_runtime",
    "openvino_bf16_probe",
    "runtime_backend",
]

RUNTIMES = ("auto", "keras", "openvino", "onnxruntime")
# A conversion must reproduce Keras float32 to this (max |difference| in probability).
CONVERSION_TOLERANCE = 1e-4
_FORMATS = {"openvino": "openvino", "onnxruntime": "onnx"}

_backends: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@dataclass(frozen=True)
class RuntimeChoice:
    """What runs the network: ``runtime`` (keras|openvino|onnxruntime), ``precision``, and why."""

    runtime: str
    precision: str
    reason: str


@functools.cache  # asked on every image otherwise; the device does not change
def openvino_bf16_probe() -> bool:
    """Whether OpenVINO's CPU device computes bfloat16 (``BF16`` in its capabilities)."""
    ov = import_runtime("openvino")
    return "BF16" in set(ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def choose_runtime(
    runtime: str,
    precision: str,
    *,
    on_gpu: bool,
    cpu_probe: CpuProbe | None = None,
    runtime_bf16: Callable[[], bool] | None = None,
    available: Callable[[str], bool] = installed,
) -> RuntimeChoice:
    """Resolve ``runtime`` and ``precision`` (either may be ``"auto"``) for this machine.

    Args:
        runtime: one of ``"auto"``, ``"keras"``, ``"openvino"``, ``"onnxruntime"``.
        precision: one of ``"auto"``, ``"float32"``, ``"bfloat16"``, ``"float16"``.
        on_gpu: bool, whether Keras computes on a GPU.
        cpu_probe: returns the CPU's feature flags (default: ``/proc/cpuinfo``).
        runtime_bf16: returns whether OpenVINO computes bfloat16 here (default: its
            capabilities); asked only where the CPU has a bfloat16 unit.
        available: ``available(package)`` says whether a runtime package is installed.

    Returns:
        RuntimeChoice with no ``"auto"`` left.

    Raises:
        ValueError: an unknown value, or a precision the chosen runtime does not run.

    Example:
        >>> choose_runtime("auto", "auto", on_gpu=False, cpu_probe=lambda: {"avx2"},
        ...                available=lambda name: True).runtime
        'openvino'
    """
    validate_choice(runtime, RUNTIMES, "runtime")
    validate_choice(precision, PRECISIONS, "precision")

    def native() -> bool:
        return native_bfloat16(cpu_probe) and (runtime_bf16 or openvino_bf16_probe)()

    if runtime == "keras" or (runtime == "auto" and on_gpu):
        why = "asked for" if runtime == "keras" else "Keras on a GPU"
        return RuntimeChoice("keras", resolve_precision(precision, on_gpu), why)
    if runtime == "auto":
        if not available("openvino"):
            return RuntimeChoice(
                "keras", resolve_precision(precision, False), "OpenVINO is not installed"
            )
        if precision == "float16":
            return RuntimeChoice("keras", "float16", "float16 runs in Keras on a CPU")
        if precision == "bfloat16" and not native():
            return RuntimeChoice(
                "keras", "bfloat16", "bfloat16 asked for; this CPU has no bfloat16 unit"
            )
        runtime = "openvino"
    if runtime == "onnxruntime":
        if precision not in ("auto", "float32"):
            raise ValueError(
                "runtime='onnxruntime' computes in float32 only. Use precision='float32' or "
                f"'auto', or runtime='openvino'. Received: precision={precision!r}"
            )
        return RuntimeChoice("onnxruntime", "float32", "asked for")
    # OpenVINO
    if precision == "float16":
        raise ValueError(
            "runtime='openvino' runs float32 or bfloat16 on a CPU. Use precision='float32', "
            "'bfloat16' or 'auto', or runtime='keras'. Received: precision='float16'"
        )
    if precision == "auto":
        if native():
            return RuntimeChoice("openvino", "bfloat16", "CPU computes bfloat16 (AMX/AVX512-BF16)")
        return RuntimeChoice("openvino", "float32", "no native bfloat16 on this CPU")
    return RuntimeChoice("openvino", precision, "asked for")


def runtime_backend(
    network: Any,
    choice: RuntimeChoice,
    *,
    tile_shape: tuple[int, int] | None = None,
    root: Path | None = None,
    strict: bool = True,
) -> Any:
    """The tile backend that runs ``network`` as ``choice`` says, converted once per network.

    The converted network comes from the disk cache (:mod:`tiledseg.runtimes.cache`); the
    backend is kept per network and choice for the life of the process.

    Args:
        network: a float32 keras.Model.
        choice: a RuntimeChoice with runtime ``"openvino"`` or ``"onnxruntime"``.
        tile_shape: ``(height, width)`` of the tiles it will run, or None. Used only where the
            network does not export with dynamic spatial sizes (it is then converted for
            this shape).
        root: Path or None, the cache folder.
        strict: bool, default True: raise when the conversion fails; False (for
            ``runtime="auto"``) warns once and returns None, so the caller runs Keras.

    Returns:
        An :class:`~tiledseg.runtimes.OpenVINOModel` or
        :class:`~tiledseg.runtimes.OnnxRuntimeModel`, or None (see ``strict``).

    Raises:
        RuntimeNotInstalledError: the runtime is not installed.
        TiledsegError: the conversion failed or does not reproduce Keras.
    """
    key = (choice.runtime, choice.precision, str(root))
    with _lock:
        per_network = _backends.setdefault(network, {})
        static = per_network.get((*key, "static"))
        if static is not None and tile_shape is not None:
            key = (*key, tuple(tile_shape))  # converted per tile shape
        if key in per_network:
            return per_network[key]
    try:
        try:
            backend = _build(network, choice, root, None)
        except _DynamicExportError:
            if tile_shape is None:
                raise
            with _lock:
                per_network[(*key, "static")] = True
            key = (*key, tuple(tile_shape))
            backend = _build(network, choice, root, tuple(tile_shape))
    except Exception as error:
        if strict:
            raise
        warnings.warn(
            f"runtime='auto': {choice.runtime} cannot run {network.name!r} ({error}); running "
            "it with Keras instead.",
            RuntimeWarning,
            stacklevel=3,
        )
        backend = None
    with _lock:
        return per_network.setdefault(key, backend)


class _DynamicExportError(TiledsegError):
    """Keras' export failed with dynamic spatial sizes; a static tile shape may work."""


def _build(
    network: Any, choice: RuntimeChoice, root: Path | None, spatial: tuple[int, int] | None
) -> Any:
    from tiledseg.runtimes.backends import OnnxRuntimeModel, OpenVINOModel

    module = import_runtime(choice.runtime)  # before converting: say what to install first
    fmt = _FORMATS[choice.runtime]
    require_export_tools(fmt)
    root = Path(root) if root is not None else cache_root()
    probe = _probe_input(network, spatial)
    expected = np.asarray(network.predict_on_batch(probe), dtype=np.float32)

    def make(path: Path, precision: str) -> Any:
        if choice.runtime == "openvino":
            compiled = root / "openvino-compiled"
            return OpenVINOModel(path, precision=precision, compile_cache=compiled)
        return OnnxRuntimeModel(path, precision=precision)

    def check(path: Path) -> None:
        actual = make(path, "float32").predict_tiles(probe)
        error = float(np.max(np.abs(actual - expected))) if actual.shape == expected.shape else None
        if error is None or error > CONVERSION_TOLERANCE:
            raise TiledsegError(
                f"The {choice.runtime} conversion of {network.name!r} does not reproduce Keras: "
                + (
                    f"output shape {actual.shape}, Keras {expected.shape}."
                    if error is None
                    else f"max |difference| {error:.2e} > {CONVERSION_TOLERANCE}."
                )
            )

    try:
        converted = convert(
            network,
            fmt=fmt,
            runtime_version=module.__version__,
            check=check,
            root=root,
            spatial=spatial,
        )
    except TiledsegError:
        raise
    except Exception as error:  # Keras' export raises many types
        if spatial is None:
            raise _DynamicExportError(str(error)) from error
        raise TiledsegError(
            f"Keras could not convert {network.name!r} to {fmt}: {error}. Use runtime='keras'."
        ) from error
    return make(converted.path, choice.precision)


def _probe_input(network: Any, spatial: tuple[int, int] | None) -> np.ndarray:
    from tiledseg.tiling import downsampling_factor

    if spatial is None:
        factor = max(1, int(downsampling_factor(network)))
        spatial = (-(-64 // factor) * factor,) * 2
    channels = int(network.input_shape[-1] or 3)
    rng = np.random.default_rng(13)
    return rng.integers(0, 256, size=(2, *spatial, channels)).astype(np.float32)
