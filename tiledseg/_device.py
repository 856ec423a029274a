"""Which device the Keras backend computes on (engine defaults differ on a GPU)."""

from __future__ import annotations

import functools

import keras


@functools.cache  # the devices a process sees do not change; asked on every image otherwise
def on_gpu() -> bool:
    """Whether the Keras backend computes on a GPU."""
    backend = keras.backend.backend()
    try:
        if backend == "jax":
            import jax

            return jax.default_backend() == "gpu"
        if backend == "torch":
            import torch

            return torch.cuda.is_available()
        if backend == "tensorflow":
            import tensorflow as tf

            return bool(tf.config.list_logical_devices("GPU"))
    except ImportError:
        return False
    return False
