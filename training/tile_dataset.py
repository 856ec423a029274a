"""Split large image/mask pairs into tiles: the seeds' tiled dataset maker.

Command line::

    python -m training.tile_dataset SRC DST --tile 512 [--also-resized] [--min-foreground 0]

SRC holds ``images/`` and ``masks/`` (or is a CSV of pairs); DST receives ``images/`` and
``masks/`` with one file per tile, named ``<id>_r<row>_c<col>``. Tiles sit on a grid whose last
row and column are flush with the image edge (images smaller than a tile are padded by
mirroring). ``--also-resized`` adds each whole pair shrunk so its long side is the tile size,
named ``<id>_resized``, as the seeds mixed tiles with size-reduced copies.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tiledseg._validation import validate_range
from tiledseg.errors import TiledsegError
from tiledseg.io import write_image, write_mask
from tiledseg.scale import PixelScale
from training.data import crop_starts, load_pairs, pad_to_size, prepare_pair, read_pair

__all__ = ["main", "tile_dataset", "tile_pair"]


def tile_pair(
    image: np.ndarray, mask: np.ndarray, tile: int
) -> list[tuple[tuple[int, int], np.ndarray, np.ndarray]]:
    """Cut a pair into ``tile`` x ``tile`` tiles covering it.

    Args:
        image: (H, W, C) array.
        mask: (H, W) array.
        tile: int >= 8, the tile side.

    Returns:
        List of ((row, column), image tile, mask tile).

    Example:
        >>> len(tile_pair(np.zeros((1200, 1600, 3)), np.zeros((1200, 1600)), 512))
        12
    """
    validate_range(tile, "tile", low=8, integer=True)
    image, mask = pad_to_size(image, mask, tile, tile)
    tiles = []
    for row, top in enumerate(crop_starts(image.shape[0], tile)):
        for col, left in enumerate(crop_starts(image.shape[1], tile)):
            window = (slice(top, top + tile), slice(left, left + tile))
            tiles.append(((row, col), image[window], mask[window]))
    return tiles


def tile_dataset(
    source: str | os.PathLike,
    destination: str | os.PathLike,
    *,
    tile: int = 512,
    also_resized: bool = False,
    min_foreground: float = 0.0,
) -> int:
    """Write the tiles of every pair in ``source`` to ``destination``; return how many.

    Args:
        source: a dataset folder (``images/`` + ``masks/``) or CSV of pairs.
        destination: output folder (created); ``images/*.png`` and ``masks/*.png`` go there.
        tile: int >= 8, default 512. Tile side in pixels.
        also_resized: bool, default False. Also write each pair shrunk to long side ``tile``.
        min_foreground: float in [0, 1], default 0. Skip tiles whose mask covers less than
            this fraction (0 keeps all tiles, including empty ones).

    Raises:
        FileNotFoundError, ValueError: as :func:`training.data.load_pairs`.
    """
    validate_range(tile, "tile", low=8, integer=True)
    validate_range(min_foreground, "min_foreground", low=0.0, high=1.0)
    pairs = load_pairs(source)  # fails before anything is created
    destination = Path(destination)
    for folder in ("images", "masks"):
        (destination / folder).mkdir(parents=True, exist_ok=True)
    written = 0
    for image_path, mask_path in pairs:
        image, mask = read_pair(image_path, mask_path)
        outputs = [
            (f"{image_path.stem}_r{row}_c{col}", tile_image, tile_mask)
            for (row, col), tile_image, tile_mask in tile_pair(image, mask, tile)
        ]
        if also_resized and max(image.shape[:2]) > tile:
            small = prepare_pair(image, mask, PixelScale("long_side", tile))
            outputs.append((f"{image_path.stem}_resized", *small))
        for name, tile_image, tile_mask in outputs:
            if tile_mask.mean() < min_foreground:
                continue
            # PNG keeps tiles lossless, so no JPEG artefacts are added at tile borders.
            write_image(destination / "images" / f"{name}.png", tile_image)
            write_mask(destination / "masks" / f"{name}.png", tile_mask.astype(bool))
            written += 1
    return written


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m training.tile_dataset",
        description="Split large image/mask pairs into tiles (the seeds' tiled dataset maker).",
    )
    parser.add_argument("source", help="folder with images/ and masks/, or a CSV of pairs")
    parser.add_argument("destination", help="output folder")
    parser.add_argument("--tile", type=int, default=512, help="tile side in pixels (512)")
    parser.add_argument(
        "--also-resized", action="store_true", help="also add each pair shrunk to long side TILE"
    )
    parser.add_argument(
        "--min-foreground",
        type=float,
        default=0.0,
        help="skip tiles with less mask than this fraction (0: keep all)",
    )
    args = parser.parse_args(argv)
    try:
        count = tile_dataset(
            args.source,
            args.destination,
            tile=args.tile,
            also_resized=args.also_resized,
            min_foreground=args.min_foreground,
        )
    except (TiledsegError, OSError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Wrote {count} tiles to {args.destination}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
