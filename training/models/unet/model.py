"""The flexible UNet: a generalisation of the seeds' "slightly flexible" TensorflowUNet."""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from tiledseg._validation import validate_range
from training.models.unet.blocks import (
    conv_block,
    dilation_schedule,
    dropout_schedule,
    input_stem,
    kernel_schedule,
    output_head,
    upsample,
)

__all__ = ["build_unet"]


def build_unet(
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
    name: str = "unet",
) -> keras.Model:
    """Build a fully convolutional UNet (Ronneberger et al. 2015, arXiv:1505.04597).

    Level ``i`` (0 at full resolution) has ``base_filters * 2**i`` filters, kernel size from the
    seeds' rule (``base_kernel`` shrinking by 2 per level down to 3, mirrored in the decoder),
    dilation from :func:`dilation_schedule` and dropout ``dropout * i``. The encoder downsamples
    only with 2x2 max pooling, so the total downsampling factor is ``2 ** (num_levels - 1)``: the
    input height and width must be multiples of it.

    Args:
        input_channels: int, default 3. Channels of the input image (pixel values 0..255; the
            model rescales to 0..1 with a ``Rescaling`` layer).
        num_classes: int, default 1. 1 gives a sigmoid probability map, more a softmax.
        base_filters: int, default 16. Filters at the first level.
        num_levels: int, default 5. Resolution levels, 2 to 8 (the seeds' ``num_layers``).
        base_kernel: int, default 3. Odd kernel size at the first level (the seeds'
            ``base_kernels``).
        dilation: int or list of int, default 1. The seeds' dilation rule or one rate per level.
        dropout: float, default 0.0. Dropout rate per level index (the seeds' ``dropout_rate``).
        batch_norm: bool, default True. Batch normalisation after each convolution.
        activation: str, default "relu". One of "relu", "elu", "gelu", "silu", "leaky_relu".
        name: str, default "unet". The model name.

    Returns:
        An uncompiled ``keras.Model`` mapping ``(batch, H, W, input_channels)`` float32 to
        ``(batch, H, W, num_classes)`` float32 probabilities.

    Raises:
        ValueError, TypeError: an argument is out of range.

    Example:
        >>> model = build_unet(base_filters=8, num_levels=3)
        >>> tuple(model(np.zeros((1, 64, 96, 3), "float32")).shape)
        (1, 64, 96, 1)
    """
    validate_range(num_levels, "num_levels", low=2, high=8, integer=True)
    validate_range(base_filters, "base_filters", low=1, integer=True)
    kernels = kernel_schedule(base_kernel, num_levels)
    dilations = dilation_schedule(dilation, num_levels)
    dropouts = dropout_schedule(dropout, num_levels)

    inputs, x = input_stem(input_channels)
    skips = []
    for level in range(num_levels):
        x = conv_block(
            x,
            base_filters * 2**level,
            kernel_size=kernels[level],
            dilation=dilations[level],
            dropout=dropouts[level],
            batch_norm=batch_norm,
            activation=activation,
            name=f"enc{level}",
        )
        if level < num_levels - 1:
            skips.append(x)
            x = layers.MaxPooling2D(2, name=f"pool{level}")(x)

    for level in reversed(range(num_levels - 1)):
        filters = base_filters * 2**level
        x = upsample(x, filters, name=f"up{level}")
        x = layers.Concatenate(name=f"concat{level}")([x, skips[level]])
        x = conv_block(
            x,
            filters,
            kernel_size=kernels[level],
            dilation=dilations[level],
            dropout=dropouts[level],
            batch_norm=batch_norm,
            activation=activation,
            name=f"dec{level}",
        )
    return keras.Model(inputs, output_head(x, num_classes), name=name)
