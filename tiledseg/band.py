"""One band of tile rows of the tiled engine as one compiled function.

A band is a strip of the padded image one or more tile rows high (:func:`rows_per_band`).
:class:`BandPredictor` cuts its tiles (and their flips, for test-time augmentation), runs the
network in fixed-shape batches, weights the probabilities with the blend window and
overlap-adds them into the band, all with ``keras.ops`` on the backend's device. It is a
``keras.Model`` so that ``predict_on_batch`` compiles it with the backend's own compiler
(tf.function, jax.jit); :func:`band_function` keeps the compiled functions of recent band
shapes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import keras
import numpy as np
from keras import ops

from tiledseg._device import on_gpu
from tiledseg.tiling import TileGrid, blend_weights

# Default batch: about this many tile pixels per forward call.
_BATCH_PIXELS_CPU = 2 * 512 * 512
_BATCH_PIXELS_GPU = 64 * 512 * 512
_MAX_CACHED_BANDS = 8

_cache_lock = threading.Lock()


def rows_per_band(grid: TileGrid, batch_size: int, tta: str | None) -> int:
    """How many tile rows one band call runs: full batches with the fewest padded slots.

    A band's tiles go through the network in fixed-shape batches, the last one padded, so a
    band whose tile count does not divide into batches computes tiles for nothing (a band of 6
    rows of 11 tiles in batches of 64 would run 128 slots for 66 tiles). Among 1 to the rows
    that fill a batch (at least 4), this picks the band height with the fewest slots over the
    whole grid (:func:`band_batch` evens out each band's batches), then the fewest network
    calls, then the fewest rows, which keeps memory lowest. A 1600 px-wide slide's 4 tiles per
    row then still fill a GPU batch of 64 (several rows per band), and a CPU runs one row where
    that wastes nothing.
    """
    per_row = grid.cols.count * (4 if tta == "flips" else 1)
    most = min(grid.rows.count, max(4, -(-batch_size // per_row)))
    return min(
        range(1, most + 1),
        key=lambda rows: (*_grid_cost(grid, rows, per_row, batch_size), rows),
    )


def band_batch(tiles: int, batch_size: int) -> int:
    """The batch for a band of ``tiles``: as few calls as ``batch_size`` needs, evenly filled."""
    calls = -(-tiles // batch_size)
    return -(-tiles // calls)


def _grid_cost(grid: TileGrid, rows: int, per_row: int, batch_size: int) -> tuple[int, int]:
    """(network slots, network calls) to run the grid in bands of ``rows`` tile rows."""
    slots = calls = 0
    for _, _, offsets in row_groups(grid, rows):
        tiles = len(offsets) * per_row
        batch = band_batch(tiles, batch_size)
        count = -(-tiles // batch)
        calls += count
        slots += count * batch
    return slots, calls


def row_groups(grid: TileGrid, rows: int) -> list[tuple[int, int, tuple[int, ...]]]:
    """Consecutive tile rows in groups of ``rows``: ``(first row index, top, row offsets)``."""
    starts = grid.rows.starts
    groups = []
    for first in range(0, len(starts), rows):
        top = starts[first]
        groups.append((first, top, tuple(start - top for start in starts[first : first + rows])))
    return groups


def default_batch(grid: TileGrid) -> int:
    """About 2 tiles of 512² px per network call on a CPU, 64 on a GPU."""
    budget = _BATCH_PIXELS_GPU if on_gpu() else _BATCH_PIXELS_CPU
    return max(1, budget // (grid.rows.tile * grid.cols.tile))


def band_function(
    network: keras.Model,
    grid: TileGrid,
    row_offsets: tuple[int, ...],
    blend: str,
    batch_size: int,
    tta: str | None,
    cache: OrderedDict | None,
) -> BandPredictor:
    """The compiled function for bands of tile rows at ``row_offsets``, cached per shape."""
    tile_h, tile_w = grid.tile_shape
    views = 4 if tta == "flips" else 1
    batch_size = band_batch(len(row_offsets) * grid.cols.count * views, batch_size)
    key = (
        id(network),
        tile_h,
        tile_w,
        row_offsets,
        grid.cols.padded,
        grid.cols.starts,
        blend,
        batch_size,
        tta,
    )
    if cache is not None:
        with _cache_lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
    col_weights = blend_weights(grid.cols, blend)
    function = BandPredictor(
        network, row_offsets, grid.cols.starts, (tile_h, tile_w), col_weights, batch_size, tta
    )
    if cache is not None:
        with _cache_lock:
            cache[key] = function
            while len(cache) > _MAX_CACHED_BANDS:
                cache.popitem(last=False)
    return function


class BandPredictor(keras.Model):
    """One band of tile rows: cut tiles, run the network in fixed batches, weight, overlap-add.

    A Keras model so that ``predict_on_batch`` compiles it with the backend's own compiler
    (tf.function, jax.jit) and everything stays on the device until the band comes back.
    Inputs: the band ``(1, row_offsets[-1] + tile_h, padded_w, C)`` as stored (uint8 travels as
    uint8) and the rows' blend weights ``(1, len(row_offsets), tile_h)``.
    """

    def __init__(self, network, row_offsets, col_starts, tile_shape, col_weights, batch_size, tta):
        super().__init__(name="band_predictor")
        self.network = network
        self.row_offsets = tuple(int(y) for y in row_offsets)
        self.col_starts = tuple(int(x) for x in col_starts)
        self.tile_h, self.tile_w = (int(side) for side in tile_shape)
        self.col_weights = np.asarray(col_weights, np.float32)
        self.batch_size = int(batch_size)
        self.tta = tta
        # Nothing to build: the network is built. Without this Keras runs the band once
        # eagerly before compiling it (seen on JAX: every op compiled and run op by op).
        self.built = True

    def call(self, inputs):
        band, row_weights = inputs
        band = ops.cast(band, "float32")
        places = [(y, x) for y in self.row_offsets for x in self.col_starts]
        tiles = ops.concatenate(
            [band[:, y : y + self.tile_h, x : x + self.tile_w, :] for y, x in places], axis=0
        )
        count = len(places)
        if self.tta == "flips":
            tiles = ops.concatenate(
                [tiles, ops.flip(tiles, 2), ops.flip(tiles, 1), ops.flip(tiles, (1, 2))], axis=0
            )
        probabilities = self._forward(tiles, count * (4 if self.tta == "flips" else 1))
        if self.tta == "flips":
            views = ops.split(probabilities, 4, axis=0)
            probabilities = (
                views[0]
                + ops.flip(views[1], 2)
                + ops.flip(views[2], 1)
                + ops.flip(views[3], (1, 2))
            ) * 0.25
        # Tile (r, c) is weighted by row window r times column window c; tiles are row-major.
        weights = ops.reshape(
            row_weights[0][:, None, :, None]
            * ops.convert_to_tensor(self.col_weights)[None, :, None, :],
            (count, self.tile_h, self.tile_w, 1),
        )
        weighted = probabilities * weights  # (count, tile_h, tile_w, K)
        band_h, padded_w = ops.shape(band)[1], ops.shape(band)[2]
        classes = ops.shape(weighted)[3]
        out = ops.zeros((band_h, padded_w, classes), dtype="float32")
        for index, (y, x) in enumerate(places):
            current = ops.slice(out, (y, x, 0), (self.tile_h, self.tile_w, classes))
            out = ops.slice_update(out, (y, x, 0), current + weighted[index])
        return out[None]

    def _forward(self, tiles, total: int):
        # `total` is a Python int: shapes may be symbolic inside the compiled function.
        # Fixed-shape batches: the last one is padded by repeating the last tile. Several
        # batches go through one loop (lax.map on JAX, map_fn on TensorFlow) rather than
        # unrolled calls, so the network is compiled once whatever the number of tiles.
        batches = -(-total // self.batch_size)
        short = batches * self.batch_size - total
        if short:
            tiles = ops.concatenate([tiles, ops.repeat(tiles[-1:], short, axis=0)], axis=0)
        if batches == 1:
            return ops.cast(self.network(tiles, training=False), "float32")[:total]
        channels = tiles.shape[-1]
        batched = ops.reshape(tiles, (batches, self.batch_size, self.tile_h, self.tile_w, channels))
        outputs = ops.map(
            lambda batch: ops.cast(self.network(batch, training=False), "float32"), batched
        )
        outputs = ops.reshape(
            outputs, (batches * self.batch_size, self.tile_h, self.tile_w, outputs.shape[-1])
        )
        return outputs[:total]
