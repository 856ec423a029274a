"""Find the zoo metadata (``tiledseg.json``) of a served model, without loading the model.

TF Serving does not serve ``tiledseg.json``; the export puts it in ``assets.extra/`` of each
version folder (which the server ignores), and the zoo keeps it with every model. The client
needs it for the scale, tile, overlap, blend, threshold and downsampling factor. A zoo id is
looked up through the installed model resolvers (:func:`tiledseg.loading.read_model_meta`).

So that metadata and network cannot be mixed up, the export also serves a fingerprint of the
metadata it was made from (:func:`meta_fingerprint`), as the constant outputs of a second
signature, :data:`META_SIGNATURE`; the client compares it with the metadata it was given.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from tiledseg.contract import META_FILE, SAVEDMODEL_META_FILE, ModelMeta, load_meta
from tiledseg.errors import ModelLoadError
from tiledseg.loading import read_model_meta

__all__ = [
    "FINGERPRINT_OUTPUT",
    "META_NAME_OUTPUT",
    "META_SIGNATURE",
    "meta_fingerprint",
    "read_serving_meta",
]

# The export's metadata signature: it takes the model's own input (any batch of images) and
# returns, per image, the fingerprint of its tiledseg.json and the model's name.
META_SIGNATURE = "tiledseg_metadata"
FINGERPRINT_OUTPUT = "sha256"
META_NAME_OUTPUT = "name"


def meta_fingerprint(meta: Any) -> str:
    """The SHA-256 of a model's metadata in canonical JSON (sorted keys, no spaces).

    ``format_version`` is left out, so a newer tiledseg that writes the same settings under a
    newer minor version gives the same fingerprint.

    Args:
        meta: a ``ModelMeta``, or anything :func:`read_serving_meta` accepts.

    Returns:
        str, 64 hexadecimal digits.

    Example:
        >>> from tiledseg.contract import ModelMeta
        >>> meta_fingerprint(ModelMeta(name="a")) == meta_fingerprint(ModelMeta(name="a"))
        True
        >>> meta_fingerprint(ModelMeta(name="a")) == meta_fingerprint(ModelMeta(name="b"))
        False
    """
    data = dict(read_serving_meta(meta).to_dict())
    data.pop("format_version", None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def read_serving_meta(source: Any, version: int | None = None) -> Any:
    """Read a served model's metadata from a file, an export folder or the zoo.

    Args:
        source: one of
            - a ``ModelMeta`` (returned as is), a zoo model (its ``.meta``) or a dict of
              ``tiledseg.json``'s fields;
            - a path to ``tiledseg.json``, to a folder holding it, to an exported version folder
              (``BASE/NAME/VERSION``, read from ``assets.extra/tiledseg.json``) or to the
              model's folder ``BASE/NAME`` (the version given, else the highest);
            - a zoo reference (``unet-isic2017``, ``ORG/NAME``, ``hf://ORG/NAME@REV``): the
              zoo's ``tiledseg.json`` is read; a checkpoint without one is loaded for defaults.
        version: int or None, which version folder to read under ``BASE/NAME``.

    Returns:
        :class:`tiledseg.contract.ModelMeta`.

    Raises:
        ModelLoadError: nothing found, or the metadata is invalid (``MetadataError``).
        TypeError: ``source`` is none of the above.

    Example:
        >>> meta = read_serving_meta("serving/unet-isic2017/1")  # doctest: +SKIP
        >>> meta.tile, meta.downsampling  # doctest: +SKIP
        (512, 16)
    """
    if isinstance(source, ModelMeta):
        return source
    if isinstance(getattr(source, "meta", None), ModelMeta):
        return source.meta
    if isinstance(source, dict):
        return ModelMeta.from_dict(source, source="the metadata dict")
    if isinstance(source, (str, os.PathLike)):
        path = Path(source).expanduser()
        if path.exists():
            return _from_path(path, version)
        return read_model_meta(os.fspath(source))
    raise TypeError(
        "`meta` must be a ModelMeta, a zoo model, a dict, a path to tiledseg.json or an export "
        f"folder, or a zoo id. Received: meta of type {type(source).__name__}"
    )


def _from_path(path: Path, version: int | None) -> Any:
    if path.is_file():
        return load_meta(path)
    for candidate in (path / META_FILE, path / SAVEDMODEL_META_FILE):
        if candidate.is_file():
            return load_meta(candidate)
    exported = {
        int(child.name): child / SAVEDMODEL_META_FILE
        for child in path.iterdir()
        if child.name.isdigit() and (child / SAVEDMODEL_META_FILE).is_file()
    }
    if exported:
        if version is None:
            return load_meta(exported[max(exported)])
        if version in exported:
            return load_meta(exported[version])
        raise ModelLoadError(
            f"{path} has exports of versions {sorted(exported)} but not version {version}; "
            f"pass --meta {path / str(version)} or a tiledseg.json."
        )
    if (path / "saved_model.pb").is_file():
        raise ModelLoadError(
            f"The SavedModel at {path} has no {SAVEDMODEL_META_FILE}: it was not exported by "
            "`python -m model_zoo export`. Pass the model's tiledseg.json or zoo id with --meta."
        )
    return read_model_meta(str(path))  # a zoo folder or training run without tiledseg.json
