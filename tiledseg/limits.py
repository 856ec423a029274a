"""Bounds on the work one image may ask for, checked before anything is allocated.

The pixel limit of :mod:`tiledseg.io` bounds the input's size. The work, and the memory, are
set by the size at the model's scale: a 3x50000 px PNG of 529 bytes brought to the ISIC
model's short side of 256 px becomes 256x4266667 px. So the engine also bounds

- the pixels after scaling: ``TILEDSEG_MAX_SCALED_PIXELS``, default 80 megapixels (a float32
  probability map of that size is 320 MB per class, the scaled image 240 MB more), and
- the number of tiles: ``TILEDSEG_MAX_TILES``, default 50,000 (tile 512 with overlap 0.25
  needs about 540 tiles for 80 megapixels; tile 64 with overlap 0.5 needs 78,000).

Both are checked from the shapes alone, in :func:`tiledseg.predict_tiled`,
:func:`tiledseg.predict_whole` and :class:`tiledseg.TiledPredictor`'s grid, so the CLI, the
library and the app refuse the same inputs with the same message.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_SCALED_PIXELS",
    "DEFAULT_MAX_TILES",
    "MAX_SCALED_PIXELS_ENV",
    "MAX_TILES_ENV",
    "check_scaled_size",
    "check_tile_count",
    "env_limit",
]

import contextlib
import math
import os

from tiledseg.errors import WorkLimitError

DEFAULT_MAX_SCALED_PIXELS = 80_000_000
DEFAULT_MAX_TILES = 50_000
MAX_SCALED_PIXELS_ENV = "TILEDSEG_MAX_SCALED_PIXELS"
MAX_TILES_ENV = "TILEDSEG_MAX_TILES"


def env_limit(variable: str, default: int, *, example: int) -> int:
    """A positive whole number from environment variable `variable`, else `default`.

    Raises ValueError naming the variable when it is set to anything else.
    """
    text = os.environ.get(variable, "").strip()
    if not text:
        return default
    with contextlib.suppress(ValueError):
        if int(text) >= 1:
            return int(text)
    raise ValueError(
        f"Environment variable {variable} must be a positive whole number, e.g. {example}. "
        f"Received: {variable}={text!r}"
    )


def check_scaled_size(
    image_shape: tuple[int, int], scaled: tuple[int, int], how: str
) -> tuple[int, int]:
    """Refuse an image whose size at the model's scale is above the scaled-pixel limit.

    Args:
        image_shape: (H, W) of the input.
        scaled: (H, W) at the model's scale.
        how: str, the scale in words, e.g. ``"short side 256 px (x85.33)"``.

    Returns:
        `scaled`, unchanged.

    Raises:
        WorkLimitError: the message gives both sizes, the limit and what to change.
    """
    limit = env_limit(MAX_SCALED_PIXELS_ENV, DEFAULT_MAX_SCALED_PIXELS, example=120_000_000)
    height, width = scaled
    pixels = height * width
    if pixels <= limit:
        return scaled
    in_h, in_w = image_shape
    largest = math.sqrt(limit / max(in_h * in_w, 1))
    raise WorkLimitError(
        f"At the model's scale ({how}) the {in_h}x{in_w} (HxW) image becomes {height}x{width} "
        f"= {pixels:,} pixels, above the limit of {limit:,} pixels at the model's scale. Choose "
        f"a scale that gives fewer pixels (a resize factor of at most {largest:.4g} for this "
        f"image), crop or resize the image, or, if this machine has the memory, raise "
        f"{MAX_SCALED_PIXELS_ENV} to {pixels}."
    )


def check_tile_count(scaled: tuple[int, int], tile: int, overlap: float, count: int) -> int:
    """Refuse a tile grid of more than the tile limit; returns `count` otherwise.

    Raises WorkLimitError giving the size at the model's scale, tile, overlap, count and limit.
    """
    limit = env_limit(MAX_TILES_ENV, DEFAULT_MAX_TILES, example=100_000)
    if count <= limit:
        return count
    height, width = scaled
    raise WorkLimitError(
        f"The {height}x{width} (HxW) image at the model's scale needs {count:,} tiles of "
        f"{tile} px with overlap {overlap:g}, above the limit of {limit:,} tiles. Use a larger "
        f"tile or less overlap (or tile 'auto'), a scale that gives fewer pixels, or raise "
        f"{MAX_TILES_ENV} to {count}."
    )
