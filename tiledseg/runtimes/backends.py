"""OpenVINO and ONNX Runtime as tile backends for the engine.

Each runs a converted network (OpenVINO IR ``model.xml`` + ``model.bin``, or ``model.onnx``) on
float32 batches of tiles ``(N, h, w, C)`` of pixel values 0-255 and returns float32
probabilities ``(N, h, w, K)``: :func:`tiledseg.predict_tiled` cuts, flips, weights and blends
the tiles on the host (:mod:`tiledseg.tile_backend`), exactly as for TF Serving. Neither class
imports Keras or TensorFlow: an exported model runs with only its runtime (and NumPy) installed.

Both take any batch size (the networks are converted with a dynamic batch), so the engine sends
the last batch of an image with only the tiles left instead of padding it: a photo that is one
tile runs one tile, not ``batch_size``. Two batches are in flight by default, so the host cuts
and blends one batch while the runtime computes the other (each thread has its own OpenVINO
infer request; an ONNX Runtime session is thread-safe).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from tiledseg._validation import validate_choice, validate_range
from tiledseg.runtimes._imports import import_runtime

__all__ = ["OnnxRuntimeModel", "OpenVINOModel"]

DEFAULT_BATCH = 4
DEFAULT_IN_FLIGHT = 2
_OV_PRECISIONS = {"float32": "f32", "bfloat16": "bf16"}


class OpenVINOModel:
    """A converted network run by OpenVINO on the CPU, as a tile backend.

    Args:
        path: str or Path, the IR's ``.xml`` file (``.bin`` beside it), or an ``openvino.Model``.
        meta: the model's ``ModelMeta`` (or None): the engine reads scale, tile and the rest.
        precision: ``"float32"`` (default) or ``"bfloat16"``: OpenVINO's
            ``INFERENCE_PRECISION_HINT``. bfloat16 needs a CPU that computes it (AMX or
            AVX512-BF16); elsewhere OpenVINO would quietly run float32, so it is refused.
        batch_size: int >= 1, tiles per call (default 4).
        max_in_flight: int >= 1, calls at once (default 2).
        device: str, the OpenVINO device (default ``"CPU"``).
        compile_cache: str, Path or None: OpenVINO's compiled-model cache folder (``CACHE_DIR``).

    Attributes:
        precision: the precision the compiled model computes in, read back from OpenVINO.

    Raises:
        RuntimeNotInstalledError: OpenVINO is not installed (the message gives the pip line).
        ValueError: bfloat16 asked for where the device does not compute it.

    Example:
        >>> from tiledseg import predict_tiled
        >>> backend = OpenVINOModel.from_export("exports/unet-bloodcell-openvino")  # doctest: +SKIP
        >>> probabilities = predict_tiled(image, backend)  # doctest: +SKIP
    """

    runtime = "openvino"
    fixed_batch = False  # dynamic batch: the last call carries only the tiles left

    def __init__(
        self,
        path: Any,
        meta: Any = None,
        *,
        precision: str = "float32",
        batch_size: int = DEFAULT_BATCH,
        max_in_flight: int = DEFAULT_IN_FLIGHT,
        device: str = "CPU",
        compile_cache: str | os.PathLike | None = None,
    ):
        validate_choice(precision, tuple(_OV_PRECISIONS), "precision")
        validate_range(batch_size, "batch_size", low=1, integer=True)
        validate_range(max_in_flight, "max_in_flight", low=1, integer=True)
        ov = import_runtime("openvino")
        self.meta = meta
        self.batch_size = int(batch_size)
        self.max_in_flight = int(max_in_flight)
        core = ov.Core()
        if compile_cache is not None:
            core.set_property({"CACHE_DIR": str(compile_cache)})
        if precision == "bfloat16" and not openvino_computes_bf16(core, device):
            raise ValueError(
                f"precision='bfloat16' with runtime='openvino' needs a CPU that computes "
                f"bfloat16 (AMX or AVX512-BF16); OpenVINO's {device} device here offers "
                f"{list(core.get_property(device, 'OPTIMIZATION_CAPABILITIES'))} and would run "
                "float32. Use precision='float32' (or 'auto'), or runtime='keras'."
            )
        network = core.read_model(str(path)) if isinstance(path, (str, os.PathLike)) else path
        config = {
            "INFERENCE_PRECISION_HINT": _OV_PRECISIONS[precision],
            "PERFORMANCE_HINT": "LATENCY",
        }
        self._compiled = core.compile_model(network, device, config)
        self.precision = _precision_name(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        self._output = self._compiled.output(0)
        self._local = threading.local()
        self.path = Path(path) if isinstance(path, (str, os.PathLike)) else None

    @classmethod
    def from_export(cls, folder: str | os.PathLike, **kwargs: Any) -> OpenVINOModel:
        """Load ``python -m model_zoo export --format openvino``'s folder (IR + tiledseg.json)."""
        folder = Path(folder)
        return cls(folder / "model.xml", _export_meta(folder), **kwargs)

    def predict_tiles(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 batch of tiles ``(N, h, w, C)``; thread-safe."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
        return np.array(request.get_tensor(self._output).data, dtype=np.float32, copy=True)

    def __repr__(self) -> str:
        return f"OpenVINOModel({self.path}, precision={self.precision!r})"


class OnnxRuntimeModel:
    """A converted network (``.onnx``) run by ONNX Runtime on the CPU, as a tile backend.

    Args:
        path: str or Path, the ``.onnx`` file.
        meta: the model's ``ModelMeta`` (or None).
        precision: ``"float32"`` only (ONNX Runtime's CPU provider has no bfloat16 kernels for
            these layers).
        batch_size: int >= 1, tiles per call (default 4).
        max_in_flight: int >= 1, calls at once (default 2).

    Raises:
        RuntimeNotInstalledError: ONNX Runtime is not installed.

    Example:
        >>> backend = OnnxRuntimeModel.from_export("exports/unet-bloodcell-onnx")  # doctest: +SKIP
    """

    runtime = "onnxruntime"
    fixed_batch = False  # dynamic batch: the last call carries only the tiles left

    def __init__(
        self,
        path: str | os.PathLike,
        meta: Any = None,
        *,
        precision: str = "float32",
        batch_size: int = DEFAULT_BATCH,
        max_in_flight: int = DEFAULT_IN_FLIGHT,
    ):
        if precision != "float32":
            raise ValueError(
                "runtime='onnxruntime' computes in float32 only. Use precision='float32' (or "
                f"'auto'), or runtime='openvino' for bfloat16. Received: precision={precision!r}"
            )
        validate_range(batch_size, "batch_size", low=1, integer=True)
        validate_range(max_in_flight, "max_in_flight", low=1, integer=True)
        ort = import_runtime("onnxruntime")
        self.meta = meta
        self.batch_size = int(batch_size)
        self.max_in_flight = int(max_in_flight)
        self.precision = "float32"
        self.path = Path(path)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self._input = self._session.get_inputs()[0].name

    @classmethod
    def from_export(cls, folder: str | os.PathLike, **kwargs: Any) -> OnnxRuntimeModel:
        """Load ``python -m model_zoo export --format onnx``'s folder (model + tiledseg.json)."""
        folder = Path(folder)
        return cls(folder / "model.onnx", _export_meta(folder), **kwargs)

    def predict_tiles(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities for a float32 batch of tiles ``(N, h, w, C)``; thread-safe."""
        feed = {self._input: np.ascontiguousarray(batch, dtype=np.float32)}
        return np.asarray(self._session.run(None, feed)[0], dtype=np.float32)

    def __repr__(self) -> str:
        return f"OnnxRuntimeModel({self.path})"


def openvino_computes_bf16(core: Any, device: str = "CPU") -> bool:
    """Whether OpenVINO's ``device`` computes bfloat16 natively (its optimisation capabilities)."""
    return "BF16" in set(core.get_property(device, "OPTIMIZATION_CAPABILITIES"))


def _precision_name(value: Any) -> str:
    text = str(value).lower()
    return "bfloat16" if "bf16" in text or "bfloat16" in text else "float32"


def _export_meta(folder: Path) -> Any:
    from tiledseg.contract import META_FILE, load_meta

    return load_meta(folder / META_FILE) if (folder / META_FILE).is_file() else None
