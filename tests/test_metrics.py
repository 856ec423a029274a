"""Tests for tiledseg.metrics: known answers, brute-force references, the official ISIC scorer."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from scipy import ndimage
from scipy.spatial.distance import cdist

from tiledseg import metrics
from tiledseg.errors import MaskSizeError

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
ISIC_TOOL = REPO / "tests" / "tools" / "isic_score.py"
SCORER_METRICS = ("dice", "jaccard", "threshold_jaccard", "sensitivity", "specificity", "accuracy")


def _square(shape=(32, 32), top=8, left=8, size=16) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + size, left : left + size] = True
    return mask


def _read_mask(path: Path) -> np.ndarray:
    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert mask is not None, path
    return mask > 127


def _isic_masks(folder: str) -> list[Path]:
    masks = sorted((DATA / "isic2017" / folder / "masks").glob("*.png"))
    if not masks:
        pytest.skip(f"real data not found: {DATA / 'isic2017' / folder / 'masks'} (see README)")
    return masks


def _brute_hd95(pred: np.ndarray, truth: np.ndarray) -> float:
    """Reference: scipy boundaries (image edge is background) and all-pairs distances."""
    cross = ndimage.generate_binary_structure(2, 1)

    def edge(mask):
        return np.argwhere(mask & ~ndimage.binary_erosion(mask, cross, border_value=0))

    distances = cdist(edge(pred), edge(truth))
    return max(np.percentile(distances.min(1), 95), np.percentile(distances.min(0), 95))


# ---------------------------------------------------------------- confusion counts and ratios


def test_counts_and_ratios_known_answer():
    pred = np.array([[1, 1, 1, 0], [1, 0, 0, 0]], bool)
    truth = np.array([[1, 1, 0, 0], [0, 0, 1, 0]], bool)
    counts = metrics.confusion_counts(pred, truth)
    assert counts == metrics.ConfusionCounts(tp=2, fp=2, fn=1, tn=3)
    row = metrics.segmentation_metrics(pred, truth)
    assert tuple(row) == metrics.METRIC_NAMES
    assert row["dice"] == pytest.approx(4 / 7)
    assert row["jaccard"] == pytest.approx(2 / 5)
    assert row["threshold_jaccard"] == 0.0  # 0.4 < 0.65
    assert row["sensitivity"] == pytest.approx(2 / 3)
    assert row["specificity"] == pytest.approx(3 / 5)
    assert row["accuracy"] == pytest.approx(5 / 8)
    assert row["precision"] == pytest.approx(2 / 4)
    for name in metrics.METRIC_NAMES:
        assert getattr(metrics, name)(pred, truth) == pytest.approx(row[name], nan_ok=True)


def test_threshold_jaccard_keeps_values_at_or_above_065():
    truth = np.zeros((1, 100), bool)
    truth[0, :100] = True
    pred = truth.copy()
    pred[0, 65:] = False  # jaccard exactly 0.65
    assert metrics.threshold_jaccard(pred, truth) == pytest.approx(0.65)
    pred[0, 64] = False
    assert metrics.threshold_jaccard(pred, truth) == 0.0


@pytest.mark.parametrize(
    ("pred_any", "truth_any", "expected"),
    [
        (False, False, dict(dice=1, jaccard=1, sensitivity=1, specificity=1, precision=1, hd95=0)),
        (True, False, dict(dice=0, jaccard=0, sensitivity=1, precision=0, hd95=math.nan)),
        (False, True, dict(dice=0, jaccard=0, sensitivity=0, specificity=1, precision=1)),
    ],
)
def test_empty_mask_conventions(pred_any, truth_any, expected):
    square = _square()
    pred = square if pred_any else np.zeros_like(square)
    truth = square if truth_any else np.zeros_like(square)
    row = metrics.segmentation_metrics(pred, truth)
    for name, value in expected.items():
        assert row[name] == pytest.approx(value, nan_ok=True), name
    assert row["hd95"] == 0.0 if not (pred_any or truth_any) else math.isnan(row["hd95"])


def test_full_prediction_specificity_is_zero_and_full_truth_is_freebie():
    full = np.ones((10, 10), bool)
    assert metrics.specificity(full, _square((10, 10), 2, 2, 4)) == 0.0
    assert metrics.specificity(full, full) == 1.0


def test_mask_forms_are_accepted():
    square = _square()
    expected = metrics.segmentation_metrics(square, np.roll(square, 2, axis=0))
    for form in (square.astype(np.uint8), square.astype(np.uint8) * 255, square.astype(float)):
        row = metrics.segmentation_metrics(form[..., None], np.roll(square, 2, axis=0))
        assert row == expected


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(MaskSizeError, match=r"pred.shape=\(32, 32\), truth.shape=\(32, 31\)"):
        metrics.dice(_square(), np.zeros((32, 31), bool))


@pytest.mark.parametrize(
    "bad",
    [np.full((4, 4), 0.5), np.full((4, 4), 3, np.uint8), np.zeros((4, 4, 3), bool), np.zeros(4)],
)
def test_non_binary_or_wrong_rank_masks_are_rejected(bad):
    with pytest.raises(ValueError, match="`pred` must be"):
        metrics.confusion_counts(bad, np.zeros((4, 4), bool))


# ---------------------------------------------------------------- hd95


def test_hd95_of_a_shifted_square_is_the_shift():
    square = _square()
    assert metrics.hd95(square, np.roll(square, 3, axis=1)) == pytest.approx(3.0)
    assert metrics.hd95(square, square) == 0.0


def test_hd95_matches_brute_force_on_random_shapes():
    rng = np.random.default_rng(7)
    for _ in range(15):
        pred, truth = np.zeros((60, 70), np.uint8), np.zeros((60, 70), np.uint8)
        cv2.circle(pred, [int(v) for v in rng.integers(0, 60, 2)], int(rng.integers(3, 25)), 1, -1)
        axes = [int(v) for v in rng.integers(3, 30, 2)]
        cv2.ellipse(truth, [int(v) for v in rng.integers(0, 60, 2)], axes, 30, 0, 360, 1, -1)
        truth[rng.random(truth.shape) > 0.997] = 1  # isolated specks far from the lesion
        expected = _brute_hd95(pred > 0, truth > 0)
        assert metrics.hd95(pred, truth) == pytest.approx(expected, abs=1e-4)
        assert metrics.hd95(truth, pred) == pytest.approx(expected, abs=1e-4)


def test_hd95_matches_brute_force_on_real_masks():
    for path in _isic_masks("valid")[:3]:
        truth = _read_mask(path)
        pred = np.roll(cv2.dilate(truth.view(np.uint8), np.ones((9, 9), np.uint8)) > 0, 5, axis=1)
        assert metrics.hd95(pred, truth) == pytest.approx(_brute_hd95(pred, truth), abs=1e-4)


def test_hd95_mask_touching_the_image_edge_has_a_boundary_there():
    full = np.ones((20, 20), bool)
    inner = _square((20, 20), 5, 5, 10)
    # The farthest full-mask boundary pixel (a corner) is 5*sqrt(2) from the inner square.
    assert metrics.hd95(full, inner) == pytest.approx(_brute_hd95(full, inner))
    assert metrics.hd95(full, inner) > 4.0


# ---------------------------------------------------------------- means


def test_mean_metrics_skips_nan_and_counts_report_coverage():
    rows = [
        metrics.segmentation_metrics(_square(), _square()),
        metrics.segmentation_metrics(_square(), np.zeros((32, 32), bool)),
    ]
    means = metrics.mean_metrics(rows)
    assert means["dice"] == pytest.approx(0.5)
    assert means["hd95"] == 0.0  # the nan row is skipped, not averaged as 0
    counts = metrics.metric_counts(rows)
    assert counts["dice"] == 2 and counts["hd95"] == 1
    assert math.isnan(metrics.mean_metrics([{"hd95": math.nan}])["hd95"])
    assert metrics.mean_metrics([]) == {}
    labelled = [{"image_id": "ISIC_0000001", "dice": 1.0}, {"image_id": "b", "dice": 0.0}]
    assert metrics.mean_metrics(labelled) == {"dice": 0.5}


# ---------------------------------------------------------------- threshold curves


def test_curves_match_thresholding_one_threshold_at_a_time():
    rng = np.random.default_rng(3)
    probabilities = rng.random((40, 50)).astype(np.float32)
    probabilities[:5] = 0.5  # ties exactly at a threshold: `>` leaves them out
    truth = (probabilities + rng.normal(0, 0.2, probabilities.shape)) > 0.55
    thresholds = [0.9, 0.0, 0.5, 0.25, 1.0, 0.5]  # unsorted, with a duplicate
    assert metrics.dice_vs_threshold(probabilities, truth, np.array(thresholds)).shape == (6,)
    dice = metrics.dice_vs_threshold(probabilities, truth, thresholds)
    precision, recall = metrics.precision_recall_curve(probabilities[..., None], truth, thresholds)
    for i, threshold in enumerate(thresholds):
        pred = probabilities > threshold
        assert dice[i] == pytest.approx(metrics.dice(pred, truth), abs=1e-12)
        assert precision[i] == pytest.approx(metrics.precision(pred, truth), abs=1e-12)
        assert recall[i] == pytest.approx(metrics.sensitivity(pred, truth), abs=1e-12)
    assert precision[thresholds.index(1.0)] == 1.0  # nothing predicted above 1.0


def test_curves_validate_inputs():
    with pytest.raises(ValueError, match="`thresholds`"):
        metrics.dice_vs_threshold(np.zeros((4, 4)), np.zeros((4, 4), bool), [])
    with pytest.raises(ValueError, match="float array"):
        metrics.dice_vs_threshold(np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), [0.5])
    with pytest.raises(ValueError, match="finite"):
        metrics.dice_vs_threshold(np.full((4, 4), np.nan), np.zeros((4, 4), bool), [0.5])
    with pytest.raises(MaskSizeError, match=r"probabilities\.shape"):
        metrics.precision_recall_curve(np.zeros((4, 4)), np.zeros((4, 5), bool), [0.5])


# ---------------------------------------------------------------- the official ISIC scorer


def _scorer_python() -> Path:
    python = Path(os.environ.get("ISIC_SCORING_PYTHON", REPO / ".venv-isic" / "bin" / "python"))
    if not python.exists():
        message = (
            f"ISIC scorer interpreter not found at {python}. Create it with: python -m venv "
            ".venv-isic && .venv-isic/bin/pip install isic-challenge-scoring==5.6.0 "
            "(or point ISIC_SCORING_PYTHON at one)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return python


def _perturbations(truth: np.ndarray, index: int) -> np.ndarray:
    """Realistic prediction errors: eroded, dilated, shifted, fragmented, empty, full."""
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * (index % 4) + 5,) * 2)
    as_u8 = truth.view(np.uint8)
    kind = index % 7
    if kind == 0:
        return cv2.erode(as_u8, disk) > 0
    if kind == 1:
        return cv2.dilate(as_u8, disk) > 0
    if kind == 2:
        return np.roll(truth, (index % 5 + 2, -(index % 9) - 3), axis=(0, 1))
    if kind == 3:  # under-segmentation plus a false-positive blob
        pred = cv2.erode(as_u8, disk, iterations=3) > 0
        pred[: truth.shape[0] // 6, : truth.shape[1] // 6] = True
        return pred
    if kind == 4:
        return np.roll(cv2.dilate(as_u8, disk, iterations=4) > 0, truth.shape[1] // 5, axis=1)
    return np.zeros_like(truth) if kind == 5 else np.ones_like(truth)


def test_agrees_with_official_isic_scorer_on_real_masks(tmp_path):
    valid = _isic_masks("valid")
    fullres = sorted(_isic_masks("fullres"), key=lambda path: path.stat().st_size)[:3]
    python = _scorer_python()
    pairs = []
    for index, path in enumerate(valid + fullres):
        truth = _read_mask(path)
        pairs.append((truth, _perturbations(truth, index)))
    shape = pairs[0][0].shape
    pairs.append((np.zeros(shape, bool), pairs[0][0]))  # empty ground truth
    pairs.append((np.zeros(shape, bool), np.zeros(shape, bool)))  # both empty
    truth_dir, pred_dir = tmp_path / "truth", tmp_path / "pred"
    truth_dir.mkdir(), pred_dir.mkdir()
    ours = {}
    for number, (truth, pred) in enumerate(pairs):
        image_id = f"ISIC_{number + 9000000:07d}"
        cv2.imwrite(str(truth_dir / f"{image_id}_segmentation.png"), truth.view(np.uint8) * 255)
        cv2.imwrite(str(pred_dir / f"{image_id}.png"), pred.view(np.uint8) * 255)
        ours[image_id] = metrics.segmentation_metrics(pred, truth)

    completed = subprocess.run(
        [str(python), str(ISIC_TOOL), str(truth_dir), str(pred_dir)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    official = json.loads(completed.stdout)
    assert sorted(official["per_image"]) == sorted(ours)
    for image_id, theirs in official["per_image"].items():
        for name, value in theirs.items():
            assert ours[image_id][name] == pytest.approx(value, abs=1e-6), (image_id, name)
    our_means = metrics.mean_metrics(ours.values())
    for name in SCORER_METRICS:
        assert our_means[name] == pytest.approx(official["macro_average"][name], abs=1e-6), name
    # The pairs exercise both sides of the 0.65 cut and every empty-mask convention.
    jaccards = [row["jaccard"] for row in ours.values()]
    assert min(jaccards) < 0.65 < max(jaccards)
    assert sum(math.isnan(row["hd95"]) for row in ours.values()) >= 2


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
