"""UNet architectures for tiled segmentation, one per sub-package.

Every model is fully convolutional (input ``(None, None, C)``), takes 0..255 pixel values and
normalises them inside the graph, outputs float32 probabilities, and is built from built-in Keras
layers only: a saved ``.keras`` file loads with plain ``keras.saving.load_model(path)`` under
``safe_mode=True``, with no custom objects and without importing this package.
"""

from __future__ import annotations

from typing import Any

import keras

from tiledseg._validation import validate_choice
from tiledseg.tiling import downsampling_factor
from training.models.attention_unet import build_attention_unet
from training.models.backbone_unet import ENCODER_NAMES, build_backbone_unet
from training.models.efficientnet_unet import build_efficientnet_unet
from training.models.unet import build_unet

__all__ = [
    "ARCHITECTURES",
    "ENCODER_NAMES",
    "build_attention_unet",
    "build_backbone_unet",
    "build_efficientnet_unet",
    "build_model",
    "build_unet",
    "downsampling_factor",  # re-exported: the engine's walk over pooling and strided layers
]

ARCHITECTURES = {
    "unet": build_unet,
    "attention_unet": build_attention_unet,
    "backbone_unet": build_backbone_unet,
    "efficientnet_unet": build_efficientnet_unet,
}


def build_model(architecture: str = "unet", **kwargs: Any) -> keras.Model:
    """Build one of :data:`ARCHITECTURES` by name with its keyword arguments.

    Args:
        architecture: str, default "unet". One of "unet", "attention_unet", "backbone_unet",
            "efficientnet_unet".
        **kwargs: the builder's arguments (see :func:`build_unet`,
            :func:`build_attention_unet`, :func:`build_backbone_unet`,
            :func:`build_efficientnet_unet`).

    Returns:
        An uncompiled ``keras.Model``.

    Raises:
        ValueError: unknown architecture or argument.

    Example:
        >>> model = build_model("unet", base_filters=8, num_levels=3)
        >>> downsampling_factor(model)
        4
    """
    validate_choice(architecture, ARCHITECTURES, "architecture")
    return ARCHITECTURES[architecture](**kwargs)
