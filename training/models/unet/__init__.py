"""The flexible UNet."""

from training.models.unet.model import build_unet

__all__ = ["build_unet"]
