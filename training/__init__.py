"""Training for tiledseg: UNet architectures, losses, data, augmentation and the run directory.

Example:
    >>> from training import load_config  # doctest: +SKIP
    >>> from training.train import train  # doctest: +SKIP
    >>> run_dir = train(load_config("training/configs/isic2017.toml"))  # doctest: +SKIP

``training.train`` is the module behind ``python -m training.train``, so the ``train`` function
is imported from it rather than re-exported here.
"""

import training._quiet_start  # noqa: F401  first: Keras starts without TensorFlow's notices
from training.augment import Augmenter, build_augmenter
from training.config import load_config, read_seed_config
from training.data import SegmentationDataset, load_pairs
from training.losses import (
    BceDiceLoss,
    DiceLoss,
    DiceScore,
    FocalLoss,
    IoUScore,
    JaccardLoss,
    TverskyLoss,
    get_loss,
)
from training.models import (
    build_attention_unet,
    build_backbone_unet,
    build_model,
    build_unet,
    downsampling_factor,
)

__all__ = [
    "Augmenter",
    "BceDiceLoss",
    "DiceLoss",
    "DiceScore",
    "FocalLoss",
    "IoUScore",
    "JaccardLoss",
    "SegmentationDataset",
    "TverskyLoss",
    "build_attention_unet",
    "build_augmenter",
    "build_backbone_unet",
    "build_model",
    "build_unet",
    "downsampling_factor",
    "get_loss",
    "load_config",
    "load_pairs",
    "read_seed_config",
]
