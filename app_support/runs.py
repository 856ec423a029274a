"""Run tiledseg for the pages, with caching, progress bars and per-model locking.

Every computation is a call into ``tiledseg``; this module only decides when a result can be
reused. Probability maps are stored per (model weights, image content, inference settings),
so changing the threshold, the post-processing or the overlay never runs the network again.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import streamlit as st

from app_support.models import LoadedModel
from app_support.store import ResultStore
from tiledseg.postprocess import POSTPROCESS_DEFAULTS

__all__ = [
    "CURVE_THRESHOLDS",
    "RUNTIMES",
    "RUNTIME_ENV",
    "Prediction",
    "default_postprocess",
    "default_runtime",
    "default_settings",
    "mask_key",
    "mask_stats",
    "metrics_row",
    "postprocessed_mask",
    "predict",
    "predict_seed_tiles",
    "predict_whole",
    "settings_key",
    "threshold_curves",
]

CURVE_THRESHOLDS = tuple(round(0.02 * i, 2) for i in range(1, 50))
RUNTIMES = ("auto", "keras", "openvino", "onnxruntime")
# The runtime the settings start on. OpenVINO (auto's choice on a CPU) peaks far higher in memory
# than Keras, above e.g. Streamlit Community Cloud's 2.7 GB, so a small host sets "keras".
RUNTIME_ENV = "TILEDSEG_APP_RUNTIME"
_LOG = logging.getLogger(__name__)
# Results this session has had: "cached" is said only of those, never of another session's.
_SEEN = "_results_seen"
_MAX_SEEN = 4096


@dataclass(frozen=True)
class Prediction:
    """A probability map and how it was made.

    Attributes:
        key: str, identifies (model, image, method, settings) for downstream caches.
        probabilities: float32 (H, W) read-only array at the image's full size.
        seconds: float, inference wall time (the first run of a shape includes tracing).
        tiles: int, tiles run through the network (1 for whole-image inference).
        cached: bool, True when this session had the result before and it came from the
            store (a result another session left in the store is not called cached).
    """

    key: str
    probabilities: np.ndarray
    seconds: float
    tiles: int
    cached: bool = False

    @property
    def megapixels_per_second(self) -> float:
        megapixels = self.probabilities.shape[0] * self.probabilities.shape[1] / 1e6
        return megapixels / self.seconds if self.seconds > 0 else float("inf")


def settings_key(settings: dict[str, Any]) -> str:
    """A stable text form of a settings dict, for cache keys."""
    return json.dumps(settings, sort_keys=True, default=str)


def default_settings(meta: Any) -> dict[str, Any]:
    """The inference settings a zoo model's metadata recommends (the form's defaults)."""
    return {
        "tile": int(meta.tile),
        "overlap": float(meta.overlap),
        "blend": str(meta.blend),
        "batch_size": None,
        "scale": meta.scale.to_dict(),
        "tta": meta.tta,
        # A model whose metrics hold in one precision only says so (e.g. float32).
        "precision": getattr(meta, "precision", None) or "auto",
        "runtime": default_runtime(),
    }


def default_runtime() -> str:
    """The runtime a page's settings start on: ``$TILEDSEG_APP_RUNTIME``, else ``"auto"``.

    A value that is not a runtime falls back to ``"auto"`` with a warning in the server's log
    (the operator's place to look; a web user cannot change the server's environment).
    """
    return _runtime_from(os.environ.get(RUNTIME_ENV, ""))


@functools.lru_cache(maxsize=8)
def _runtime_from(text: str) -> str:
    value = text.strip().lower()
    if not value:
        return "auto"
    if value not in RUNTIMES:
        _LOG.warning(
            "%s=%r is not a runtime this app runs; using auto. Set it to one of %s.",
            RUNTIME_ENV,
            text,
            ", ".join(RUNTIMES),
        )
        return "auto"
    return value


def default_postprocess(meta: Any) -> dict[str, Any]:
    """The model's post-processing (``meta.postprocess``) over the off-by-default options."""
    return {**POSTPROCESS_DEFAULTS, **dict(meta.postprocess or {})}


def _first_channel(probabilities: np.ndarray) -> np.ndarray:
    # The app shows binary segmentation; a multi-class map shows its last (foreground) class.
    return probabilities if probabilities.ndim == 2 else probabilities[..., -1]


def _run(
    loaded: LoadedModel,
    store: ResultStore,
    key: tuple,
    compute: Callable[[Callable[[int, int], None]], tuple[np.ndarray, int]],
    label: str,
) -> Prediction:
    text_key = "|".join(str(part) for part in key)
    seen = _seen_results()
    entry = store.get(key)
    if entry is not None:
        cached = text_key in seen
        _remember(seen, text_key)
        return Prediction(text_key, entry["value"], entry["seconds"], entry["tiles"], cached)
    bar = st.progress(0.0, text=f"{label}: waiting to start")

    def progress(done: int, total: int) -> None:
        bar.progress(min(1.0, done / max(total, 1)), text=f"{label}: tile {done} of {total}")

    try:
        # A served model is shared by the server's own batching: no turn-taking for it.
        if loaded.exclusive and not loaded.lock.acquire(blocking=False):
            bar.progress(0.0, text=f"{label}: {_waiting_for(loaded)}")
            loaded.lock.acquire()
        if loaded.exclusive:
            loaded.lock_owner = _session_id()
        try:
            start = time.perf_counter()
            probabilities, tiles = compute(progress)
            seconds = time.perf_counter() - start
        finally:
            if loaded.exclusive:
                loaded.lock.release()
    finally:
        bar.empty()
    probabilities = _first_channel(np.asarray(probabilities, np.float32))
    entry = store.put(key, probabilities, seconds=seconds, tiles=int(tiles))
    _remember(seen, text_key)
    return Prediction(text_key, entry["value"], seconds, int(tiles))


def _seen_results() -> OrderedDict:
    return st.session_state.setdefault(_SEEN, OrderedDict())


def _remember(seen: OrderedDict, key: str) -> None:
    seen[key] = True
    seen.move_to_end(key)
    while len(seen) > _MAX_SEEN:
        seen.popitem(last=False)


def _session_id() -> str | None:
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    context = get_script_run_ctx()
    return context.session_id if context is not None else None


def _waiting_for(loaded: LoadedModel) -> str:
    # A rerun (a second upload, a moved slider) starts while this session's previous run is
    # still on the network: that run stops at its next tile, and nobody else is involved.
    if getattr(loaded, "lock_owner", None) == _session_id():
        return "stopping this page's previous run first"
    return "waiting for another session using this model"


def predict(
    loaded: LoadedModel,
    store: ResultStore,
    image: np.ndarray,
    image_hash: str,
    settings: dict[str, Any],
    *,
    label: str = "Segmenting",
) -> Prediction:
    """Overlapped, blended tiled inference (:func:`tiledseg.predict_tiled`), cached.

    Args:
        loaded: the model; store: the shared result store.
        image: RGB uint8 (H, W, 3); image_hash: str, its content hash.
        settings: keyword arguments of ``predict_tiled`` (tile, overlap, blend, batch_size,
            scale, tta).
        label: str, shown on the progress bar.

    Raises:
        ValueError: a setting is out of range (the message names it).
    """
    key = ("tiled", loaded.key, image_hash, settings_key(settings))

    def compute(progress):
        predictor = loaded.predictor(settings)
        probabilities = predictor(image, progress=progress)
        return probabilities, predictor.grid(image.shape).count

    return _run(loaded, store, key, compute, label)


def predict_whole(
    loaded: LoadedModel,
    store: ResultStore,
    image: np.ndarray,
    image_hash: str,
    *,
    input_size: int | None = None,
    label: str = "Whole image",
) -> Prediction:
    """One forward pass (:func:`tiledseg.predict_whole`): at the model's scale, or squashed
    to ``input_size`` x ``input_size`` as the seed projects did."""
    from tiledseg import predict_whole as whole

    key = ("whole", loaded.key, image_hash, input_size)

    def compute(progress):
        size = None if input_size is None else (input_size, input_size)
        probabilities = whole(image, loaded.zoo, input_size=size)
        progress(1, 1)
        return probabilities, 1

    return _run(loaded, store, key, compute, label)


def predict_seed_tiles(
    loaded: LoadedModel,
    store: ResultStore,
    image: np.ndarray,
    image_hash: str,
    *,
    tile: int,
    overlap: float,
    native: bool = False,
    label: str = "Seeds' tiling",
) -> Prediction:
    """The seeds' tiling (:func:`tiledseg.baselines.predict_seed_tiles`).

    Args:
        native: bool, default False. False: at the model's scale (the image is resized to it
            and the probabilities back, with the engine's own resize functions), so it differs
            from the engine only by pasting instead of blending. True: at the image's own
            resolution, as the seed projects ran it, whatever scale the model was trained at.
    """
    from tiledseg.baselines import predict_seed_tiles as seed_tiles
    from tiledseg.scale import resize_image, resize_probabilities, scaled_shape
    from tiledseg.tiling import make_grid

    key = ("seed", loaded.key, image_hash, int(tile), float(overlap), bool(native))
    meta = loaded.zoo.meta

    def compute(progress):
        height, width = image.shape[:2]
        factor = 1.0 if native else meta.scale.factor_for(height, width)
        target = scaled_shape(height, width, factor)
        scaled = resize_image(image, target)
        probabilities = seed_tiles(scaled, loaded.zoo, tile=tile, overlap=overlap)
        tiles = make_grid(target[0], target[1], tile, overlap, int(meta.downsampling)).count
        progress(tiles, tiles)
        return resize_probabilities(probabilities, (height, width)), tiles

    return _run(loaded, store, key, compute, label)


def postprocessed_mask(
    store: ResultStore, prediction: Prediction, threshold: float, options: dict[str, Any]
) -> np.ndarray:
    """``tiledseg.postprocess.postprocess`` of the probabilities, cached per settings."""
    from tiledseg.postprocess import postprocess

    key = ("mask", mask_key(prediction, threshold, options))
    entry = store.get(key)
    if entry is None:
        mask = postprocess(prediction.probabilities, threshold=threshold, **options)
        entry = store.put(key, mask)
    return entry["value"]


@st.cache_data(max_entries=256, show_spinner=False)
def mask_stats(mask_key: str, _mask: np.ndarray) -> dict:
    """``tiledseg.postprocess.component_stats`` of a mask, cached by its key."""
    from tiledseg.postprocess import component_stats

    return component_stats(_mask)


def mask_key(prediction: Prediction, threshold: float, options: dict[str, Any]) -> str:
    """The key of ``postprocessed_mask(store, prediction, threshold, options)``."""
    return f"{prediction.key}|{float(threshold)}|{settings_key(options)}"


@st.cache_data(max_entries=512, show_spinner=False)
def metrics_row(mask_key: str, truth_key: str, _mask: np.ndarray, _truth: np.ndarray) -> dict:
    """``tiledseg.metrics.segmentation_metrics`` for one pair, cached by their keys."""
    from tiledseg.metrics import segmentation_metrics

    return segmentation_metrics(_mask, _truth)


@st.cache_data(max_entries=256, show_spinner=False)
def threshold_curves(
    prediction_key: str, truth_key: str, _probabilities: np.ndarray, _truth: np.ndarray
) -> dict[str, list[float]]:
    """Dice, precision and recall at :data:`CURVE_THRESHOLDS`, from the cached probabilities."""
    from tiledseg.metrics import dice_vs_threshold, precision_recall_curve

    dice = dice_vs_threshold(_probabilities, _truth, CURVE_THRESHOLDS)
    precision, recall = precision_recall_curve(_probabilities, _truth, CURVE_THRESHOLDS)
    return {
        "threshold": list(CURVE_THRESHOLDS),
        "dice": dice.tolist(),
        "precision": precision.tolist(),
        "recall": recall.tolist(),
    }
