"""Per-image segmentation metrics, macro means, and threshold curves for binary masks.

All overlap metrics come from the confusion counts (TP, FP, FN, TN) of two boolean HxW masks and
follow the official ISIC challenge scorer (``isic-challenge-scoring``, ``metrics.binary_*``); a test
checks agreement to 1e-6 on real ISIC 2017 masks.

Conventions for empty masks (the ISIC scorer's rule: a ratio whose denominator is 0 scores 1.0):
    - dice, jaccard: 1.0 when prediction and ground truth are both empty; 0.0 when only one is.
    - sensitivity (recall): 1.0 when the ground truth is empty (no positives to find).
    - specificity: 1.0 when the ground truth is all foreground (no negatives).
    - precision: 1.0 when the prediction is empty (nothing claimed, nothing wrong).
    - threshold_jaccard: jaccard, counted as 0.0 when below 0.65 (ISIC 2017 ranking metric).
    - hd95: 0.0 when both masks are empty; ``nan`` when exactly one is (no boundary to measure
      against). :func:`mean_metrics` skips nan with ``nanmean``; :func:`metric_counts` reports how
      many images each mean covers.

hd95 is the symmetric 95th-percentile Hausdorff distance in pixels between mask boundaries:
``max(p95(d(A→B)), p95(d(B→A)))`` over boundary pixels (the MONAI definition). A boundary pixel is
a foreground pixel with a 4-neighbour in the background; outside the image counts as background,
so a mask touching the image edge has a boundary there too. Distances are exact Euclidean, from
OpenCV ``cv2.distanceTransform(DIST_L2, DIST_MASK_PRECISE)``.

Masks may be bool, integer 0/1 or 0/255 (PNG masks as read), or float 0.0/1.0; probabilities must
be thresholded first (``tiledseg.postprocess``). Thresholds use ``probability > threshold``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from tiledseg.errors import MaskSizeError

__all__ = [
    "ISIC_JACCARD_THRESHOLD",
    "METRIC_NAMES",
    "ConfusionCounts",
    "accuracy",
    "confusion_counts",
    "dice",
    "dice_vs_threshold",
    "hd95",
    "jaccard",
    "mean_metrics",
    "metric_counts",
    "precision",
    "precision_recall_curve",
    "segmentation_metrics",
    "sensitivity",
    "specificity",
    "threshold_jaccard",
]

METRIC_NAMES = (
    "dice",
    "jaccard",
    "threshold_jaccard",
    "sensitivity",
    "specificity",
    "accuracy",
    "precision",
    "hd95",
)
ISIC_JACCARD_THRESHOLD = 0.65
_CURVE_CHUNK = 1 << 22


def _ratio(numerator: float, denominator: float) -> float:
    # The ISIC scorer's convention: an undefined ratio (0/0) is a "freebie" 1.0.
    return 1.0 if denominator == 0 else float(numerator) / float(denominator)


@dataclass(frozen=True)
class ConfusionCounts:
    """Pixel counts of a binary prediction against ground truth, with the metrics they give.

    Args:
        tp: int, foreground in both.
        fp: int, foreground in the prediction only.
        fn: int, foreground in the ground truth only.
        tn: int, background in both.

    Example:
        >>> c = ConfusionCounts(tp=3, fp=1, fn=1, tn=5)
        >>> c.dice(), c.jaccard()
        (0.75, 0.6)
    """

    tp: int
    fp: int
    fn: int
    tn: int

    def dice(self) -> float:
        return _ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn)

    def jaccard(self) -> float:
        return _ratio(self.tp, self.tp + self.fp + self.fn)

    def threshold_jaccard(self, threshold: float = ISIC_JACCARD_THRESHOLD) -> float:
        value = self.jaccard()
        return value if value >= threshold else 0.0

    def sensitivity(self) -> float:
        return _ratio(self.tp, self.tp + self.fn)

    def specificity(self) -> float:
        return _ratio(self.tn, self.tn + self.fp)

    def accuracy(self) -> float:
        return _ratio(self.tp + self.tn, self.tp + self.fp + self.fn + self.tn)

    def precision(self) -> float:
        return _ratio(self.tp, self.tp + self.fp)


def _as_mask(mask: np.ndarray, name: str) -> np.ndarray:
    """Return a 2-D bool view of a bool-like mask, or raise saying what was wrong."""
    mask = np.asarray(mask)
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[..., 0]
    if mask.ndim != 2 or mask.size == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 2-D mask (H, W) or (H, W, 1). "
            f"Received: {name}.shape={mask.shape}"
        )
    if mask.dtype == bool:
        return mask
    if np.issubdtype(mask.dtype, np.integer):
        top = mask.max()
        if mask.min() >= 0 and (top <= 1 or (top == 255 and np.all((mask == 0) | (mask == 255)))):
            return mask > 0
    elif np.issubdtype(mask.dtype, np.floating) and np.all((mask == 0) | (mask == 1)):
        return mask > 0
    raise ValueError(
        f"`{name}` must be a binary mask: bool, 0/1 or 0/255 integers, or 0.0/1.0 floats. "
        "Threshold probabilities first, e.g. tiledseg.postprocess.postprocess(probabilities). "
        f"Received: {name} with dtype {mask.dtype} and values in [{mask.min()}, {mask.max()}]"
    )


def _as_mask_pair(pred: np.ndarray, truth: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    pred_mask, truth_mask = _as_mask(pred, "pred"), _as_mask(truth, "truth")
    if pred_mask.shape != truth_mask.shape:
        raise MaskSizeError(
            "`pred` and `truth` must have the same height and width. "
            f"Received: pred.shape={np.shape(pred)}, truth.shape={np.shape(truth)}"
        )
    return pred_mask, truth_mask


def confusion_counts(pred: np.ndarray, truth: np.ndarray) -> ConfusionCounts:
    """Count TP, FP, FN and TN pixels of a predicted mask against the ground truth.

    Args:
        pred: array (H, W), the predicted mask (bool, 0/1, 0/255 or 0.0/1.0).
        truth: array (H, W), the ground-truth mask, same forms.

    Returns:
        ConfusionCounts with plain Python ints.

    Raises:
        MaskSizeError: the two masks differ in height or width (both shapes are named).
        ValueError: a mask is not 2-D or not binary.

    Example:
        >>> confusion_counts(np.array([[1, 1], [0, 0]]), np.array([[1, 0], [1, 0]]))
        ConfusionCounts(tp=1, fp=1, fn=1, tn=1)
    """
    pred_mask, truth_mask = _as_mask_pair(pred, truth)
    tp = int(np.count_nonzero(pred_mask & truth_mask))
    n_pred = int(np.count_nonzero(pred_mask))
    n_truth = int(np.count_nonzero(truth_mask))
    return ConfusionCounts(
        tp=tp, fp=n_pred - tp, fn=n_truth - tp, tn=pred_mask.size - n_pred - n_truth + tp
    )


def dice(pred: np.ndarray, truth: np.ndarray) -> float:
    """Dice coefficient 2TP / (2TP + FP + FN); 1.0 when both masks are empty."""
    return confusion_counts(pred, truth).dice()


def jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    """Jaccard index (IoU) TP / (TP + FP + FN); 1.0 when both masks are empty."""
    return confusion_counts(pred, truth).jaccard()


def threshold_jaccard(pred: np.ndarray, truth: np.ndarray) -> float:
    """ISIC 2017 threshold Jaccard: the Jaccard index, or 0.0 when it is below 0.65."""
    return confusion_counts(pred, truth).threshold_jaccard()


def sensitivity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Sensitivity (recall) TP / (TP + FN); 1.0 when the ground truth is empty."""
    return confusion_counts(pred, truth).sensitivity()


def specificity(pred: np.ndarray, truth: np.ndarray) -> float:
    """Specificity TN / (TN + FP); 1.0 when the ground truth has no background."""
    return confusion_counts(pred, truth).specificity()


def accuracy(pred: np.ndarray, truth: np.ndarray) -> float:
    """Pixel accuracy (TP + TN) / all pixels."""
    return confusion_counts(pred, truth).accuracy()


def precision(pred: np.ndarray, truth: np.ndarray) -> float:
    """Precision TP / (TP + FP); 1.0 when the prediction is empty."""
    return confusion_counts(pred, truth).precision()


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Foreground pixels with a 4-neighbour in the background; outside the image is background."""
    cross = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
    eroded = cv2.erode(
        np.ascontiguousarray(mask).view(np.uint8),
        cross,
        borderType=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return mask & ~eroded.view(bool)


def _directed_p95(from_boundary: np.ndarray, to_boundary: np.ndarray) -> float:
    # distanceTransform measures each pixel's distance to the nearest zero pixel.
    distance = cv2.distanceTransform(
        (~to_boundary).view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE
    )
    return float(np.percentile(distance[from_boundary], 95))


def hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """Symmetric 95th-percentile Hausdorff distance between mask boundaries, in pixels.

    Args:
        pred: array (H, W), the predicted mask.
        truth: array (H, W), the ground-truth mask.

    Returns:
        float: ``max(p95(pred→truth), p95(truth→pred))`` over boundary pixels; 0.0 when both
        masks are empty, ``nan`` when exactly one is.

    Raises:
        MaskSizeError: the masks differ in height or width.

    Example:
        >>> a = np.zeros((32, 32), bool); a[8:24, 8:24] = True
        >>> hd95(a, np.roll(a, 3, axis=1))
        3.0
    """
    pred_mask, truth_mask = _as_mask_pair(pred, truth)
    pred_any, truth_any = bool(pred_mask.any()), bool(truth_mask.any())
    if not (pred_any or truth_any):
        return 0.0
    if not (pred_any and truth_any):
        return math.nan
    pred_edge, truth_edge = _boundary(pred_mask), _boundary(truth_mask)
    # Every boundary pixel lies in the union's bounding box, and Euclidean distances between
    # pixels inside it do not depend on what lies outside, so cropping is exact and much faster.
    rows = np.flatnonzero((pred_edge | truth_edge).any(axis=1))
    cols = np.flatnonzero((pred_edge | truth_edge).any(axis=0))
    crop = (slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1))
    pred_edge, truth_edge = pred_edge[crop], truth_edge[crop]
    return max(_directed_p95(pred_edge, truth_edge), _directed_p95(truth_edge, pred_edge))


def segmentation_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Every metric in :data:`METRIC_NAMES` for one image.

    Args:
        pred: array (H, W), the predicted mask.
        truth: array (H, W), the ground-truth mask.

    Returns:
        dict mapping each name in ``METRIC_NAMES`` to a float (hd95 may be nan, see module doc).

    Raises:
        MaskSizeError: the masks differ in height or width.

    Example:
        >>> m = np.zeros((8, 8), bool); m[2:6, 2:6] = True
        >>> segmentation_metrics(m, m)["dice"]
        1.0
    """
    pred_mask, truth_mask = _as_mask_pair(pred, truth)
    counts = confusion_counts(pred_mask, truth_mask)
    return {
        "dice": counts.dice(),
        "jaccard": counts.jaccard(),
        "threshold_jaccard": counts.threshold_jaccard(),
        "sensitivity": counts.sensitivity(),
        "specificity": counts.specificity(),
        "accuracy": counts.accuracy(),
        "precision": counts.precision(),
        "hd95": hd95(pred_mask, truth_mask),
    }


def _columns(rows: Iterable[Mapping[str, object]]) -> dict[str, list[float]]:
    columns: dict[str, list[float]] = {}
    for row in rows:
        for name, value in row.items():
            # Rows may carry labels such as an image id; only numbers are averaged.
            if isinstance(value, (int, float, np.number)) and not isinstance(value, bool):
                columns.setdefault(name, []).append(float(value))
    return columns


def mean_metrics(rows: Iterable[Mapping[str, object]]) -> dict[str, float]:
    """Macro means over images, skipping nan (e.g. hd95 where one mask is empty).

    Args:
        rows: iterable of per-image dicts, e.g. from :func:`segmentation_metrics`; entries that
            are not numbers (an image id, say) are left out.

    Returns:
        dict name -> mean over the images where the value is not nan; nan when none has one.

    Example:
        >>> mean_metrics([{"dice": 1.0, "hd95": float("nan")}, {"dice": 0.5, "hd95": 2.0}])
        {'dice': 0.75, 'hd95': 2.0}
    """
    means = {}
    for name, values in _columns(rows).items():
        finite = [value for value in values if not math.isnan(value)]
        means[name] = float(np.mean(finite)) if finite else math.nan
    return means


def metric_counts(rows: Iterable[Mapping[str, object]]) -> dict[str, int]:
    """How many images each macro mean covers: per metric, the count of non-nan values.

    Example:
        >>> metric_counts([{"dice": 1.0, "hd95": float("nan")}, {"dice": 0.5, "hd95": 2.0}])
        {'dice': 2, 'hd95': 1}
    """
    return {
        name: sum(not math.isnan(value) for value in values)
        for name, values in _columns(rows).items()
    }


def _counts_vs_threshold(
    probabilities: np.ndarray, truth: np.ndarray, thresholds: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """TP, FP, FN, TN per threshold for ``probabilities > threshold``, in one pass."""
    probs = np.asarray(probabilities)
    if probs.ndim == 3 and probs.shape[2] == 1:
        probs = probs[..., 0]
    if probs.ndim != 2 or not np.issubdtype(probs.dtype, np.floating):
        raise ValueError(
            "`probabilities` must be a float array (H, W) or (H, W, 1). "
            f"Received: probabilities with dtype {probs.dtype} and shape {probs.shape}"
        )
    if not np.isfinite(probs).all():
        raise ValueError("`probabilities` must be finite; found nan or inf values.")
    truth_mask = _as_mask(truth, "truth")
    if probs.shape != truth_mask.shape:
        raise MaskSizeError(
            "`probabilities` and `truth` must have the same height and width. "
            f"Received: probabilities.shape={np.shape(probabilities)}, "
            f"truth.shape={np.shape(truth)}"
        )
    levels = np.asarray(thresholds, dtype=np.float64)
    if levels.ndim != 1 or levels.size == 0 or not np.all(np.isfinite(levels)):
        raise ValueError(
            "`thresholds` must be a non-empty 1-D sequence of finite numbers. "
            f"Received: thresholds={thresholds!r}"
        )
    order = np.argsort(levels, kind="stable")
    sorted_levels, flat_probs, flat_truth = levels[order], probs.ravel(), truth_mask.ravel()
    histogram = np.zeros(2 * (levels.size + 1), dtype=np.int64)
    # Chunks bound the temporary index arrays on 7K images; the data is still read once.
    for start in range(0, flat_probs.size, _CURVE_CHUNK):
        chunk = slice(start, start + _CURVE_CHUNK)
        # bin = how many thresholds lie strictly below p: the pixel is positive at exactly those.
        bins = np.searchsorted(sorted_levels, flat_probs[chunk], side="left")
        histogram += np.bincount(bins * 2 + flat_truth[chunk], minlength=histogram.size)
    negatives, positives = histogram[0::2], histogram[1::2]
    # Pixels with bin > k are predicted positive at sorted threshold k.
    pred_pos = np.cumsum(positives[::-1])[::-1][1:]
    pred_neg = np.cumsum(negatives[::-1])[::-1][1:]
    tp, fp = np.empty_like(pred_pos), np.empty_like(pred_neg)
    tp[order], fp[order] = pred_pos, pred_neg
    return tp, fp, positives.sum() - tp, negatives.sum() - fp


def dice_vs_threshold(
    probabilities: np.ndarray, truth: np.ndarray, thresholds: np.ndarray | Sequence[float]
) -> np.ndarray:
    """Dice of ``probabilities > t`` against ``truth`` for every threshold t, in one pass.

    Args:
        probabilities: float array (H, W) or (H, W, 1).
        truth: array (H, W), the ground-truth mask.
        thresholds: 1-D sequence of thresholds, any order.

    Returns:
        float64 array aligned with ``thresholds``.

    Raises:
        MaskSizeError: the arrays differ in height or width.
        ValueError: bad dtype, shape or thresholds.

    Example:
        >>> p = np.array([[0.2, 0.9]]); t = np.array([[0, 1]])
        >>> dice_vs_threshold(p, t, [0.1, 0.5, 0.95]).tolist()
        [0.6666666666666666, 1.0, 0.0]
    """
    tp, fp, fn, _ = _counts_vs_threshold(probabilities, truth, thresholds)
    denominator = 2 * tp + fp + fn
    return np.where(denominator == 0, 1.0, 2 * tp / np.maximum(denominator, 1))


def precision_recall_curve(
    probabilities: np.ndarray, truth: np.ndarray, thresholds: np.ndarray | Sequence[float]
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel precision and recall of ``probabilities > t`` for every threshold t, in one pass.

    Args:
        probabilities: float array (H, W) or (H, W, 1).
        truth: array (H, W), the ground-truth mask.
        thresholds: 1-D sequence of thresholds, any order.

    Returns:
        ``(precision, recall)``: float64 arrays aligned with ``thresholds``. Precision is 1.0
        where nothing is predicted; recall is 1.0 where the ground truth is empty.

    Example:
        >>> p = np.array([[0.2, 0.9]]); t = np.array([[0, 1]])
        >>> [a.tolist() for a in precision_recall_curve(p, t, [0.1, 0.5])]
        [[0.5, 1.0], [1.0, 1.0]]
    """
    tp, fp, fn, _ = _counts_vs_threshold(probabilities, truth, thresholds)
    precision_values = np.where(tp + fp == 0, 1.0, tp / np.maximum(tp + fp, 1))
    recall_values = np.where(tp + fn == 0, 1.0, tp / np.maximum(tp + fn, 1))
    return precision_values, recall_values
