"""Overlapped tiled inference: the engine.

:func:`predict_tiled` is the only implementation; :class:`TiledPredictor` stores settings and
the compiled band functions for repeated calls and forwards to it.

How one image goes through:

1. The image is brought to the model's pixel scale (area to shrink, cubic to enlarge) and padded
   at the bottom and right to a multiple of the model's downsampling factor.
2. The grid (:mod:`tiledseg.tiling`) is processed in bands of tile rows, as many as fill a batch
   with the fewest padded batch slots (:func:`tiledseg.band.rows_per_band`). For each band, one
   compiled Keras function (:mod:`tiledseg.band`) cuts the tiles out (and their flips, for
   test-time augmentation), runs the network in fixed-shape batches, weights the probabilities
   with the blend window and overlap-adds them into the band, all with ``keras.ops`` on the
   backend's device. The band is added into the probability map on the host, so peak memory
   beyond the image and the map does not grow with the number of tiles. A model that runs
   elsewhere (a tile backend such as :class:`tiledseg.serving.ServingModel`) gets the same grid
   and blend weights on the host instead, batches of tiles sent several at a time
   (:mod:`tiledseg.tile_backend`). So does a network run by OpenVINO or ONNX Runtime
   (``runtime=``, :mod:`tiledseg.runtimes`; ``"auto"`` is OpenVINO on a CPU where installed).
3. The map is cropped and resized back to the input's full size (linear), before any threshold.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from tiledseg._device import on_gpu
from tiledseg._validation import validate_choice, validate_range
from tiledseg.band import band_function, default_batch, row_groups, rows_per_band
from tiledseg.io import to_uint8
from tiledseg.limits import check_scaled_size, check_tile_count
from tiledseg.precision import PRECISIONS, with_precision
from tiledseg.runtimes.select import RUNTIMES, RuntimeChoice, choose_runtime, runtime_backend
from tiledseg.scale import PixelScale, add_frame, resize_image, resize_probabilities, scaled_shape
from tiledseg.tile_backend import backend_bands, is_tile_backend
from tiledseg.tiling import (
    BLEND_MODES,
    TileGrid,
    blend_weights,
    downsampling_factor,
    make_grid,
    tile_count,
)

__all__ = ["PAD_MODES", "TTA_MODES", "TiledPredictor", "predict_tiled", "predict_whole"]

PAD_MODES = ("reflect", "edge", "constant")
TTA_MODES = ("flips", "none")
DEFAULT_TILE = 512
DEFAULT_OVERLAP = 0.25
DEFAULT_BLEND = "gaussian"
# tile="auto" keeps each tile's area within this budget and, among the sides that fit, picks the
# one whose grid makes the network see the fewest pixels (a fully convolutional model does less
# overlap work with fewer, larger tiles). On 2 CPU cores a 16-filter UNet ran at the same
# 2.5 Mpx/s on 512 px tiles and on a whole 6000x4000 image, so the budget is about memory.
AUTO_TILE_PIXELS_CPU = 2048 * 2048
AUTO_TILE_PIXELS_GPU = 4096 * 4096

ProgressCallback = Callable[[int, int], None]


def predict_tiled(
    image: np.ndarray,
    model: Any,
    *,
    tile: int | str | None = None,
    overlap: float | None = None,
    blend: str | None = None,
    batch_size: int | None = None,
    scale: float | PixelScale | dict | None = None,
    pad_mode: str = "reflect",
    tta: str | None = None,
    precision: str | None = None,
    runtime: str = "auto",
    frame: int | None = None,
    progress: ProgressCallback | None = None,
    _cache: OrderedDict | None = None,
) -> np.ndarray:
    """Predict a probability map for an image of any size by overlapped, blended tiles.

    Args:
        image: RGB uint8 array ``(H, W, C)``. uint16 is brought to uint8 as round(v / 257);
            other dtypes raise TypeError. Grey ``(H, W)`` is copied to a 3-channel model's
            channels and RGBA loses its alpha. The network receives float32 pixel values as
            stored (0-255); models normalise inside the graph.
        model: a ``keras.Model``, or a zoo model (an object with ``.model`` and ``.meta``)
            whose metadata supplies every argument left as ``None``, or a tile backend (an
            object with ``.predict_tiles`` and ``.meta``, e.g. a
            :class:`tiledseg.serving.ServingModel`), whose tiles run wherever it sends them.
        tile: int >= 1, ``"auto"`` or None (default 512). Rounded up to a multiple of the
            model's downsampling factor. ``"auto"`` keeps tiles within a memory budget
            (2048² px on CPU, 4096² on GPU) and picks the side whose grid feeds the network
            the fewest pixels; an image that fits the budget is one tile.
        overlap: float in [0, 1), default 0.25: the fraction of a tile shared with each
            neighbour.
        blend: one of ``"gaussian"`` (default), ``"hann"``, ``"constant"``, ``"center"``.
        batch_size: int >= 1 or None (about 2 tiles of 512² on CPU, 64 on GPU; a tile
            backend's own ``batch_size``).
        scale: resize factor (float > 0), a :class:`~tiledseg.scale.PixelScale` or its dict,
            or None (the model's scale from its metadata, else 1.0).
        pad_mode: how the bottom/right remainder is padded: ``"reflect"`` (default),
            ``"edge"`` or ``"constant"`` (zeros).
        tta: None (the model's metadata, else off), ``"flips"`` (average over the identity,
            horizontal, vertical and both flips, inside the same batches) or ``"none"``.
        precision: None (the model's metadata, else ``"auto"``), ``"auto"`` (bfloat16 on a
            GPU, and on a CPU that computes it natively with a runtime that uses it; float32
            elsewhere), ``"float32"``, ``"bfloat16"`` or ``"float16"``. In Keras the network
            computes in 16 bits with float32 weights, stem and output
            (:mod:`tiledseg.precision`); OpenVINO gets it as its inference precision hint;
            blending always accumulates in float32. Ignored by a tile backend passed as
            ``model``, which runs the tiles in its own precision.
        runtime: ``"auto"`` (default: Keras on a GPU, OpenVINO on a CPU where it is installed,
            else Keras), ``"keras"``, ``"openvino"`` or ``"onnxruntime"``. OpenVINO and ONNX
            Runtime run a conversion made once by Keras' export and cached on disk
            (:mod:`tiledseg.runtimes`), on batches of tiles cut and blended on the host;
            float32 matches Keras to 1e-4. Ignored when ``model`` is a tile backend.
        frame: int >= 0 or None (the model's metadata, else 0). Black pixels at model scale
            put around the image before tiling and cut off the result, for a model trained
            with the same frame around its images (it then sees where the image ends).
        progress: called as ``progress(done_tiles, total_tiles)`` after each band.

    Returns:
        float32 probabilities at the input's full size: ``(H, W)`` for one output channel,
        ``(H, W, C)`` for several.

    Raises:
        ValueError: an argument is out of range or not an allowed value.
        TypeError: ``image`` is not a uint8/uint16 NumPy array or ``model`` is not a Keras model.
        WorkLimitError: the image at the model's scale has more pixels than
            ``TILEDSEG_MAX_SCALED_PIXELS`` (default 80 M), or its grid more tiles than
            ``TILEDSEG_MAX_TILES`` (default 50,000); checked before allocating (a ValueError).

    Example:
        >>> import keras, numpy as np
        >>> inputs = keras.Input((None, None, 3))
        >>> outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
        >>> net = keras.Model(inputs, outputs)
        >>> image = np.zeros((700, 900, 3), np.uint8)
        >>> predict_tiled(image, net, tile=256).shape
        (700, 900)
    """
    network, meta = _unwrap(model)
    image = _validate_image(image, network, meta)
    settings = _resolve_settings(meta, tile, overlap, blend, scale, tta, precision, frame)
    _validate_batch_and_padding(batch_size, pad_mode)
    validate_choice(runtime, RUNTIMES, "runtime")

    height, width = image.shape[:2]
    target, grid = _plan(image.shape, network, meta, settings)
    network = _runner(network, settings["precision"], runtime, grid.tile_shape)
    scaled = add_frame(resize_image(image, target), settings["frame"])
    padded = _pad(scaled, grid.padded_shape, pad_mode)
    row_weights = blend_weights(grid.rows, settings["blend"])
    if is_tile_backend(network):
        # A remote model or another runtime: same grid and weights, tiles cut and blended on
        # the host.
        bands = backend_bands(
            network, padded, grid, row_weights, settings["blend"], batch_size, settings["tta"]
        )
        band_rows = [(start, 1) for start in grid.rows.starts]
    else:
        batch = default_batch(grid) if batch_size is None else batch_size
        groups = row_groups(grid, rows_per_band(grid, batch, settings["tta"]))
        bands = (
            _to_numpy(
                band_function(
                    network, grid, offsets, settings["blend"], batch, settings["tta"], _cache
                ).predict_on_batch(
                    [
                        padded[None, top : top + offsets[-1] + grid.rows.tile],
                        row_weights[first : first + len(offsets)][None],
                    ]
                )
            )[0]
            for first, top, offsets in groups
        )
        band_rows = [(top, len(offsets)) for _, top, offsets in groups]

    probabilities = None
    done = 0
    for (top, rows), contribution in zip(band_rows, bands, strict=True):
        if probabilities is None:
            probabilities = np.zeros(grid.padded_shape + contribution.shape[-1:], np.float32)
        probabilities[top : top + contribution.shape[0]] += contribution
        done += rows * grid.cols.count
        if progress is not None:
            progress(done, grid.count)
    border = settings["frame"]
    probabilities = probabilities[border : border + target[0], border : border + target[1]]
    return _finish(probabilities, (height, width))


def predict_whole(
    image: np.ndarray,
    model: Any,
    *,
    scale: float | PixelScale | dict | None = None,
    input_size: tuple[int, int] | None = None,
    precision: str | None = None,
    frame: int | None = None,
) -> np.ndarray:
    """Predict the whole image in one forward pass: the non-tiled baseline.

    Args:
        image: RGB uint8 array ``(H, W, C)``.
        model: a ``keras.Model`` or a zoo model (see :func:`predict_tiled`).
        scale: as in :func:`predict_tiled`; ignored when ``input_size`` is given.
        input_size: ``(height, width)`` or None. When given, the image is resized to exactly
            this size, as the seeds did, whatever its aspect ratio.
        precision: as in :func:`predict_tiled`.
        frame: as in :func:`predict_tiled`.

    Returns:
        float32 probabilities at the input's full size, shaped as in :func:`predict_tiled`.

    Example:
        >>> import keras, numpy as np
        >>> inputs = keras.Input((None, None, 3))
        >>> net = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
        >>> predict_whole(np.zeros((30, 50, 3), np.uint8), net, input_size=(64, 64)).shape
        (30, 50)
    """
    network, meta = _unwrap(model)
    image = _validate_image(image, network, meta)
    height, width = image.shape[:2]
    settings = _resolve_settings(meta, None, None, None, scale, None, precision, frame)
    network = _runner(network, settings["precision"], "keras")
    if input_size is not None:
        if len(input_size) != 2 or min(int(v) for v in input_size) < 1:
            raise ValueError(
                f"`input_size` must be (height, width) with both >= 1. Received: {input_size=}"
            )
        target = (int(input_size[0]), int(input_size[1]))
        check_scaled_size(image.shape[:2], target, f"input_size {target[0]}x{target[1]}")
    else:
        target = _target_shape(image.shape, settings["scale"])
    factor = _factor(network, meta)
    border = settings["frame"]
    scaled = add_frame(resize_image(image, target), border)
    padded_shape = tuple(-(-side // factor) * factor for side in scaled.shape[:2])
    padded = _pad(scaled, padded_shape, "reflect")
    if is_tile_backend(network):  # the whole image as one tile
        output = np.asarray(network.predict_tiles(padded[None].astype(np.float32)))[0]
    else:
        output = _to_numpy(network.predict_on_batch(padded[None].astype(np.float32)))[0]
    output = output.astype(np.float32)[border : border + target[0], border : border + target[1]]
    return _finish(output, (height, width))


class TiledPredictor:
    """Settings for :func:`predict_tiled`, plus its compiled band functions and blend weights.

    Use one instance for many images: the compiled function for a band shape is kept (up to
    8 shapes), so images of a size seen before run without tracing again.

    Args:
        model: a ``keras.Model`` or a zoo model.
        **settings: any keyword argument of :func:`predict_tiled` except ``progress``.

    Example:
        >>> import keras, numpy as np
        >>> inputs = keras.Input((None, None, 3))
        >>> net = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
        >>> predictor = TiledPredictor(net, tile=128, overlap=0.5, blend="hann")
        >>> predictor(np.zeros((300, 200, 3), np.uint8)).shape
        (300, 200)
    """

    _ALLOWED = (
        "tile",
        "overlap",
        "blend",
        "batch_size",
        "scale",
        "pad_mode",
        "tta",
        "precision",
        "runtime",
        "frame",
    )

    def __init__(self, model: Any, **settings: Any):
        unknown = sorted(set(settings) - set(self._ALLOWED))
        if unknown:
            raise TypeError(
                f"Unknown settings {unknown}. Allowed: {list(self._ALLOWED)}. "
                f"Received: {sorted(settings)}"
            )
        _, meta = _unwrap(model)
        # Fail early on bad settings rather than at the first image.
        self._resolved = _resolve_settings(
            meta,
            *(
                settings.get(k)
                for k in ("tile", "overlap", "blend", "scale", "tta", "precision", "frame")
            ),
        )
        _validate_batch_and_padding(settings.get("batch_size"), settings.get("pad_mode", "reflect"))
        validate_choice(settings.get("runtime", "auto"), RUNTIMES, "runtime")
        if not is_tile_backend(_unwrap(model)[0]):
            # Raises now for a precision the runtime cannot run (e.g. onnxruntime + bfloat16).
            _choice(self._resolved["precision"], settings.get("runtime", "auto"))
        self.model = model
        self.settings = settings
        self._cache: OrderedDict = OrderedDict()

    def __call__(self, image: np.ndarray, progress: ProgressCallback | None = None) -> np.ndarray:
        return predict_tiled(
            image, self.model, progress=progress, _cache=self._cache, **self.settings
        )

    def resolved_settings(self) -> dict[str, Any]:
        """The settings every call uses: arguments, else the model's metadata, else defaults."""
        network = _unwrap(self.model)[0]
        if is_tile_backend(network):
            runtime = getattr(network, "runtime", "remote")
            precision = getattr(network, "precision", "remote")
        else:
            choice = _choice(self._resolved["precision"], self.settings.get("runtime", "auto"))
            runtime, precision = choice.runtime, choice.precision
        return {
            **self._resolved,
            "scale": self._resolved["scale"].to_dict(),
            "precision": precision,
            "runtime": runtime,
            "batch_size": self.settings.get("batch_size"),
            "pad_mode": self.settings.get("pad_mode", "reflect"),
        }

    def grid(self, image_shape: tuple[int, ...]) -> TileGrid:
        """The tile grid this predictor uses for an image of ``image_shape`` (model scale)."""
        return describe_grid(image_shape, self.model, **self.settings)

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in self.settings.items())
        return f"TiledPredictor({getattr(self.model, 'name', type(self.model).__name__)}, {items})"


def describe_grid(
    image_shape: tuple[int, ...],
    model: Any,
    *,
    tile: int | str | None = None,
    overlap: float | None = None,
    scale: float | PixelScale | dict | None = None,
    frame: int | None = None,
    **_ignored: Any,
) -> TileGrid:
    """The grid :func:`predict_tiled` would use for an image of ``image_shape`` (H, W[, C]),
    over the framed image where there is a frame."""
    network, meta = _unwrap(model)
    settings = _resolve_settings(meta, tile, overlap, None, scale, None, frame=frame)
    return _plan(image_shape, network, meta, settings)[1]


def _plan(image_shape, network, meta, settings) -> tuple[tuple[int, int], TileGrid]:
    """The size at the model's scale and the tile grid over it, for an image of this shape.

    Both are bounded (:mod:`tiledseg.limits`) before anything of that size is allocated.
    """
    target = _target_shape(image_shape, settings["scale"])
    framed = (target[0] + 2 * settings["frame"], target[1] + 2 * settings["frame"])
    factor = _factor(network, meta)
    side = _tile_side(settings["tile"], framed, factor, settings["overlap"])
    check_tile_count(
        framed, side, settings["overlap"], tile_count(*framed, side, settings["overlap"], factor)
    )
    return target, make_grid(framed[0], framed[1], side, settings["overlap"], factor)


# --- settings -------------------------------------------------------------------------------


def _unwrap(model: Any) -> tuple[Any, Any]:
    """Split a zoo model into its network and metadata; a bare Keras model has no metadata.

    A tile backend is its own network (it runs tiles, not Keras layers) and carries ``.meta``.
    """
    if is_tile_backend(model):
        return model, getattr(model, "meta", None)
    meta = None
    if not isinstance(model, keras.Model) and hasattr(model, "model"):
        meta = getattr(model, "meta", None)
        model = model.model
    if not isinstance(model, keras.Model):
        raise TypeError(
            "`model` must be a keras.Model, a zoo model with `.model` and `.meta`, or a tile "
            "backend with `.predict_tiles` (e.g. tiledseg.serving.ServingModel). "
            f"Received: model of type {type(model).__name__}"
        )
    return model, meta


def _validate_image(image: Any, network: Any = None, meta: Any = None) -> np.ndarray:
    """Check an input array and bring it to the documented form: uint8, the model's channels.

    uint8 passes as is; uint16 becomes round(v / 257), as :func:`tiledseg.io.read_image` does;
    other dtypes (float, bool, signed integers) are refused, because their range is a guess.
    Grey ``(H, W)`` or ``(H, W, 1)`` is copied to a 3-channel model's channels; RGBA loses its
    alpha for a 3-channel model.
    """
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"`image` must be a NumPy array (H, W, C). Received: {type(image).__name__}"
        )
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim != 3 or image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(
            f"`image` must have shape (H, W) or (H, W, C) with H, W >= 1. "
            f"Received: shape={image.shape}"
        )
    if image.dtype == np.uint16:
        image = to_uint8(image, "the uint16 `image` array")
    elif image.dtype != np.uint8:
        raise TypeError(
            "`image` must be uint8 (0-255) or uint16 (0-65535, divided by 257), as "
            "tiledseg.io.read_image returns it. For floats in [0, 1] pass "
            "`np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)`; for floats or integers "
            f"in 0-255, `image.astype(np.uint8)`. Received: dtype {image.dtype}"
        )
    expected = _input_channels(network, meta)
    channels = image.shape[2]
    if expected is None or channels == expected:
        return image
    if channels == 1:
        return np.repeat(image, expected, axis=2)
    if channels == 4 and expected == 3:
        return image[..., :3]
    raise ValueError(
        f"`image` has {channels} channels but the model takes {expected}. "
        f"Received: shape={image.shape}"
    )


def _input_channels(network: Any, meta: Any) -> int | None:
    shape = getattr(network, "input_shape", None) if isinstance(network, keras.Model) else None
    if isinstance(shape, list):
        shape = shape[0]
    if shape and shape[-1] is not None:
        return int(shape[-1])
    return _meta_value(meta, "input_channels", None)


def _meta_value(meta: Any, name: str, default: Any) -> Any:
    value = getattr(meta, name, None) if meta is not None else None
    return default if value is None else value


def _resolve_settings(
    meta, tile, overlap, blend, scale, tta, precision=None, frame=None
) -> dict[str, Any]:
    """Fill unset arguments from the zoo metadata, then the engine's defaults; validate."""
    tile = tile if tile is not None else _meta_value(meta, "tile", DEFAULT_TILE)
    if tile != "auto":
        validate_range(tile, "tile", low=1, integer=True)
    overlap = overlap if overlap is not None else _meta_value(meta, "overlap", DEFAULT_OVERLAP)
    validate_range(overlap, "overlap", low=0, high=1, high_inclusive=False)
    blend = blend if blend is not None else _meta_value(meta, "blend", DEFAULT_BLEND)
    validate_choice(blend, BLEND_MODES, "blend")
    scale = PixelScale.from_value(scale if scale is not None else _meta_value(meta, "scale", 1.0))
    tta = tta if tta is not None else _meta_value(meta, "tta", "none")
    validate_choice(tta, TTA_MODES, "tta")
    tta = None if tta == "none" else tta
    precision = precision if precision is not None else _meta_value(meta, "precision", "auto")
    validate_choice(precision, PRECISIONS, "precision")
    frame = frame if frame is not None else _meta_value(meta, "frame", 0)
    validate_range(frame, "frame", low=0, integer=True)
    return {
        "tile": tile,
        "overlap": float(overlap),
        "blend": blend,
        "scale": scale,
        "tta": tta,
        "precision": precision,
        "frame": int(frame),
    }


def _choice(precision: str, runtime: str) -> RuntimeChoice:
    return choose_runtime(runtime, precision, on_gpu=on_gpu())


def _runner(network: Any, precision: str, runtime: str, tile_shape=None) -> Any:
    """What runs the tiles: the Keras network in ``precision``, or another runtime's backend."""
    if is_tile_backend(network):
        return network
    choice = _choice(precision, runtime)
    if choice.runtime != "keras" and runtime == "auto" and not _float32_network(network):
        # A model built in another precision (e.g. a mixed_float16 policy) runs as built.
        choice = choose_runtime("keras", precision, on_gpu=on_gpu())
    if choice.runtime != "keras":
        backend = runtime_backend(network, choice, tile_shape=tile_shape, strict=runtime != "auto")
        if backend is not None:
            return backend
        choice = choose_runtime("keras", precision, on_gpu=on_gpu())
    return with_precision(network, choice.precision)


def _float32_network(network: Any) -> bool:
    """Whether every layer computes in float32 (what another runtime's conversion reproduces)."""
    for layer in network.layers:
        if isinstance(layer, keras.Model) and not _float32_network(layer):
            return False
        policy = getattr(layer, "dtype_policy", None)
        if policy is not None and getattr(policy, "compute_dtype", "float32") != "float32":
            return False
    return True


def _validate_batch_and_padding(batch_size: int | None, pad_mode: str) -> None:
    validate_choice(pad_mode, PAD_MODES, "pad_mode")
    if batch_size is not None:
        validate_range(batch_size, "batch_size", low=1, integer=True)


def _factor(network: keras.Model, meta: Any) -> int:
    explicit = _meta_value(meta, "downsampling", None)
    return int(explicit) if explicit else downsampling_factor(network)


def _target_shape(image_shape: tuple[int, ...], scale: PixelScale) -> tuple[int, int]:
    """The size at the model's scale, refused above the scaled-pixel limit."""
    height, width = int(image_shape[0]), int(image_shape[1])
    factor = scale.factor_for(height, width)
    how = f"{scale.mode.replace('_', ' ')} {scale.value:g}" + (
        "" if scale.mode == "factor" else f", a factor of {factor:.4g}"
    )
    return check_scaled_size((height, width), scaled_shape(height, width, factor), how)


def _tile_side(tile: int | str, scaled: tuple[int, int], factor: int, overlap: float) -> int:
    if tile != "auto":
        return int(tile)
    budget = AUTO_TILE_PIXELS_GPU if on_gpu() else AUTO_TILE_PIXELS_CPU
    padded = [-(-side // factor) * factor for side in scaled]
    if padded[0] * padded[1] <= budget:
        return max(padded)  # one tile: whole-image inference
    largest = max(factor, int(budget**0.5) // factor * factor)
    smallest = min(largest, max(factor, 256 // factor * factor))

    def work(side: int) -> tuple[int, int]:
        grid = make_grid(scaled[0], scaled[1], side, overlap, factor)
        return grid.count * grid.rows.tile * grid.cols.tile, -side

    return min(range(smallest, largest + 1, factor), key=work)


def _pad(image: np.ndarray, shape: tuple[int, int], mode: str) -> np.ndarray:
    pad_rows, pad_cols = shape[0] - image.shape[0], shape[1] - image.shape[1]
    if pad_rows == 0 and pad_cols == 0:
        return image
    widths = ((0, pad_rows), (0, pad_cols), (0, 0))
    if mode == "reflect" and min(image.shape[:2]) > 1:
        # NumPy reflects repeatedly when the pad exceeds the image, which OpenCV refuses.
        return np.pad(image, widths, mode="reflect")
    return np.pad(image, widths, mode="constant" if mode == "constant" else "edge")


def _finish(probabilities: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    probabilities = np.ascontiguousarray(probabilities, dtype=np.float32)
    probabilities = resize_probabilities(probabilities, shape)
    if probabilities.ndim == 3 and probabilities.shape[-1] == 1:
        probabilities = probabilities[..., 0]
    return probabilities


def _to_numpy(value: Any) -> np.ndarray:
    return np.asarray(keras.ops.convert_to_numpy(value))
