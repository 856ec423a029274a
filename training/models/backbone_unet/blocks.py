"""Encoders from ``keras.applications`` and the decoder stage of the backbone UNet.

Each encoder entry names the layers whose outputs feed the skips, at strides 2, 4, 8 and 16, and
the bottleneck at stride 32, plus the input scaling the application expects.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import layers

from training.models.unet.blocks import conv_block, upsample

__all__ = ["ENCODERS", "build_encoder", "check_decoder_filters", "decoder", "decoder_stage"]

ENCODERS: dict[str, dict[str, Any]] = {
    "mobilenet_v2": {
        "application": "MobileNetV2",
        "skips": [
            "block_1_expand_relu",
            "block_3_expand_relu",
            "block_6_expand_relu",
            "block_13_expand_relu",
        ],
        "bottleneck": "out_relu",
        # MobileNetV2 expects pixels in [-1, 1]; it has no scaling layer of its own.
        "rescale": (1.0 / 127.5, -1.0),
    },
    "efficientnet_b0": {
        "application": "EfficientNetB0",
        "skips": [
            "block2a_expand_activation",
            "block3a_expand_activation",
            "block4a_expand_activation",
            "block6a_expand_activation",
        ],
        "bottleneck": "top_activation",
        # EfficientNet rescales and normalises 0..255 pixels inside its own graph.
        "rescale": None,
    },
}


def build_encoder(encoder: str, image, weights: str | None):
    """Instantiate a ``keras.applications`` encoder on ``image`` and return its feature maps.

    Args:
        encoder: str, a key of :data:`ENCODERS`.
        image: the 0..255 input tensor (after any scaling the encoder needs).
        weights: None or "imagenet".

    Returns:
        (skips, bottleneck): four skip tensors (strides 2..16) and the stride-32 tensor.

    Raises:
        RuntimeError: the ImageNet weights could not be downloaded.
    """
    spec = ENCODERS[encoder]
    application = getattr(keras.applications, spec["application"])
    try:
        network = application(input_tensor=image, include_top=False, weights=weights)
    except Exception as error:
        if weights != "imagenet":
            raise
        raise RuntimeError(
            f"Could not get the ImageNet weights for encoder {encoder!r}: keras downloads them "
            "from storage.googleapis.com on first use, which needs network access. Either run "
            "once with network access (the file is then cached in ~/.keras/models), or build "
            f"with weights=None. Original error: {error}"
        ) from error
    skips = [network.get_layer(layer_name).output for layer_name in spec["skips"]]
    return skips, network.get_layer(spec["bottleneck"]).output


def decoder_stage(x, skip, filters: int, *, batch_norm: bool, activation: str, name: str):
    """Upsample by 2, concatenate the skip (if any), then a two-convolution block."""
    x = upsample(x, filters, name=f"{name}_up")
    if skip is not None:
        x = layers.Concatenate(name=f"{name}_concat")([x, skip])
    return conv_block(x, filters, batch_norm=batch_norm, activation=activation, name=name)


def check_decoder_filters(decoder_filters) -> list[int]:
    """Five filter counts, one per decoder stage (strides 16, 8, 4, 2, 1)."""
    filters = list(decoder_filters)
    if len(filters) != 5:
        raise ValueError(
            "`decoder_filters` needs five values (strides 16, 8, 4, 2, 1). "
            f"Received: decoder_filters={filters}"
        )
    return filters


def decoder(x, skips, decoder_filters, *, batch_norm: bool, activation: str):
    """The five decoder stages on the bottleneck ``x``, joining ``skips`` (strides 2..16)."""
    for stage, filters in enumerate(decoder_filters):
        skip = skips[-1 - stage] if stage < len(skips) else None
        x = decoder_stage(
            x, skip, filters, batch_norm=batch_norm, activation=activation, name=f"dec{stage}"
        )
    return x
