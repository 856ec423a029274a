"""UI pieces several pages share: error boxes, the current model, image sources, settings."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import streamlit as st

from app_support.guard import plain_names_in, redact
from app_support.models import LoadedModel, load_model
from app_support.runs import RUNTIMES, default_postprocess
from app_support.state import selected_model
from app_support.store import ResultStore
from app_support.uploads import IMAGE_TYPES, Upload, find_samples, uploads_from_widget

__all__ = [
    "METRIC_LABELS",
    "ImageInput",
    "current_model",
    "domain_warning",
    "error_legend",
    "image_inputs",
    "model_dataset",
    "overlay_colors",
    "postprocess_controls",
    "result_store",
    "scale_warning",
    "settings_form",
    "show_error",
    "show_problems",
    "user_errors",
    "web_message",
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


# Sentences of library messages written for a command line or a server's operator (flags,
# environment variables, Python arguments, CLI commands): a web user can act on none of them.
_OPERATOR_ADVICE = re.compile(
    r"python -m |TILEDSEG_[A-Z_]+|max_pixels=|tiledseg (predict|evaluate)|`--|--[a-z]"
)


_OPERATOR_ASIDE = re.compile(r"\s*\([^()]*TILEDSEG_[A-Z_]+[^()]*\)")


def _sentences(text: str) -> list[str]:
    return [part for part in re.split(r"(?<=[.!?])\s+", text.strip()) if part]


def web_message(error: BaseException) -> str:
    """An error's message for a web user: the library's own words, less any advice for a
    command line or the server's operator (environment variables, flags, CLI commands)."""
    from tiledseg.errors import ModelLoadError, PixelLimitError

    text = str(error)
    if isinstance(error, PixelLimitError):
        text = f"{error.source}: {error.reason}"
    if isinstance(error, ModelLoadError):
        text = text.split("Accepted model references")[0]  # the CLI's list of reference forms
    text = _OPERATOR_ASIDE.sub("", text)  # "(TILEDSEG_...)" asides go, their sentence stays
    kept = [s for s in _sentences(text) if not _OPERATOR_ADVICE.search(s)]
    return " ".join(kept).strip() or type(error).__name__


def _advice(error: BaseException) -> str:
    from tiledseg.errors import (
        ImageReadError,
        MaskSizeError,
        MaskValueError,
        ModelLoadError,
        PixelLimitError,
        WorkLimitError,
    )

    if isinstance(error, MaskValueError):
        return ""  # its message already says what to do
    if isinstance(error, WorkLimitError):
        return (
            "Upload a smaller image, or choose a scale that shrinks it (or larger tiles) in "
            "the inference settings."
        )
    if isinstance(error, PixelLimitError):
        return "Shrink the image (for example to half its width and height) and upload it again."
    if isinstance(error, ModelLoadError):
        if "pick a model" in str(error).lower():
            return ""  # the message already says it
        return (
            "Pick a model from the sidebar's **Model** list, or choose *Another Hub model…* "
            "and enter its ORG/NAME."
        )
    if isinstance(error, MaskSizeError):
        return ""  # its message already says what to do, with the sizes
    if isinstance(error, ImageReadError):
        if str(getattr(error, "source", "")).lower().endswith(".zip"):
            return (
                "Make the ZIP again with an images/ and a masks/ folder inside, or upload the "
                "images and masks as separate files."
            )
        return "Save the file again as PNG or JPEG and upload it again."
    if isinstance(error, MemoryError):
        return (
            "The image is too large for this server's memory: upload a smaller image, or "
            "choose a scale that shrinks it."
        )
    if isinstance(error, ImportError):
        return "This part of the app is not available on this server; use another page."
    return "Change the setting it names and try again."


def show_error(
    error: BaseException, context: str = "", names: tuple[str, ...] | None = None
) -> None:
    """An ``st.error`` with the reason and what to do; never a traceback or a server path.

    ``names`` (default: the context itself) are the visitor's file names in the context and the
    message, shown as typed rather than as Markdown.
    """
    names = (context,) if names is None else names
    prefix = f"**{plain_names_in(context, names)}**: " if context else ""
    advice = _advice(error)
    st.error(
        f"{prefix}{plain_names_in(redact(web_message(error)), names)}"
        + (f"\n\n{advice}" if advice else ""),
        icon=":material/error:",
    )


@dataclass
class _Outcome:
    failed: bool = False
    message: str = ""  # the reason and advice, plain, where the block failed


@contextlib.contextmanager
def user_errors(
    context: str = "",
    *,
    collect: list[str] | None = None,
    names: tuple[str, ...] | None = None,
) -> Iterator[_Outcome]:
    """Show the input's errors (bad file, bad setting, unknown model) as ``st.error``.

    Args:
        context: str, what was being processed (a file name), shown first.
        collect: a list to append the message to instead of showing it, so a page can list
            many problems in one box (see :func:`show_problems`).
        names: the visitor's file names in ``context`` (default: the context itself), shown as
            typed in the box, never as Markdown; ``outcome.message`` stays plain.

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
        advice = _advice(error)
        text = redact(web_message(error)).rstrip()
        if advice and not text.endswith((".", "!", "?")):
            text += "."  # the advice is a sentence of its own
        outcome.message = text + (f" {advice}" if advice else "")
        names = (context,) if names is None else names
        if collect is None:
            show_error(error, context, names)
        else:
            shown = plain_names_in(outcome.message, names)
            collect.append(f"**{plain_names_in(context, names)}**: {shown}")


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
    with user_errors(f"Model {ref}"):
        return load_model(ref, revision)
    return None


@dataclass(frozen=True)
class ImageInput:
    """An image to process and, for a sample, its ground-truth mask and data set id."""

    image: Upload
    mask: Upload | None = None
    dataset: str | None = None


def model_dataset(loaded: LoadedModel) -> str | None:
    """The id of the data set a model was trained on (``dataset.id``), or None."""
    dataset = getattr(loaded.zoo.meta, "dataset", None) or {}
    return dataset.get("id") or None


def domain_warning(loaded: LoadedModel, dataset: str | None, name: str = "This image") -> None:
    """Warn when an image comes from another data set than the model was trained on."""
    trained = model_dataset(loaded)
    if dataset and trained and dataset != trained:
        st.warning(
            f"{name} is from the **{dataset}** data set, but {loaded.zoo.id} was trained on "
            f"**{trained}**: its mask and scores mean little here. Pick a {dataset} model in "
            "the sidebar.",
            icon=":material/warning:",
        )


def image_inputs(
    prefix: str, loaded: LoadedModel, *, multiple: bool, label: str = "Images"
) -> list[ImageInput]:
    """An uploader, or a sample from the model's data set (or its examples).

    Samples are those of the model's own data set; a checkbox shows every set, and a sample
    from another set is flagged (:func:`domain_warning`).

    Args:
        prefix: str, the page's widget-key prefix.
        loaded: the current model (its ``examples/`` folder is offered as samples).
        multiple: bool, accept several uploads.
        label: str, the uploader's label.

    Returns:
        list of ImageInput (empty until something is chosen).
    """
    model_path = loaded.zoo.path if loaded.zoo.path.is_dir() else None
    everything = find_samples(model_path)
    sources = ["Upload", "Sample"] if everything else ["Upload"]
    source = st.radio(
        "Image source",
        sources,
        horizontal=True,
        key=f"{prefix}_source",
        help="Your own image, or a sample image (with its ground truth) from the demo's data.",
    )
    if source == "Upload":
        files = st.file_uploader(
            f"{label} (JPEG, PNG, TIFF, BMP or WebP, up to 200 MB each)",
            type=IMAGE_TYPES,
            accept_multiple_files=multiple,
            key=f"{prefix}_upload",
        )
        return [ImageInput(upload) for upload in uploads_from_widget(files)]
    trained = model_dataset(loaded)
    own = [s for s in everything if s.dataset in (None, trained)] if trained else everything
    every_set = st.checkbox(
        "Samples from every data set",
        value=not own,
        key=f"{prefix}_all_samples",
        help=f"Off: only samples of the data set {loaded.zoo.id} was trained on.",
        disabled=own == everything,
    )
    samples = everything if every_set or not own else own
    labels = [sample.label for sample in samples]
    chosen = st.selectbox(
        "Sample image",
        labels,
        key=f"{prefix}_sample",
        help="Sample images with ground-truth masks: the data set, its split and the file.",
    )
    sample = samples[labels.index(chosen)]
    domain_warning(loaded, sample.dataset, f"**{sample.image.name}**")
    return [ImageInput(sample.upload(), sample.mask_upload(), sample.dataset)]


def scale_warning(loaded: LoadedModel, scale: dict[str, Any], shape: tuple[int, ...]) -> None:
    """Warn when ``scale`` brings an image far from the scale the model was trained at.

    Beyond :data:`tiledseg.scale.RELIABLE_SCALE_RATIOS` (1/2 to 2x) a UNet's masks are
    unreliable.
    """
    from tiledseg.scale import RELIABLE_SCALE_RATIOS, scale_ratio

    height, width = shape[:2]
    ratio = scale_ratio(scale, loaded.zoo.meta.scale, height, width)
    low, high = RELIABLE_SCALE_RATIOS
    if not low <= ratio <= high:
        st.warning(
            f"The chosen scale shows this {width}x{height} image to the network at "
            f"{ratio:.2g}x the size the model was trained at "
            f"({'larger' if ratio > 1 else 'smaller'}): expect a poor mask. Press **Model "
            "defaults** in the inference settings to go back to the model's scale.",
            icon=":material/warning:",
        )


def overlay_colors(
    prefix: str, loaded: LoadedModel, image: Any = None, mask: Any = None
) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """The overlay's fill and outline colours: by contrast with the image, or chosen.

    ``Contrast`` (the default) picks, from a few saturated colours with the model's class colour
    first, the one farthest from the image's colours inside and outside the mask
    (:func:`tiledseg.viz.contrasting_color`); ``Model colour`` is the class colour from the
    model's metadata; ``Custom`` shows two colour pickers.
    """
    from tiledseg import viz

    classes = getattr(loaded.zoo.meta, "classes", None) or [{"color": (255, 64, 64)}]
    model_color = tuple(int(v) for v in classes[-1]["color"])
    mode = st.radio(
        "Overlay colours",
        ["Contrast", "Model colour", "Custom"],
        horizontal=True,
        key=f"{prefix}_color_mode",
        help=(
            "Contrast: a colour chosen to stand out from this image (the model's own colour "
            "when it does). Model colour: the class colour in the model's metadata. Custom: "
            "pick the fill and outline colours yourself."
        ),
    )
    if mode == "Contrast" and image is not None:
        color = viz.contrasting_color(image, mask, [model_color, *viz.OVERLAY_CANDIDATES])
        return color, color
    if mode != "Custom":
        return model_color, model_color
    left, right = st.columns(2)
    fill = left.color_picker(
        "Fill", _hex(model_color), key=f"{prefix}_fill", help="Tint inside the mask."
    )
    outline = right.color_picker(
        "Outline", "#FFFF00", key=f"{prefix}_outline", help="The mask's outline."
    )
    return _rgb(fill), _rgb(outline)


def _hex(color: tuple[int, int, int]) -> str:
    return "#{:02X}{:02X}{:02X}".format(*color)


def _rgb(text: str) -> tuple[int, int, int]:
    text = text.lstrip("#")
    return int(text[0:2], 16), int(text[2:4], 16), int(text[4:6], 16)


def _scale_inputs(prefix: str, scale: dict[str, Any]) -> dict[str, Any]:
    modes = list(_SCALE_MODES)
    left, right = st.columns(2)
    mode = left.selectbox(
        "Scale",
        modes,
        index=modes.index(scale["mode"]),
        format_func=_SCALE_MODES.get,
        key=f"{prefix}_scale_mode",
        help=(
            "How the image is resized before the network sees it: by a factor, or so its "
            "short or long side has a given length. Keep the model's own scale (the default): "
            "it is the scale the model was trained at."
        ),
    )
    # Bounded (it took 100000): the largest side a model's scale may ask for. Whatever the box
    # says, the engine refuses an image above TILEDSEG_MAX_SCALED_PIXELS at the model's scale.
    value = right.number_input(
        "Scale value",
        min_value=_SCALE_MIN,
        max_value=_SCALE_MAX,
        value=min(max(float(scale["value"]), _SCALE_MIN), _SCALE_MAX),
        key=f"{prefix}_scale_value",
        help=(
            f"The factor (1 = native resolution) or the side length in pixels; at most "
            f"{_SCALE_MAX:g}."
        ),
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
            help=(
                "Side of the square tiles the image is cut into, in pixels at the model's "
                "scale. Larger tiles give the network more context and need more memory; "
                "'auto' picks the largest that fits this server's memory budget."
            ),
        )
        overlap = second.slider(
            "Overlap",
            0.0,
            0.75,
            float(current["overlap"]),
            0.05,
            key=f"{key}_overlap",
            help=(
                "Share of a tile that overlaps its neighbour. Overlapped borders are blended, "
                "which hides seams; more overlap means more tiles and a slower run."
            ),
        )
        blend = third.selectbox(
            "Blend",
            _BLENDS,
            index=_BLENDS.index(current["blend"]),
            key=f"{key}_blend",
            help=(
                "How overlapping tiles are combined. gaussian and hann weight each tile's "
                "centre most; constant averages them equally; center keeps each tile's "
                "central part only."
            ),
        )
        first, second, third = st.columns(3)
        batch = first.number_input(
            "Batch size (0 = automatic)",
            min_value=0,
            max_value=256,
            value=int(current["batch_size"] or 0),
            key=f"{key}_batch",
            help=(
                "Tiles run through the network at once. 0 picks a size for this machine "
                "(small on a CPU); larger batches use more memory and do not change the result."
            ),
        )
        precision = second.selectbox(
            "Precision",
            _PRECISIONS,
            index=_PRECISIONS.index(current.get("precision", "auto")),
            key=f"{key}_precision",
            help=(
                "Number format of the network's arithmetic. auto: bfloat16 on a GPU and on a "
                "CPU that computes it natively, else float32; 16-bit formats change "
                "probabilities by about 0.01."
            ),
        )
        runtime = second.selectbox(
            "Runtime",
            RUNTIMES,
            index=RUNTIMES.index(current.get("runtime", "auto")),
            key=f"{key}_runtime",
            help=(
                "What runs the network: auto is Keras on a GPU and OpenVINO on a CPU where "
                "it is installed; all give the same masks. The server chooses which one "
                "the settings start on."
            ),
        )
        with third:
            tta = st.checkbox(
                "Test-time flips (4x slower)",
                value=current["tta"] == "flips",
                key=f"{key}_tta",
                help=(
                    "Also run the horizontally and vertically flipped image and average the "
                    "four results: smoother masks, four times the work."
                ),
            )
        scale = _scale_inputs(key, current["scale"])
        apply, reset = st.columns(2)
        applied = apply.form_submit_button(
            "Apply settings", type="primary", help="Run the network again with these settings."
        )
        restored = reset.form_submit_button(
            "Model defaults", help="Go back to the settings in the model's metadata."
        )
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
        help=(
            "A pixel is foreground where its probability is above the threshold; the "
            "model's default was chosen on its validation data. Applies instantly."
        ),
    )
    with st.expander("Post-processing"):
        first, second = st.columns(2)
        opening = first.number_input(
            "Opening (px)",
            0,
            99,
            int(defaults["opening"]),
            key=f"{key}_opening",
            help="Removes specks and thin bridges narrower than this many pixels.",
        )
        closing = second.number_input(
            "Closing (px)",
            0,
            99,
            int(defaults["closing"]),
            key=f"{key}_closing",
            help="Closes gaps and notches narrower than this many pixels.",
        )
        min_size = first.number_input(
            "Remove components smaller than (px)",
            0,
            10_000_000,
            int(defaults["min_size"]),
            key=f"{key}_min_size",
            help="Drops separate regions with fewer pixels than this (0 keeps all).",
        )
        with second:
            fill_holes = st.checkbox(
                "Fill holes",
                bool(defaults["fill_holes"]),
                key=f"{key}_fill_holes",
                help="Fills background enclosed by foreground.",
            )
            keep_largest = st.checkbox(
                "Keep the largest component only",
                bool(defaults["keep_largest"]),
                key=f"{key}_keep_largest",
                help="For one object per image (a lesion): drops every other region.",
            )
        edge_visible = first.number_input(
            "Drop objects cut by the edge, visible under",
            0.0,
            1.0,
            float(defaults["edge_visible"]),
            0.05,
            key=f"{key}_edge_visible",
            help=(
                "Drops regions on the image's edge that show less than this share of a round "
                "object (0.5: less than half), as cell counts leave out cells cut by the edge. "
                "0 keeps them all."
            ),
        )
        edge_max_size = second.number_input(
            "... only if smaller than (px)",
            0,
            10_000_000,
            int(defaults["edge_max_size"]),
            key=f"{key}_edge_max_size",
            disabled=edge_visible == 0,
            help=(
                "Judges only edge regions smaller than this, about one whole object, so that "
                "clusters of objects along the edge stay (0: any size)."
            ),
        )
    options = {
        "opening": int(opening),
        "closing": int(closing),
        "fill_holes": bool(fill_holes),
        "min_size": int(min_size),
        "edge_visible": float(edge_visible),
        # The size limit only narrows the edge step; with the step off it has nothing to limit.
        "edge_max_size": int(edge_max_size) if edge_visible > 0 else 0,
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
