"""Inference runtimes besides Keras: OpenVINO and ONNX Runtime, as tile backends.

``runtime="auto"`` (the engine's default) runs Keras on a GPU and OpenVINO on a CPU where it is
installed; see :func:`choose_runtime`. The network is converted once with Keras' own export and
kept on disk (:mod:`tiledseg.runtimes.cache`).

Example:
    >>> from tiledseg.runtimes import choose_runtime
    >>> choose_runtime("auto", "auto", on_gpu=True).runtime
    'keras'
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "RUNTIMES": "tiledseg.runtimes.select",
    "RuntimeChoice": "tiledseg.runtimes.select",
    "choose_runtime": "tiledseg.runtimes.select",
    "runtime_backend": "tiledseg.runtimes.select",
    "OpenVINOModel": "tiledseg.runtimes.backends",
    "OnnxRuntimeModel": "tiledseg.runtimes.backends",
    "native_bfloat16": "tiledseg.runtimes.cpu",
    "read_cpu_flags": "tiledseg.runtimes.cpu",
    "cache_root": "tiledseg.runtimes.cache",
    "content_hash": "tiledseg.runtimes.cache",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    # Lazy: an exported model runs through OpenVINOModel with no Keras import.
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tiledseg.runtimes' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
