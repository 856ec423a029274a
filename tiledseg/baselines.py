"""Baselines to compare the engine against: the seeds' tile-by-tile algorithm.

The seed projects cut the image into a grid of cells, widened each by a margin, resized every
widened cell to the model's input size, called ``model.predict`` once per cell, resized the
prediction back and pasted its cell into the output, with no blending. It is kept here,
faithfully, for the Tiling Lab and the benchmarks; use :func:`tiledseg.predict_tiled` for work.

To compare like with like, the cells are the engine's own grid: each widened cell is one of the
engine's tiles and each cell is the part of it that ``blend="center"`` keeps, so both methods run
the network on exactly the same tiles.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tiledseg.engine import _factor, _pad, _to_numpy, _unwrap, _validate_image
from tiledseg.scale import resize_image, resize_probabilities
from tiledseg.tiling import AxisGrid, blend_weights, make_grid

__all__ = ["predict_seed_tiles"]


def _cells(grid: AxisGrid) -> list[tuple[int, int, int]]:
    """(tile start, cell start, cell end) per tile: the centre cut, without any blending."""
    keep = blend_weights(grid, "center") > 0
    out = []
    for start, kept in zip(grid.starts, keep, strict=True):
        columns = np.flatnonzero(kept)
        out.append((start, start + int(columns[0]), start + int(columns[-1]) + 1))
    return out


def predict_seed_tiles(
    image: np.ndarray,
    model: Any,
    *,
    tile: int = 512,
    overlap: float = 0.25,
    input_size: int | None = None,
) -> np.ndarray:
    """The seeds' algorithm: one ``model.predict`` per tile, cells pasted without blending.

    Args:
        image: RGB uint8 array ``(H, W, C)``, already at the model's scale.
        model: a ``keras.Model`` or zoo model.
        tile: int, the widened cell's side (the engine's tile); default 512.
        overlap: float in [0, 1): the share of a tile that is margin; default 0.25.
        input_size: int or None: resize each widened cell to this square size for the model
            and back, as the seeds did for fixed-input models; None keeps the tile's size.

    Returns:
        float32 probabilities ``(H, W)`` of the first output channel.

    Example:
        >>> import keras, numpy as np
        >>> inputs = keras.Input((None, None, 3))
        >>> net = keras.Model(inputs, keras.layers.Conv2D(1, 1, activation="sigmoid")(inputs))
        >>> predict_seed_tiles(np.zeros((300, 200, 3), np.uint8), net, tile=128).shape
        (300, 200)
    """
    network, meta = _unwrap(model)
    image = _validate_image(image, network, meta)
    height, width = image.shape[:2]
    grid = make_grid(height, width, tile, overlap, _factor(network, meta))
    padded = _pad(image, grid.padded_shape, "reflect")
    tile_h, tile_w = grid.tile_shape
    output = np.zeros(grid.padded_shape, np.float32)
    for y, y0, y1 in _cells(grid.rows):
        for x, x0, x1 in _cells(grid.cols):
            window = padded[y : y + tile_h, x : x + tile_w]
            if input_size is not None:
                window = resize_image(window, (input_size, input_size))
            batch = window[None].astype(np.float32)
            prediction = _to_numpy(network.predict(batch, verbose=0))[0, ..., 0]
            prediction = resize_probabilities(prediction.astype(np.float32), (tile_h, tile_w))
            output[y0:y1, x0:x1] = prediction[y0 - y : y1 - y, x0 - x : x1 - x]
    return output[:height, :width]
