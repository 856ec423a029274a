"""tiledseg: overlapped tiled UNet inference for very large medical images.

Example:
    >>> from tiledseg import predict_tiled, read_image  # doctest: +SKIP
    >>> probabilities = predict_tiled(read_image("lesion.jpg"), "unet-isic2017")  # doctest: +SKIP
"""

from tiledseg.engine import TiledPredictor, predict_tiled, predict_whole
from tiledseg.scale import PixelScale
from tiledseg.tiling import downsampling_factor, make_grid

__version__ = "0.1.0"

__all__ = [
    "PixelScale",
    "TiledPredictor",
    "__version__",
    "downsampling_factor",
    "make_grid",
    "predict_tiled",
    "predict_whole",
]
