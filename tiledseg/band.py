"""One row band of the tiled engine as one compiled function.

A band is a strip of the padded image one tile high. :class:`BandPredictor` cuts its tiles (and
their flips, for test-time augmentation), runs the network in fixed-shape batches, weights the
probabilities with the blend window and overlap-adds them into the band, all with ``keras.ops``
on the backend's device. It is a ``keras.Model`` so that ``predict_on_batch`` compiles it with
the backend's own compiler (tf.function, jax.jit); :func:`band_function` keeps the compiled
functions of recent band shapes.
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


def band_function(
    network: keras.Model,
    grid: TileGrid,
    blend: str,
    batch_size: int | None,
    tta: str | None,
    cache: OrderedDict | None,
) -> BandPredictor:
    """The compiled function for the grid's row bands, from ``cache`` when it holds one."""
    tile_h, tile_w = grid.tile_shape
    if batch_size is None:
        budget = _BATCH_PIXELS_GPU if on_gpu() else _BATCH_PIXELS_CPU
        batch_size = max(1, budget // (tile_h * tile_w))
    views = 4 if tta == "flips" else 1
    batch_size = min(batch_size, grid.cols.count * views)
    key = (id(network), tile_h, tile_w, grid.cols.padded, grid.cols.starts, blend, batch_size, tta)
    if cache is not None:
        with _cache_lock:
            if key in cache:
                cache.move_to_end(key)
                return cache[key]
    col_weights = blend_weights(grid.cols, blend)
    function = BandPredictor(
        network, grid.cols.starts, (tile_h, tile_w), col_weights, batch_size, tta
    )
    if cache is not None:
        with _cache_lock:
            cache[key] = function
            while len(cache) > _MAX_CACHED_BANDS:
                cache.popitem(last=False)
    return function


class BandPredictor(keras.Model):
    """One row band: cut tiles, run the network in fixed batches, weight, overlap-add.

    A Keras model so that ``predict_on_batch`` compiles it with the backend's own compiler
    (tf.function, jax.jit) and everything stays on the device until the band comes back.
    """

    def __init__(self, network, col_starts, tile_shape, col_weights, batch_size, tta):
        super().__init__(name="band_predictor")
        self.network = network
        self.col_starts = tuple(int(s) for s in col_starts)
        self.tile_h, self.tile_w = (int(side) for side in tile_shape)
        self.col_weights = np.asarray(col_weights, np.float32)
        self.batch_size = int(batch_size)
        self.tta = tta
        # Nothing to build: the network is built. Without this Keras runs the band once
        # eagerly before compiling it (seen on JAX: every op compiled and run op by op).
        self.built = True

    def call(self, inputs):
        band, row_weight = inputs  # (1, tile_h, padded_w, C), (1, tile_h)
        band = ops.cast(band, "float32")
        tiles = ops.concatenate(
            [band[:, :, x : x + self.tile_w, :] for x in self.col_starts], axis=0
        )
        count = len(self.col_starts)
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
        weights = (
            row_weight[0][None, :, None, None]
            * ops.convert_to_tensor(self.col_weights)[:, None, :, None]
        )
        weighted = probabilities * weights  # (count, tile_h, tile_w, K)
        tile_h, padded_w = ops.shape(band)[1], ops.shape(band)[2]
        classes = ops.shape(weighted)[3]
        out = ops.zeros((tile_h, padded_w, classes), dtype="float32")
        for index in range(count):
            x = self.col_starts[index]
            current = ops.slice(out, (0, x, 0), (tile_h, self.tile_w, classes))
            out = ops.slice_update(out, (0, x, 0), current + weighted[index])
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
