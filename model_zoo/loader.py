"""Load a zoo model: resolve the reference, load the Keras model under safe_mode, read its metadata.

A model folder or ``.keras`` file is loaded by the core (:func:`tiledseg.loading.load_model_path`);
the zoo adds the reference forms (bundled and registry ids, Hub repositories, training run
directories), the card and a per-process cache keyed on the resolved path and revision, so the
CLI, the app and the engine share one instance (Keras models are safe to call from several
threads).
"""

from __future__ import annotations

import importlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model_zoo.errors import ModelNotFoundError
from model_zoo.layout import CARD_FILE, CONFIG_FILE, RUN_CHECKPOINT_FILE, RUN_INFERENCE_FILE
from model_zoo.resolve import ResolvedRef, resolve
from model_zoo.run_meta import meta_from_run
from tiledseg import loading
from tiledseg.contract import ModelMeta

__all__ = ["ZooModel", "clear_cache", "load", "load_folder", "load_keras_model"]

_CACHE: dict[tuple[str, str | None], ZooModel] = {}
_CACHE_LOCK = threading.Lock()
# Modules that register custom layers with keras.saving.register_keras_serializable.
_CUSTOM_OBJECT_MODULES = ("training.models",)


@dataclass(frozen=True, eq=False)
class ZooModel:
    """A loaded zoo model: the Keras model, its metadata and where it came from.

    Attributes:
        model: keras.Model, taking float32 NHWC pixel values 0..255.
        meta: ModelMeta, the inference metadata (``tiledseg.json`` or defaults).
        card: str, the model card (README.md), or "" if there is none.
        path: Path, the local folder (or ``.keras`` file) it was loaded from.
        id: str, the bundled/registry id, the repo id, or the local folder's name.
        revision: str or None, the Hub commit hash for Hub models.
        source: str, ``"local"``, ``"bundled"`` or ``"hub"``.
        repo_id: str or None, the Hub repository.
    """

    model: Any
    meta: ModelMeta
    card: str
    path: Path
    id: str
    revision: str | None = None
    source: str = "local"
    repo_id: str | None = None

    def __repr__(self) -> str:
        pinned = f"@{self.revision[:12]}" if self.revision else ""
        return f"ZooModel(id={self.id!r}{pinned}, source={self.source!r}, path='{self.path}')"


def load(
    ref: str | os.PathLike,
    revision: str | None = None,
    *,
    cache: bool = True,
    max_bytes: int | None = None,
) -> ZooModel:
    """Load a zoo model from any reference form, cached per process.

    Args:
        ref: str or PathLike: a local zoo directory, a training run directory or its
            ``model.keras``, a bundled id (``"unet-isic2017"``), a registry id, ``"ORG/NAME"``
            or ``"hf://ORG/NAME"``; Hub forms may end in ``@REVISION``.
        revision: str or None, a branch, tag or commit hash for Hub references.
        cache: bool, default True: keep the model in this process's cache (and return a
            cached one). False loads a new instance and keeps nothing, for a caller that
            bounds its own cache (the app).
        max_bytes: int or None, a limit on the bytes a Hub download may take (see
            :func:`model_zoo.hub.snapshot`).

    Returns:
        ZooModel with ``.model``, ``.meta``, ``.card``, ``.path``.

    Raises:
        ModelNotFoundError: the reference matches nothing; the message lists the known ids
            and the accepted forms.
        NotCachedError: offline and not in the Hugging Face cache.
        HubUnreachableError: the Hub endpoint cannot be reached.
        ModelTooLargeError: the Hub download would pass ``max_bytes``.
        MetadataVersionError: ``tiledseg.json`` is too new or too old.
        UnsafeModelError: Keras safe_mode refused the checkpoint.
        ModelLoadError: any other failure to load; all of these are ModelLoadError.

    Example:
        >>> zoo_model = load("hf://acme/unet-isic2017@v1")  # doctest: +SKIP
        >>> zoo_model.meta.scale  # doctest: +SKIP
        PixelScale(mode='short_side', value=256)
    """
    resolved = resolve(ref, revision, max_bytes=max_bytes)
    if not cache:
        return _load_resolved(resolved)
    key = (str(resolved.path), resolved.revision)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    zoo_model = _load_resolved(resolved)
    with _CACHE_LOCK:
        # Another thread may have loaded it meanwhile: keep one instance.
        return _CACHE.setdefault(key, zoo_model)


def clear_cache() -> None:
    """Forget every model loaded by :func:`load` in this process."""
    with _CACHE_LOCK:
        _CACHE.clear()


def load_keras_model(path: str | Path) -> Any:
    """Load a ``.keras`` file or a Keras Hub-layout folder with ``safe_mode=True``, uncompiled.

    Custom layers are registered first by importing ``training.models`` when it exists; the
    loading itself is the core's (:func:`tiledseg.loading.load_keras_model`).

    Args:
        path: str or Path.

    Returns:
        keras.Model.

    Raises:
        UnsafeModelError: safe_mode refused it (e.g. a Lambda layer).
        ModelLoadError: the file is not a Keras model or a layer class is unknown.
    """
    _register_custom_objects()
    return loading.load_keras_model(path)


def load_folder(path: str | Path, *, model_id: str | None = None) -> ZooModel:
    """Load a local zoo folder, run directory or ``.keras`` file, bypassing the cache.

    Args:
        path: str or Path.
        model_id: str or None, the id to report; default the folder's name.

    Returns:
        ZooModel with ``source="local"``.

    Raises:
        ModelLoadError: as :func:`load`.
    """
    path = Path(path).resolve()
    if not path.exists():
        raise ModelNotFoundError(f"No such file or directory: {path}")
    name = model_id or (path.parent.name if path.is_file() else path.name)
    return _load_resolved(ResolvedRef(str(path), "local", name, path))


def _load_resolved(resolved: ResolvedRef) -> ZooModel:
    path = resolved.path
    model_path = path
    if path.is_dir() and not (path / CONFIG_FILE).is_file():
        if not (path / RUN_CHECKPOINT_FILE).is_file():
            raise ModelNotFoundError(
                f"{path} holds neither {CONFIG_FILE} (a zoo model folder) nor "
                f"{RUN_CHECKPOINT_FILE} (a training run directory)."
            )
        model_path = path / RUN_CHECKPOINT_FILE  # a training run directory
    _register_custom_objects()
    loaded = loading.load_model_path(
        model_path,
        default_meta=lambda folder, model: _meta_without_file(folder, model, resolved.id),
    )
    folder = model_path if model_path.is_dir() else model_path.parent
    card_file = folder / CARD_FILE
    card = card_file.read_text(encoding="utf-8") if card_file.is_file() else ""
    return ZooModel(
        model=loaded.model,
        meta=loaded.meta,
        card=card,
        path=path,
        id=resolved.id,
        revision=resolved.revision,
        source=resolved.source,
        repo_id=resolved.repo_id,
    )


def _meta_without_file(folder: Path, model: Any, name: str) -> ModelMeta:
    # A training run directory carries its inference defaults in inference.json.
    if (folder / RUN_INFERENCE_FILE).is_file():
        return meta_from_run(folder, model, name=name, require_eval=False)
    return loading.default_meta(model, name=name, source=folder)  # warns which defaults


def _register_custom_objects() -> None:
    for module in _CUSTOM_OBJECT_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:
            # Absent (e.g. on a Space that ships no training code): built-in layers only.
            if error.name is None or not module.startswith(error.name):
                raise
