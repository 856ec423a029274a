"""Dermoscopy artefacts painted onto training crops: stickers, marker ink, rulers, hair, vignette.

The ISIC failures this targets: the model segments a colour-calibration sticker, skin-marker ink
or a ruler's print instead of the lesion, and keep-largest then keeps the wrong blob. Real photos
with those artefacts are few in the training split, so each crop may get some painted on.

Stickers, ink and rulers are painted on background (mask 0) pixels only, so the mask stays
exactly right and the model learns that such things are not lesion. Hair and the dermatoscope's
dark vignette cross lesions in real photos too; they are painted everywhere and the mask is kept,
since the lesion is still there under them.

All drawing is OpenCV; the draw is fixed by the seed.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from tiledseg._validation import validate_choice

__all__ = ["OCCLUDER_KINDS", "check_occluder_kinds", "paint_occluders"]

OCCLUDER_KINDS = ("sticker", "ink", "ruler", "hair", "vignette")

# Saturated sticker colours seen on ISIC photos (RGB): calibration blue, green, yellow, red and
# white. No black: a black disc is what a nodular lesion looks like.
_STICKER_COLOURS = np.array(
    [[40, 90, 200], [40, 160, 80], [230, 200, 40], [200, 40, 50], [235, 235, 235]],
    dtype=np.float32,
)
# Gentian-violet and blue skin-marker ink.
_INK_COLOURS = np.array([[110, 40, 140], [70, 40, 150], [40, 50, 130]], dtype=np.float32)


# Each painter draws one artefact on an RGBA float canvas: colour in channels 0-2, opacity in 3,
# so every shape is drawn once for both.


def _rgba(colour, opacity: float = 1.0) -> list[float]:
    return [*(float(c) for c in colour), float(opacity)]


def _sticker(canvas: np.ndarray, rng: np.random.Generator) -> None:
    h, w = canvas.shape[:2]
    size = min(h, w)
    centre = (int(rng.integers(w)), int(rng.integers(h)))
    colour = _STICKER_COLOURS[rng.integers(len(_STICKER_COLOURS))] * rng.uniform(0.8, 1.1)
    if rng.random() < 0.6:
        radius = int(size * rng.uniform(0.06, 0.25))
        cv2.circle(canvas, centre, radius, _rgba(colour), -1, cv2.LINE_AA)
        return
    # A calibration card: a row of coloured squares.
    cell = int(size * rng.uniform(0.05, 0.12))
    count = int(rng.integers(2, 6))
    for k in range(count):
        x0, y0 = centre[0] + k * cell, centre[1]
        tone = _STICKER_COLOURS[rng.integers(len(_STICKER_COLOURS))]
        cv2.rectangle(canvas, (x0, y0), (x0 + cell, y0 + cell), _rgba(tone), -1)


def _ink(canvas: np.ndarray, rng: np.random.Generator) -> None:
    h, w = canvas.shape[:2]
    colour = _INK_COLOURS[rng.integers(len(_INK_COLOURS))]
    opacity = float(rng.uniform(0.5, 0.9))
    if rng.random() < 0.4:  # marker dots around a lesion
        for _ in range(int(rng.integers(1, 6))):
            centre = (int(rng.integers(w)), int(rng.integers(h)))
            radius = int(min(h, w) * rng.uniform(0.01, 0.04)) + 1
            cv2.circle(canvas, centre, radius, _rgba(colour, opacity), -1, cv2.LINE_AA)
        return
    points = [(int(rng.integers(w)), int(rng.integers(h)))]
    for _ in range(int(rng.integers(2, 6))):
        step = rng.normal(0, min(h, w) * 0.2, size=2)
        points.append((int(points[-1][0] + step[0]), int(points[-1][1] + step[1])))
    thickness = int(rng.integers(2, max(3, min(h, w) // 40)))
    polyline = np.array(points, np.int32)[None]
    cv2.polylines(canvas, polyline, False, _rgba(colour, opacity), thickness, cv2.LINE_AA)


def _ruler(canvas: np.ndarray, rng: np.random.Generator) -> None:
    h, w = canvas.shape[:2]
    size = min(h, w)
    dark = rng.random() < 0.7
    grey = float(rng.uniform(10, 60)) if dark else float(rng.uniform(200, 250))
    colour = _rgba([grey] * 3)
    angle = rng.uniform(0, np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    normal = np.array([-direction[1], direction[0]])
    origin = np.array([rng.uniform(0, w), rng.uniform(0, h)])
    spacing = size * rng.uniform(0.02, 0.05)
    half = int(np.hypot(h, w) / spacing)
    line_width = max(1, int(rng.integers(1, 3)))
    for k in range(-half, half + 1):
        base = origin + direction * k * spacing
        length = size * (0.06 if k % 5 else 0.1)
        tip = base + normal * length
        a, b = tuple(int(v) for v in base), tuple(int(v) for v in tip)
        cv2.line(canvas, a, b, colour, line_width, cv2.LINE_AA)
    far = np.hypot(h, w)
    a = tuple(int(v) for v in origin - direction * far)
    b = tuple(int(v) for v in origin + direction * far)
    cv2.line(canvas, a, b, colour, line_width, cv2.LINE_AA)


def _hair(canvas: np.ndarray, rng: np.random.Generator) -> None:
    h, w = canvas.shape[:2]
    for _ in range(int(rng.integers(1, 8))):
        start = np.array([rng.uniform(0, w), rng.uniform(0, h)])
        angle = rng.uniform(0, 2 * np.pi)
        length = min(h, w) * rng.uniform(0.2, 0.8)
        bend = rng.normal(0, 0.4)
        steps = np.linspace(0, 1, 12)
        angles = angle + bend * steps
        xy = start + np.cumsum(
            np.stack([np.cos(angles), np.sin(angles)], 1) * length / len(steps), axis=0
        )
        tone = [float(rng.uniform(15, 70))] * 3
        polyline = xy.astype(np.int32)[None]
        opacity = float(rng.uniform(0.6, 1.0))
        cv2.polylines(canvas, polyline, False, _rgba(tone, opacity), 1, cv2.LINE_AA)


def _vignette(canvas: np.ndarray, rng: np.random.Generator) -> None:
    # The dermatoscope's round field of view: dark outside a circle centred near the crop.
    h, w = canvas.shape[:2]
    centre = (w / 2 + rng.normal(0, w * 0.1), h / 2 + rng.normal(0, h * 0.1))
    radius = np.hypot(h, w) / 2 * rng.uniform(0.75, 1.0)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    distance = np.hypot(xx - centre[0], yy - centre[1])
    canvas[..., 3] = np.clip((distance - radius) / max(2.0, radius * 0.08), 0.0, 1.0)
    canvas[..., :3] = float(rng.uniform(0, 25))


_PAINTERS = {
    "sticker": _sticker,
    "ink": _ink,
    "ruler": _ruler,
    "hair": _hair,
    "vignette": _vignette,
}
# Which kinds keep clear of the lesion (see the module docstring).
_BACKGROUND_ONLY = {"sticker", "ink", "ruler"}


def check_occluder_kinds(kinds: Any) -> tuple[str, ...]:
    """``kinds`` as a tuple if it is a non-empty list of :data:`OCCLUDER_KINDS` names.

    Raises:
        ValueError: an empty or non-list value, or an unknown name (with the closest one).
    """
    if not (isinstance(kinds, (list, tuple)) and kinds):
        raise ValueError(
            f"`occluder_kinds` must be a non-empty list from {list(OCCLUDER_KINDS)}. "
            f"Received: occluder_kinds={kinds!r}"
        )
    return tuple(validate_choice(kind, OCCLUDER_KINDS, "occluder_kinds") for kind in kinds)


def paint_occluders(
    image: np.ndarray,
    mask: np.ndarray,
    seed: int,
    kinds: tuple[str, ...] | list[str] = OCCLUDER_KINDS,
    count: int = 1,
) -> np.ndarray:
    """Paint ``count`` artefacts drawn from ``kinds`` onto ``image``; the mask is unchanged.

    Args:
        image: uint8 (H, W, 3) RGB crop.
        mask: (H, W) labels; stickers, ink and rulers go only where it is 0.
        seed: int >= 0. Same seed, same artefacts.
        kinds: a non-empty list of names from :data:`OCCLUDER_KINDS`.
        count: how many artefacts, each of a kind drawn at random.

    Returns:
        A new uint8 image of the same shape.

    Raises:
        ValueError: an unknown kind, or an image that is not (H, W, 3) uint8.
    """
    kinds = check_occluder_kinds(kinds)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"Occluders are painted on uint8 (H, W, 3) images. Received: {image.dtype} "
            f"{image.shape}"
        )
    rng = np.random.default_rng(seed)
    result = image.astype(np.float32)
    background = (mask == 0).astype(np.float32)
    for _ in range(count):
        kind = kinds[int(rng.integers(len(kinds)))]
        canvas = np.zeros((*mask.shape, 4), np.float32)
        _PAINTERS[kind](canvas, rng)
        alpha = canvas[..., 3:]
        if kind in _BACKGROUND_ONLY:
            alpha *= background[..., None]
        result += (canvas[..., :3] - result) * alpha
    return np.clip(result + 0.5, 0, 255).astype(np.uint8)
