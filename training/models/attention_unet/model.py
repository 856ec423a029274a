"""UNet with attention gates on the skip connections."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from tiledseg._validation import validate_range
from training.models.attention_unet.blocks import attention_gate
from training.models.unet.blocks import (
    conv_block,
    dilation_schedule,
    dropout_schedule,
    input_stem,
    kernel_schedule,
    output_head,
    upsample,
)

__all__ = ["build_attention_unet"]


def build_attention_unet(
    *,
    input_channels: int = 3,
    num_classes: int = 1,
    base_filters: int = 16,
    num_levels: int = 5,
    base_kernel: int = 3,
    dilation: int | Sequence[int] = 1,
    dropout: float = 0.0,
    batch_norm: bool = True,
    activation: str = "relu",
    name: str = "attention_unet",
) -> keras.Model:
    """Build a fully convolutional Attention UNet (Oktay et al. 2018, arXiv:1804.03999).

    The encoder and decoder are those of :func:`training.models.build_unet`; each skip connection
    passes through an attention gate driven by the upsampled decoder feature before it is
    concatenated. Downsampling factor ``2 ** (num_levels - 1)``.

    Args:
        input_channels: int, default 3. Channels of the 0..255 input image.
        num_classes: int, default 1. 1 gives a sigmoid probability map, more a softmax.
        base_filters: int, default 16. Filters at the first level.
        num_levels: int, default 5. Resolution levels, 2 to 8.
        base_kernel: int, default 3. Odd kernel size at the first level (seeds' rule).
        dilation: int or list of int, default 1. Seeds' dilation rule or one rate per level.
        dropout: float, default 0.0. Dropout rate per level index.
        batch_norm: bool, default True. Batch normalisation after each convolution.
        activation: str, default "relu". One of "relu", "elu", "gelu", "silu", "leaky_relu".
        name: str, default "attention_unet". The model name.

    Returns:
        An uncompiled ``keras.Model`` with float32 probabilities at the input's size.

    Raises:
        ValueError, TypeError: an argument is out of range.

    Example:
        >>> model = build_attention_unet(base_filters=8, num_levels=3)
        >>> tuple(model(np.zeros((1, 64, 64, 3), "float32")).shape)
        (1, 64, 64, 1)
    """
    validate_range(num_levels, "num_levels", low=2, high=8, integer=True)
    validate_range(base_filters, "base_filters", low=1, integer=True)
    kernels = kernel_schedule(base_kernel, num_levels)
    dilations = dilation_schedule(dilation, num_levels)
    dropouts = dropout_schedule(dropout, num_levels)
    block = {"batch_norm": batch_norm, "activation": activation}

    inputs, x = input_stem(input_channels)
    skips = []
    for level in range(num_levels):
        x = conv_block(
            x,
            base_filters * 2**level,
            kernel_size=kernels[level],
            dilation=dilations[level],
            dropout=dropouts[level],
            name=f"enc{level}",
            **block,
        )
        if level < num_levels - 1:
            skips.append(x)
            x = layers.MaxPooling2D(2, name=f"pool{level}")(x)

    for level in reversed(range(num_levels - 1)):
        filters = base_filters * 2**level
        x = upsample(x, filters, name=f"up{level}")
        gated = attention_gate(skips[level], x, max(1, filters // 2), name=f"att{level}")
        x = layers.Concatenate(name=f"concat{level}")([x, gated])
        x = conv_block(
            x,
            filters,
            kernel_size=kernels[level],
            dilation=dilations[level],
            dropout=dropouts[level],
            name=f"dec{level}",
            **block,
        )
    return keras.Model(inputs, output_head(x, num_classes), name=name)
