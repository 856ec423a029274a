"""UNet on a keras.applications encoder."""

from training.models.backbone_unet.model import ENCODER_NAMES, build_backbone_unet

__all__ = ["ENCODER_NAMES", "build_backbone_unet"]
