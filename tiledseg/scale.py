"""One notion of scale: the pixel scale a model was trained at, and resizing to and from it.

A model is trained at some pixel scale (ISIC lesions at short side 256 px; blood cells at native
resolution). :class:`PixelScale` describes that rule, travels in the zoo metadata, and turns any
input size into the resize factor the engine applies before tiling.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import cv2
import numpy as np

from tiledseg._validation import validate_choice, validate_range

__all__ = [
    "RELIABLE_SCALE_RATIOS",
    "SCALE_MODES",
    "PixelScale",
    "add_frame",
    "resize_image",
    "resize_probabilities",
    "scale_ratio",
    "scaled_shape",
]

SCALE_MODES = ("factor", "short_side", "long_side")
# A UNet sees structures at the size it was trained on; shown an image at more than 2x or less
# than 1/2 of that size its masks are unreliable (factor 1 on the ISIC model, trained at short
# side 256, gave 0.6 % lesion area for 6.9 %), so the CLI and the app warn outside this range.
RELIABLE_SCALE_RATIOS = (0.5, 2.0)


@dataclass(frozen=True)
class PixelScale:
    """How to bring an image to the scale a model was trained at.

    Args:
        mode: str, one of ``"factor"`` (multiply both sides by ``value``), ``"short_side"``
            (resize so the shorter side is ``value`` px), ``"long_side"`` (the longer side).
        value: float > 0, the factor or the side length in pixels.

    Example:
        >>> PixelScale("short_side", 256).factor_for(2848, 4288)
        0.0898876404494382
    """

    mode: str = "factor"
    value: float = 1.0

    def __post_init__(self) -> None:
        # Named as users write them: scale={"mode": ..., "value": ...}.
        validate_choice(self.mode, SCALE_MODES, "scale.mode")
        validate_range(self.value, "scale.value", low=0, low_inclusive=False)

    def factor_for(self, height: int, width: int) -> float:
        """Return the resize factor for an image of this height and width."""
        if self.mode == "factor":
            return float(self.value)
        side = min(height, width) if self.mode == "short_side" else max(height, width)
        return float(self.value) / float(side)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_value(cls, value: PixelScale | dict | float | int) -> PixelScale:
        """Accept a PixelScale, its dict form, or a plain factor."""
        if isinstance(value, PixelScale):
            return value
        if isinstance(value, dict):
            return cls(**value)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return cls("factor", float(value))
        raise TypeError(
            "`scale` must be a number, a PixelScale or a dict like "
            f"{{'mode': 'short_side', 'value': 256}}. Received: scale={value!r}"
        )


def scale_ratio(
    chosen: PixelScale | dict | float, trained: PixelScale | dict | float, height: int, width: int
) -> float:
    """How many times larger than at training the ``chosen`` scale shows this image.

    Example:
        >>> scale_ratio(1.0, PixelScale("short_side", 256), 2848, 4288)  # a full-size photo
        11.125
    """
    chosen_factor = PixelScale.from_value(chosen).factor_for(height, width)
    return chosen_factor / PixelScale.from_value(trained).factor_for(height, width)


def scaled_shape(height: int, width: int, factor: float) -> tuple[int, int]:
    """Height and width after scaling by ``factor``, at least 1 px each."""
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_image(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Resize an image to ``(height, width)``: area interpolation to shrink, cubic to enlarge."""
    height, width = shape
    if image.shape[:2] == (height, width):
        return image
    shrinking = height * width < image.shape[0] * image.shape[1]
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_CUBIC
    resized = cv2.resize(image, (width, height), interpolation=interpolation)
    if image.ndim == 3 and resized.ndim == 2:  # OpenCV drops a single channel axis
        resized = resized[..., None]
    return resized


def add_frame(image: np.ndarray, width: int) -> np.ndarray:
    """Surround an image (or mask) with ``width`` px of zeros, at model scale.

    A model trained with a frame (``frame`` in its metadata; ``data.frame`` in training) sees
    where a slide ends; training and the engine both frame through this one function.

    Example:
        >>> add_frame(np.ones((2, 3), np.uint8), 1).shape
        (4, 5)
    """
    validate_range(width, "frame", low=0, integer=True)
    if width == 0:
        return image
    widths = ((width, width), (width, width)) + ((0, 0),) * (image.ndim - 2)
    return np.pad(image, widths, mode="constant")


def resize_probabilities(probabilities: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bring a probability map back to ``(height, width)`` with linear interpolation.

    Done before any threshold, so mask edges at full size are smooth rather than blocky.
    Linear interpolation is a convex combination, so values stay in [0, 1].
    """
    height, width = shape
    if probabilities.shape[:2] == (height, width):
        return probabilities
    resized = cv2.resize(probabilities, (width, height), interpolation=cv2.INTER_LINEAR)
    if probabilities.ndim == 3 and resized.ndim == 2:
        resized = resized[..., None]
    return resized
