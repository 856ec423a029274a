"""Models for the app: loaded once per process and shared, listed from the zoo, described.

Threading: Streamlit runs each browser session's script in its own thread, and every session
gets the same :class:`LoadedModel` from ``st.cache_resource``. Keras layers are stateless at
inference, but building a model's compiled predict function the first time is not guarded by
Keras, and on a CPU two inferences at once only compete for the same cores. So each model
carries a lock and inference runs under it: sessions take turns on one model, and a session
waiting for its turn is told so. Different models run in parallel.

A model served by TensorFlow Serving (``$TILEDSEG_SERVING_URL``, with its metadata from
``$TILEDSEG_SERVING_META``, as ``deploy/docker-compose.yml`` sets them) is offered in the picker
as ``served:NAME``; its network runs in the server, which batches concurrent requests itself,
so sessions do not take turns on it.

Loaded models are kept in a process-wide store bounded by the bytes of their weights
(``$TILEDSEG_APP_MODEL_CACHE_MB``, default 1024) and by count (4); the least recently used
goes first. What a visitor may type as a model is decided in :mod:`app_support.guard`.
"""

from __future__ import annotations

import csv
import importlib.metadata
import os
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import streamlit as st

from app_support.guard import LOCAL_MODELS_ENV, check_reference, max_model_bytes, redact
from app_support.store import ResultStore

__all__ = [
    "DEFAULT_MODEL",
    "DEFAULT_MODEL_ENV",
    "LOCAL_MODELS_ENV",
    "MODEL_CACHE_MB_ENV",
    "SERVED_PREFIX",
    "SERVING_CA_ENV",
    "SERVING_META_ENV",
    "SERVING_URL_ENV",
    "LoadedModel",
    "ModelDetails",
    "ServedModel",
    "card_body",
    "card_licence",
    "catalog",
    "clear_loaded_models",
    "default_model_id",
    "environment_info",
    "load_model",
    "model_details",
    "model_store",
    "pull_model",
    "refresh_zoo",
]

DEFAULT_MODEL = "effunet-isic2017"
SERVING_URL_ENV = "TILEDSEG_SERVING_URL"
SERVING_META_ENV = "TILEDSEG_SERVING_META"
SERVING_CA_ENV = "TILEDSEG_SERVING_CA"  # the CA file for a grpcs:// TILEDSEG_SERVING_URL
SERVED_PREFIX = "served:"
DEFAULT_MODEL_ENV = "TILEDSEG_DEFAULT_MODEL"
MODEL_CACHE_MB_ENV = "TILEDSEG_APP_MODEL_CACHE_MB"
_DEFAULT_MODEL_CACHE_MB = 1024
_MAX_MODELS = 4
_MAX_PREDICTORS = 8


class ServedModel:
    """A ``tiledseg.serving.ServingModel`` with the attributes the pages read from a zoo model.

    It is a tile backend itself (``predict_tiles`` and the rest are the served model's), so
    ``tiledseg.predict_tiled`` and ``predict_whole`` accept it as they accept the served model.
    """

    def __init__(self, served: Any, ref: str, meta_source: str):
        self._served = served
        self.id = ref
        self.card = ""
        self.path = Path(meta_source)
        self.revision = None if served.served_version is None else str(served.served_version)
        self.source = "serving"
        self.repo_id = None

    @property
    def meta(self) -> Any:
        return self._served.meta

    def __getattr__(self, name: str) -> Any:
        return getattr(self._served, name)


@dataclass(eq=False)
class LoadedModel:
    """A zoo model shared by every session, with its inference lock and tiled predictors.

    Attributes:
        zoo: model_zoo.ZooModel (``.model``, ``.meta``, ``.card``, ``.path``, ``.id``).
        ref: str, the reference it was loaded from; revision: str or None.
        key: str, identifies the exact weights (path and commit) in result cache keys.
        lock: threading.Lock held while the model runs.
        exclusive: bool, whether inference takes the lock (False for a served model).
    """

    zoo: Any
    ref: str
    revision: str | None
    key: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    exclusive: bool = True
    _predictors: OrderedDict = field(default_factory=OrderedDict)
    _predictors_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def nbytes(self) -> int:
        """Bytes of the model's weights (0 for a served model): its size in the model store."""
        weights = getattr(getattr(self.zoo, "model", None), "weights", None) or []
        return int(sum(int(np.prod(w.shape)) * np.dtype(str(w.dtype)).itemsize for w in weights))

    def predictor(self, settings: dict[str, Any]) -> Any:
        """The ``tiledseg.TiledPredictor`` for these settings; kept so traces are reused."""
        from tiledseg import TiledPredictor

        key = tuple(sorted((name, repr(value)) for name, value in settings.items()))
        with self._predictors_lock:
            if key in self._predictors:
                self._predictors.move_to_end(key)
                return self._predictors[key]
        predictor = TiledPredictor(self.zoo, **settings)
        with self._predictors_lock:
            self._predictors[key] = predictor
            while len(self._predictors) > _MAX_PREDICTORS:
                self._predictors.popitem(last=False)
        return predictor


@st.cache_resource(show_spinner=False)
def model_store() -> ResultStore:
    """The process-wide store of loaded models, bounded by weight bytes and by count."""
    text = os.environ.get(MODEL_CACHE_MB_ENV, "").strip()
    megabytes = int(text) if text.isdigit() and int(text) > 0 else _DEFAULT_MODEL_CACHE_MB
    return ResultStore(max_bytes=megabytes * 1024 * 1024, max_entries=_MAX_MODELS)


_LOADING: dict[tuple, threading.Lock] = {}
_LOADING_LOCK = threading.Lock()


def _load(ref: str, revision: str | None, bundled_root: str, serving_url: str) -> LoadedModel:
    store = model_store()
    key = (ref, revision, bundled_root, serving_url)
    entry = store.get(key)
    if entry is not None:
        return entry["value"]
    with _LOADING_LOCK:
        lock = _LOADING.setdefault(key, threading.Lock())
    with lock:  # sessions asking for the same model at once load it once
        entry = store.get(key)
        if entry is not None:
            return entry["value"]
        with st.spinner("Loading the model…"):
            loaded = _load_now(ref, revision, serving_url)
        store.put(key, loaded, nbytes=loaded.nbytes)
    with _LOADING_LOCK:
        _LOADING.pop(key, None)
    return loaded


def _load_now(ref: str, revision: str | None, serving_url: str) -> LoadedModel:
    if ref.startswith(SERVED_PREFIX):
        return _load_served(ref, serving_url)
    import model_zoo

    # The store above is the app's model cache: the zoo keeps no second reference.
    zoo = model_zoo.load(ref, revision=revision, cache=False, max_bytes=max_model_bytes())
    return LoadedModel(zoo=zoo, ref=ref, revision=revision, key=f"{zoo.path}@{zoo.revision}")


def _load_served(ref: str, url: str) -> LoadedModel:
    from tiledseg.errors import ModelLoadError
    from tiledseg.serving import ServingModel, parse_serving_url

    if not url:
        raise ModelLoadError(
            f"{ref} is a TF Serving model but {SERVING_URL_ENV} is not set: start the app with "
            f"{SERVING_URL_ENV}=grpc://HOST:PORT/MODEL_NAME, or pick a zoo model."
        )
    name = parse_serving_url(url).model_name
    meta_source = os.environ.get(SERVING_META_ENV, "").strip() or name
    ca_file = os.environ.get(SERVING_CA_ENV, "").strip() or None
    served = ServingModel(url, meta=meta_source, ca_file=ca_file).check()
    zoo = ServedModel(served, ref, meta_source)
    key = f"{url}@{served.served_version}"
    return LoadedModel(zoo=zoo, ref=ref, revision=None, key=key, exclusive=False)


def load_model(ref: str, revision: str | None = None) -> LoadedModel:
    """Load a zoo model once per process (``st.cache_resource``), keyed on (ref, revision).

    Args:
        ref: str, a bundled or registry id, ``ORG/NAME``, ``hf://ORG/NAME``, or
            ``served:NAME`` for the model at ``$TILEDSEG_SERVING_URL``; see
            :func:`app_support.guard.check_reference` for what is refused.
        revision: str or None, a Hub branch, tag or commit.

    Returns:
        LoadedModel.

    Raises:
        tiledseg.errors.ModelLoadError (and the zoo's subclasses): with what to do, and no
            server paths.
    """
    from model_zoo import bundled_dir

    served = isinstance(ref, str) and ref.startswith(SERVED_PREFIX)
    target = ref.strip() if served else check_reference(ref)
    # The bundled folder and the server's URL are part of the key: pointing either elsewhere
    # (a deployment, a test) never returns a model loaded from the old place.
    url = os.environ.get(SERVING_URL_ENV, "").strip() if served else ""
    try:
        return _load(target, revision or None, str(bundled_dir()), url)
    except Exception as error:
        raise _without_paths(error) from None


def pull_model(ref: str) -> None:
    """Download (or refresh) a registry model, within the app's download limit.

    Raises:
        tiledseg.errors.ModelLoadError: as :func:`model_zoo.pull`, with no server paths.
    """
    import model_zoo

    try:
        model_zoo.pull(check_reference(ref), max_bytes=max_model_bytes())
    except Exception as error:
        raise _without_paths(error) from None


def _without_paths(error: Exception) -> Exception:
    """The same kind of error, its message without server paths; other errors unchanged."""
    from model_zoo.errors import ModelTooLargeError
    from tiledseg.errors import TiledsegError

    if not isinstance(error, TiledsegError):
        return error
    text = redact(str(error))
    if isinstance(error, ModelTooLargeError):
        from app_support.guard import MAX_MODEL_MB_ENV

        text += f" This server's limit is set by {MAX_MODEL_MB_ENV}."
    # The same class and attributes (the page's advice depends on them); only the message differs.
    try:
        hidden = type(error)(text)
    except TypeError:  # required keyword arguments (the serving errors): copy the attributes
        try:
            hidden = type(error).__new__(type(error))
        except TypeError:
            from tiledseg.errors import ModelLoadError

            return ModelLoadError(text)
        hidden.args = (text,)
    hidden.__dict__.update(error.__dict__)
    return hidden


def clear_loaded_models() -> None:
    """Forget loaded models (after a pull, so a refreshed branch is loaded again)."""
    model_store().clear()


def refresh_zoo() -> None:
    """Forget the catalog, model details and loaded models, e.g. after a pull."""
    _catalog.clear()
    _details.clear()
    model_store().clear()


@st.cache_data(ttl=30, show_spinner=False)
def _catalog(bundled_root: str, registry: str) -> list[dict[str, Any]]:
    import model_zoo

    return [entry.to_dict() for entry in model_zoo.list_models()]


def catalog() -> list[dict[str, Any]]:
    """Every zoo model as a dict (``model_zoo.CatalogEntry.to_dict``); never uses the network.

    A TF Serving model (``$TILEDSEG_SERVING_URL``) comes first, with ``source="serving"``.
    """
    from model_zoo import bundled_dir
    from model_zoo.registry import registry_path

    served = _served_entry()
    entries = _catalog(str(bundled_dir()), str(registry_path()))
    return [served, *entries] if served else entries


def _served_entry() -> dict[str, Any] | None:
    url = os.environ.get(SERVING_URL_ENV, "").strip()
    if not url:
        return None
    from tiledseg.serving import parse_serving_url

    entry = dict.fromkeys(("task", "dataset", "metric", "repo_id", "revision"), "")
    entry.update(source="serving", offline=True, size_bytes=None, problem="")
    try:
        name = parse_serving_url(url).model_name
    except ValueError as error:
        name, entry["problem"] = "invalid-url", str(error)
    entry.update(id=f"{SERVED_PREFIX}{name}", description=f"TensorFlow Serving at {url}")
    return entry


def default_model_id(ids: list[str]) -> str | None:
    """`$TILEDSEG_DEFAULT_MODEL`, else the served model, else `effunet-isic2017`, else the first."""
    wanted = os.environ.get(DEFAULT_MODEL_ENV, "").strip()
    if wanted:
        return wanted
    served = [model_id for model_id in ids if model_id.startswith(SERVED_PREFIX)]
    if served:
        return served[0]
    if DEFAULT_MODEL in ids:
        return DEFAULT_MODEL
    return ids[0] if ids else None


@st.cache_resource(show_spinner=False)
def environment_info() -> dict[str, str]:
    """Keras backend and versions, and whether a GPU is visible, for the sidebar."""
    import keras

    import tiledseg

    info = {
        "Keras backend": keras.backend.backend(),
        "Keras": keras.__version__,
        "tiledseg": tiledseg.__version__,
    }
    for package in ("tensorflow", "streamlit"):
        try:
            info[package.capitalize()] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            info[package.capitalize()] = "not installed"
    info["GPU"] = _gpu_description()
    return info


def _gpu_description() -> str:
    import keras

    backend = keras.backend.backend()
    try:
        if backend == "tensorflow":
            import tensorflow as tf

            gpus = tf.config.list_physical_devices("GPU")
        elif backend == "jax":
            import jax

            gpus = [d for d in jax.devices() if d.platform == "gpu"]
        elif backend == "torch":
            import torch

            gpus = list(range(torch.cuda.device_count()))
        else:
            gpus = []
    except Exception:  # a broken driver must not stop the app; report no GPU
        gpus = []
    return f"yes ({len(gpus)})" if gpus else "no (CPU)"


@dataclass(frozen=True)
class ModelDetails:
    """What the Home and Model Zoo pages show about a model without loading its weights."""

    id: str
    path: str | None
    meta: dict[str, Any] | None
    card: str
    licence: str
    history: dict[str, list[float]]
    problem: str = ""


@st.cache_data(ttl=60, max_entries=64, show_spinner=False)
def _details(model_id: str, offline: bool, bundled_root: str) -> ModelDetails:
    import model_zoo
    from model_zoo.layout import CARD_FILE, HISTORY_FILE

    if not offline:
        return ModelDetails(model_id, None, None, "", "", {}, problem="not downloaded yet")
    try:
        # Only reached for bundled or cached models, so this never touches the network.
        path = model_zoo.resolve(model_id).path
        meta = model_zoo.load_meta(path).to_dict()
    except model_zoo.ModelLoadError as error:
        return ModelDetails(model_id, None, None, "", "", {}, problem=redact(str(error)))
    card_file, history_file = path / CARD_FILE, path / HISTORY_FILE
    card = card_file.read_text(encoding="utf-8") if card_file.is_file() else ""
    history = _read_history(history_file) if history_file.is_file() else {}
    return ModelDetails(model_id, str(path), meta, card, card_licence(card), history)


def model_details(model_id: str, offline: bool = True) -> ModelDetails:
    """Metadata, card, licence and training history of a bundled or cached zoo model."""
    from model_zoo import bundled_dir

    return _details(model_id, offline, str(bundled_dir()))


def card_licence(card: str) -> str:
    """The ``license:`` of a model card's YAML front matter, or ""."""
    front = re.match(r"^---\n(.*?)\n---", card, re.DOTALL)
    found = re.search(r"^license:\s*(\S+)", front.group(1), re.MULTILINE) if front else None
    return found.group(1).strip("'\"") if found else ""


def card_body(card: str) -> str:
    """The model card without its YAML front matter, ready for ``st.markdown``."""
    return re.sub(r"^---\n.*?\n---\n", "", card, count=1, flags=re.DOTALL).strip()


def _read_history(path: Path) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = {}
    with open(path, encoding="utf-8", newline="") as file:
        for row in csv.DictReader(file):
            for name, value in row.items():
                try:
                    columns.setdefault(name, []).append(float(value))
                except (TypeError, ValueError):
                    columns.setdefault(name, []).append(float("nan"))
    return columns
