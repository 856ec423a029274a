"""Run a float32 network in reduced (mixed) precision for inference.

A checkpoint is stored in float32. :func:`with_precision` rebuilds the same graph with Keras'
mixed-precision policy (``mixed_bfloat16`` or ``mixed_float16``: computations in 16 bits,
variables kept in float32) and copies the weights, so any backend runs it without retraining.
The input layer, the stem (the layers up to the first convolution and the normalisation right
after it) and the output layers keep float32: pixel values rounded to 8 bits of mantissa were
the largest error measured (bloodcell UNet, 512 px tile: max |bf16 - fp32| 0.040 with an all-bf16
graph, 0.0023 with a float32 stem), and probabilities leave the network in float32.
"""

from __future__ import annotations

import threading
import weakref
from typing import TYPE_CHECKING, Any

from tiledseg._validation import validate_choice

if TYPE_CHECKING:  # keep `tiledseg --help` fast: the CLI reads PRECISIONS from here
    import keras

__all__ = ["PRECISIONS", "resolve_precision", "with_precision"]

PRECISIONS = ("auto", "float32", "bfloat16", "float16")
_POLICIES = {"bfloat16": "mixed_bfloat16", "float16": "mixed_float16"}

_converted: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def resolve_precision(precision: str, on_gpu: bool) -> str:
    """The precision to run: ``"auto"`` is bfloat16 on a GPU and float32 elsewhere.

    bfloat16 on a CPU is usually slower than float32 (few CPUs multiply in bfloat16), while on a
    GPU it halves memory traffic and uses the tensor cores.
    """
    validate_choice(precision, PRECISIONS, "precision")
    if precision == "auto":
        return "bfloat16" if on_gpu else "float32"
    return precision


def with_precision(network: keras.Model, precision: str) -> keras.Model:
    """``network`` rebuilt to compute in ``precision``; the same object for float32.

    Conversions are cached per network, so a predictor converts once. Only functional and
    sequential models (every model this project builds) can be converted.

    Args:
        network: a float32 ``keras.Model``.
        precision: ``"float32"``, ``"bfloat16"`` or ``"float16"`` (resolve ``"auto"`` first).

    Raises:
        ValueError: ``precision`` is not an allowed value, or the model is a subclassed model
            whose layers cannot be rebuilt from its config.
    """
    validate_choice(precision, PRECISIONS[1:], "precision")
    if precision == "float32":
        return network
    with _lock:
        cached = _converted.get(network, {}).get(precision)
    if cached is not None:
        return cached
    config = network.get_config()
    if "layers" not in config:
        raise ValueError(
            f"precision={precision!r} needs a functional or sequential model, rebuilt from its "
            f"config. Received: {type(network).__name__} {network.name!r}; use "
            "precision='float32'."
        )
    outputs = {entry[0] for entry in _output_names(config)}
    _set_policy(config, _POLICIES[precision], keep=outputs | _stem_names(config))
    converted = network.__class__.from_config(config)
    converted.set_weights(network.get_weights())
    with _lock:
        _converted.setdefault(network, {})[precision] = converted
    return converted


def _output_names(config: dict[str, Any]) -> list[list[Any]]:
    outputs = config.get("output_layers") or []
    # One output is stored as a single [name, node, tensor] triple, several as a list of them.
    return [outputs] if outputs and isinstance(outputs[0], str) else list(outputs)


_CONVOLUTIONS = ("Conv2D", "SeparableConv2D", "DepthwiseConv2D")
_NORMALIZATIONS = ("BatchNormalization", "LayerNormalization", "GroupNormalization")


def _layers_in_order(config: dict[str, Any]):
    """``(class_name, name)`` of every layer, nested models' layers in place, inputs left out."""
    for layer in config.get("layers", []):
        inner = layer.get("config", {})
        if "layers" in inner:  # a nested model (e.g. a keras.applications encoder)
            yield from _layers_in_order(inner)
        elif layer.get("class_name") != "InputLayer":
            yield layer.get("class_name"), layer.get("name", inner.get("name"))


def _stem_names(config: dict[str, Any]) -> set[str]:
    """The stem: layers up to the first convolution and a normalisation directly after it."""
    stem: set[str] = set()
    after_conv = False
    for kind, name in _layers_in_order(config):
        if after_conv:
            if kind in _NORMALIZATIONS:
                stem.add(name)
            break
        stem.add(name)
        after_conv = kind in _CONVOLUTIONS
    return stem


def _set_policy(config: dict[str, Any], policy: str, keep: set[str]) -> None:
    """Give the layers of a (possibly nested) model config the ``policy``, except input layers
    and the layers named in ``keep``."""
    for layer in config.get("layers", []):
        inner = layer.get("config", {})
        if layer.get("class_name") == "InputLayer" or layer.get("name", inner.get("name")) in keep:
            continue
        if "layers" in inner:  # a nested model: its stem is in `keep`, its outputs follow it
            _set_policy(inner, policy, keep)
            continue
        if "dtype" in inner:
            inner["dtype"] = policy
