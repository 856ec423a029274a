"""The methods the GPU benchmark compares, each as a function of no arguments for timing.

Every factory takes the same network and uint8 image and returns ``run()``, whose result is the
full-size float32 probability map on the host (``model-only`` returns its last batch). Each
factory builds a fresh instance (predictor, compiled function), so a method's first call
includes its tracing and compilation.

- ``tiledseg``: :class:`tiledseg.TiledPredictor` with the given tile, overlap, batch and
  precision, Gaussian blending, no test-time augmentation, native scale.
- ``tiledseg-auto``: the product's defaults: ``tile="auto"``, default batch and precision.
- ``model-only``: the network alone on the engine's own tiles, cut beforehand and already on the
  device as float32, in batches of the same size, compiled the way the backend compiles a
  prediction (``jax.jit`` of ``stateless_call`` on JAX, eager under ``torch.no_grad`` on
  PyTorch, as Keras' ``predict_on_batch`` does): the lower bound for the engine.
- ``whole-image``: :func:`tiledseg.predict_whole`, one forward pass over the padded image.
- ``seeds``: :func:`tiledseg.baselines.predict_seed_tiles`, one ``model.predict`` per tile.
- ``monai``: :func:`benchmarks.monai_peer.predict_monai` (PyTorch backend only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import numpy as np

from tiledseg import TiledPredictor, predict_whole
from tiledseg.baselines import predict_seed_tiles
from tiledseg.engine import _pad
from tiledseg.precision import with_precision
from tiledseg.tiling import TileGrid

__all__ = ["METHODS", "make_method"]

METHODS = ("tiledseg", "model-only", "whole-image", "tiledseg-auto", "seeds", "monai")

Run = Callable[[], Any]


def make_method(
    method: str,
    network: keras.Model,
    image: np.ndarray,
    grid: TileGrid,
    *,
    overlap: float,
    batch_size: int | None,
    precision: str | None,
) -> tuple[Run, dict[str, Any]]:
    """``(run, facts)`` for one method; ``facts`` holds settings resolved on the way."""
    tile = max(grid.tile_shape)  # the engine's tile, already a multiple of the factor
    if method == "tiledseg":
        predictor = TiledPredictor(
            network,
            tile=tile,
            overlap=overlap,
            blend="gaussian",
            batch_size=batch_size,
            tta="none",
            scale=1.0,
            precision=precision,
            runtime="keras",  # the engine against Keras model-only and MONAI on the same network
        )
        return (lambda: predictor(image)), {}
    if method == "tiledseg-auto":
        predictor = TiledPredictor(network, tile="auto", overlap=overlap, tta="none", scale=1.0)
        auto_grid = predictor.grid(image.shape)
        resolved = predictor.resolved_settings()
        facts = {
            "runtime": resolved["runtime"],
            "precision": resolved["precision"],
            "tile": list(auto_grid.tile_shape),
            "tiles": auto_grid.count,
        }
        return (lambda: predictor(image)), facts
    if method == "model-only":
        return _model_only(with_precision(network, precision), image, grid, batch_size), {}
    if method == "whole-image":
        return (lambda: predict_whole(image, network, scale=1.0, precision=precision)), {}
    if method == "seeds":
        return (lambda: predict_seed_tiles(image, network, tile=tile, overlap=overlap)), {}
    if method == "monai":
        from benchmarks.monai_peer import predict_monai

        converted = with_precision(network, precision)
        return (
            lambda: predict_monai(
                image, converted, tile=tile, overlap=overlap, batch_size=batch_size
            )
        ), {}
    raise ValueError(f"Unknown method {method!r}. Allowed: {list(METHODS)}")


def _model_only(network: keras.Model, image: np.ndarray, grid: TileGrid, batch_size: int) -> Run:
    padded = _pad(image, grid.padded_shape, "reflect")
    tile_h, tile_w = grid.tile_shape
    tiles = np.stack(
        [padded[y : y + tile_h, x : x + tile_w] for y in grid.rows.starts for x in grid.cols.starts]
    ).astype(np.float32)
    short = -len(tiles) % batch_size
    if short:  # fixed-shape batches, as the engine's: the last one repeats the last tile
        tiles = np.concatenate([tiles, np.repeat(tiles[-1:], short, axis=0)])
    batches = [
        keras.ops.convert_to_tensor(tiles[start : start + batch_size])
        for start in range(0, len(tiles), batch_size)
    ]
    forward = _compiled_forward(network)

    def run():
        output = None
        for batch in batches:
            output = forward(batch)
        return output  # converting the last batch waits for all of them (one stream)

    return run


def _compiled_forward(network: keras.Model) -> Callable[[Any], Any]:
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        trainable = [variable.value for variable in network.trainable_variables]
        non_trainable = [variable.value for variable in network.non_trainable_variables]

        @jax.jit
        def forward(trainable, non_trainable, batch):
            return network.stateless_call(trainable, non_trainable, batch, training=False)[0]

        return lambda batch: forward(trainable, non_trainable, batch)
    if backend == "torch":
        import torch

        def eager(batch):
            with torch.no_grad():
                return network(batch, training=False)

        return eager
    return lambda batch: network.predict_on_batch(batch)
