"""Attention gate (Oktay et al. 2018, arXiv:1804.03999) from built-in Keras layers.

The gating signal is the decoder feature already upsampled to the skip's resolution, so the gate
adds no strided layer: the model's downsampling factor stays that of its pooling layers, which is
what the tiled engine reads.
"""

from __future__ import annotations

from keras import layers

__all__ = ["attention_gate"]


def attention_gate(skip, gate, inter_filters: int, *, name: str):
    """Weight the encoder skip by a learned 0..1 map computed from the skip and the gate.

    Args:
        skip: encoder feature map (batch, H, W, C).
        gate: decoder feature map at the same H and W.
        inter_filters: int. Channels of the intermediate 1x1 projections.
        name: str. Prefix of the layer names.

    Returns:
        The skip multiplied by the attention coefficients (broadcast over channels).
    """
    theta = layers.Conv2D(inter_filters, 1, name=f"{name}_theta")(skip)
    phi = layers.Conv2D(inter_filters, 1, name=f"{name}_phi")(gate)
    joined = layers.Add(name=f"{name}_add")([theta, phi])
    joined = layers.Activation("relu", name=f"{name}_relu")(joined)
    coefficients = layers.Conv2D(1, 1, name=f"{name}_psi")(joined)
    coefficients = layers.Activation("sigmoid", name=f"{name}_sigmoid")(coefficients)
    return layers.Multiply(name=f"{name}_weighted")([skip, coefficients])
