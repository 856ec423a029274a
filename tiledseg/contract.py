"""The inference contract: ``tiledseg.json``, the versioned metadata that travels with a model.

The engine reads its inference settings (scale, tile, overlap, blend, threshold, tta,
precision, postprocess, downsampling, classes) from :class:`ModelMeta`; the zoo's card and
``list`` read the dataset and the metrics. ``format_version`` is ``MAJOR.MINOR``: a reader
accepts any minor version of a major it supports (newer minors may add fields, which it
ignores) and rejects other majors, naming the ones it supports.

A model folder is Keras' own layout (:data:`CONFIG_FILE`, ``metadata.json``,
``model.weights.h5``) plus :data:`META_FILE`; an export keeps :data:`META_FILE` beside the
network (:data:`SAVEDMODEL_META_FILE` inside a SavedModel version folder). Everything that runs
a model (the engine, a runtime backend, a served model's client) needs only the network and
this contract; the zoo (``model_zoo``) builds on it for Hub layout, staging, cards and publishing.
"""

from __future__ import annotations

import datetime
import json
import re
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from tiledseg._validation import validate_choice, validate_range
from tiledseg.errors import MetadataError, MetadataVersionError
from tiledseg.postprocess import POSTPROCESS_DEFAULTS, validate_postprocess_options
from tiledseg.precision import PRECISIONS
from tiledseg.scale import PixelScale

__all__ = [
    "BLEND_MODES",
    "CONFIG_FILE",
    "FORMAT_VERSION",
    "META_FILE",
    "POSTPROCESS_KEYS",
    "SAVEDMODEL_META_FILE",
    "SUPPORTED_MAJOR_VERSIONS",
    "TTA_MODES",
    "WEIGHTS_FILE",
    "ModelMeta",
    "load_meta",
    "utc_timestamp",
]

# The metadata file beside every model, and where a SavedModel export keeps it (TF Serving
# ignores assets.extra/ when loading, and it travels with the version directory).
META_FILE = "tiledseg.json"
SAVEDMODEL_META_FILE = f"assets.extra/{META_FILE}"
# The Keras model config and weights of a model folder in Keras' own (Hugging Face) layout.
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.weights.h5"
MAX_DOWNSAMPLING = 1024

# 1.1 added `precision` (1.0 files read as precision None: the engine's auto).
# 1.2 added `frame` (older files read as 0: no frame).
# 1.3 added the post-processing keys `edge_visible` and `edge_max_size` (a 1.2 reader refuses
# them by name rather than run the model without that step).
FORMAT_VERSION = "1.3"
SUPPORTED_MAJOR_VERSIONS = (1,)
BLEND_MODES = ("gaussian", "hann", "constant", "center")
TTA_MODES = ("flips",)
# The metadata's `postprocess` takes every option of tiledseg.postprocess but the threshold,
# which is a field of its own.
POSTPROCESS_KEYS = tuple(POSTPROCESS_DEFAULTS)
_VERSION_PATTERN = re.compile(r"^(\d+)\.(\d+)$")
_DEFAULT_CLASSES = ({"name": "foreground", "color": [255, 64, 64]},)


@dataclass(frozen=True)
class ModelMeta:
    """Inference metadata of a model, stored as ``tiledseg.json``.

    Args:
        name: str, the model's id (``"unet-isic2017"``).
        description: str, one sentence for listings.
        task: str, ``"binary-segmentation"`` or ``"multiclass-segmentation"``.
        architecture: str, e.g. ``"unet"``.
        scale: PixelScale (or its dict), the pixel scale the model was trained at.
        tile: int >= 1, tile side in pixels at model scale. Default 512.
        overlap: float in [0, 1), fraction of a tile shared with its neighbour. Default 0.25.
        blend: str, one of ``"gaussian"``, ``"hann"``, ``"constant"``, ``"center"``.
        threshold: float in [0, 1], probability cut-off for the mask. Default 0.5.
        tta: None or ``"flips"``, test-time augmentation.
        precision: None (the engine's ``"auto"``: bfloat16 on a GPU) or one of
            ``"float32"``, ``"bfloat16"``, ``"float16"``: the arithmetic the model's metrics hold
            in, for a network that 16 bits move further than the usual 1e-2 in probability.
        postprocess: dict of keyword arguments for ``tiledseg.postprocess.postprocess``
            (keys among ``opening``, ``closing``, ``fill_holes``, ``min_size``,
            ``edge_visible``, ``edge_max_size``, ``keep_largest``).
        frame: int >= 0, default 0. Black pixels (at model scale) the engine puts around the
            image before tiling, as the model saw around each training image: it marks the
            image's own edge, which a tile's edge does not.
        downsampling: int, a power of two from 1 to 1024, the model's total downsampling factor.
        classes: list of ``{"name": str, "color": [r, g, b]}``, one per output channel.
        input_channels: int >= 1, channels the model expects (3 for RGB).
        normalization: str, how pixel values are normalised (the model receives 0..255).
        dataset: dict, the training data (name, id, licence, citation, splits, notes).
        metrics: list of ``{"split": str, "settings": dict, "values": {metric: float}}``,
            each an evaluation with the split and the inference settings it was measured with.
        tiledseg_version: str, keras_version: str, date: str (ISO 8601): provenance.
        parameter_count: int >= 0, number of model weights.
        format_version: str, the schema version this object was read from or will be written as.

    Example:
        >>> meta = ModelMeta(name="tiny", scale={"mode": "short_side", "value": 256})
        >>> ModelMeta.from_dict(meta.to_dict()) == meta
        True
    """

    name: str = ""
    description: str = ""
    task: str = "binary-segmentation"
    architecture: str = ""
    scale: PixelScale = field(default_factory=PixelScale)
    tile: int = 512
    overlap: float = 0.25
    blend: str = "gaussian"
    threshold: float = 0.5
    tta: str | None = None
    precision: str | None = None
    postprocess: dict[str, Any] = field(default_factory=dict)
    frame: int = 0
    downsampling: int = 1
    classes: list[dict[str, Any]] = field(default_factory=lambda: _default_classes())
    input_channels: int = 3
    normalization: str = "rescale_0_1 inside the model"
    dataset: dict[str, Any] = field(default_factory=dict)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    tiledseg_version: str = ""
    keras_version: str = ""
    date: str = ""
    parameter_count: int = 0
    format_version: str = FORMAT_VERSION

    def __post_init__(self) -> None:
        # Frozen dataclass: normalise through object.__setattr__ so dict input is accepted.
        object.__setattr__(self, "scale", _as_scale(self.scale))
        for name in ("name", "description", "task", "architecture", "normalization"):
            _require_type(getattr(self, name), str, name)
        validate_range(self.tile, "tile", low=1, integer=True)
        validate_range(self.overlap, "overlap", low=0, high=1, high_inclusive=False)
        validate_choice(self.blend, BLEND_MODES, "blend")
        validate_range(self.threshold, "threshold", low=0, high=1)
        if self.tta is not None:
            validate_choice(self.tta, TTA_MODES, "tta")
        if self.precision is not None:
            validate_choice(self.precision, PRECISIONS[1:], "precision")
        _check_postprocess(self.postprocess, self.format_version)
        validate_range(self.frame, "frame", low=0, integer=True)
        _check_downsampling(self.downsampling)
        _check_classes(self.classes)
        validate_range(self.input_channels, "input_channels", low=1, integer=True)
        _require_type(self.dataset, dict, "dataset")
        _check_metrics(self.metrics)
        validate_range(self.parameter_count, "parameter_count", low=0, integer=True)
        _parse_version(self.format_version)

    @property
    def headline_metric(self) -> tuple[str, float, str] | None:
        """``(metric, value, split)`` of the first evaluation, Dice preferred; None if none."""
        if not self.metrics:
            return None
        first = self.metrics[0]
        values = first["values"]
        metric = "dice" if "dice" in values else next(iter(values))
        return metric, float(values[metric]), first["split"]

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form, ``format_version`` first."""
        data = asdict(self)
        data["scale"] = self.scale.to_dict()
        data.pop("format_version")
        return {"format_version": FORMAT_VERSION, **data}

    def to_json(self) -> str:
        """``tiledseg.json``'s text: :meth:`to_dict` as indented JSON."""
        return json.dumps(self.to_dict(), indent=2, sort_keys=False) + "\n"

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "tiledseg.json") -> ModelMeta:
        """Build from the dict form, checking the version and every field.

        Args:
            data: dict, the parsed ``tiledseg.json``.
            source: str, where it came from, for error messages.

        Returns:
            A validated ModelMeta.

        Raises:
            MetadataVersionError: ``format_version`` is missing or of an unsupported major.
            MetadataError: a field is unknown, missing or invalid.
        """
        if not isinstance(data, dict):
            raise MetadataError(
                f"{source} must hold a JSON object. Received: {type(data).__name__}"
            )
        version = data.get("format_version")
        major, minor = _check_version(version, source)
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        current_major, current_minor = _parse_version(FORMAT_VERSION)
        # A newer minor version may add fields; an unknown key in a version we know is a typo.
        if unknown and (major, minor) <= (current_major, current_minor):
            raise MetadataError(
                f"{source} has unknown field(s) {unknown} for format_version {version}. "
                f"Known fields: {sorted(known)}"
            )
        kwargs = {key: value for key, value in data.items() if key in known}
        try:
            return cls(**kwargs)
        except (TypeError, ValueError) as error:
            raise MetadataError(f"Invalid {source}: {error}") from error

    @classmethod
    def default_for(cls, model: Any, *, name: str = "") -> ModelMeta:
        """Defaults for a checkpoint with no ``tiledseg.json``: downsampling read from the model.

        Args:
            model: keras.Model.
            name: str, the model's id.

        Returns:
            ModelMeta with factor-1.0 scale, tile 512, overlap 0.25, gaussian blend, threshold 0.5.
        """
        from tiledseg.tiling import downsampling_factor

        channels = _input_channels(model)
        classes = _default_classes()
        outputs = _output_channels(model)
        if outputs and outputs > 1:
            classes = [{"name": f"class_{i}", "color": _palette(i)} for i in range(outputs)]
        return cls(
            name=name,
            downsampling=int(downsampling_factor(model)),
            input_channels=channels or 3,
            classes=classes,
            parameter_count=int(model.count_params()),
        )

    def write(self, path: str | Path) -> Path:
        """Write ``tiledseg.json`` to ``path`` (a file or a directory) and return the file."""
        path = Path(path)
        if path.is_dir():
            path = path / META_FILE
        path.write_text(self.to_json(), encoding="utf-8")
        return path


def load_meta(path: str | Path) -> ModelMeta:
    """Read and validate ``tiledseg.json``.

    Args:
        path: str or Path, the file or the directory holding it.

    Returns:
        ModelMeta.

    Raises:
        MetadataError: the file is missing, not JSON, or fails the schema.
        MetadataVersionError: its major format version is not supported.

    Example:
        >>> meta = load_meta("model_zoo/bundled/unet-isic2017")  # doctest: +SKIP
    """
    path = Path(path)
    if path.is_dir():
        path = path / META_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise MetadataError(f"No metadata file: {path}") from error
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise MetadataError(f"Cannot read {path} as JSON: {error}") from error
    return ModelMeta.from_dict(data, source=str(path))


def utc_timestamp() -> str:
    """The current UTC time in ISO 8601, to the second (for ``ModelMeta.date``)."""
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0).isoformat()


def _parse_version(version: Any) -> tuple[int, int]:
    match = _VERSION_PATTERN.match(version) if isinstance(version, str) else None
    if not match:
        raise ValueError(
            f"`format_version` must be a string 'MAJOR.MINOR'. Received: format_version={version!r}"
        )
    return int(match.group(1)), int(match.group(2))


def _check_version(version: Any, source: str) -> tuple[int, int]:
    supported = ", ".join(f"{major}.x" for major in SUPPORTED_MAJOR_VERSIONS)
    if version is None:
        raise MetadataVersionError(
            f"{source} has no format_version; this tiledseg reads format versions {supported}."
        )
    try:
        major, minor = _parse_version(version)
    except ValueError as error:
        raise MetadataVersionError(f"{source}: {error}") from error
    if major > max(SUPPORTED_MAJOR_VERSIONS):
        raise MetadataVersionError(
            f"{source} has format_version {version}, newer than this tiledseg supports "
            f"({supported}). Upgrade tiledseg (`pip install -U tiledseg`) to load this model."
        )
    if major not in SUPPORTED_MAJOR_VERSIONS:
        raise MetadataVersionError(
            f"{source} has format_version {version}, older than this tiledseg supports "
            f"({supported}). Re-stage the model from its training run with "
            "`python -m model_zoo publish RUN_DIR --repo-id ORG/NAME` (or `bundle`)."
        )
    return major, minor


def _as_scale(value: Any) -> PixelScale:
    try:
        return PixelScale.from_value(value)
    except TypeError as error:
        raise TypeError(str(error)) from None


def _require_type(value: Any, kind: type, name: str) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"`{name}` must be a {kind.__name__}. Received: {name}={value!r}")


def _check_postprocess(postprocess: Any, format_version: Any) -> None:
    _require_type(postprocess, dict, "postprocess")
    unknown = sorted(set(postprocess) - set(POSTPROCESS_KEYS))
    if unknown:
        # A newer minor version may add a step; running the model without it would give
        # another mask than its metrics were measured on, so it is refused, with the remedy.
        newer = (
            isinstance(format_version, str)
            and _VERSION_PATTERN.match(format_version)
            and _parse_version(format_version) > _parse_version(FORMAT_VERSION)
        )
        upgrade = (
            f" This model's format_version {format_version} is newer than this tiledseg's "
            f"{FORMAT_VERSION}: upgrade tiledseg (`pip install -U tiledseg`) to run it."
            if newer
            else ""
        )
        raise ValueError(
            f"`postprocess` keys must be among {list(POSTPROCESS_KEYS)}. "
            f"Received unknown keys: {unknown}.{upgrade}"
        )
    validate_postprocess_options(postprocess)  # values: ranges, integers, flags


def _check_downsampling(value: Any) -> None:
    validate_range(value, "downsampling", low=1, high=MAX_DOWNSAMPLING, integer=True)
    if value & (value - 1):
        raise ValueError(
            "`downsampling` must be a power of two (a UNet halves its feature maps at each "
            f"level): 1, 2, 4, ..., {MAX_DOWNSAMPLING}. Received: downsampling={value!r}"
        )


def _check_classes(classes: Any) -> None:
    if not isinstance(classes, list) or not classes:
        raise ValueError(
            "`classes` must be a non-empty list of {'name': str, 'color': [r, g, b]}. "
            f"Received: classes={classes!r}"
        )
    for entry in classes:
        color = entry.get("color") if isinstance(entry, dict) else None
        valid_color = (
            isinstance(color, list)
            and len(color) == 3
            and all(isinstance(c, int) and not isinstance(c, bool) and 0 <= c <= 255 for c in color)
        )
        if not (isinstance(entry, dict) and isinstance(entry.get("name"), str) and valid_color):
            raise ValueError(
                "Each entry of `classes` must be {'name': str, 'color': [r, g, b]} with "
                f"integers in [0, 255]. Received: {entry!r}"
            )


def _check_metrics(metrics: Any) -> None:
    if not isinstance(metrics, list):
        raise TypeError(f"`metrics` must be a list. Received: metrics={metrics!r}")
    for entry in metrics:
        ok = (
            isinstance(entry, dict)
            and isinstance(entry.get("split"), str)
            and isinstance(entry.get("settings"), dict)
            and isinstance(entry.get("values"), dict)
            and entry["values"]
            and all(
                isinstance(v, (int, float)) and not isinstance(v, bool)
                for v in entry["values"].values()
            )
        )
        if not ok:
            raise ValueError(
                "Each entry of `metrics` must be {'split': str, 'settings': dict, "
                "'values': {metric: number, ...}} (non-empty values). "
                f"Received: {entry!r}"
            )


def _default_classes() -> list[dict[str, Any]]:
    return [{"name": c["name"], "color": list(c["color"])} for c in _DEFAULT_CLASSES]


def _input_channels(model: Any) -> int | None:
    shape = getattr(model, "input_shape", None)
    if isinstance(shape, list):
        shape = shape[0]
    return int(shape[-1]) if shape and shape[-1] is not None else None


def _output_channels(model: Any) -> int | None:
    shape = getattr(model, "output_shape", None)
    if isinstance(shape, list):
        shape = shape[0]
    return int(shape[-1]) if shape and shape[-1] is not None else None


def _palette(index: int) -> list[int]:
    colors = ([255, 64, 64], [64, 160, 255], [64, 220, 96], [255, 200, 0], [200, 64, 255])
    return list(colors[index % len(colors)])
