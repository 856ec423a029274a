"""UNet with attention gates."""

from training.models.attention_unet.model import build_attention_unet

__all__ = ["build_attention_unet"]
