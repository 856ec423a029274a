"""EfficientNet-Lite from built-in Keras layers, with the layer names the weight port maps to.

EfficientNet-Lite (Tan & Le 2019; the TensorFlow "lite" variants) is EfficientNet without
squeeze-and-excitation, with ReLU6 and an unscaled stem and head. The official weights were
trained with TensorFlow's "SAME" padding, which pads a stride-2 convolution more on the bottom
and right than on the top and left; Keras ``padding="same"`` does not pad that way on every
backend, so stride-2 convolutions get an explicit ``ZeroPadding2D`` and ``"valid"`` padding.
The amounts are TensorFlow's for even input sizes, which is what the engine feeds (multiples of
the model's downsampling factor, 32).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import keras
from keras import layers

__all__ = ["LITE_VARIANTS", "BlockSpec", "block_specs", "lite_encoder"]

# (width, depth, ImageNet resolution); from the reference implementation's efficientnet_params.
LITE_VARIANTS = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
}
# repeats, kernel, stride, expand ratio, input filters, output filters (EfficientNet-B0's stages).
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
BN_EPSILON = 1e-3  # TF's batch_norm_epsilon, kept by the PyTorch conversion
BN_MOMENTUM = 0.99  # Keras convention (PyTorch's 0.01)


@dataclass(frozen=True)
class BlockSpec:
    """One MBConv block: its index in the weights, stage, shape and stride."""

    index: int
    stage: int
    kernel: int
    stride: int
    expand: int
    filters_in: int
    filters_out: int


def _round_filters(filters: int, width: float) -> int:
    if width == 1.0:
        return filters
    divisor = 8
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * scaled:  # never round down by more than 10%
        rounded += divisor
    return int(rounded)


def block_specs(variant: str) -> list[BlockSpec]:
    """The MBConv blocks of an EfficientNet-Lite variant, in weight order.

    The first and last stages keep their repeats and the stem keeps 32 filters ("fix head and
    stem", as in the TensorFlow Lite builder).
    """
    width, depth, _ = LITE_VARIANTS[variant]
    specs: list[BlockSpec] = []
    last = len(_STAGES) - 1
    for stage, (repeats, kernel, stride, expand, filters_in, filters_out) in enumerate(_STAGES):
        filters_in = 32 if stage == 0 else _round_filters(filters_in, width)
        filters_out = _round_filters(filters_out, width)
        if stage not in (0, last):
            repeats = math.ceil(depth * repeats)
        for repeat in range(repeats):
            specs.append(
                BlockSpec(
                    index=len(specs),
                    stage=stage,
                    kernel=kernel,
                    stride=stride if repeat == 0 else 1,
                    expand=expand,
                    filters_in=filters_in if repeat == 0 else filters_out,
                    filters_out=filters_out,
                )
            )
    return specs


def _batch_norm(name: str):
    return layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=name)


def _strided_padding(kernel: int, name: str):
    # TensorFlow SAME for an even input and stride 2: total k - 2, the extra pixel after.
    total = kernel - 2
    before, after = total // 2, total - total // 2
    return layers.ZeroPadding2D(((before, after), (before, after)), name=name)


def _mbconv(x, spec: BlockSpec):
    prefix = f"block{spec.index}"
    inputs = x
    expanded = spec.filters_in * spec.expand
    if spec.expand != 1:
        x = layers.Conv2D(expanded, 1, use_bias=False, name=f"{prefix}_expand_conv")(x)
        x = _batch_norm(f"{prefix}_expand_bn")(x)
        x = layers.ReLU(6.0, name=f"{prefix}_expand_relu")(x)
    if spec.stride == 2:
        x = _strided_padding(spec.kernel, f"{prefix}_pad")(x)
    x = layers.DepthwiseConv2D(
        spec.kernel,
        strides=spec.stride,
        padding="valid" if spec.stride == 2 else "same",
        use_bias=False,
        name=f"{prefix}_dwconv",
    )(x)
    x = _batch_norm(f"{prefix}_dw_bn")(x)
    x = layers.ReLU(6.0, name=f"{prefix}_dw_relu")(x)
    x = layers.Conv2D(spec.filters_out, 1, use_bias=False, name=f"{prefix}_project_conv")(x)
    x = _batch_norm(f"{prefix}_project_bn")(x)
    if spec.stride == 1 and spec.filters_in == spec.filters_out:
        x = layers.Add(name=f"{prefix}_add")([x, inputs])
    return x


def lite_encoder(image, variant: str):
    """Run the EfficientNet-Lite stem and blocks on a normalised ``image`` tensor.

    Returns:
        (stage_outputs, specs): the output of each of the seven stages, at strides 2, 4, 8, 16,
        16, 32 and 32, and the block specs (:func:`block_specs`).
    """
    x = _strided_padding(3, "stem_pad")(image)
    x = layers.Conv2D(32, 3, strides=2, padding="valid", use_bias=False, name="stem_conv")(x)
    x = _batch_norm("stem_bn")(x)
    x = layers.ReLU(6.0, name="stem_relu")(x)
    specs = block_specs(variant)
    stage_outputs: list[keras.KerasTensor] = []
    for spec in specs:
        x = _mbconv(x, spec)
        if spec.index == len(specs) - 1 or specs[spec.index + 1].stage != spec.stage:
            stage_outputs.append(x)
    return stage_outputs, specs
