"""Turn a model reference into something :func:`tiledseg.predict_tiled` accepts.

The core loads a model by path: a folder in Keras' own layout (``config.json``,
``model.weights.h5``) with its ``tiledseg.json``, or a ``.keras`` file (with a ``tiledseg.json``
beside it, else defaults read from the network), always under Keras ``safe_mode=True``.

Every other reference form (a bundled or registry id, ``ORG/NAME``, ``hf://ORG/NAME@REV``, a
training run directory) is the job of a *model resolver*, which a package registers with the
core through the entry point group :data:`RESOLVER_GROUP`, so the core imports nothing from
the packages built on it. The model zoo registers one in tiledseg's ``pyproject.toml``::

    [project.entry-points."tiledseg.model_resolvers"]
    zoo = "model_zoo.plugin:RESOLVER"

A resolver is an object with two methods (see :class:`ModelResolver`):

- ``load(ref, revision)`` returns a loaded model: an object with ``.model`` (a ``keras.Model``)
  and ``.meta`` (a :class:`~tiledseg.contract.ModelMeta`);
- ``read_meta(ref, revision)`` returns the ``ModelMeta`` alone, without loading the network
  where it can (a served model's client needs only the metadata).

Either raises :class:`~tiledseg.errors.ModelNotFoundError` for a reference it does not know;
resolvers are asked in the order of their entry point names and the next one is tried, and the
first resolver's message (which lists the forms it accepts) is raised when none knows it. With
no resolver installed, only paths load.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from tiledseg.contract import CONFIG_FILE, META_FILE, WEIGHTS_FILE, ModelMeta, load_meta
from tiledseg.errors import MetadataError, ModelLoadError, ModelNotFoundError, UnsafeModelError

__all__ = [
    "RESOLVER_GROUP",
    "DefaultSettingsWarning",
    "LoadedModel",
    "ModelResolver",
    "default_meta",
    "installed_resolvers",
    "load_keras_model",
    "load_model",
    "load_model_path",
    "read_model_meta",
]

_HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


class DefaultSettingsWarning(UserWarning):
    """A ``.keras`` file without ``tiledseg.json`` runs with default inference settings.

    ``defaults`` maps each setting (scale, tile, overlap, blend, threshold, tta, postprocess)
    to the default used, so a caller can name the ones it did not set explicitly.
    """

    def __init__(self, message: str, defaults: dict[str, Any]):
        super().__init__(message)
        self.defaults = defaults


RESOLVER_GROUP = "tiledseg.model_resolvers"
_NO_RESOLVER = (
    "{ref!r} is not a local model folder or .keras file. Zoo ids (e.g. unet-isic2017), "
    "ORG/NAME and hf://ORG/NAME[@REV] references are resolved by a model resolver registered "
    f"under the entry point group {RESOLVER_GROUP!r}, and none is installed. Install tiledseg "
    "with its model zoo, which registers one (`pip install -e .` in the tiledseg checkout; "
    "running from a checkout on PYTHONPATH alone registers nothing), or pass the path of a "
    "model folder (config.json + tiledseg.json) or of a .keras file."
)


class ModelResolver(Protocol):
    """What a package registers under :data:`RESOLVER_GROUP` (see the module docstring)."""

    def load(self, ref: str, revision: str | None) -> Any:
        """The loaded model (``.model`` and ``.meta``); ModelNotFoundError if ``ref`` is unknown."""

    def read_meta(self, ref: str, revision: str | None) -> ModelMeta:
        """The model's ``ModelMeta``; ModelNotFoundError if ``ref`` is unknown."""


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A network with its inference contract, as the core loads it from a path.

    Attributes:
        model: keras.Model, taking float32 NHWC pixel values 0..255.
        meta: ModelMeta, from ``tiledseg.json`` or defaults read from the network.
        path: Path, the folder or ``.keras`` file it was loaded from.
    """

    model: Any
    meta: ModelMeta
    path: Path


def installed_resolvers() -> list[ModelResolver]:
    """The resolvers registered under :data:`RESOLVER_GROUP`, in the order of their names.

    Returns:
        A list of resolver objects (each entry point loaded); duplicates (the same object
        registered twice) appear once.

    Raises:
        ModelLoadError: an entry point cannot be imported; the message names it.
    """
    resolvers: list[Any] = []
    seen: set[str] = set()
    for point in sorted(metadata.entry_points(group=RESOLVER_GROUP), key=lambda p: p.name):
        if point.value in seen:
            continue
        seen.add(point.value)
        try:
            resolvers.append(point.load())
        except Exception as error:  # an entry point may fail with any import-time error
            raise ModelLoadError(
                f"The model resolver {point.name!r} ({point.value}, entry point group "
                f"{RESOLVER_GROUP!r}) cannot be imported: {error}. Reinstall the package that "
                "registers it."
            ) from error
    return resolvers


def load_model(
    ref: str | os.PathLike,
    revision: str | None = None,
    *,
    resolvers: Sequence[ModelResolver] | None = None,
) -> Any:
    """Load a model by reference, under Keras ``safe_mode=True``.

    Args:
        ref: str or PathLike: a model folder or ``.keras`` file, or any form an installed
            resolver knows (the zoo: a bundled or registry id, ``ORG/NAME``,
            ``hf://ORG/NAME[@REVISION]``, a training run directory).
        revision: str or None, a Hub revision (branch, tag or commit) to pin.
        resolvers: the resolvers to ask, or None (default) for :func:`installed_resolvers`.

    Returns:
        An object with ``.model`` and ``.meta``: the resolver's (a ``model_zoo.ZooModel``) or,
        for a path with no resolver, a :class:`LoadedModel`.

    Raises:
        ModelNotFoundError: ``ref`` is not a path and no resolver knows it; with no resolver
            installed, the message says what to install.
        ModelLoadError: the checkpoint or its metadata cannot be loaded.

    Example:
        >>> loaded = load_model("model_zoo/bundled/unet-bloodcell")  # doctest: +SKIP
        >>> loaded.meta.tile  # doctest: +SKIP
        512
    """
    return _ask(resolvers, ref, revision, "load", lambda path: load_model_path(path))


def read_model_meta(
    ref: str | os.PathLike,
    revision: str | None = None,
    *,
    resolvers: Sequence[ModelResolver] | None = None,
) -> ModelMeta:
    """The ``ModelMeta`` of a model reference, read without loading the network where possible.

    Args:
        ref, revision, resolvers: as in :func:`load_model`.

    Returns:
        ModelMeta.

    Raises:
        ModelNotFoundError, ModelLoadError: as in :func:`load_model`.
    """

    def from_path(path: Path) -> ModelMeta:
        folder = path if path.is_dir() else path.parent
        if (folder / META_FILE).is_file():
            return load_meta(folder / META_FILE)
        return load_model_path(path).meta  # defaults come from the network

    return _ask(resolvers, ref, revision, "read_meta", from_path)


def load_model_path(
    path: str | os.PathLike,
    *,
    default_meta: Callable[[Path, Any], ModelMeta] | None = None,
) -> LoadedModel:
    """Load a model folder (Keras layout plus ``tiledseg.json``) or a ``.keras`` file.

    Args:
        path: str or PathLike, a folder holding ``config.json`` (Keras' own layout) or a
            ``.keras`` file; ``tiledseg.json`` is read from the folder (beside the file).
        default_meta: called as ``default_meta(folder, network)`` where there is no
            ``tiledseg.json``; default :meth:`ModelMeta.default_for` (downsampling, channels
            and classes read from the network).

    Returns:
        LoadedModel.

    Raises:
        ModelNotFoundError: nothing at ``path``, or a folder without ``config.json``.
        MetadataError: ``tiledseg.json`` is invalid or disagrees with the network.
        UnsafeModelError, ModelLoadError: as :func:`load_keras_model`.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        if not (path / CONFIG_FILE).is_file():
            raise ModelNotFoundError(
                f"{path} is not a model folder: it holds no {CONFIG_FILE} (Keras' layout, "
                "written by keras.saving.save_model(model, folder, zipped=False))."
            )
        folder = path
    elif path.is_file():
        if path.suffix != ".keras":
            raise ModelLoadError(
                f"Unsupported model file {path}: give a .keras file or a model folder "
                f"({CONFIG_FILE} + {META_FILE})."
            )
        folder = path.parent
    else:
        raise ModelNotFoundError(f"No such file or directory: {path}")
    # Read the metadata first: a too-new schema is reported before a slow model load.
    meta_file = folder / META_FILE
    meta = load_meta(meta_file) if meta_file.is_file() else None
    if path.is_dir():
        check_weights(path)
    network = load_keras_model(path)
    if meta is None:
        if path.is_dir():
            # A model folder is a zoo model: its settings (the ISIC model's short side 256 px,
            # its threshold) are part of it, and defaults would give wrong masks silently.
            raise MetadataError(
                f"{path} is a model folder without {META_FILE}, which holds its inference "
                "settings (scale, tile, threshold, post-processing). Restore the file (it is "
                "written by `python -m model_zoo bundle` or `publish`), or load the network "
                "with `keras.saving.load_model(folder)` and give `predict_tiled` its settings "
                "explicitly."
            )
        meta = (default_meta or _default_meta)(folder, network)
    check_channels(meta, network, folder)
    check_downsampling(meta, network, folder)
    return LoadedModel(model=network, meta=meta, path=path)


def check_weights(folder: Path) -> None:
    """Refuse a model folder whose weights file is missing, empty, truncated or not HDF5.

    Keras itself only says "cannot access local variable 'weights_store'" for these.
    """
    weights = folder / WEIGHTS_FILE
    if not weights.is_file():
        raise ModelLoadError(
            f"{weights} is missing: a model folder holds {CONFIG_FILE} and {WEIGHTS_FILE} "
            "(written together by keras.saving.save_model(model, folder, zipped=False)). "
            "Download or copy the folder again."
        )
    size = weights.stat().st_size
    with weights.open("rb") as file:
        signature = file.read(len(_HDF5_SIGNATURE))
    if size == 0 or signature != _HDF5_SIGNATURE:
        what = "is empty (0 bytes)" if size == 0 else "is not an HDF5 file"
        raise ModelLoadError(
            f"{weights} {what}: it cannot hold the model's weights. Download or copy the "
            "folder again."
        )
    import h5py

    try:
        with h5py.File(weights, "r"):
            pass
    except OSError as error:
        raise ModelLoadError(
            f"{weights} is truncated or corrupt ({size:,} bytes; {_first_line(str(error))}). "
            "Download or copy the folder again."
        ) from None


def check_downsampling(meta: ModelMeta, network: Any, folder: Path) -> None:
    """Raise MetadataError where ``meta.downsampling`` is not a multiple of the network's own.

    Tiles are cut at multiples of ``meta.downsampling``; a value the network's pooling does not
    divide gives tiles the network cannot take.
    """
    from tiledseg.tiling import downsampling_factor

    actual = downsampling_factor(network)
    if meta.downsampling % actual:
        raise MetadataError(
            f"{folder / META_FILE} says downsampling={meta.downsampling} but the network "
            f"downsamples by {actual}; it must be a multiple of {actual}. Re-stage the model "
            "from its training run."
        )


def load_keras_model(path: str | os.PathLike) -> Any:
    """Load a ``.keras`` file or a Keras-layout folder with ``safe_mode=True``, uncompiled.

    Custom layers must be registered (``keras.saving.register_keras_serializable``) before;
    the zoo's resolver imports the modules that register them.

    Args:
        path: str or PathLike.

    Returns:
        keras.Model.

    Raises:
        UnsafeModelError: safe_mode refused it (e.g. a Lambda layer).
        ModelLoadError: the file is not a Keras model or a layer class is unknown.
    """
    import keras

    path = Path(path)
    try:
        return keras.saving.load_model(path, compile=False, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad checkpoint
        text = str(error)
        if "safe_mode" in text or "Lambda" in text:
            raise UnsafeModelError(
                f"Keras safe_mode refused {path}: it contains code that would run on loading "
                "(e.g. a Lambda layer). Rebuild the model from built-in or registered layers "
                "and save it again; do not load checkpoints you do not trust with "
                "safe_mode=False."
            ) from None
        if "Could not locate" in text or "Unknown layer" in text:
            raise ModelLoadError(
                f"{path} uses a layer class Keras does not know ({_first_line(text)}). Import the "
                "module that registers it (the zoo imports `training.models` automatically) or "
                "re-save the model with built-in layers."
            ) from None
        raise ModelLoadError(
            f"Cannot load the Keras model in {path}: {_first_line(text)}"
        ) from None


def check_channels(meta: ModelMeta, network: Any, folder: Path) -> None:
    """Raise MetadataError where ``meta.input_channels`` disagrees with the network's input."""
    shape = network.input_shape
    shape = shape[0] if isinstance(shape, list) else shape
    channels = shape[-1]
    if channels is not None and int(channels) != meta.input_channels:
        raise MetadataError(
            f"{folder / META_FILE} says input_channels={meta.input_channels} but the model "
            f"takes {channels} channels. Re-stage the model from its training run."
        )


def _ask(resolvers, ref, revision, method: str, from_path: Callable[[Path], Any]) -> Any:
    resolvers = installed_resolvers() if resolvers is None else list(resolvers)
    first_error: ModelNotFoundError | None = None
    for resolver in resolvers:
        try:
            return getattr(resolver, method)(os.fspath(ref), revision)
        except ModelNotFoundError as error:
            first_error = first_error or error
    path = Path(ref).expanduser()
    if path.exists() and (first_error is None or _is_model_path(path)):
        return from_path(path)
    if first_error is not None:
        raise first_error
    raise ModelNotFoundError(_NO_RESOLVER.format(ref=os.fspath(ref)))


def _is_model_path(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() if path.is_dir() else path.suffix == ".keras"


def default_meta(network: Any, *, name: str, source: Path) -> ModelMeta:
    """Default settings for a ``.keras`` file without ``tiledseg.json``, with a warning.

    The :class:`DefaultSettingsWarning` names every default used (scale factor 1.0, tile 512,
    overlap 0.25, gaussian blend, threshold 0.5, no test-time flips, no post-processing), which
    may be wrong for the model: give the settings explicitly or add a ``tiledseg.json``.
    """
    meta = ModelMeta.default_for(network, name=name)
    defaults = {
        "scale": f"{meta.scale.mode} {meta.scale.value:g}",
        "tile": meta.tile,
        "overlap": meta.overlap,
        "blend": meta.blend,
        "threshold": meta.threshold,
        "tta": "none",
        "postprocess": "none",
    }
    listed = ", ".join(f"{key} {value}" for key, value in defaults.items())
    warnings.warn(
        DefaultSettingsWarning(
            f"No {META_FILE} beside the .keras file in {source}, so it runs with default "
            f"settings: {listed}. Give the settings the model was trained with explicitly, or "
            f"add a {META_FILE}.",
            defaults,
        ),
        stacklevel=2,
    )
    return meta


def _default_meta(folder: Path, network: Any) -> ModelMeta:
    return default_meta(network, name=folder.name, source=folder)


def _first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else text
