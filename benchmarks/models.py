"""The networks the benchmarks time: the seeds' large UNet (random weights) and zoo models.

``"seedlike"`` is built with the project's own :func:`training.models.build_unet` in the seeds'
blood-cell configuration (16 base filters, 7 levels, 7x7 first kernel, dilation 2: 31.2M
parameters; 8 levels give the 124.6M-parameter reference). Any other name is a model reference
for :func:`model_zoo.load` (``"unet-bloodcell"``, ``"unet-isic2017"``, a folder...). Zoo models
are timed as bare Keras networks at native resolution with the benchmark's tile and overlap, so
every model sees the same pixels (the ISIC model's metadata would first shrink a photo to short
side 256 px and run it as one tile).
"""

from __future__ import annotations

import random
from typing import Any

import keras

from tiledseg.tiling import downsampling_factor

__all__ = ["SEEDLIKE", "load_network"]

SEEDLIKE = "seedlike"


def load_network(
    name: str,
    *,
    levels: int = 7,
    filters: int = 16,
    kernel: int = 7,
    dilation: int = 2,
    seed: int = 0,
) -> tuple[keras.Model, dict[str, Any]]:
    """The network to time and what to report about it.

    Args:
        name: str, ``"seedlike"`` or a model reference for :func:`model_zoo.load`.
        levels, filters, kernel, dilation: int, the seed-like UNet's ``num_levels``,
            ``base_filters``, ``base_kernel`` and ``dilation`` (ignored for zoo models).
        seed: int, seeds the random weights of the seed-like UNet.

    Returns:
        ``(keras.Model, info)`` where ``info`` has the label used in the tables, the parameter
        count, the downsampling factor and where the model came from.
    """
    if name == SEEDLIKE:
        from training.models import build_unet

        # Keras draws its default seed from Python's `random`; keras.utils.set_random_seed
        # would do the same but also import TensorFlow wherever it is installed.
        random.seed(seed)
        network = build_unet(
            base_filters=filters,
            num_levels=levels,
            base_kernel=kernel,
            dilation=dilation,
            name=f"seedlike_{levels}L",
        )
        info = {
            "label": f"seedlike-{levels}L",
            "source": (
                f"training.models.build_unet(base_filters={filters}, num_levels={levels}, "
                f"base_kernel={kernel}, dilation={dilation}), random weights (seed {seed})"
            ),
        }
    else:
        from model_zoo import load

        zoo = load(name)
        network = zoo.model
        meta = zoo.meta
        info = {
            "label": name,
            "source": f"model_zoo.load({name!r}), run as a bare network at native resolution",
            "metadata": {
                key: _plain(getattr(meta, key, None))
                for key in ("tile", "overlap", "blend", "scale", "tta", "precision", "downsampling")
            },
        }
    info["parameters"] = int(network.count_params())
    info["downsampling"] = downsampling_factor(network)
    return network, info


def _plain(value: Any) -> Any:
    to_dict = getattr(value, "to_dict", None)
    return to_dict() if callable(to_dict) else value
