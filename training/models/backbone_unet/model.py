"""UNet decoder on a pretrained-capable ``keras.applications`` encoder."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from tiledseg._validation import validate_choice, validate_range
from training.models.backbone_unet.blocks import (
    ENCODERS,
    build_encoder,
    check_decoder_filters,
    decoder,
)
from training.models.unet.blocks import ACTIVATIONS, output_head

__all__ = ["ENCODER_NAMES", "build_backbone_unet"]

ENCODER_NAMES = tuple(ENCODERS)


def build_backbone_unet(
    *,
    encoder: str = "mobilenet_v2",
    weights: str | None = None,
    input_channels: int = 3,
    num_classes: int = 1,
    decoder_filters: Sequence[int] = (160, 96, 64, 32, 16),
    batch_norm: bool = True,
    activation: str = "relu",
    freeze_encoder: bool = False,
    name: str | None = None,
) -> keras.Model:
    """Build a UNet whose encoder is a ``keras.applications`` network.

    The decoder has five stages (strides 16, 8, 4, 2, 1), the first four joined to the encoder's
    skips. The encoder downsamples through strided convolutions (``Conv2D`` and
    ``DepthwiseConv2D``), 32 in total: input height and width must be multiples of 32.

    Args:
        encoder: str, default "mobilenet_v2". One of "mobilenet_v2", "efficientnet_b0".
        weights: None (random init, default) or "imagenet" (downloaded by keras on first use;
            needs network access).
        input_channels: int, default 3. Must be 3 with ImageNet weights.
        num_classes: int, default 1. 1 gives a sigmoid probability map, more a softmax.
        decoder_filters: five ints, default (160, 96, 64, 32, 16). Filters per decoder stage.
        batch_norm: bool, default True. Batch normalisation in the decoder.
        activation: str, default "relu". Decoder activation, one of "relu", "elu", "gelu",
            "silu", "leaky_relu".
        freeze_encoder: bool, default False. Make the encoder's layers non-trainable.
        name: str, default ``f"{encoder}_unet"``. The model name.

    Returns:
        An uncompiled ``keras.Model`` with float32 probabilities at the input's size.

    Raises:
        ValueError: an argument is out of range.
        RuntimeError: ImageNet weights were asked for and could not be downloaded.

    Example:
        >>> model = build_backbone_unet(encoder="mobilenet_v2", weights=None)
        >>> tuple(model(np.zeros((1, 64, 96, 3), "float32")).shape)
        (1, 64, 96, 1)
    """
    validate_choice(encoder, ENCODER_NAMES, "encoder")
    if weights not in (None, "imagenet"):
        raise ValueError(f"`weights` must be None or 'imagenet'. Received: weights={weights!r}")
    validate_range(input_channels, "input_channels", low=1, integer=True)
    if weights == "imagenet" and input_channels != 3:
        raise ValueError(
            "ImageNet weights need 3 input channels. Use weights=None for other inputs. "
            f"Received: input_channels={input_channels}"
        )
    decoder_filters = check_decoder_filters(decoder_filters)
    validate_choice(activation, ACTIVATIONS, "activation")

    inputs = keras.Input((None, None, input_channels), name="image")
    image = inputs
    rescale = ENCODERS[encoder]["rescale"]
    if rescale is not None:
        image = layers.Rescaling(rescale[0], offset=rescale[1], name="rescale")(inputs)
    skips, x = build_encoder(encoder, image, weights)

    x = decoder(x, skips, decoder_filters, batch_norm=batch_norm, activation=activation)
    model = keras.Model(inputs, output_head(x, num_classes), name=name or f"{encoder}_unet")
    if freeze_encoder:
        decoder_prefixes = ("dec", "logits", "probabilities", "rescale", "image")
        for layer in model.layers:
            if not layer.name.startswith(decoder_prefixes):
                layer.trainable = False
    return model
