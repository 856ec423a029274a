"""Tests for tiledseg.viz: colours in the right places, output sizes, previews of 7K images."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tiledseg import viz
from tiledseg.errors import MaskSizeError

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _gradient(height=40, width=60) -> np.ndarray:
    rows = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, 1)
    return np.dstack([rows, rows[:, ::-1], np.full_like(rows, 90)])


def _square(shape=(40, 60), top=10, left=20, size=16) -> np.ndarray:
    mask = np.zeros(shape, bool)
    mask[top : top + size, left : left + size] = True
    return mask


# ---------------------------------------------------------------- preview


@pytest.mark.parametrize(
    ("shape", "max_side", "expected"),
    [
        ((4608, 7168, 3), 1600, (1029, 1600, 3)),
        ((7168, 4608), 1600, (1600, 1029)),
        ((3000, 3000, 3), 999, (999, 999, 3)),
        ((5000, 3, 3), 100, (100, 1, 3)),
        ((100, 50, 3), 1600, (100, 50, 3)),
    ],
)
def test_preview_never_exceeds_max_side(shape, max_side, expected):
    out = viz.preview(np.zeros(shape, np.uint8), max_side)
    assert out.shape == expected and out.dtype == np.uint8
    assert max(out.shape[:2]) <= max_side


def test_preview_is_area_averaged_and_keeps_small_images():
    image = np.zeros((4, 4), np.uint8)
    image[:2, :2] = 200
    assert viz.preview(image, 2).tolist() == [[200, 0], [0, 0]]
    assert viz.preview(image, 4) is image
    mask = np.zeros((100, 100), bool)
    mask[:, :60] = True
    small = viz.preview(mask, 10)
    assert small.dtype == bool and small[:, :6].all() and not small[:, 6:].any()
    with pytest.raises(ValueError, match="`max_side` must be in"):
        viz.preview(image, 0)


def test_7k_image_previews_in_every_drawing_function():
    big = np.full((4608, 7168, 3), 128, np.uint8)
    mask = np.zeros(big.shape[:2], bool)
    mask[1000:3000, 2000:5000] = True
    expected = (1029, 1600, 3)
    assert viz.overlay(big, mask, max_side=1600).shape == expected
    assert viz.error_map(mask, np.roll(mask, 50, 1), image=big, max_side=1600).shape == expected
    assert viz.error_map(mask, mask, max_side=1600).shape == expected
    probabilities = np.zeros(big.shape[:2], np.float32)
    assert viz.heatmap(probabilities, max_side=1600).shape == expected
    tiles = [(0, 0, 2304, 3584), (2304, 3584, 2304, 3584)]
    assert viz.draw_tile_grid(big, tiles, max_side=1600).shape == expected
    assert viz.side_by_side([big, big]).shape == (1600, 2 * 2489 + 4, 3)
    assert big[0, 0].tolist() == [128, 128, 128], "inputs are never drawn on"


# ---------------------------------------------------------------- overlay


def test_overlay_tints_inside_and_outlines_the_edge():
    image, mask = _gradient(), _square()
    out = viz.overlay(image, mask, alpha=0.4, contour_color=(0, 0, 255), contour_thickness=1)
    assert out.shape == image.shape and out.dtype == np.uint8
    inside = (18, 28)
    blended = np.round(image[inside] * 0.6 + np.array([255, 64, 64]) * 0.4)
    assert out[inside].tolist() == blended.tolist()
    assert out[10, 20].tolist() == [0, 0, 255] and out[25, 35].tolist() == [0, 0, 255]
    assert np.array_equal(out[:9], image[:9]) and np.array_equal(out[:, :19], image[:, :19])
    plain = viz.overlay(image, mask, alpha=1.0, contour=False)
    assert (plain[mask] == [255, 64, 64]).all() and np.array_equal(plain[~mask], image[~mask])


def test_overlay_outlines_holes_and_accepts_grey_and_labels():
    mask = _square()
    mask[15:21, 25:31] = False  # a hole
    out = viz.overlay(np.zeros((40, 60), np.uint8), mask.astype(np.uint8) * 3, contour_thickness=1)
    assert out[15, 25].tolist() == [0, 0, 0]  # hole pixel stays untouched
    assert out[14, 27].tolist() == [255, 64, 64]  # hole rim is part of the outline


def test_overlay_on_a_preview_scales_the_mask():
    image = np.zeros((400, 600, 3), np.uint8)
    mask = np.zeros((400, 600), bool)
    mask[:, 300:] = True
    out = viz.overlay(image, mask, alpha=1.0, contour=False, max_side=60)
    assert out.shape == (40, 60, 3)
    assert (out[:, 30:] == [255, 64, 64]).all() and not out[:, :30].any()


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (dict(mask=np.zeros((40, 61), bool)), MaskSizeError, r"Received: mask.shape=\(40, 61\)"),
        (dict(mask=np.zeros((40, 60), np.float32)), TypeError, "threshold probabilities first"),
        (dict(alpha=1.5), ValueError, "`alpha` must be in"),
        (dict(color=(300, 0, 0)), ValueError, r"`color` must be 3 integers"),
        (dict(contour_thickness=0), ValueError, "`contour_thickness`"),
        (dict(image=np.zeros((40, 60, 3), np.float32)), TypeError, "`image` must be uint8"),
    ],
)
def test_overlay_validates_arguments(kwargs, error, message):
    arguments = dict(image=_gradient(), mask=_square())
    arguments.update(kwargs)
    image, mask = arguments.pop("image"), arguments.pop("mask")
    with pytest.raises(error, match=message):
        viz.overlay(image, mask, **arguments)


# ---------------------------------------------------------------- error map


def test_error_colors_are_distinct_rgb_triples():
    assert set(viz.ERROR_COLORS) == {"TP", "FP", "FN"}
    colors = list(viz.ERROR_COLORS.values())
    assert len(set(colors)) == 3
    assert all(len(c) == 3 and all(0 <= v <= 255 for v in c) for c in colors)


def test_error_map_colours_each_outcome():
    truth = _square()
    pred = np.roll(truth, 4, axis=1)
    out = viz.error_map(pred, truth)
    colors = viz.ERROR_COLORS
    assert out[15, 30].tolist() == list(colors["TP"])
    assert out[15, 37].tolist() == list(colors["FP"])  # right of the truth
    assert out[15, 21].tolist() == list(colors["FN"])  # left edge missed
    assert out[2, 2].tolist() == [0, 0, 0]
    counts = {name: int((out == color).all(axis=2).sum()) for name, color in colors.items()}
    assert counts == {"TP": 16 * 12, "FP": 16 * 4, "FN": 16 * 4}


def test_error_map_over_an_image_blends_and_keeps_true_negatives():
    image, truth = _gradient(), _square()
    pred = np.zeros_like(truth)
    out = viz.error_map(pred, truth, image=image, alpha=0.5)
    expected = np.round(image[truth] * 0.5 + np.array(viz.ERROR_COLORS["FN"]) * 0.5)
    assert np.array_equal(out[truth], expected.astype(np.uint8))
    assert np.array_equal(out[~truth], image[~truth])
    small = viz.error_map(pred, truth, image=image, max_side=30)
    assert small.shape == (20, 30, 3)
    with pytest.raises(MaskSizeError, match=r"image\.shape"):
        viz.error_map(pred, truth, image=image[:, :50])
    with pytest.raises(MaskSizeError, match=r"truth\.shape"):
        viz.error_map(pred, truth[:, :50])


# ---------------------------------------------------------------- heatmap


def test_heatmap_is_rgb_with_colormap_ends():
    probabilities = np.array([[0.0, 1.0]], np.float32)
    viridis = viz.heatmap(probabilities)
    assert viridis.dtype == np.uint8 and viridis.shape == (1, 2, 3)
    # viridis runs from dark purple (#440154) to yellow (#FDE725): RGB order, not BGR.
    assert np.abs(viridis[0, 0].astype(int) - [68, 1, 84]).max() <= 3
    assert np.abs(viridis[0, 1].astype(int) - [253, 231, 37]).max() <= 3
    jet = viz.heatmap(probabilities[..., None], colormap="jet")
    assert jet[0, 0, 2] > jet[0, 0, 0] and jet[0, 1, 0] > jet[0, 1, 2]  # blue low, red high
    ramp = np.linspace(0, 1, 400, dtype=np.float32)[None].repeat(200, 0)
    assert viz.heatmap(ramp, colormap="magma", max_side=100).shape == (50, 100, 3)


def test_heatmap_validates_input():
    with pytest.raises(ValueError, match="Did you mean 'viridis'"):
        viz.heatmap(np.zeros((2, 2)), colormap="virdis")
    with pytest.raises(ValueError, match=r"in \[0, 1\]. Received: values in \[1.5, 1.5\]"):
        viz.heatmap(np.full((2, 2), 1.5))
    with pytest.raises(ValueError, match="nan or inf"):
        viz.heatmap(np.full((2, 2), np.nan))
    assert viz.heatmap(np.full((2, 2), 1.0000001)).shape == (2, 2, 3)  # rounding overshoot
    with pytest.raises(ValueError, match="float array"):
        viz.heatmap(np.zeros((2, 2), np.uint8))


# ---------------------------------------------------------------- tile grid


def test_tile_grid_outlines_each_rectangle():
    image = np.zeros((20, 30, 3), np.uint8)
    out = viz.draw_tile_grid(image, [(0, 0, 10, 16), (8, 14, 12, 16)], color=(1, 2, 3))
    drawn = (out == [1, 2, 3]).all(axis=2)
    assert drawn[0, 0] and drawn[9, 15] and drawn[0, 15] and drawn[9, 0]
    assert drawn[8, 14] and drawn[19, 29]
    assert not drawn[4, 7] and not drawn[14, 22]  # interiors stay clear
    assert not image.any()


def test_tile_grid_scales_with_preview_and_reference_shape():
    image = np.zeros((1000, 2000, 3), np.uint8)
    tiles = [(0, 0, 500, 1000), (500, 1000, 500, 1000)]
    out = viz.draw_tile_grid(image, tiles, color=(9, 9, 9), max_side=200)
    drawn = (out == 9).all(axis=2)
    assert out.shape == (100, 200, 3)
    assert drawn[0, 0] and drawn[49, 99] and drawn[50, 100] and drawn[99, 199]
    # Rectangles at a model scale of 1/4 land on the same pixels of the full-size image.
    quarter = [(y // 4, x // 4, h // 4, w // 4) for y, x, h, w in tiles]
    same = viz.draw_tile_grid(
        image, quarter, color=(9, 9, 9), reference_shape=(250, 500), max_side=200
    )
    assert np.array_equal(same, out)
    with pytest.raises(ValueError, match="4 integers"):
        viz.draw_tile_grid(image, [(0, 0, 5)])
    with pytest.raises(ValueError, match=">= 1"):
        viz.draw_tile_grid(image, [(0, 0, 0, 5)])


# ---------------------------------------------------------------- side by side


def test_side_by_side_equal_heights_gaps_and_titles():
    a = np.full((10, 10, 3), 50, np.uint8)
    b = np.full((20, 40), 100, np.uint8)
    out = viz.side_by_side([a, b], gap=3)
    assert out.shape == (10, 10 + 3 + 20, 3)
    assert (out[:, 10:13] == 255).all() and (out[:, 13:] == 100).all()
    tall = viz.side_by_side([a, b], height=40)
    assert tall.shape == (40, 40 + 4 + 80, 3)
    titled = viz.side_by_side([a, b], titles=["image", "mask"], height=100)
    strip = titled.shape[0] - 100
    assert titled.shape[1] == 100 + 4 + 200 and strip > 5
    assert (titled[:strip, 100:104] == 255).all()
    assert titled[:strip, :100].min() < 128 and titled[:strip, 104:].min() < 128  # text drawn
    assert (titled[strip:, :100] == 50).all()


def test_side_by_side_validates():
    panel = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match="one entry per panel"):
        viz.side_by_side([panel, panel], titles=["only one"])
    with pytest.raises(ValueError, match="at least one"):
        viz.side_by_side([])
    with pytest.raises(ValueError, match="`height`"):
        viz.side_by_side([panel], height=0)


# ---------------------------------------------------------------- real data


def test_overlay_of_a_real_full_size_lesion():
    masks = sorted((DATA / "isic2017" / "fullres" / "masks").glob("*.png"))
    if not masks:
        pytest.skip(f"real data not found: {DATA / 'isic2017' / 'fullres' / 'masks'} (see README)")
    mask_path = masks[0]
    image = cv2.cvtColor(
        cv2.imread(str(mask_path.parents[1] / "images" / f"{mask_path.stem}.jpg")),
        cv2.COLOR_BGR2RGB,
    )
    mask = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127
    out = viz.overlay(image, mask, alpha=1.0, contour=False, max_side=800)
    assert max(out.shape[:2]) == 800
    tinted = (out == [255, 64, 64]).all(axis=2).mean()
    assert tinted == pytest.approx(mask.mean(), abs=0.01)
