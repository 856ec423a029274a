"""The engine's host path for models that run elsewhere: "tile backends".

A tile backend is any object with a method ``predict_tiles(batch) -> probabilities`` taking a
float32 NumPy batch ``(N, h, w, C)`` of pixel values 0-255 and returning float32
``(N, h, w, K)``, plus ``.meta`` (zoo metadata) like a zoo model. It may also have
``batch_size`` (tiles per call), ``max_in_flight`` (calls at once; ``predict_tiles`` must then
be thread-safe) and ``fixed_batch`` (default True: every call carries exactly ``batch_size``
tiles; False: the last call carries only the tiles left). :class:`tiledseg.serving.ServingModel`
is one: it sends each batch to TensorFlow Serving.

A remote network cannot run inside the engine's compiled band function, so for a tile backend
:func:`tiledseg.engine.predict_tiled` calls :func:`backend_bands` instead: the same grid, the same
blend weights (:func:`tiledseg.tiling.blend_weights`) and the same test-time flips, done here in
NumPy. Tiles are cut band after band and sent in batches of ``batch_size`` (for a fixed-batch
backend, the last one padded with copies of its last tile), several batches in flight, spanning
band boundaries so that narrow images keep the pipeline full. Results are taken in submission
order whatever order they arrive in, each tile is weighted and overlap-added into its own band,
and a band is handed back as soon as all of its tiles are in. Memory beyond the image and the
map stays at a few bands.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from tiledseg.errors import TiledsegError
from tiledseg.tiling import TileGrid, blend_weights

__all__ = ["DEFAULT_BACKEND_BATCH", "backend_bands", "is_tile_backend"]

# Tiles per call when neither the caller nor the backend says; a remote server batches further.
DEFAULT_BACKEND_BATCH = 4


def is_tile_backend(model: Any) -> bool:
    """Whether ``model`` runs tiles itself (has a callable ``predict_tiles``)."""
    return callable(getattr(model, "predict_tiles", None))


def backend_bands(
    backend: Any,
    padded: np.ndarray,
    grid: TileGrid,
    row_weights: np.ndarray,
    blend: str,
    batch_size: int | None,
    tta: str | None,
) -> Iterator[np.ndarray]:
    """Yield each row band's weighted, overlap-added probabilities, top to bottom.

    Args:
        backend: a tile backend (see the module docstring).
        padded: ``(H, W, C)`` image at the model's scale, padded to ``grid.padded_shape``.
        grid: the tile grid.
        row_weights: ``(grid.rows.count, tile_h)`` blend weights of each band's rows.
        blend: the blend mode, for the column weights.
        batch_size: tiles per call, or None for ``backend.batch_size`` (else 4).
        tta: None or ``"flips"``.

    Returns:
        An iterator of float32 ``(tile_h, padded_w, K)`` arrays, one per row start.

    Raises:
        TiledsegError: the backend returned probabilities of the wrong shape; whatever the
            backend raises (e.g. a server error) is passed on unchanged.
    """
    batch_size = int(batch_size or getattr(backend, "batch_size", None) or DEFAULT_BACKEND_BATCH)
    fixed_batch = bool(getattr(backend, "fixed_batch", True))
    in_flight = max(1, int(getattr(backend, "max_in_flight", None) or 1))
    views = 4 if tta == "flips" else 1
    col_weights = blend_weights(grid.cols, blend)[:, None, :, None]  # (cols, 1, tile_w, 1)
    row_scaled = (row_weights / views)[:, :, None, None]  # (rows, tile_h, 1, 1), flips averaged
    tile_h, tile_w = grid.tile_shape
    per_band = views * grid.cols.count
    # Every tile as (band, view, column), in the order the keras path batches them.
    items = [
        (band, view, col)
        for band in range(grid.rows.count)
        for view in range(views)
        for col in range(grid.cols.count)
    ]
    chunks = iter([items[i : i + batch_size] for i in range(0, len(items), batch_size)])
    bands: dict[int, np.ndarray] = {}
    missing = dict.fromkeys(range(grid.rows.count), per_band)
    pending: deque = deque()
    next_band = 0
    pool = ThreadPoolExecutor(max_workers=in_flight, thread_name_prefix="tiledseg-tiles")
    try:
        while next_band < grid.rows.count:
            while len(pending) < in_flight:
                chunk = next(chunks, None)
                if chunk is None:
                    break
                size = batch_size if fixed_batch else len(chunk)
                batch = _cut(padded, grid, chunk, size, tile_h, tile_w)
                pending.append((pool.submit(backend.predict_tiles, batch), chunk, batch.shape))
            # Oldest first: responses may arrive in any order, the sums are always the same.
            future, chunk, sent_shape = pending.popleft()
            output = _checked(future.result(), sent_shape)
            for index, (band, view, col) in enumerate(chunk):
                # Two broadcast products rather than a (tile_h, tile_w) window per tile.
                tile = _unflip(output[index], view) * row_scaled[band]
                tile *= col_weights[col]
                if band not in bands:
                    shape = (tile_h, grid.cols.padded, tile.shape[-1])
                    bands[band] = np.zeros(shape, np.float32)
                x = grid.cols.starts[col]
                bands[band][:, x : x + tile_w] += tile
                missing[band] -= 1
            while next_band < grid.rows.count and missing[next_band] == 0:
                yield bands.pop(next_band)
                next_band += 1
    finally:
        # On an error (or an abandoned iterator) nothing queued is sent; calls already on the
        # wire end within their deadline.
        for future, _, _ in pending:
            future.cancel()
        pool.shutdown(wait=True, cancel_futures=True)


def _cut(padded, grid: TileGrid, chunk, batch_size: int, tile_h: int, tile_w: int) -> np.ndarray:
    batch = np.empty((batch_size, tile_h, tile_w, padded.shape[-1]), np.float32)
    for index, (band, view, col) in enumerate(chunk):
        y, x = grid.rows.starts[band], grid.cols.starts[col]
        batch[index] = _flip(padded[y : y + tile_h, x : x + tile_w], view)
    # Fixed-shape calls (a server compiles and batches one shape): pad the last batch.
    batch[len(chunk) :] = batch[len(chunk) - 1]
    return batch


def _flip(tile: np.ndarray, view: int) -> np.ndarray:
    # Views as in the keras path: identity, horizontal, vertical, both.
    if view == 1:
        return tile[:, ::-1]
    if view == 2:
        return tile[::-1]
    if view == 3:
        return tile[::-1, ::-1]
    return tile


_unflip = _flip  # each flip is its own inverse


def _checked(output: Any, sent_shape: tuple[int, ...]) -> np.ndarray:
    output = np.asarray(output, dtype=np.float32)
    if output.ndim == 3:
        output = output[..., None]
    if output.ndim != 4 or output.shape[:3] != sent_shape[:3]:
        raise TiledsegError(
            f"The model returned probabilities of shape {output.shape} for tiles of shape "
            f"{sent_shape}; a segmentation model must return (N, height, width, classes) at "
            "the tiles' own size. Check that the served model is a tiledseg export."
        )
    return output
