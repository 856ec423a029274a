"""The tile grid and the blend windows: pure NumPy, no model.

The grid is separable: one :class:`AxisGrid` per axis, and a tile is one row start paired with
one column start. Blend windows are normalised per axis so that the row weights sum to 1 at every
row and the column weights to 1 at every column; their outer products then sum to exactly 1 at
every pixel, and overlap-add needs no division afterwards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from tiledseg._validation import validate_choice, validate_range

__all__ = [
    "BLEND_MODES",
    "AxisGrid",
    "TileGrid",
    "axis_grid",
    "blend_weights",
    "downsampling_factor",
    "make_grid",
    "tile_count",
]

BLEND_MODES = ("gaussian", "hann", "constant", "center")

# Gaussian sigma as a fraction of the tile, as in MONAI's sliding window (sigma_scale=0.125).
_GAUSSIAN_SIGMA_FRACTION = 0.125


@dataclass(frozen=True)
class AxisGrid:
    """Tile placement along one axis.

    Attributes:
        length: int, the image's length along this axis (at the model's scale).
        padded: int, ``length`` rounded up to the model's downsampling factor; only that
            remainder is padded.
        tile: int, the tile's length along this axis (smaller than the requested tile when the
            image is).
        starts: tuple of int, each tile's first coordinate; all multiples of the downsampling
            factor, the last one aligned so the tile ends at ``padded``.
    """

    length: int
    padded: int
    tile: int
    starts: tuple[int, ...]

    @property
    def count(self) -> int:
        return len(self.starts)


@dataclass(frozen=True)
class TileGrid:
    """A separable grid of equally sized tiles over an image at the model's scale."""

    rows: AxisGrid
    cols: AxisGrid

    @property
    def tile_shape(self) -> tuple[int, int]:
        return self.rows.tile, self.cols.tile

    @property
    def padded_shape(self) -> tuple[int, int]:
        return self.rows.padded, self.cols.padded

    @property
    def count(self) -> int:
        return self.rows.count * self.cols.count

    def rectangles(self) -> list[tuple[int, int, int, int]]:
        """Every tile as ``(y, x, height, width)`` at the model's scale, clipped to the image."""
        out = []
        for y in self.rows.starts:
            for x in self.cols.starts:
                height = min(self.rows.tile, self.rows.length - y)
                width = min(self.cols.tile, self.cols.length - x)
                out.append((y, x, height, width))
        return out


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple


def axis_grid(length: int, tile: int, overlap: float, factor: int = 1) -> AxisGrid:
    """Place tiles along one axis.

    Args:
        length: int >= 1, the image's length.
        tile: int >= 1, the requested tile length; rounded up to a multiple of ``factor``.
        overlap: float in [0, 1), the fraction of a tile shared with its neighbour.
        factor: int >= 1, the model's total downsampling factor. Starts are multiples of it, so
            every tile sees the same pooling grid as the whole image would.

    Returns:
        An :class:`AxisGrid`.
    """
    validate_range(length, "length", low=1, integer=True)
    validate_range(tile, "tile", low=1, integer=True)
    validate_range(overlap, "overlap", low=0, high=1, high_inclusive=False)
    validate_range(factor, "factor", low=1, integer=True)
    padded, tile, stride = _axis_layout(length, tile, overlap, factor)
    if padded <= tile:
        return AxisGrid(length, padded, padded, (0,))
    last = padded - tile
    starts = list(range(0, last, stride))
    starts.append(last)
    return AxisGrid(length, padded, tile, tuple(starts))


def _axis_layout(length: int, tile: int, overlap: float, factor: int) -> tuple[int, int, int]:
    """(padded length, tile, stride) along one axis, as :func:`axis_grid` places the tiles."""
    padded = _round_up(length, factor)
    tile = _round_up(tile, factor)
    stride = min(max(factor, round(tile * (1.0 - overlap) / factor) * factor), tile)
    return padded, tile, stride


def tile_count(height: int, width: int, tile: int, overlap: float, factor: int = 1) -> int:
    """The number of tiles :func:`make_grid` would place, computed without placing them.

    Example:
        >>> tile_count(1000, 1400, 512, 0.25, 32) == make_grid(1000, 1400, 512, 0.25, 32).count
        True
    """
    count = 1
    for length in (height, width):
        padded, side, stride = _axis_layout(length, tile, overlap, factor)
        count *= 1 if padded <= side else -(-(padded - side) // stride) + 1
    return count


def make_grid(height: int, width: int, tile: int, overlap: float, factor: int = 1) -> TileGrid:
    """Build the 2D tile grid for an image of ``height`` x ``width`` (see :func:`axis_grid`)."""
    return TileGrid(
        axis_grid(height, tile, overlap, factor), axis_grid(width, tile, overlap, factor)
    )


def _window(tile: int, blend: str) -> np.ndarray:
    coords = np.arange(tile, dtype=np.float64)
    if blend == "constant":
        return np.ones(tile)
    if blend == "gaussian":
        sigma = max(tile * _GAUSSIAN_SIGMA_FRACTION, 1e-3)
        return np.exp(-0.5 * ((coords - (tile - 1) / 2.0) / sigma) ** 2)
    # hann, shifted half a pixel so that no weight is exactly zero
    return np.sin(np.pi * (coords + 0.5) / tile) ** 2


def blend_weights(grid: AxisGrid, blend: str) -> np.ndarray:
    """Per-tile weights along one axis, normalised to sum to 1 at every coordinate.

    Args:
        grid: the :class:`AxisGrid`.
        blend: str, one of ``"gaussian"`` (MONAI-style, sigma = tile / 8), ``"hann"``,
            ``"constant"`` (plain average), ``"center"`` (each tile keeps only its central part,
            cut at the middle of each overlap, out to the image edge for border tiles).

    Returns:
        float32 array of shape ``(grid.count, grid.tile)``.

    Note:
        Tapered windows are flattened to their peak on the side that faces the image edge in the
        first and last tile, so border pixels are not left to near-zero weights.
    """
    validate_choice(blend, BLEND_MODES, "blend")
    count, tile, starts = grid.count, grid.tile, grid.starts
    weights = np.zeros((count, tile), dtype=np.float64)
    if blend == "center":
        cuts = [0] + [(starts[i] + tile + starts[i + 1]) // 2 for i in range(count - 1)]
        cuts.append(grid.padded)
        for i, start in enumerate(starts):
            weights[i, cuts[i] - start : cuts[i + 1] - start] = 1.0
    else:
        window = _window(tile, blend)
        half = tile // 2
        for i in range(count):
            weights[i] = window
            if i == 0:
                weights[i, :half] = window.max()
            if i == count - 1:
                weights[i, half:] = window.max()
    total = np.zeros(grid.padded, dtype=np.float64)
    for i, start in enumerate(starts):
        total[start : start + tile] += weights[i]
    if not np.all(total > 0):  # guards the grid logic; cannot happen for a valid grid
        raise RuntimeError(f"Blend weights leave pixels uncovered: {grid}")
    for i, start in enumerate(starts):
        weights[i] /= total[start : start + tile]
    return weights.astype(np.float32)


def downsampling_factor(model) -> int:
    """The model's total downsampling factor: the largest stride of any feature map in it.

    Strides multiply along each path through the network (pooling and strided convolutions
    multiply, upsampling and transposed convolutions divide), and the factor is the largest
    over all paths. Parallel branches, such as ResNet's strided shortcuts, count once.
    A model (or zoo model) with an integer attribute ``downsampling_factor`` overrides the walk.
    Nested models (e.g. a ``keras.applications`` encoder) are walked recursively.

    Example:
        >>> import keras
        >>> inputs = keras.Input((None, None, 3))
        >>> x = keras.layers.MaxPooling2D()(keras.layers.Conv2D(4, 3, padding="same")(inputs))
        >>> downsampling_factor(keras.Model(inputs, x))
        2
    """
    explicit = getattr(model, "downsampling_factor", None)
    if isinstance(explicit, int) and explicit >= 1:
        return explicit
    deepest, _ = _strides(model)
    return max(1, math.ceil(deepest))


def _layer_stride(layer) -> Fraction:
    import keras  # imported here so the grid maths stays importable without a backend

    if isinstance(layer, keras.layers.UpSampling2D):
        size = layer.size if isinstance(layer.size, (tuple, list)) else (layer.size,) * 2
        return Fraction(1, max(int(v) for v in size))
    strides = getattr(layer, "strides", None)
    if strides is None:
        return Fraction(1)
    if isinstance(strides, int):
        strides = (strides, strides)
    stride = max(int(v) for v in strides[:2])
    if isinstance(layer, (keras.layers.Conv2DTranspose, keras.layers.Conv1DTranspose)):
        return Fraction(1, stride)
    return Fraction(stride)


def _strides(model) -> tuple[Fraction, Fraction]:
    """(largest stride inside ``model``, stride of its output) for a layer or a model."""
    layers = getattr(model, "layers", None)
    if layers is None:
        stride = _layer_stride(model)
        return max(stride, Fraction(1)), stride
    nodes = [node for layer in layers for node in getattr(layer, "_inbound_nodes", [])]
    if not nodes or not all(hasattr(node, "parent_nodes") for node in nodes):
        # No graph to follow (e.g. a subclassed model): treat the layers as one chain.
        deepest = current = Fraction(1)
        for layer in layers:
            inner_deepest, inner_out = _strides(layer)
            deepest = max(deepest, current * inner_deepest)
            current *= inner_out
        return deepest, current
    memo: dict[int, Fraction] = {}
    deepest = Fraction(1)

    def node_stride(node) -> Fraction:
        nonlocal deepest
        if id(node) not in memo:
            base = max((node_stride(parent) for parent in node.parent_nodes), default=Fraction(1))
            inner_deepest, inner_out = _strides(node.operation)
            deepest = max(deepest, base * inner_deepest)
            memo[id(node)] = base * inner_out
        return memo[id(node)]

    outputs = [node_stride(node) for node in nodes]
    return deepest, outputs[-1]
