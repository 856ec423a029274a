"""Read a PyTorch checkpoint's tensors into NumPy without torch and without running its code.

PyTorch checkpoints are pickles, and unpickling can call any importable function. This reader
allows only the names a plain ``state_dict`` of tensors needs (an ``OrderedDict``, the tensor
rebuild function and the typed storages) and refuses every other name before it is called, so a
foreign or hostile file fails with :class:`WeightsFileError` and runs nothing.

Both layouts are read: the legacy stream (PyTorch < 1.6: magic number, protocol version,
system info, the pickled object, the storage keys, then each storage's raw bytes) and the zip
archive (``archive/data.pkl`` with one ``archive/data/<key>`` entry per storage).
"""

from __future__ import annotations

import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["WeightsFileError", "read_state_dict"]

# The legacy format's first pickled object.
_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_PROTOCOL_VERSION = 1001

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class WeightsFileError(ValueError):
    """A weights file is missing, truncated, or not a plain PyTorch state dict."""


@dataclass(frozen=True)
class _StorageType:
    dtype: type


@dataclass
class _TensorRef:
    key: str
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *_ignored):
    return _TensorRef(storage[0], int(storage_offset), tuple(size), tuple(stride))


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    **{("torch", name): _StorageType(dtype) for name, dtype in _STORAGE_DTYPES.items()},
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path, storages: dict[str, tuple[type, int]]):
        super().__init__(file)
        self._path = path
        self._storages = storages

    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise WeightsFileError(
                f"{self._path} is not a plain PyTorch state dict: it asks to load "
                f"{module}.{name}, which this reader does not allow (only tensors, storages "
                "and OrderedDict). Refusing to read it."
            ) from None

    def persistent_load(self, pid):
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
            raise WeightsFileError(f"{self._path}: unexpected persistent id {pid!r}.")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        if not isinstance(storage_type, _StorageType):
            raise WeightsFileError(f"{self._path}: unsupported storage type {storage_type!r}.")
        self._storages[key] = (storage_type.dtype, numel)
        return (key,)


def _as_array(ref: _TensorRef, data: dict[str, np.ndarray], path: Path) -> np.ndarray:
    if ref.key not in data:
        raise WeightsFileError(f"{path}: the data of storage {ref.key!r} is missing.")
    flat = data[ref.key]
    itemsize = flat.itemsize
    needed = ref.offset + 1 + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if ref.size and min(ref.size) > 0 and needed > flat.size:
        raise WeightsFileError(
            f"{path}: a tensor reaches past the end of its storage (truncated?)."
        )
    array = np.lib.stride_tricks.as_strided(
        flat[ref.offset :],
        shape=ref.size,
        strides=tuple(s * itemsize for s in ref.stride),
        writeable=False,
    )
    return np.array(array)  # a contiguous copy, independent of the storage buffer


def _read_exact(file, count: int, path: Path) -> bytes:
    chunk = file.read(count)
    if len(chunk) != count:
        raise WeightsFileError(
            f"{path} is truncated: expected {count} more bytes of tensor data, found {len(chunk)}."
        )
    return chunk


def _read_legacy(file, path: Path) -> tuple[object, dict[str, np.ndarray]]:
    storages: dict[str, tuple[type, int]] = {}

    def load():
        return _RestrictedUnpickler(file, path, storages).load()

    if load() != _MAGIC_NUMBER:
        raise WeightsFileError(f"{path} is not a PyTorch checkpoint (wrong magic number).")
    if load() != _PROTOCOL_VERSION:
        raise WeightsFileError(f"{path}: unsupported PyTorch checkpoint protocol version.")
    system = load()
    if not isinstance(system, dict) or not system.get("little_endian", False):
        raise WeightsFileError(f"{path}: only little-endian checkpoints are supported.")
    obj = load()
    keys = load()
    data: dict[str, np.ndarray] = {}
    for key in keys:
        dtype, numel = storages[str(key)]
        (count,) = struct.unpack("<q", _read_exact(file, 8, path))
        if count != numel:
            raise WeightsFileError(f"{path}: storage {key!r} holds {count} values, not {numel}.")
        itemsize = np.dtype(dtype).itemsize
        data[str(key)] = np.frombuffer(_read_exact(file, count * itemsize, path), dtype=dtype)
    return obj, data


def _read_zip(path: Path) -> tuple[object, dict[str, np.ndarray]]:
    storages: dict[str, tuple[type, int]] = {}
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
        pickles = [name for name in names if name.endswith("/data.pkl")]
        if len(pickles) != 1:
            raise WeightsFileError(f"{path}: a zip checkpoint needs exactly one data.pkl.")
        prefix = pickles[0][: -len("data.pkl")]
        with archive.open(pickles[0]) as file:
            obj = _RestrictedUnpickler(io.BytesIO(file.read()), path, storages).load()
        data = {}
        for key, (dtype, numel) in storages.items():
            raw = archive.read(f"{prefix}data/{key}")
            expected = numel * np.dtype(dtype).itemsize
            if len(raw) != expected:
                raise WeightsFileError(
                    f"{path}: storage {key!r} has {len(raw)} bytes, not {expected}."
                )
            data[key] = np.frombuffer(raw, dtype=dtype)
    return obj, data


def read_state_dict(path: str | Path) -> dict[str, np.ndarray]:
    """The tensors of a PyTorch ``state_dict`` file as NumPy arrays, in file order.

    Args:
        path: a ``.pth``/``.pt`` file holding a (possibly ordered) dict of tensors.

    Returns:
        ``{name: array}``; arrays keep their PyTorch layout (convolutions
        ``(out, in, kh, kw)``).

    Raises:
        WeightsFileError: the file is missing, empty, truncated, not a PyTorch checkpoint, or
            asks for anything but tensors (nothing outside the allowed names is called).

    Example:
        >>> tensors = read_state_dict("efficientnet-lite0-57934424.pth")
        >>> tensors["_conv_stem.weight"].shape
        (32, 3, 3, 3)
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsFileError(f"Weights file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsFileError(f"Weights file is empty: {path}")
    try:
        if zipfile.is_zipfile(path):
            obj, data = _read_zip(path)
        else:
            with path.open("rb") as file:
                obj, data = _read_legacy(file, path)
    except WeightsFileError:
        raise
    except (
        pickle.UnpicklingError,
        EOFError,
        struct.error,
        zipfile.BadZipFile,
        KeyError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
    ) as error:
        raise WeightsFileError(
            f"{path} is not a readable PyTorch state dict (truncated or another format): {error}"
        ) from None
    if not isinstance(obj, dict):
        raise WeightsFileError(f"{path} holds a {type(obj).__name__}, not a state dict of tensors.")
    tensors = {}
    for name, value in obj.items():
        if not isinstance(value, _TensorRef):
            raise WeightsFileError(f"{path}: entry {name!r} is not a tensor.")
        tensors[str(name)] = _as_array(value, data, path)
    return tensors
