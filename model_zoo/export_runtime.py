"""Export a zoo model for OpenVINO or ONNX Runtime: the network plus ``tiledseg.json``.

The folder written (``--out``, which must not exist) holds::

    model.xml + model.bin   (openvino)   or   model.onnx   (onnx)
    tiledseg.json           the inference contract: scale, tile, overlap, threshold...

The network is converted by Keras' own export (:func:`tiledseg.runtimes.cache.export_network`,
dynamic batch, height and width), written to a temporary folder beside ``--out``, reloaded with
its own runtime and compared with the Keras model (max difference at most
:data:`model_zoo.export.EXPORT_TOLERANCE`) on a non-square input, then renamed into place.
Run it with :class:`tiledseg.runtimes.OpenVINOModel` / :class:`~tiledseg.runtimes.OnnxRuntimeModel`
(``.from_export(folder)``) or with the runtime alone (see the README).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from model_zoo.errors import ModelLoadError
from model_zoo.export import check_out_folder, staging_folder
from model_zoo.layout import META_FILE
from model_zoo.loader import ZooModel, load
from tiledseg._validation import validate_choice

__all__ = ["RUNTIME_EXPORT_FORMATS", "RUNTIME_FILES", "export_for_runtime"]

RUNTIME_EXPORT_FORMATS = ("onnx", "openvino")
RUNTIME_FILES = {"openvino": ("model.xml", "model.bin"), "onnx": ("model.onnx",)}
_CHECK_SIDE = 64


def export_for_runtime(
    ref: str | os.PathLike | ZooModel,
    out_dir: str | os.PathLike,
    *,
    format: str,
    revision: str | None = None,
) -> Path:
    """Export a zoo model to ``out_dir`` for OpenVINO (``"openvino"``) or ONNX Runtime (``"onnx"``).

    Args:
        ref: str, PathLike or ZooModel: any reference :func:`model_zoo.load` accepts.
        out_dir: str or PathLike, the folder to create (it must not exist).
        format: ``"onnx"`` or ``"openvino"``.
        revision: str or None, for Hub references.

    Returns:
        Path of the folder.

    Raises:
        ValueError: an unknown format, or ``out_dir`` exists.
        RuntimeNotInstalledError: the runtime (or, for ONNX, tf2onnx) is not installed.
        ModelLoadError: the conversion fails or does not reproduce the Keras model; nothing is
            written then.

    Example:
        >>> export_for_runtime(  # doctest: +SKIP
        ...     "unet-bloodcell", "exports/bloodcell-ov", format="openvino")
        PosixPath('exports/bloodcell-ov')
    """
    from tiledseg.errors import TiledsegError
    from tiledseg.runtimes._imports import import_runtime, require_export_tools
    from tiledseg.runtimes.cache import export_network

    validate_choice(format, RUNTIME_EXPORT_FORMATS, "format")
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ValueError(f"`out` already exists; choose a new folder. Received: out={out_dir}")
    check_out_folder(out_dir)
    runtime = "openvino" if format == "openvino" else "onnxruntime"
    import_runtime(runtime)  # a missing runtime is reported before the model loads
    require_export_tools(format)
    zoo_model = ref if isinstance(ref, ZooModel) else load(ref, revision)

    staging = staging_folder(out_dir)
    try:
        main = staging / RUNTIME_FILES[format][0]
        try:
            export_network(zoo_model.model, main, format)
        except TiledsegError:
            raise
        except Exception as error:  # Keras' export raises many types
            raise ModelLoadError(
                f"Keras could not export {zoo_model.id} to {format}: {error}"
            ) from error
        _check_export(zoo_model, main, runtime)
        zoo_model.meta.write(staging / META_FILE)
        os.chmod(staging, 0o755)  # mkdtemp makes it private
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def _check_export(zoo_model: ZooModel, main: Path, runtime: str) -> None:
    from tiledseg.runtimes.backends import OnnxRuntimeModel, OpenVINOModel

    factor = zoo_model.meta.downsampling
    side = -(-_CHECK_SIDE // factor) * factor
    shape = (2, side, side + factor, zoo_model.meta.input_channels)  # not square
    images = np.random.default_rng(0).uniform(0, 255, shape).astype("float32")
    expected = np.asarray(zoo_model.model.predict_on_batch(images), dtype="float32")
    backend = OpenVINOModel(main) if runtime == "openvino" else OnnxRuntimeModel(main)
    actual = backend.predict_tiles(images)
    from model_zoo.export import EXPORT_TOLERANCE

    difference = (
        float(np.max(np.abs(actual - expected))) if actual.shape == expected.shape else np.inf
    )
    if difference > EXPORT_TOLERANCE:
        raise ModelLoadError(
            f"The {runtime} export of {zoo_model.id} does not reproduce the Keras model "
            f"(shape {actual.shape} vs {expected.shape}, max difference {difference:.2e}); "
            "nothing was written."
        )
