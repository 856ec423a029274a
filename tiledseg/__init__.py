"""tiledseg: overlapped tiled UNet inference for very large medical images.

The public names are imported on first use, so ``tiledseg --help`` and the image I/O do not pay
for importing Keras and its backend.

Example:
    >>> from tiledseg import predict_tiled  # doctest: +SKIP
    >>> from tiledseg.io import read_image  # doctest: +SKIP
    >>> probabilities = predict_tiled(read_image("lesion.jpg"), model)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "ModelMeta": "tiledseg.contract",
    "load_meta": "tiledseg.contract",
    "load_model": "tiledseg.loading",
    "PixelScale": "tiledseg.scale",
    "TiledPredictor": "tiledseg.engine",
    "predict_tiled": "tiledseg.engine",
    "predict_whole": "tiledseg.engine",
    "downsampling_factor": "tiledseg.tiling",
    "make_grid": "tiledseg.tiling",
}

__all__ = ["__version__", *sorted(_EXPORTS)]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'tiledseg' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
