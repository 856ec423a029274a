"""Pretrained weights read offline: PyTorch checkpoints without torch, and their Keras ports."""

from training.pretrained.efficientnet_lite import (
    WEIGHTS_FILES,
    keras_weights_from_state_dict,
    load_imagenet_weights,
    weights_path,
)
from training.pretrained.torch_pickle import WeightsFileError, read_state_dict

__all__ = [
    "WEIGHTS_FILES",
    "WeightsFileError",
    "keras_weights_from_state_dict",
    "load_imagenet_weights",
    "read_state_dict",
    "weights_path",
]
