"""Augmentation applied identically to an image and its mask, built on albumentations.

albumentations is used because it is well kept, fast (OpenCV underneath), and applies one random
draw to an image and its mask together, warping the mask with nearest-neighbour interpolation so
labels stay exactly 0/1. Its elastic transform is the Simard et al. (2003) deformation the seeds
implement (``[deformation]``: alpha, sigma), and its grid distortion stands in for the seeds'
smooth ``[distortion]`` field.

Each call takes its own seed, so a sample's augmentation depends only on (seed, epoch, index),
whichever worker thread draws it.
"""

from __future__ import annotations

import difflib
import os
import threading
from typing import Any

import cv2
import numpy as np

from tiledseg._validation import validate_range
from training.occluders import OCCLUDER_KINDS, check_occluder_kinds, paint_occluders

__all__ = ["AUGMENT_DEFAULTS", "Augmenter", "build_augmenter"]

# Off unless configured: an empty table means no augmentation.
AUGMENT_DEFAULTS: dict[str, Any] = {
    "hflip": False,
    "vflip": False,
    "rot90": False,
    "affine_p": 0.0,
    "rotate": 0.0,
    "scale": [1.0, 1.0],
    "shear": 0.0,
    "elastic_p": 0.0,
    "elastic_alpha": 1300.0,
    "elastic_sigma": 8.0,
    "grid_p": 0.0,
    "grid_steps": 5,
    "grid_limit": 0.2,
    "color_p": 0.0,
    "brightness": 0.0,
    "contrast": 0.0,
    "saturation": 0.0,
    "hue": 0.0,
    "blur_p": 0.0,
    "blur_sigma": 1.5,
    # The 256 px ISIC training images were squashed to 256x256 and stretched back (softer along
    # the long side) while inference sees area-reduced full-size photos (sharper): sharpening
    # and downscaling cover both directions of that difference.
    "sharpen_p": 0.0,
    "sharpen_alpha": 0.3,
    "downscale_p": 0.0,
    "downscale_min": 0.6,
    # Painted dermoscopy artefacts (training.occluders): the chance a crop gets any, which
    # kinds, and at most how many.
    "occluder_p": 0.0,
    "occluder_kinds": list(OCCLUDER_KINDS),
    "occluder_max": 2,
}

_BORDER = cv2.BORDER_REFLECT_101


def _import_albumentations():
    # albumentations checks PyPI for a newer version on import unless told not to.
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
    try:
        import albumentations
    except ImportError as error:
        raise ImportError(
            "Training augmentation needs albumentations: pip install albumentations==2.0.8"
        ) from error
    return albumentations


def _check_settings(settings: dict[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(settings) - set(AUGMENT_DEFAULTS))
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, AUGMENT_DEFAULTS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"Unknown augmentation setting {key!r}.{hint} Allowed settings are: "
            f"{sorted(AUGMENT_DEFAULTS)}. Received: {key}={settings[key]!r}"
        )
    merged = {**AUGMENT_DEFAULTS, **settings}
    for key in (
        "affine_p",
        "elastic_p",
        "grid_p",
        "color_p",
        "blur_p",
        "sharpen_p",
        "downscale_p",
        "occluder_p",
    ):
        validate_range(merged[key], key, low=0.0, high=1.0)
    check_occluder_kinds(merged["occluder_kinds"])
    if not (isinstance(merged["occluder_max"], int) and merged["occluder_max"] >= 1):
        raise ValueError(
            f"`occluder_max` must be an integer >= 1. Received: occluder_max="
            f"{merged['occluder_max']!r}"
        )
    validate_range(merged["rotate"], "rotate", low=0.0, high=180.0)
    validate_range(merged["shear"], "shear", low=0.0, high=45.0)
    scale = merged["scale"]
    if not (isinstance(scale, (list, tuple)) and len(scale) == 2 and 0 < scale[0] <= scale[1]):
        raise ValueError(
            f"`scale` must be [low, high] with 0 < low <= high. Received: scale={scale!r}"
        )
    return merged


def _transforms(settings: dict[str, Any]) -> list:
    A = _import_albumentations()
    s = settings
    masks_nearest = {"mask_interpolation": cv2.INTER_NEAREST}
    transforms = []
    if s["hflip"]:
        transforms.append(A.HorizontalFlip(p=0.5))
    if s["vflip"]:
        transforms.append(A.VerticalFlip(p=0.5))
    if s["rot90"]:
        transforms.append(A.RandomRotate90(p=0.5))
    if s["affine_p"] > 0:
        transforms.append(
            A.Affine(
                scale=tuple(s["scale"]),
                rotate=(-s["rotate"], s["rotate"]),
                shear=(-s["shear"], s["shear"]),
                interpolation=cv2.INTER_LINEAR,
                border_mode=_BORDER,
                p=s["affine_p"],
                **masks_nearest,
            )
        )
    if s["elastic_p"] > 0:
        transforms.append(
            A.ElasticTransform(
                alpha=s["elastic_alpha"],
                sigma=s["elastic_sigma"],
                noise_distribution="uniform",  # the seeds' (and Simard's) uniform noise
                border_mode=_BORDER,
                p=s["elastic_p"],
                **masks_nearest,
            )
        )
    if s["grid_p"] > 0:
        transforms.append(
            A.GridDistortion(
                num_steps=int(s["grid_steps"]),
                distort_limit=s["grid_limit"],
                border_mode=_BORDER,
                p=s["grid_p"],
                **masks_nearest,
            )
        )
    if s["color_p"] > 0:
        transforms.append(
            A.ColorJitter(
                brightness=s["brightness"],
                contrast=s["contrast"],
                saturation=s["saturation"],
                hue=s["hue"],
                p=s["color_p"],
            )
        )
    if s["blur_p"] > 0:
        transforms.append(A.GaussianBlur(sigma_limit=(0.1, s["blur_sigma"]), p=s["blur_p"]))
    if s["sharpen_p"] > 0:
        transforms.append(A.Sharpen(alpha=(0.05, s["sharpen_alpha"]), p=s["sharpen_p"]))
    if s["downscale_p"] > 0:
        transforms.append(
            A.Downscale(
                scale_range=(s["downscale_min"], 0.95),
                interpolation_pair={"downscale": cv2.INTER_AREA, "upscale": cv2.INTER_LINEAR},
                p=s["downscale_p"],
            )
        )
    return transforms


class Augmenter:
    """Random geometric and colour augmentation of an (image, mask) pair.

    Args:
        settings: dict of :data:`AUGMENT_DEFAULTS` keys. Probabilities (``*_p``) gate each
            transform; ``rotate`` and ``shear`` are maximum angles in degrees; ``scale`` is
            ``[low, high]``; ``elastic_alpha``/``elastic_sigma`` are the seeds' ``[deformation]``
            alpha and sigmoid; ``grid_steps``/``grid_limit`` set the grid distortion;
            ``occluder_p``/``occluder_kinds``/``occluder_max`` paint dermoscopy artefacts
            (:func:`training.occluders.paint_occluders`) before the rest.

    Raises:
        ValueError: an unknown setting or a value out of range.

    Example:
        >>> augment = Augmenter({"hflip": True, "affine_p": 0.5, "rotate": 30})
        >>> image, mask = augment(image, mask, seed=7)
    """

    def __init__(self, settings: dict[str, Any] | None = None):
        self.settings = _check_settings(dict(settings or {}))
        _transforms(self.settings)  # fail now, not in a worker, on a bad setting
        self._local = threading.local()

    @property
    def enabled(self) -> bool:
        """Whether any transform is configured."""
        return bool(_transforms(self.settings)) or self.settings["occluder_p"] > 0

    def _pipeline(self):
        # One pipeline per worker thread: albumentations transforms hold their RNG state.
        pipeline = getattr(self._local, "pipeline", None)
        if pipeline is None:
            A = _import_albumentations()
            pipeline = A.Compose(_transforms(self.settings))
            self._local.pipeline = pipeline
        return pipeline

    def __call__(
        self, image: np.ndarray, mask: np.ndarray, seed: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Augment one pair with a draw fixed by ``seed``.

        Args:
            image: uint8 array (H, W, C).
            mask: uint8 array (H, W) of labels.
            seed: int >= 0. Same seed, same transform.

        Returns:
            (image, mask) with the input shapes and dtypes.
        """
        s = self.settings
        if s["occluder_p"] > 0:
            rng = np.random.default_rng(int(seed))
            if rng.random() < s["occluder_p"]:
                # Before the pipeline, so the artefacts are warped and colour-jittered too.
                image = paint_occluders(
                    image,
                    mask,
                    seed=int(rng.integers(2**31)),
                    kinds=s["occluder_kinds"],
                    count=int(rng.integers(1, s["occluder_max"] + 1)),
                )
        pipeline = self._pipeline()
        pipeline.set_random_seed(int(seed))
        result = pipeline(image=image, mask=mask)
        return result["image"], result["mask"]


def build_augmenter(settings: dict[str, Any] | None) -> Augmenter | None:
    """An :class:`Augmenter` for ``settings``, or None when nothing is enabled."""
    augmenter = Augmenter(settings)
    return augmenter if augmenter.enabled else None
