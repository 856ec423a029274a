"""Building blocks of the plain UNet, shared by the attention UNet.

Only built-in Keras layers, so a saved model loads with plain ``keras.saving.load_model`` and
``safe_mode=True``, without importing this package.
"""

from __future__ import annotations

from collections.abc import Sequence

import keras
from keras import layers

from tiledseg._validation import validate_choice, validate_range

__all__ = [
    "ACTIVATIONS",
    "conv_block",
    "dilation_schedule",
    "dropout_schedule",
    "input_stem",
    "kernel_schedule",
    "output_head",
    "upsample",
]

ACTIVATIONS = ("relu", "elu", "gelu", "silu", "leaky_relu")


def kernel_schedule(base_kernel: int, num_levels: int) -> list[int]:
    """Kernel size per level: the seeds' rule, ``base_kernel`` shrinking by 2 per level to 3.

    Example:
        >>> kernel_schedule(7, 5)
        [7, 5, 3, 3, 3]
    """
    validate_range(base_kernel, "base_kernel", low=3, integer=True)
    if base_kernel % 2 == 0:
        raise ValueError(
            f"`base_kernel` must be an odd integer >= 3. Received: base_kernel={base_kernel}"
        )
    return [max(3, base_kernel - 2 * level) for level in range(num_levels)]


def dilation_schedule(dilation: int | Sequence[int], num_levels: int) -> list[int]:
    """Dilation rate per level.

    An integer follows the seeds' rule (``dilation`` at the first level, one less per level down to
    1); a sequence gives one rate per level explicitly.

    Example:
        >>> dilation_schedule(3, 5)
        [3, 2, 1, 1, 1]
    """
    if isinstance(dilation, Sequence) and not isinstance(dilation, str):
        rates = [int(rate) for rate in dilation]
        if len(rates) != num_levels:
            raise ValueError(
                f"`dilation` as a list needs one rate per level ({num_levels}). "
                f"Received: dilation={list(dilation)}"
            )
        for rate in rates:
            validate_range(rate, "dilation", low=1, integer=True)
        return rates
    validate_range(dilation, "dilation", low=1, integer=True)
    return [max(1, dilation - level) for level in range(num_levels)]


def dropout_schedule(rate: float, num_levels: int) -> list[float]:
    """Dropout rate per level: the seeds' rule ``rate * level`` (none at the first level).

    Example:
        >>> dropout_schedule(0.05, 4)
        [0.0, 0.05, 0.1, 0.15000000000000002]
    """
    validate_range(rate, "dropout", low=0.0)
    deepest = rate * (num_levels - 1)
    if deepest >= 1.0:
        raise ValueError(
            f"`dropout` times the deepest level index ({num_levels - 1}) must stay below 1 "
            f"(it is {deepest:g}). Use a smaller rate. Received: dropout={rate}"
        )
    return [rate * level for level in range(num_levels)]


def input_stem(input_channels: int, *, scale: float = 1.0 / 255.0, offset: float = 0.0):
    """A size-free input and the in-graph normalisation of 0..255 pixel values.

    Returns:
        (inputs, normalised): the ``keras.Input`` and the Rescaling output.
    """
    validate_range(input_channels, "input_channels", low=1, integer=True)
    inputs = keras.Input((None, None, input_channels), name="image")
    normalised = layers.Rescaling(scale, offset=offset, name="rescale")(inputs)
    return inputs, normalised


def conv_block(
    x,
    filters: int,
    *,
    kernel_size: int = 3,
    dilation: int = 1,
    dropout: float = 0.0,
    batch_norm: bool = True,
    activation: str = "relu",
    name: str,
):
    """Two convolutions (each with optional batch norm and the activation), dropout between.

    The seeds' order (conv, norm, dropout, conv, norm), with the activation after the norm.
    """
    validate_choice(activation, ACTIVATIONS, "activation")
    for index in (1, 2):
        x = layers.Conv2D(
            filters,
            kernel_size,
            padding="same",
            dilation_rate=dilation,
            use_bias=not batch_norm,
            kernel_initializer="he_normal",
            name=f"{name}_conv{index}",
        )(x)
        if batch_norm:
            x = layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        x = layers.Activation(activation, name=f"{name}_act{index}")(x)
        if index == 1 and dropout > 0:
            x = layers.Dropout(dropout, name=f"{name}_dropout")(x)
    return x


def upsample(x, filters: int, *, name: str):
    """Double the spatial size with a learned 2x2 transposed convolution."""
    return layers.Conv2DTranspose(filters, 2, strides=2, padding="same", name=name)(x)


def output_head(x, num_classes: int):
    """1x1 convolution to class scores, then sigmoid (1 class) or softmax, always float32.

    The final Activation is float32 so the output stays float32 under mixed precision.
    """
    validate_range(num_classes, "num_classes", low=1, integer=True)
    x = layers.Conv2D(num_classes, 1, name="logits")(x)
    kind = "sigmoid" if num_classes == 1 else "softmax"
    return layers.Activation(kind, dtype="float32", name="probabilities")(x)
