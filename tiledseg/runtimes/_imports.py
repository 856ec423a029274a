"""Optional runtime packages, imported on use; a missing one says what to install."""

from __future__ import annotations

import importlib
import importlib.util
from types import ModuleType

from tiledseg.errors import RuntimeNotInstalledError

# The versions tested with (requirements.txt / requirements-dev.txt).
PIP_NAMES = {"openvino": "openvino==2026.4.1", "onnxruntime": "onnxruntime==1.32.0"}
_EXPORT_NEEDS = {"onnx": "onnx==1.23.2 tf2onnx==1.17.0"}


def import_runtime(name: str) -> ModuleType:
    """Import ``openvino`` or ``onnxruntime``; RuntimeNotInstalledError names the pip line."""
    try:
        return importlib.import_module(name)
    except ImportError as error:
        raise RuntimeNotInstalledError(
            f"runtime={name!r} needs the {name} package, which is not installed "
            f"({error}). Install it with `pip install {PIP_NAMES[name]}`, or choose "
            "runtime='keras' (or 'auto', which uses what is installed)."
        ) from None


def installed(name: str) -> bool:
    """Whether ``import name`` would succeed, without importing it."""
    return importlib.util.find_spec(name) is not None


def require_export_tools(fmt: str) -> None:
    """Keras' ONNX export (TensorFlow backend) needs tf2onnx and onnx: say so before trying."""
    import keras

    needs = _EXPORT_NEEDS.get(fmt)
    via_tf = keras.backend.backend() in ("tensorflow", "jax")  # tf2onnx converts for both
    if needs and via_tf and not all(installed(m) for m in ("tf2onnx", "onnx")):
        raise RuntimeNotInstalledError(
            f"Converting to {fmt} with Keras' export needs `pip install {needs}`."
        )
