"""Convert a Keras network for another runtime once, and keep the result on disk.

The conversion is Keras' own export (``model.export(path, format="openvino" | "onnx")``, with a
dynamic batch, height and width). Entries live under :func:`cache_root` and are keyed by the
network's content hash (its config and every weight's bytes: the checkpoint's content, wherever
it was loaded from) and by the runtime and its version, so a second start of the app or the CLI
loads the converted network instead of converting again, and a new runtime version converts
afresh.

Batch, height and width are dynamic where the network exports so; a network whose export needs
static spatial sizes (e.g. TensorFlow's bilinear ``UpSampling2D``) is converted for one tile
shape, ``spatial=(h, w)``, with the shape in its key.

An entry is a folder ``<root>/<hash>/<format>-<runtime version>[-HxW]/`` holding the converted files
and ``entry.json`` (what it was made from, the SHA-256 of each file, how long the conversion
took). It is used only when ``entry.json`` matches and every file has its recorded hash: a stale
or corrupt entry (another tiledseg's schema, another checkpoint, a truncated file) is rebuilt.
A new entry is written to a temporary folder beside it and renamed into place, so a crash never
leaves a half-written entry; entries of other runtime versions of the same checkpoint are
removed then.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "CACHE_ENV",
    "ENTRY_FILE",
    "CachedConversion",
    "cache_root",
    "content_hash",
    "convert",
    "export_network",
]

CACHE_ENV = "TILEDSEG_CACHE_DIR"
ENTRY_FILE = "entry.json"
_ENTRY_VERSION = 1
_hashes: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


@dataclass(frozen=True)
class CachedConversion:
    """A converted network on disk.

    Attributes:
        path: Path, the main file (``model.xml`` or ``model.onnx``).
        folder: Path, the entry's folder.
        converted: bool, True where this call converted (a cache miss).
        conversion_s: float, how long the conversion took when it was made.
    """

    path: Path
    folder: Path
    converted: bool
    conversion_s: float


def cache_root() -> Path:
    """Where converted networks are kept: ``$TILEDSEG_CACHE_DIR``, else
    ``$XDG_CACHE_HOME/tiledseg/runtimes`` (``~/.cache/tiledseg/runtimes``)."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "tiledseg" / "runtimes"


def content_hash(network: Any) -> str:
    """SHA-256 of a Keras network's config and weights (hex), computed once per network."""
    with _lock:
        cached = _hashes.get(network)
    if cached is not None:
        return cached
    import keras
    import numpy as np

    digest = hashlib.sha256()
    digest.update(network.to_json(sort_keys=True).encode("utf-8"))
    for weight in network.weights:
        value = np.ascontiguousarray(keras.ops.convert_to_numpy(weight))
        digest.update(f"{weight.path}:{value.dtype}:{value.shape}".encode())
        digest.update(value.tobytes())
    result = digest.hexdigest()
    with _lock:
        _hashes[network] = result
    return result


def convert(
    network: Any,
    *,
    fmt: str,
    runtime_version: str,
    check: Callable[[Path], None],
    root: Path | None = None,
    spatial: tuple[int, int] | None = None,
) -> CachedConversion:
    """The cached conversion of ``network`` to ``fmt``, converting on a miss.

    Args:
        network: keras.Model, float32.
        fmt: str, ``"openvino"`` (``model.xml`` + ``model.bin``) or ``"onnx"`` (``model.onnx``).
        runtime_version: str, the version of the runtime that will run it (part of the key).
        check: called with the new main file before it is moved into place; it raises if the
            runtime cannot load it or it does not reproduce Keras.
        root: Path or None, the cache folder (default :func:`cache_root`).
        spatial: ``(height, width)`` for a conversion with static spatial sizes, or None
            (default) for dynamic ones.

    Returns:
        CachedConversion.

    Raises:
        Whatever Keras' export or ``check`` raise; nothing is left in the cache then.
    """
    root = Path(root) if root is not None else cache_root()
    key = content_hash(network)
    shape = "" if spatial is None else f"-{int(spatial[0])}x{int(spatial[1])}"
    folder = root / key[:32] / f"{fmt}-{_safe(runtime_version)}{shape}"
    expected = {**_expected_entry(key, fmt, runtime_version), "spatial": shape[1:] or "dynamic"}
    entry = _valid_entry(folder, expected)
    if entry is not None:
        return CachedConversion(folder / entry["main"], folder, False, entry["conversion_s"])

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{fmt}-", dir=folder.parent))
    try:
        main = staging / _MAIN_FILES[fmt]
        start = time.perf_counter()
        export_network(network, main, fmt, spatial)
        conversion_s = time.perf_counter() - start
        check(main)
        files = {p.name: _sha256(p) for p in sorted(staging.iterdir()) if p.is_file()}
        record = {**expected, "main": main.name, "files": files, "conversion_s": conversion_s}
        (staging / ENTRY_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
        # Replace a stale or corrupt entry, and entries made by other runtime or Keras versions.
        shutil.rmtree(folder, ignore_errors=True)
        for old in folder.parent.iterdir():
            if old.is_dir() and old.name.startswith(f"{fmt}-") and _outdated(old, expected):
                shutil.rmtree(old, ignore_errors=True)
        try:
            os.replace(staging, folder)
        except OSError:
            # Another process put the same entry in place meanwhile: use it if it is sound.
            if _valid_entry(folder, expected) is None:
                raise
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return CachedConversion(folder / main.name, folder, True, conversion_s)


_MAIN_FILES = {"openvino": "model.xml", "onnx": "model.onnx"}


def _expected_entry(key: str, fmt: str, runtime_version: str) -> dict[str, Any]:
    import keras

    return {
        "entry_version": _ENTRY_VERSION,
        "content_hash": key,
        "format": fmt,
        "runtime_version": runtime_version,
        "keras_version": keras.__version__,
        "keras_backend": keras.backend.backend(),
    }


def _valid_entry(folder: Path, expected: dict[str, Any]) -> dict[str, Any] | None:
    try:
        entry = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(entry, dict) or any(entry.get(k) != v for k, v in expected.items()):
        return None  # stale: made for another checkpoint, runtime, Keras or schema
    files = entry.get("files")
    if not isinstance(files, dict) or entry.get("main") not in files:
        return None
    for name, digest in files.items():
        path = folder / name
        if not path.is_file() or _sha256(path) != digest:
            return None  # corrupt: a file is missing, truncated or altered
    return entry


def _outdated(folder: Path, current: dict[str, Any]) -> bool:
    try:
        entry = json.loads((folder / ENTRY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return True
    keys = ("entry_version", "runtime_version", "keras_version", "keras_backend")
    return not isinstance(entry, dict) or any(entry.get(k) != current[k] for k in keys)


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._" else "_" for c in text)


def export_network(
    network: Any, main: Path, fmt: str, spatial: tuple[int, int] | None = None
) -> None:
    """Write ``network`` as ``fmt`` (openvino: ``.xml`` + ``.bin``; onnx: ``.onnx``) at ``main``."""
    import keras

    channels = network.input_shape[-1]
    height, width = spatial if spatial is not None else (None, None)
    signature = [keras.InputSpec(shape=(None, height, width, channels), dtype="float32")]
    if fmt == "onnx" and keras.backend.backend() == "tensorflow":
        _onnx_from_savedmodel(network, main, signature)
        return
    network.export(str(main), format=fmt, verbose=False, input_signature=signature)


def _onnx_from_savedmodel(network: Any, main: Path, signature: list) -> None:
    """ONNX through Keras' SavedModel export, then tf2onnx's SavedModel loader.

    ``model.export(format="onnx")`` hands tf2onnx a function whose captured constants (e.g. a
    Normalization layer's mean and variance) stay unfed graph inputs; a SavedModel stores them
    as constants, and tf2onnx's SavedModel loader (as its command line uses) freezes them.
    """
    import tensorflow as tf
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common

    with tempfile.TemporaryDirectory(dir=main.parent) as saved:
        network.export(saved, format="tf_saved_model", verbose=False, input_signature=signature)
        graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
            saved,
            None,
            None,
            return_initialized_tables=True,
            return_tensors_to_rename=True,
        )
        with tf.device("/cpu:0"):
            _convert_common(
                graph_def,
                name=network.name,
                opset=17,
                input_names=inputs,
                output_names=outputs,
                tensors_to_rename=renames,
                initialized_tables=tables,
                output_path=str(main),
            )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
