"""Turn a probability map into a clean binary mask: threshold, morphology, holes, components.

Every step is optional and they always run in this order:

1. threshold: ``probability > threshold`` (strict, as Keras ``binary_accuracy`` and the ISIC
   scorer's ``> 128`` do; so ``threshold=1.0`` gives an empty mask). A bool mask skips this step.
2. opening (erode then dilate, elliptical kernel ``opening`` px wide): removes specks and thin
   spurs first, so they are neither merged by closing nor counted as components.
3. closing (dilate then erode): bridges small gaps and seals cracks in the outline, so that
   the next step sees the holes they enclose.
4. fill holes: background regions not connected to the image edge (4-connected) become
   foreground. A region open to the image edge is not a hole.
5. remove small: drop 8-connected components of fewer than ``min_size`` pixels, measured on the
   final shapes (after holes are filled, so a filled lesion counts at its full area).
6. drop edge-cut: drop components that touch the image's edge and show less than
   ``edge_visible`` of a round object (only those under ``edge_max_size`` px where that is set),
   as cell-counting tools exclude objects on the edge (ImageJ's "exclude on edges", CellProfiler's
   "discard objects touching the border"), but keeping the cells that are mostly inside. The
   visible share is read from the component's contact with the edge against its area, as for a
   disk cut by a straight line: a half disk (contact 1.60 x sqrt(area)) shows 0.5, a disk that
   only touches the edge shows 1.
7. keep largest: keep only the largest 8-connected component (ties: the first in raster order).
   Last, because the earlier steps can split or merge components.

Multi-class probabilities (H, W, C) with C > 1 give the argmax label map (uint8); the binary
steps do not apply to them, and asking for one raises ValueError.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import cv2
import numpy as np

from tiledseg._validation import validate_range

__all__ = [
    "MAX_KERNEL_PX",
    "POSTPROCESS_DEFAULTS",
    "POSTPROCESS_KEYS",
    "component_stats",
    "edge_visible_fraction",
    "postprocess",
    "validate_postprocess_options",
]

# Opening and closing kernels wider than this are refused: the cost grows with the kernel's area
# at full resolution, and a kernel of 10^9 px would be allocated before any pixel is touched.
MAX_KERNEL_PX = 255
# Every step after the threshold, off: postprocess()'s own defaults (read-only, shared).
POSTPROCESS_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "opening": 0,
        "closing": 0,
        "fill_holes": False,
        "min_size": 0,
        "edge_visible": 0.0,
        "edge_max_size": 0,
        "keep_largest": False,
    }
)
# postprocess()'s keyword options, in its order; the metadata's `postprocess` takes all but the
# threshold (tiledseg.contract.POSTPROCESS_KEYS).
POSTPROCESS_KEYS = ("threshold", *POSTPROCESS_DEFAULTS)
# A disk of radius 1 cut by a straight line, the visible segment's height running over (0, 2]:
# its chord over the square root of its area falls from +inf to 0 as the visible share rises from
# 0 to 1, so the share is read off this table (reversed for np.interp's increasing x).
_SEGMENT_HEIGHT = np.linspace(1e-6, 2.0, 4001)
_SEGMENT_CHORD = 2 * np.sqrt(np.clip(2 * _SEGMENT_HEIGHT - _SEGMENT_HEIGHT**2, 0, None))
_SEGMENT_AREA = np.arccos(1 - _SEGMENT_HEIGHT) - (1 - _SEGMENT_HEIGHT) * _SEGMENT_CHORD / 2
_CONTACT_RATIO = (_SEGMENT_CHORD / np.sqrt(_SEGMENT_AREA))[::-1]
_VISIBLE_SHARE = (_SEGMENT_AREA / np.pi)[::-1]


def _validate_flag(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be True or False. Received: {name}={value!r}")
    return bool(value)


def validate_postprocess_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check post-processing options (any subset of the keys), as loaded from metadata or given.

    ``opening`` and ``closing``: integers in [0, MAX_KERNEL_PX]; ``min_size`` and
    ``edge_max_size``: integers >= 0; ``fill_holes`` and ``keep_largest``: True or False;
    ``threshold`` and ``edge_visible``: numbers in [0, 1]. ``edge_max_size`` above 0 needs
    ``edge_visible`` above 0 where both are given (it only narrows that step).
    Unknown keys raise ValueError listing the known ones. Returns the options, flags as bool.

    Example: ``validate_postprocess_options({"opening": -3})`` raises
    "`opening` must be in [0, 255]. Received: opening=-3".
    """
    unknown = sorted(set(options) - set(POSTPROCESS_KEYS))
    if unknown:
        raise ValueError(
            f"Post-processing keys must be among {list(POSTPROCESS_KEYS)}. "
            f"Received unknown keys: {unknown}"
        )
    checked = dict(options)
    for name in ("opening", "closing"):
        if name in options:
            validate_range(options[name], name, low=0, high=MAX_KERNEL_PX, integer=True)
    for name in ("min_size", "edge_max_size"):
        if name in options:
            validate_range(options[name], name, low=0, integer=True)
    for name in ("threshold", "edge_visible"):
        if name in options:
            validate_range(options[name], name, low=0, high=1)
    if options.get("edge_max_size", 0) > 0 and options.get("edge_visible", 0) == 0:
        # Alone it would change nothing: say so rather than run as if it were applied.
        raise ValueError(
            "`edge_max_size` only limits which edge components `edge_visible` judges; set "
            "`edge_visible` above 0 too, or `edge_max_size` to 0. Received: "
            f"edge_max_size={options['edge_max_size']}, "
            f"edge_visible={options.get('edge_visible', 0)}"
        )
    for name in ("fill_holes", "keep_largest"):
        if name in options:
            checked[name] = _validate_flag(options[name], name)
    return checked


def _ellipse(size: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (size, size))


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    # A 1 px background frame joins every edge-touching background region into one, so a single
    # flood fill from the corner marks all background that is not a hole.
    reached = np.pad(mask.view(np.uint8), 1)
    cv2.floodFill(reached, None, (0, 0), 1, flags=4)
    return mask | (reached[1:-1, 1:-1] == 0)


def _components(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Label image and per-label areas (label 0 is the background)."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        mask.view(np.uint8), connectivity=8, ltype=cv2.CV_32S
    )
    return labels, stats[:, cv2.CC_STAT_AREA]


def edge_visible_fraction(contact_px: np.ndarray, area_px: np.ndarray) -> np.ndarray:
    """The share of a round object still visible, from its contact with the image edge.

    A disk cut by a straight line shows a segment whose chord (the contact) over the square root
    of its area falls as more of the disk is visible; this inverts that relation.

    Args:
        contact_px: array of ints >= 0, each component's pixels on the image's edge.
        area_px: array of ints > 0 (same shape), each component's area in pixels.

    Returns:
        float array in (0, 1] of the same shape; 1 where a component does not touch the edge.

    Example (a pixelated half disk shows about half):
        >>> r = 40; yy, xx = np.mgrid[:r, -r:r]; half = (yy**2 + xx**2) < r**2
        >>> share = edge_visible_fraction(np.array([half[0].sum()]), np.array([half.sum()]))
        >>> round(float(share[0]), 2)
        0.52
    """
    contact = np.asarray(contact_px, np.float64)
    area = np.maximum(np.asarray(area_px, np.float64), 1.0)
    share = np.interp(contact / np.sqrt(area), _CONTACT_RATIO, _VISIBLE_SHARE)
    return np.where(contact > 0, share, 1.0)


def _edge_pixels(labels: np.ndarray) -> np.ndarray:
    """The labels on the image's edge, each edge pixel once (corners too)."""
    height, width = labels.shape
    if height <= 2 or width <= 2:
        return labels.ravel()  # every pixel lies on the edge
    return np.concatenate([labels[0], labels[-1], labels[1:-1, 0], labels[1:-1, -1]])


def _edge_cut(labels: np.ndarray, areas: np.ndarray, visible: float, max_size: int) -> np.ndarray:
    """Which labels to keep after dropping edge-cut components (see the module's step 6)."""
    contact = np.bincount(_edge_pixels(labels), minlength=len(areas))
    cut = edge_visible_fraction(contact, areas) < visible
    if max_size > 0:
        cut &= areas < max_size
    return ~cut


def _keep_labels(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    keep[0] = False
    return keep[labels]


def _to_binary(array: np.ndarray, threshold: float) -> np.ndarray:
    if array.dtype == bool:
        return array.copy()  # a copy, so the caller's mask is never changed or aliased
    non_finite = int(np.count_nonzero(~np.isfinite(array)))
    if non_finite:
        raise ValueError(
            "`probabilities_or_mask` must be finite probabilities in [0, 1]. "
            f"Received: {non_finite} nan or inf values"
        )
    low, high = array.min(), array.max()
    # Blended or resized maps may overshoot [0, 1] by float rounding; allow that much.
    if low < -1e-3 or high > 1 + 1e-3:
        raise ValueError(
            "`probabilities_or_mask` must hold probabilities in [0, 1]. "
            f"Received: values in [{low}, {high}]"
        )
    return array > threshold


def postprocess(
    probabilities_or_mask: np.ndarray,
    *,
    threshold: float = 0.5,
    opening: int = 0,
    closing: int = 0,
    fill_holes: bool = False,
    min_size: int = 0,
    edge_visible: float = 0.0,
    edge_max_size: int = 0,
    keep_largest: bool = False,
) -> np.ndarray:
    """Threshold a probability map and clean the mask; steps run in the module's fixed order.

    Args:
        probabilities_or_mask: float array (H, W) or (H, W, 1) of probabilities in [0, 1], a bool
            mask (H, W) used as is, or float (H, W, C>1) class probabilities (argmax, see Returns).
        threshold: float in [0, 1], default 0.5. Foreground is ``probability > threshold``.
        opening: int in [0, 255], default 0 (off). Width in px of the elliptical opening kernel.
        closing: int in [0, 255], default 0 (off). Width in px of the elliptical closing kernel.
        fill_holes: bool, default False. Fill background regions enclosed by the mask.
        min_size: int >= 0, default 0 (off). Drop components with fewer pixels than this.
        edge_visible: float in [0, 1], default 0 (off). Drop components that touch the image's
            edge and show less than this share of a round object (0.5: less than half).
        edge_max_size: int >= 0, default 0 (no limit). Judge only edge components smaller than
            this many pixels (about one whole object, so that clusters stay); needs
            ``edge_visible``.
        keep_largest: bool, default False. Keep only the largest connected component.

    Returns:
        bool array (H, W); for multi-class input, the uint8 argmax label map (H, W).

    Raises:
        TypeError: the input is not float or bool, or an option has the wrong type.
        ValueError: an option is out of range, probabilities are outside [0, 1] or nan, or a
            binary-only option is set for multi-class input.

    Example:
        >>> p = np.zeros((9, 9)); p[2:7, 2:7] = 0.9; p[4, 4] = 0.1; p[0, 8] = 0.8
        >>> mask = postprocess(p, fill_holes=True, min_size=2)
        >>> int(mask.sum()), bool(mask[4, 4]), bool(mask[0, 8])
        (25, True, False)
    """
    validate_range(threshold, "threshold", low=0, high=1)
    options = validate_postprocess_options(
        {
            "opening": opening,
            "closing": closing,
            "fill_holes": fill_holes,
            "min_size": min_size,
            "edge_visible": edge_visible,
            "edge_max_size": edge_max_size,
            "keep_largest": keep_largest,
        }
    )
    fill_holes, keep_largest = options["fill_holes"], options["keep_largest"]
    array = np.asarray(probabilities_or_mask)
    if array.dtype != bool and not np.issubdtype(array.dtype, np.floating):
        raise TypeError(
            "`probabilities_or_mask` must be float probabilities or a bool mask. For a 0/255 "
            "mask pass `mask > 0`; for 8-bit probabilities pass `array / 255`. "
            f"Received: dtype {array.dtype}"
        )
    if array.ndim == 3 and array.shape[2] > 1 and array.dtype != bool:
        changed = {k: v for k, v in options.items() if v != POSTPROCESS_DEFAULTS[k]}
        if changed or array.shape[2] > 256:
            raise ValueError(
                "Multi-class probabilities (H, W, C) give an argmax label map with at most 256 "
                f"classes; {', '.join(POSTPROCESS_DEFAULTS)} apply to binary masks only. "
                f"Received: shape={array.shape}, options={changed}"
            )
        return np.argmax(array, axis=2).astype(np.uint8)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(
            "`probabilities_or_mask` must be (H, W), (H, W, 1) or (H, W, C). "
            f"Received: shape={array.shape}"
        )

    mask = _to_binary(array, threshold)
    if opening > 1:
        mask = cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_OPEN, _ellipse(opening)) > 0
    if closing > 1:
        mask = cv2.morphologyEx(mask.view(np.uint8), cv2.MORPH_CLOSE, _ellipse(closing)) > 0
    if fill_holes:
        mask = _fill_holes(mask)
    if min_size > 1 or edge_visible > 0 or keep_largest:
        labels, areas = _components(mask)
        keep = areas >= min_size
        if edge_visible > 0:
            keep &= _edge_cut(labels, areas, edge_visible, edge_max_size)
        if keep_largest and keep[1:].any():
            largest = 1 + int(np.argmax(np.where(keep[1:], areas[1:], -1)))
            keep = np.zeros(len(areas), bool)
            keep[largest] = True
        mask = _keep_labels(labels, keep)
    return mask


def component_stats(mask: np.ndarray) -> dict[str, int | float]:
    """Area and connected-component summary of a mask (8-connectivity), as the app shows it.

    Args:
        mask: bool array (H, W), or an integer label map where nonzero is foreground.

    Returns:
        dict with ``area_px`` (int), ``area_fraction`` (float in [0, 1]), ``n_components`` (int)
        and ``largest_component_px`` (int, 0 for an empty mask).

    Raises:
        TypeError: the mask is neither bool nor integer.
        ValueError: the mask is not 2-D.

    Example:
        >>> m = np.zeros((4, 6), bool); m[0, 0] = True; m[2:4, 3:6] = True
        >>> stats = component_stats(m)
        >>> stats["area_px"], stats["n_components"], stats["largest_component_px"]
        (7, 2, 6)
    """
    array = np.asarray(mask)
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(
            "`mask` must be a bool mask or an integer label map; threshold probabilities first "
            f"with postprocess(). Received: dtype {array.dtype}"
        )
    if array.ndim != 2 or array.size == 0:
        raise ValueError(
            f"`mask` must be a non-empty 2-D array (H, W). Received: shape={array.shape}"
        )
    foreground = np.ascontiguousarray(array != 0)
    _, areas = _components(foreground)
    area = int(areas[1:].sum())
    return {
        "area_px": area,
        "area_fraction": area / foreground.size,
        "n_components": len(areas) - 1,
        "largest_component_px": int(areas[1:].max()) if len(areas) > 1 else 0,
    }
