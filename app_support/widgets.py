"""UI pieces several pages share: error boxes, the current model, image sources, settings."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import streamlit as st

from app_support.guard import redact
from app_support.models import LoadedModel, load_model
from app_support.runs import default_postprocess
from app_support.state import selected_model
from app_support.store import ResultStore
from app_support.uploads import IMAGE_TYPES, Upload, find_samples, uploads_from_widget

__all__ = [
    "METRIC_LABELS",
    "ImageInput",
    "current_model",
    "error_legend",
    "image_inputs",
    "postprocess_controls",
    "result_store",
    "settings_form",
    "show_error",
    "show_problems",
    "user_errors",
]

METRIC_LABELS = {
    "dice": "Dice",
    "jaccard": "Jaccard",
    "threshold_jaccard": "Threshold Jaccard",
    "sensitivity": "Sensitivity",
    "specificity": "Specificity",
    "accuracy": "Accuracy",
    "precision": "Precision",
    "hd95": "HD95 (px)",
}
_TILE_CHOICES = ["auto", 64, 96, 128, 192, 256, 320, 384, 512, 768, 1024]
_BLENDS = ("gaussian", "hann", "constant", "center")
_PRECISIONS = ("auto", "float32", "bfloat16", "float16")
_RUNTIMES = ("auto", "keras", "openvino", "onnxruntime")
_SCALE_MODES = {
    "factor": "resize factor",
    "short_side": "short side (px)",
    "long_side": "long side (px)",
}
_SCALE_MIN, _SCALE_MAX = 0.01, 16384.0


@st.cache_resource(show_spinner=False)
def result_store() -> ResultStore:
    """The process-wide store of decoded images and probability maps."""
    return ResultStore()


def _advice(error: BaseException) -> str:
    from tiledseg.errors import (
        ImageReadError,
        MaskSizeError,
        MaskValueError,
        ModelLoadError,
        PixelLimitError,
        WorkLimitError,
    )

    said = (PixelLimitError, MaskSizeError, MaskValueError, ModelLoadError, WorkLimitError)
    if isinstance(error, said):
        return ""  # their messages already say what to do
    if isinstance(error, ImageReadError):
        return (
            "Check that the file opens in an image viewer, or save it again as PNG or JPEG, "
            "then upload it again."
        )
    if isinstance(error, MemoryError):
        return (
            "The image is too large for this server's memory: upload a smaller image, or "
            "choose a scale that shrinks it."
        )
    if isinstance(error, ImportError):
        return "Install the missing package (see the message) and restart the app."
    return "Change the setting it names and try again."


def show_error(error: BaseException, context: str = "") -> None:
    """An ``st.error`` with the reason and what to do; never a traceback or a server path."""
    prefix = f"**{context}**: " if context else ""
    advice = _advice(error)
    text = redact(str(error))
    st.error(f"{prefix}{text}" + (f"\n\n{advice}" if advice else ""), icon=":material/error:")


@dataclass
class _Outcome:
    failed: bool = False


@contextlib.contextmanager
def user_errors(context: str = "", *, collect: list[str] | None = None) -> Iterator[_Outcome]:
    """Show the input's errors (bad file, bad setting, unknown model) as ``st.error``.

    Args:
        context: str, what was being processed (a file name), shown first.
        collect: a list to append the message to instead of showing it, so a page can list
            many problems in one box (see :func:`show_problems`).

    Example:
        >>> with user_errors("photo.jpg") as outcome:  # doctest: +SKIP
        ...     image = decode_image(store, upload)
        >>> if outcome.failed: ...  # doctest: +SKIP
    """
    from tiledseg.errors import TiledsegError

    outcome = _Outcome()
    try:
        yield outcome
    except (TiledsegError, ValueError, MemoryError, ImportError) as error:
        outcome.failed = True
        if collect is None:
            show_error(error, context)
        else:
            advice = _advice(error)
            text = redact(str(error))
            collect.append(f"**{context}**: {text}" + (f" {advice}" if advice else ""))


def show_problems(problems: list[str], title: str) -> None:
    """One ``st.error`` listing every problem (as collected by :func:`user_errors`)."""
    if problems:
        items = "\n".join(f"- {problem}" for problem in problems)
        st.error(f"{title}\n\n{items}", icon=":material/error:")


def current_model() -> LoadedModel | None:
    """The session's chosen model, loaded (shared, cached); None after showing why not."""
    ref, revision = selected_model()
    if not ref:
        st.warning("Choose a model in the sidebar first.", icon=":material/arrow_back:")
        return None
    with user_errors(f"Model {ref}") as outcome:
        return load_model(ref, revision)
    if outcome.failed:
        st.info("Pick another model in the sidebar, or fix the reference above.")
    return None


@dataclass(frozen=True)
class ImageInput:
    """An image to process and, for a sample, its ground-truth mask."""

    image: Upload
    mask: Upload | None = None


def image_inputs(
    prefix: str, loaded: LoadedModel, *, multiple: bool, label: str = "Images"
) -> list[ImageInput]:
    """An uploader, or a sample from the data folder or the model's examples.

    Args:
        prefix: str, the page's widget-key prefix.
        loaded: the current model (its ``examples/`` folder is offered as samples).
        multiple: bool, accept several uploads.
        label: str, the uploader's label.

    Returns:
        list of ImageInput (empty until something is chosen).
    """
    samples = find_samples(loaded.zoo.path if loaded.zoo.path.is_dir() else None)
    sources = ["Upload", "Sample"] if samples else ["Upload"]
    source = st.radio("Image source", sources, horizontal=True, key=f"{prefix}_source")
    if source == "Upload":
        files = st.file_uploader(
            f"{label} (JPEG, PNG, TIFF, BMP or WebP, up to 200 MB each)",
            type=IMAGE_TYPES,
            accept_multiple_files=multiple,
            key=f"{prefix}_upload",
        )
        return [ImageInput(upload) for upload in uploads_from_widget(files)]
    labels = [sample.label for sample in samples]
    chosen = st.selectbox("Sample image", labels, key=f"{prefix}_sample")
    sample = samples[labels.index(chosen)]
    return [ImageInput(sample.upload(), sample.mask_upload())]


def _scale_inputs(prefix: str, scale: dict[str, Any]) -> dict[str, Any]:
    modes = list(_SCALE_MODES)
    left, right = st.columns(2)
    mode = left.selectbox(
        "Scale",
        modes,
        index=modes.index(scale["mode"]),
        format_func=_SCALE_MODES.get,
        key=f"{prefix}_scale_mode",
        help="The pixel scale the network sees; the model's card says which it was trained at.",
    )
    # Bounded (it took 100000): the largest side a model's scale may ask for. Whatever the box
    # says, the engine refuses an image above TILEDSEG_MAX_SCALED_PIXELS at the model's scale.
    value = right.number_input(
        "Scale value",
        min_value=_SCALE_MIN,
        max_value=_SCALE_MAX,
        value=min(max(float(scale["value"]), _SCALE_MIN), _SCALE_MAX),
        key=f"{prefix}_scale_value",
        help=f"A resize factor, or a side in px; at most {_SCALE_MAX:g}.",
    )
    return {"mode": mode, "value": int(value) if mode != "factor" else float(value)}


def settings_form(
    prefix: str, loaded: LoadedModel, current: dict[str, Any], defaults: dict[str, Any]
) -> dict[str, Any] | None:
    """The inference settings form; returns new settings when applied, else None.

    Widget keys include the model, so choosing another model shows its own defaults.
    """
    key = f"{prefix}_{loaded.zoo.id}"
    with st.form(f"{key}_settings"):
        first, second, third = st.columns(3)
        tiles = list(_TILE_CHOICES)
        if current["tile"] not in tiles:
            tiles.insert(1, current["tile"])
        tile = first.selectbox(
            "Tile size (px at model scale)",
            tiles,
            index=tiles.index(current["tile"]),
            key=f"{key}_tile",
            help="'auto' uses the largest tile that fits the memory budget.",
        )
        overlap = second.slider(
            "Overlap", 0.0, 0.75, float(current["overlap"]), 0.05, key=f"{key}_overlap"
        )
        blend = third.selectbox(
            "Blend", _BLENDS, index=_BLENDS.index(current["blend"]), key=f"{key}_blend"
        )
        first, second, third = st.columns(3)
        batch = first.number_input(
            "Batch size (0 = automatic)",
            min_value=0,
            max_value=256,
            value=int(current["batch_size"] or 0),
            key=f"{key}_batch",
        )
        precision = second.selectbox(
            "Precision",
            _PRECISIONS,
            index=_PRECISIONS.index(current.get("precision", "auto")),
            key=f"{key}_precision",
            help="auto: bfloat16 on a GPU and on a CPU that computes it natively, else float32.",
        )
        runtime = second.selectbox(
            "Runtime",
            _RUNTIMES,
            index=_RUNTIMES.index(current.get("runtime", "auto")),
            key=f"{key}_runtime",
            help="auto: Keras on a GPU, OpenVINO on a CPU where it is installed.",
        )
        with third:
            tta = st.checkbox(
                "Test-time flips (4x slower)", value=current["tta"] == "flips", key=f"{key}_tta"
            )
        scale = _scale_inputs(key, current["scale"])
        apply, reset = st.columns(2)
        applied = apply.form_submit_button("Apply settings", type="primary")
        restored = reset.form_submit_button("Model defaults")
    if restored:
        return dict(defaults)
    if not applied:
        return None
    return {
        "tile": tile,
        "overlap": float(overlap),
        "blend": blend,
        "batch_size": int(batch) or None,
        "scale": scale,
        "tta": "flips" if tta else None,
        "precision": precision,
        "runtime": runtime,
    }


def postprocess_controls(prefix: str, loaded: LoadedModel) -> tuple[float, dict[str, Any]]:
    """Threshold and post-processing widgets (applied live, no new inference)."""
    meta = loaded.zoo.meta
    defaults = default_postprocess(meta)
    key = f"{prefix}_{loaded.zoo.id}"
    threshold = st.slider(
        "Threshold",
        0.0,
        1.0,
        float(meta.threshold),
        0.01,
        key=f"{key}_threshold",
        help="Foreground is probability > threshold. Re-thresholds the cached probabilities.",
    )
    with st.expander("Post-processing"):
        first, second = st.columns(2)
        opening = first.number_input(
            "Opening (px)", 0, 99, int(defaults["opening"]), key=f"{key}_opening"
        )
        closing = second.number_input(
            "Closing (px)", 0, 99, int(defaults["closing"]), key=f"{key}_closing"
        )
        min_size = first.number_input(
            "Remove components smaller than (px)",
            0,
            10_000_000,
            int(defaults["min_size"]),
            key=f"{key}_min_size",
        )
        with second:
            fill_holes = st.checkbox(
                "Fill holes", bool(defaults["fill_holes"]), key=f"{key}_fill_holes"
            )
            keep_largest = st.checkbox(
                "Keep the largest component only",
                bool(defaults["keep_largest"]),
                key=f"{key}_keep_largest",
            )
    options = {
        "opening": int(opening),
        "closing": int(closing),
        "fill_holes": bool(fill_holes),
        "min_size": int(min_size),
        "keep_largest": bool(keep_largest),
    }
    return float(threshold), options


def error_legend() -> None:
    """The colour key of ``tiledseg.viz.error_map``."""
    from tiledseg.viz import ERROR_COLORS

    names = {"TP": "true positive", "FP": "false positive", "FN": "false negative"}
    swatches = " ".join(
        f"<span style='display:inline-block;width:0.9em;height:0.9em;margin:0 0.3em 0 0.8em;"
        f"vertical-align:middle;border:1px solid #555;background:rgb{tuple(color)}'></span>"
        f"{names[name]} ({name})"
        for name, color in ERROR_COLORS.items()
    )
    st.markdown(swatches, unsafe_allow_html=True)
