"""Pictures for people: mask overlays, error maps, heatmaps, tile grids, side-by-side panels.

Every function takes and returns RGB uint8 arrays (H, W, 3); grey (H, W) images are accepted and
converted. Inputs are never modified. A 7K image should never reach a browser at full size: pass
``max_side`` (e.g. :data:`PREVIEW_MAX_SIDE`) and the image is first shrunk with area interpolation
by :func:`preview`; masks are shrunk to the same size (area, then >= 50 %) and drawing happens on
the preview, which is also far faster than drawing on the original.

Masks are bool, or integer arrays where nonzero is foreground; threshold probabilities first
(``tiledseg.postprocess``).
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from tiledseg._validation import validate_choice, validate_range
from tiledseg.errors import MaskSizeError

__all__ = [
    "COLORMAPS",
    "ERROR_COLORS",
    "OVERLAY_CANDIDATES",
    "PREVIEW_MAX_SIDE",
    "TILE_COLORS",
    "contrasting_color",
    "draw_tile_grid",
    "draw_tiles",
    "error_map",
    "heatmap",
    "overlay",
    "preview",
    "side_by_side",
]

PREVIEW_MAX_SIDE = 1600
# Yellow, magenta and bluish green: of the Okabe-Ito colours plus magenta, the triple whose
# smallest pairwise CIELAB distance stays largest (about 60) under simulated protanopia,
# deuteranopia and tritanopia (Machado et al. 2009), so TP, FP and FN never look alike.
ERROR_COLORS = {"TP": (240, 228, 66), "FP": (255, 0, 255), "FN": (0, 158, 115)}
# Saturated colours an overlay can take; :func:`contrasting_color` picks the one farthest from
# an image's own colours (a model's class colour is only the first candidate).
OVERLAY_CANDIDATES = (
    (255, 64, 64),  # red
    (255, 220, 0),  # yellow
    (0, 230, 64),  # green
    (0, 220, 255),  # cyan
    (255, 0, 255),  # magenta
    (255, 128, 0),  # orange
    (64, 96, 255),  # blue
    (0, 0, 0),  # black
    (255, 255, 255),  # white
)
# Okabe-Ito colours (distinct for colour-blind viewers too) for telling tiles apart.
TILE_COLORS = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (255, 255, 255),
)
COLORMAPS = {
    "viridis": cv2.COLORMAP_VIRIDIS,
    "magma": cv2.COLORMAP_MAGMA,
    "inferno": cv2.COLORMAP_INFERNO,
    "plasma": cv2.COLORMAP_PLASMA,
    "cividis": cv2.COLORMAP_CIVIDIS,
    "turbo": cv2.COLORMAP_TURBO,
    "jet": cv2.COLORMAP_JET,
    "hot": cv2.COLORMAP_HOT,
}


def _validate_color(color: Sequence[int], name: str) -> tuple[int, int, int]:
    values = tuple(color) if isinstance(color, (tuple, list, np.ndarray)) else ()
    if len(values) != 3 or not all(
        isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v <= 255
        for v in values
    ):
        raise ValueError(f"`{name}` must be 3 integers (R, G, B) in [0, 255]. Received: {color!r}")
    return int(values[0]), int(values[1]), int(values[2])


def _as_rgb(image: np.ndarray, name: str = "image") -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"`{name}` must be uint8 RGB or grey. Received: dtype {image.dtype}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim == 2 and image.size:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    if image.ndim == 3 and image.shape[2] == 3 and image.size:
        return image
    raise ValueError(
        f"`{name}` must be (H, W, 3) RGB or (H, W) grey. Received: shape={image.shape}"
    )


def _as_mask(mask: np.ndarray, shape: tuple[int, int], name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool and not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(
            f"`{name}` must be a bool mask or integer labels; threshold probabilities first "
            f"with tiledseg.postprocess.postprocess(). Received: dtype {mask.dtype}"
        )
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.shape != shape:
        raise MaskSizeError(
            f"`{name}` must have the image's height and width {shape}. "
            f"Received: {name}.shape={mask.shape}"
        )
    return mask != 0


def _scaled_shape(shape: tuple[int, ...], max_side: int | None) -> tuple[int, int]:
    height, width = shape[:2]
    if max_side is None or max(height, width) <= max_side:
        return height, width
    factor = max_side / max(height, width)
    return min(max_side, max(1, round(height * factor))), min(
        max_side, max(1, round(width * factor))
    )


def _shrink_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    if mask.shape == shape:
        return mask
    area = cv2.resize(mask.view(np.uint8) * 255, shape[::-1], interpolation=cv2.INTER_AREA)
    return area >= 128


def preview(image: np.ndarray, max_side: int = PREVIEW_MAX_SIDE) -> np.ndarray:
    """Shrink an image so its longer side is at most ``max_side`` px, with area interpolation.

    Args:
        image: array (H, W) or (H, W, C) of uint8, uint16, float32, float64 or bool.
        max_side: int >= 1, default 1600.

    Returns:
        The shrunk array, same dtype; the input itself (not a copy) when already small enough.

    Example:
        >>> preview(np.zeros((4608, 7168, 3), np.uint8)).shape
        (1029, 1600, 3)
    """
    validate_range(max_side, "max_side", low=1, integer=True)
    array = np.asarray(image)
    if array.ndim not in (2, 3) or array.size == 0:
        raise ValueError(f"`image` must be (H, W) or (H, W, C). Received: shape={array.shape}")
    shape = _scaled_shape(array.shape, max_side)
    if shape == array.shape[:2]:
        return array
    if array.dtype == bool:
        return _shrink_mask(array, shape)
    return cv2.resize(array, shape[::-1], interpolation=cv2.INTER_AREA).reshape(
        shape + array.shape[2:]
    )


def _base(image: np.ndarray, max_side: int | None) -> np.ndarray:
    if max_side is not None:
        validate_range(max_side, "max_side", low=1, integer=True)
    rgb = _as_rgb(image)
    return preview(rgb, max_side).copy() if max_side is not None else rgb.copy()


def _tint(base: np.ndarray, where: np.ndarray, color: tuple[int, int, int], alpha: float) -> None:
    blended = base[where] * (1.0 - alpha) + np.array(color, np.float64) * alpha
    base[where] = np.round(blended).astype(np.uint8)


def overlay(
    image: np.ndarray,
    mask: np.ndarray,
    *,
    color: Sequence[int] = (255, 64, 64),
    alpha: float = 0.4,
    contour: bool = True,
    contour_color: Sequence[int] | None = None,
    contour_thickness: int = 2,
    max_side: int | None = None,
) -> np.ndarray:
    """Tint a mask onto an image and outline it.

    Args:
        image: uint8 RGB (H, W, 3) or grey (H, W).
        mask: bool or integer (H, W); nonzero is drawn.
        color: (R, G, B), default (255, 64, 64). Tint inside the mask.
        alpha: float in [0, 1], default 0.4. Tint strength (0: none, 1: solid colour).
        contour: bool, default True. Draw the outline (outer edges and holes).
        contour_color: (R, G, B) or None (default: ``color``).
        contour_thickness: int >= 1, default 2, in output pixels.
        max_side: int or None, default None. Draw on a preview at most this many px per side.

    Returns:
        uint8 RGB array, (H, W, 3) or the preview size.

    Raises:
        MaskSizeError: the mask is not the image's height and width.

    Example:
        >>> m = np.zeros((4, 4), bool); m[1:3, 1:3] = True
        >>> overlay(np.zeros((4, 4, 3), np.uint8), m, alpha=1.0, contour=False)[1, 1].tolist()
        [255, 64, 64]
    """
    color = _validate_color(color, "color")
    outline = color if contour_color is None else _validate_color(contour_color, "contour_color")
    validate_range(alpha, "alpha", low=0, high=1)
    validate_range(contour_thickness, "contour_thickness", low=1, integer=True)
    out = _base(image, max_side)
    fitted = _shrink_mask(_as_mask(mask, np.shape(image)[:2], "mask"), out.shape[:2])
    _tint(out, fitted, color, alpha)
    if contour:
        contours, _ = cv2.findContours(
            fitted.view(np.uint8), cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE
        )
        cv2.drawContours(out, contours, -1, outline, contour_thickness, cv2.LINE_8)
    return out


def error_map(
    pred: np.ndarray,
    truth: np.ndarray,
    *,
    image: np.ndarray | None = None,
    alpha: float = 0.6,
    max_side: int | None = None,
) -> np.ndarray:
    """Colour true positives, false positives and false negatives with :data:`ERROR_COLORS`.

    Args:
        pred: bool or integer (H, W), the predicted mask.
        truth: bool or integer (H, W), the ground truth.
        image: uint8 RGB or grey (H, W) or None (default). Without it, errors are drawn in
            full colour on black; with it, blended onto the image with ``alpha``.
        alpha: float in [0, 1], default 0.6. Colour strength over ``image``.
        max_side: int or None, default None. Draw on a preview at most this many px per side.

    Returns:
        uint8 RGB array; true negatives show the image (or black).

    Raises:
        MaskSizeError: ``pred``, ``truth`` and ``image`` differ in height or width.

    Example:
        >>> error_map(np.array([[1, 1, 0]], bool), np.array([[1, 0, 1]], bool))[0].tolist()
        [[240, 228, 66], [255, 0, 255], [0, 158, 115]]
    """
    validate_range(alpha, "alpha", low=0, high=1)
    if max_side is not None:
        validate_range(max_side, "max_side", low=1, integer=True)
    shape = np.shape(pred)[:2]
    pred_mask, truth_mask = _as_mask(pred, shape, "pred"), _as_mask(truth, shape, "truth")
    if image is None:
        out = np.zeros((*_scaled_shape(shape, max_side), 3), np.uint8)
        alpha = 1.0
    else:
        if np.shape(image)[:2] != shape:
            raise MaskSizeError(
                f"`image` must have the masks' height and width {shape}. "
                f"Received: image.shape={np.shape(image)}"
            )
        out = _base(image, max_side)
    pred_mask = _shrink_mask(pred_mask, out.shape[:2])
    truth_mask = _shrink_mask(truth_mask, out.shape[:2])
    for name, where in (
        ("TP", pred_mask & truth_mask),
        ("FP", pred_mask & ~truth_mask),
        ("FN", ~pred_mask & truth_mask),
    ):
        _tint(out, where, ERROR_COLORS[name], alpha)
    return out


def heatmap(
    probabilities: np.ndarray, *, colormap: str = "viridis", max_side: int | None = None
) -> np.ndarray:
    """Colour a probability map with an OpenCV colormap.

    Args:
        probabilities: float array (H, W) or (H, W, 1) with values in [0, 1].
        colormap: str, default ``"viridis"``; one of :data:`COLORMAPS`.
        max_side: int or None, default None. Shrink (area interpolation) before colouring.

    Returns:
        uint8 RGB array (H, W, 3) or the preview size.

    Raises:
        ValueError: not a float map in [0, 1], or an unknown colormap.

    Example:
        >>> heatmap(np.array([[0.0, 1.0]]), colormap="jet")[0].tolist()
        [[0, 0, 128], [128, 0, 0]]
    """
    validate_choice(colormap, COLORMAPS, "colormap")
    probs = np.asarray(probabilities)
    if probs.ndim == 3 and probs.shape[2] == 1:
        probs = probs[..., 0]
    if probs.ndim != 2 or not np.issubdtype(probs.dtype, np.floating) or probs.size == 0:
        raise ValueError(
            "`probabilities` must be a float array (H, W) or (H, W, 1). "
            f"Received: dtype {probs.dtype}, shape {probs.shape}"
        )
    # Blended or resized maps may overshoot [0, 1] by float rounding; that much is clipped.
    if not np.isfinite(probs).all():
        raise ValueError("`probabilities` must be finite values in [0, 1]; found nan or inf.")
    if probs.min() < -1e-3 or probs.max() > 1 + 1e-3:
        raise ValueError(
            "`probabilities` must be finite values in [0, 1]. "
            f"Received: values in [{probs.min()}, {probs.max()}]"
        )
    small = probs if max_side is None else preview(probs, max_side)
    levels = np.round(np.clip(small, 0, 1) * 255).astype(np.uint8)
    return cv2.cvtColor(cv2.applyColorMap(levels, COLORMAPS[colormap]), cv2.COLOR_BGR2RGB)


def draw_tile_grid(
    image: np.ndarray,
    tiles: Sequence[Sequence[int]],
    *,
    color: Sequence[int] = (255, 255, 0),
    thickness: int = 1,
    reference_shape: tuple[int, int] | None = None,
    max_side: int | None = None,
) -> np.ndarray:
    """Outline tile rectangles on an image (or its preview; rectangles scale with it).

    Args:
        image: uint8 RGB (H, W, 3) or grey (H, W).
        tiles: sequence of ``(y, x, height, width)`` rectangles.
        color: (R, G, B), default (255, 255, 0).
        thickness: int >= 1, default 1, in output pixels.
        reference_shape: (height, width) of the image the rectangles are given in, e.g. the
            model-scale image of ``TileGrid.rectangles()``; default: ``image``'s own.
        max_side: int or None, default None. Draw on a preview at most this many px per side.

    Returns:
        uint8 RGB array with the outlines drawn.

    Example:
        >>> out = draw_tile_grid(np.zeros((8, 8, 3), np.uint8), [(0, 0, 4, 4)], color=(9, 9, 9))
        >>> out[0, 0].tolist(), out[3, 3].tolist(), out[1, 1].tolist()
        ([9, 9, 9], [9, 9, 9], [0, 0, 0])
    """
    color = _validate_color(color, "color")
    validate_range(thickness, "thickness", low=1, integer=True)
    out = _base(image, max_side)
    ref_height, ref_width = reference_shape or np.shape(image)[:2]
    scale_y, scale_x = out.shape[0] / ref_height, out.shape[1] / ref_width
    for tile in tiles:
        if len(tile) != 4 or not all(isinstance(v, (int, np.integer)) for v in tile):
            raise ValueError(
                f"Each tile must be 4 integers (y, x, height, width). Received: {tile!r}"
            )
        y, x, height, width = (int(v) for v in tile)
        if height < 1 or width < 1:
            raise ValueError(f"Tile height and width must be >= 1. Received: {tile!r}")
        top_left = (round(x * scale_x), round(y * scale_y))
        bottom_right = (
            max(top_left[0], round((x + width) * scale_x) - 1),
            max(top_left[1], round((y + height) * scale_y) - 1),
        )
        cv2.rectangle(out, top_left, bottom_right, color, thickness, cv2.LINE_8)
    return out


def _lab(colors: np.ndarray) -> np.ndarray:
    """CIELAB (L in [0, 100]) of RGB uint8 colours, shape (N, 3) -> (N, 3) float32."""
    rgb = np.asarray(colors, np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).reshape(-1, 3)


def contrasting_color(
    image: np.ndarray,
    mask: np.ndarray | None = None,
    candidates: Sequence[Sequence[int]] = OVERLAY_CANDIDATES,
    *,
    quantile: float = 0.1,
) -> tuple[int, int, int]:
    """The candidate colour that stands out most from an image's own colours.

    Each candidate's CIELAB distance to the pixels of a small preview is measured and its
    ``quantile`` taken, so the winner is far from nearly all of them, not only from their mean.
    With a mask, the score is the smaller of the quantiles inside and outside it: the tint lies
    on what was segmented and the outline between both. Stained blood cells (purple-blue on
    white) get green; the model's light blue would vanish on them.

    Args:
        image: uint8 RGB (H, W, 3) or grey (H, W).
        mask: bool or integer (H, W) or None, default None: the mask to be drawn.
        candidates: sequence of (R, G, B), default :data:`OVERLAY_CANDIDATES`; ties go to the
            first, so put a preferred colour (a model's class colour) first.
        quantile: float in [0, 1], default 0.1.

    Returns:
        (R, G, B), one of ``candidates``.

    Example:
        >>> contrasting_color(np.full((8, 8, 3), (60, 60, 200), np.uint8))  # purple-blue
        (0, 230, 64)
    """
    validate_range(quantile, "quantile", low=0, high=1)
    palette = [_validate_color(color, "candidates[i]") for color in candidates]
    if not palette:
        raise ValueError("`candidates` must hold at least one colour. Received: []")
    rgb = _as_rgb(image)
    small = preview(rgb, 128)
    groups = [small.reshape(-1, 3)]
    if mask is not None:
        fitted = _shrink_mask(_as_mask(mask, rgb.shape[:2], "mask"), small.shape[:2])
        groups = [small[where] for where in (fitted, ~fitted) if where.any()] or groups
    targets = _lab(np.array(palette))
    scores = np.full(len(palette), np.inf)
    for pixels in groups:
        distances = np.linalg.norm(_lab(pixels)[None] - targets[:, None], axis=2)
        scores = np.minimum(scores, np.quantile(distances, quantile, axis=1))
    return palette[int(np.argmax(scores))]


def draw_tiles(
    image: np.ndarray,
    tiles: Sequence[Sequence[int]],
    *,
    reference_shape: tuple[int, int] | None = None,
    max_side: int | None = None,
    thickness: int = 3,
    fill: float = 0.18,
    numbers: bool = True,
) -> np.ndarray:
    """Draw every tile so each can be told apart: its own colour, a light fill, its number.

    Overlapping tiles drawn in one colour read as a grid of smaller cells; here tile ``i`` gets
    ``TILE_COLORS[i % 8]`` for its outline (inset by its index parity, so shared borders show
    both tiles) and a translucent fill, and its number in the top-left corner.

    Args:
        image: uint8 RGB (H, W, 3) or grey (H, W).
        tiles: sequence of ``(y, x, height, width)`` rectangles.
        reference_shape: (height, width) the rectangles are given in; default ``image``'s.
        max_side: int or None, default None. Draw on a preview at most this many px per side.
        thickness: int >= 1, default 3, outline width in output pixels.
        fill: float in [0, 1], default 0.18, the fill's opacity.
        numbers: bool, default True, write each tile's number.

    Returns:
        uint8 RGB array.

    Example:
        >>> out = draw_tiles(np.zeros((40, 40, 3), np.uint8), [(0, 0, 20, 20), (0, 20, 20, 20)])
        >>> out[10, 0].tolist() != out[10, 39].tolist()
        True
    """
    validate_range(thickness, "thickness", low=1, integer=True)
    validate_range(fill, "fill", low=0, high=1)
    out = _base(image, max_side)
    ref_height, ref_width = reference_shape or np.shape(image)[:2]
    scale_y, scale_x = out.shape[0] / ref_height, out.shape[1] / ref_width
    boxes = []
    for tile in tiles:
        if len(tile) != 4 or not all(isinstance(v, (int, np.integer)) for v in tile):
            raise ValueError(
                f"Each tile must be 4 integers (y, x, height, width). Received: {tile!r}"
            )
        y, x, height, width = (int(v) for v in tile)
        if height < 1 or width < 1:
            raise ValueError(f"Tile height and width must be >= 1. Received: {tile!r}")
        x0, y0 = round(x * scale_x), round(y * scale_y)
        x1 = max(x0, round((x + width) * scale_x) - 1)
        y1 = max(y0, round((y + height) * scale_y) - 1)
        boxes.append((x0, y0, x1, y1))
    tint = out.astype(np.float32)
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        color = np.array(TILE_COLORS[index % len(TILE_COLORS)], np.float32)
        region = tint[y0 : y1 + 1, x0 : x1 + 1]
        region += fill * (color - region)
    out = np.round(tint).astype(np.uint8)
    for index, (x0, y0, x1, y1) in enumerate(boxes):
        color = TILE_COLORS[index % len(TILE_COLORS)]
        inset = (index % 2) * thickness  # neighbours' shared borders stay visible side by side
        top_left, bottom_right = (x0 + inset, y0 + inset), (x1 - inset, y1 - inset)
        cv2.rectangle(out, top_left, bottom_right, (0, 0, 0), thickness + 2, cv2.LINE_8)
        cv2.rectangle(out, top_left, bottom_right, color, thickness, cv2.LINE_8)
        if numbers:
            scale = max(0.4, min(1.2, (y1 - y0) / 150))
            origin = (top_left[0] + thickness + 3, top_left[1] + thickness + round(22 * scale))
            text = str(index + 1)
            cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), 4)
            cv2.putText(out, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, color, 2)
    return out


def _title_strip(text: str, width: int, height: int) -> np.ndarray:
    font, pad = cv2.FONT_HERSHEY_SIMPLEX, 4
    scale = min(2.0, max(0.4, height / 500))  # readable on small and large panels alike
    # The strip height depends on the panel height only, so all strips in a row line up.
    (_, line_height), baseline = cv2.getTextSize("Hg", font, scale, 1)
    strip = np.full((line_height + baseline + 2 * pad, width, 3), 255, np.uint8)
    text_width = cv2.getTextSize(text, font, scale, 1)[0][0]
    if text_width > width - 2 * pad:  # shrink to fit the panel; a very long title is cut
        scale = max(0.3, scale * (width - 2 * pad) / text_width)
        text_width = cv2.getTextSize(text, font, scale, 1)[0][0]
    origin = (max(pad, (width - text_width) // 2), pad + line_height)
    cv2.putText(strip, text, origin, font, scale, (0, 0, 0), max(1, round(scale)), cv2.LINE_AA)
    return strip


def side_by_side(
    panels: Sequence[np.ndarray],
    titles: Sequence[str] | None = None,
    height: int | None = None,
    *,
    gap: int = 4,
) -> np.ndarray:
    """Place images next to each other at one height, with optional titles above each.

    Args:
        panels: non-empty sequence of uint8 RGB (H, W, 3) or grey (H, W) images.
        titles: sequence of str, one per panel, or None (default: no titles).
        height: int >= 1 or None. Panel height in px; default the smallest panel's height,
            at most :data:`PREVIEW_MAX_SIDE`, so a 7K panel is never kept at full size.
        gap: int >= 0, default 4. White columns between panels.

    Returns:
        uint8 RGB array: height (+ title strip) by the sum of the scaled widths and gaps.

    Example:
        >>> a, b = np.zeros((10, 10, 3), np.uint8), np.zeros((20, 40), np.uint8)
        >>> side_by_side([a, b], gap=2).shape
        (10, 32, 3)
    """
    rgb_panels = [_as_rgb(panel, f"panels[{i}]") for i, panel in enumerate(panels)]
    if not rgb_panels:
        raise ValueError("`panels` must hold at least one image. Received: panels=[]")
    if titles is not None and len(titles) != len(rgb_panels):
        raise ValueError(
            f"`titles` must have one entry per panel ({len(rgb_panels)}). "
            f"Received: {len(titles)} titles"
        )
    validate_range(gap, "gap", low=0, integer=True)
    if height is None:
        height = min(PREVIEW_MAX_SIDE, *(panel.shape[0] for panel in rgb_panels))
    validate_range(height, "height", low=1, integer=True)
    columns = []
    for index, panel in enumerate(rgb_panels):
        width = max(1, round(panel.shape[1] * height / panel.shape[0]))
        shrink = height < panel.shape[0]
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        if panel.shape[:2] != (height, width):
            panel = cv2.resize(panel, (width, height), interpolation=interpolation)
        if titles is not None:
            panel = np.vstack([_title_strip(str(titles[index]), width, height), panel])
        if index and gap:
            columns.append(np.full((panel.shape[0], gap, 3), 255, np.uint8))
        columns.append(panel)
    return np.hstack(columns)
