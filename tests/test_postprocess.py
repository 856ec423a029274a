"""Tests for tiledseg.postprocess: each step on synthetic masks with known answers; real masks."""

from __future__ import annotations

import inspect
from pathlib import Path

import cv2
import numpy as np
import pytest

from tiledseg.postprocess import (
    POSTPROCESS_KEYS,
    component_stats,
    edge_visible_fraction,
    postprocess,
)

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def _ring(shape=(64, 64), center=(32, 32), outer=20, width=4) -> np.ndarray:
    ring = np.zeros(shape, np.uint8)
    cv2.circle(ring, center, outer - width // 2, 1, thickness=width)
    return ring > 0


def _disk(shape=(64, 64), center=(32, 32), radius=20) -> np.ndarray:
    disk = np.zeros(shape, np.uint8)
    cv2.circle(disk, center, radius, 1, thickness=-1)
    return disk > 0


# ---------------------------------------------------------------- threshold


def test_threshold_is_strict_and_bool_masks_pass_through_unaliased():
    probabilities = np.array([[0.2, 0.5, 0.51, 1.0]], np.float32)
    assert postprocess(probabilities).tolist() == [[False, False, True, True]]
    assert postprocess(probabilities, threshold=0.0).tolist() == [[True, True, True, True]]
    assert not postprocess(probabilities, threshold=1.0).any()
    assert postprocess(probabilities[..., None], threshold=0.3).shape == (1, 4)
    # Blended tiles can overshoot 1 by float rounding: accepted, not an error.
    assert postprocess(np.array([[1.0000001, -1e-7]], np.float32)).tolist() == [[True, False]]
    mask = np.array([[True, False]])
    out = postprocess(mask, threshold=0.9)  # the threshold does not apply to a bool mask
    assert out.dtype == bool and out.tolist() == [[True, False]]
    out[0, 0] = False
    assert mask[0, 0], "postprocess must not return the caller's array"


# ---------------------------------------------------------------- opening and closing


def test_opening_removes_specks_and_spurs_but_keeps_the_body():
    mask = _disk()
    mask[2, 2] = mask[60, 5:7] = True  # specks
    mask[32, 52:62] = True  # a 1 px spur leaving the disk
    opened = postprocess(mask, opening=5)
    assert not opened[2, 2] and not opened[60, 5:7].any() and not opened[32, 55:62].any()
    assert (opened & _disk()).sum() >= 0.97 * _disk().sum()
    assert not (opened & ~mask).any(), "opening never adds pixels"


def test_closing_bridges_a_gap_between_two_blobs():
    mask = np.zeros((30, 40), bool)
    mask[10:20, 5:18] = mask[10:20, 20:35] = True  # 2 px gap at columns 18-19
    assert component_stats(mask)["n_components"] == 2
    closed = postprocess(mask, closing=5)
    assert component_stats(closed)["n_components"] == 1
    assert closed[12:18, 18:20].all()
    assert not (mask & ~closed).any(), "closing never removes pixels"


def test_kernel_sizes_zero_and_one_change_nothing():
    mask = _ring()
    mask[2, 2] = True
    for size in (0, 1):
        assert np.array_equal(postprocess(mask, opening=size, closing=size), mask)


# ---------------------------------------------------------------- fill holes


def test_fill_holes_fills_a_ring_to_the_disk():
    filled = postprocess(_ring(), fill_holes=True)
    assert filled[32, 32]
    assert np.array_equal(filled, postprocess(_ring(), fill_holes=True, closing=0))
    hole = filled & ~_ring()
    stats = component_stats(hole)
    assert stats["n_components"] == 1 and stats["area_px"] > 500


def test_fill_holes_leaves_regions_open_to_the_edge():
    cup = np.zeros((20, 20), bool)
    cup[5:20, 5] = cup[5:20, 15] = cup[5, 5:16] = True  # open at the bottom image edge
    assert np.array_equal(postprocess(cup, fill_holes=True), cup)
    framed = cup.copy()
    framed[19, 5:16] = True  # closed along the edge row: now a hole
    assert postprocess(framed, fill_holes=True)[6:19, 6:15].all()


def test_fill_holes_treats_a_diagonal_seam_as_closed():
    # 8-connected foreground and 4-connected background: a diagonal step does not leak.
    diamond = np.zeros((9, 9), bool)
    for i in range(4):
        diamond[i, 4 - i] = diamond[i, 4 + i] = diamond[8 - i, 4 - i] = diamond[8 - i, 4 + i] = 1
    diamond[4, 0] = diamond[4, 8] = True
    assert postprocess(diamond, fill_holes=True)[4, 4]


# ---------------------------------------------------------------- components


def test_min_size_drops_components_under_n_pixels():
    mask = np.zeros((40, 40), bool)
    for size, left in ((1, 1), (2, 6), (3, 12), (4, 20)):  # squares of 1, 4, 9, 16 px
        mask[5 : 5 + size, left : left + size] = True
    mask[30, 30] = mask[31, 31] = True  # diagonal neighbours: one 2 px component
    out = postprocess(mask, min_size=9)
    assert component_stats(out) == {
        "area_px": 25,
        "area_fraction": 25 / 1600,
        "n_components": 2,
        "largest_component_px": 16,
    }
    assert postprocess(mask, min_size=2)[30:32, 30:32].sum() == 2


def test_keep_largest_keeps_one_blob_and_the_first_on_ties():
    mask = np.zeros((30, 60), bool)
    mask[2:12, 2:12] = True  # 100 px
    mask[5:25, 30:50] = True  # 400 px
    out = postprocess(mask, keep_largest=True)
    assert out.sum() == 400 and out[10, 40] and not out[5, 5]
    tie = np.zeros((10, 10), bool)
    tie[6:8, 6:8] = tie[1:3, 1:3] = True
    assert np.argwhere(postprocess(tie, keep_largest=True)).tolist() == [
        [1, 1],
        [1, 2],
        [2, 1],
        [2, 2],
    ]
    assert not postprocess(np.zeros((5, 5), bool), keep_largest=True).any()


def test_documented_order_fill_holes_then_remove_small():
    # A thin ring has 2/5 of the filled area: it survives min_size only because holes are
    # filled first; closing runs before filling, so a ring with a 1 px crack is filled too.
    ring = _ring(outer=10, width=2)
    filled_area = int(postprocess(ring, fill_holes=True).sum())
    assert filled_area > 2 * ring.sum()
    assert postprocess(ring, fill_holes=True, min_size=filled_area).sum() == filled_area
    assert not postprocess(ring, min_size=filled_area).any()
    cracked = ring.copy()
    cracked[32, 22:25] = False
    assert not postprocess(cracked, fill_holes=True)[32, 32]
    assert postprocess(cracked, closing=5, fill_holes=True)[32, 32]


# ---------------------------------------------------------------- objects cut by the edge


def test_visible_share_of_disks_cut_by_the_edge():
    """A disk cut through its centre shows half; one cut near its far side little; one that
    only touches the edge nearly all; a component off the edge counts as whole."""
    shares = {}
    for name, centre_row in (("half", 0), ("sliver", -30), ("most", 30), ("touch", 39)):
        disk = _disk(shape=(120, 120), center=(60, centre_row), radius=40)
        contact = np.count_nonzero(disk[0])
        shares[name] = float(edge_visible_fraction(np.array([contact]), [disk.sum()])[0])
    assert shares["half"] == pytest.approx(0.5, abs=0.03)
    assert shares["sliver"] < 0.15 and 0.75 < shares["most"] < 0.95 and shares["touch"] > 0.97
    assert edge_visible_fraction(np.array([0]), np.array([500])).tolist() == [1.0]


def test_edge_visible_drops_cut_objects_and_keeps_whole_ones():
    mask = np.zeros((200, 300), bool)
    mask |= _disk((200, 300), center=(60, 0), radius=30)  # half a cell at the top edge
    mask |= _disk((200, 300), center=(299, 120), radius=30)  # half at the right edge
    mask |= _disk((200, 300), center=(0, 199), radius=30)  # a quarter in the corner
    mask |= _disk((200, 300), center=(150, 100), radius=30)  # a whole cell inside
    mask |= _disk((200, 300), center=(230, 29), radius=30)  # a whole cell touching the edge
    whole_inside, whole_touching = mask[100, 150], mask[29, 230]
    assert whole_inside and whole_touching
    out = postprocess(mask, edge_visible=0.6)
    assert out[100, 150] and out[29, 230]  # whole cells stay
    assert not out[10, 60] and not out[120, 290] and not out[195, 5]  # the cut ones go
    # At 0.4 a half cell (0.5 visible) stays, the quarter (about 0.2) goes.
    out = postprocess(mask, edge_visible=0.4)
    assert out[10, 60] and out[120, 290] and not out[195, 5]
    # edge_max_size judges only smaller components: a half cell is about 1400 px.
    out = postprocess(mask, edge_visible=0.6, edge_max_size=1000)
    assert out[10, 60] and out[120, 290] and not out[195, 5]


def test_edge_step_runs_after_min_size_and_before_keep_largest():
    mask = np.zeros((100, 200), bool)
    mask[0:20, 0:120] = True  # 2400 px, a wide strip along the top edge: mostly "cut"
    mask[40:80, 60:100] = True  # 1600 px, inside
    mask[90:93, 150:153] = True  # 9 px speck
    # The strip is the largest, but the edge step drops it first; keep_largest keeps the square.
    out = postprocess(mask, min_size=10, edge_visible=0.5, keep_largest=True)
    assert out.sum() == 1600 and out[60, 80]
    # The same strip spared by edge_max_size wins keep_largest.
    out = postprocess(mask, edge_visible=0.5, edge_max_size=2000, keep_largest=True)
    assert out.sum() == 2400
    # Every component dropped: keep_largest keeps nothing rather than bring one back.
    assert not postprocess(mask, min_size=5000, keep_largest=True).any()


def test_edge_step_keeps_whatever_touches_no_edge_on_a_real_slide():
    """On a real blood-cell mask: the step only ever removes components on the slide's edge,
    and with edge_visible 1 it removes every one that is cut."""
    masks = sorted((DATA / "bloodcell" / "valid" / "masks").glob("*.png"))
    if not masks:
        pytest.skip(f"real data not found: {DATA / 'bloodcell' / 'valid' / 'masks'} (see README)")
    truth = cv2.imread(str(masks[0]), cv2.IMREAD_GRAYSCALE) > 127
    _, labels = cv2.connectedComponents(truth.view(np.uint8), connectivity=8)
    on_edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    inside = truth & ~np.isin(labels, on_edge)
    for visible in (0.35, 0.6, 1.0):
        out = postprocess(truth, edge_visible=visible)
        assert np.array_equal(out & inside, inside) and not (out & ~truth).any()
    assert np.array_equal(postprocess(truth, edge_visible=1.0), inside)
    assert (truth & ~inside).any(), "expected a cell cut by the edge on this slide"


# ---------------------------------------------------------------- multi-class and validation


def test_multiclass_gives_the_argmax_label_map():
    probabilities = np.zeros((2, 3, 3), np.float32)
    probabilities[..., 0] = 0.5
    probabilities[0, 1, 2] = probabilities[1, 2, 1] = 0.9
    labels = postprocess(probabilities)
    assert labels.dtype == np.uint8 and labels.tolist() == [[0, 2, 0], [0, 0, 1]]
    with pytest.raises(ValueError, match=r"binary masks only.*fill_holes"):
        postprocess(probabilities, fill_holes=True)
    with pytest.raises(ValueError, match=r"binary masks only.*edge_visible"):
        postprocess(probabilities, edge_visible=0.5)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            dict(threshold=1.5),
            ValueError,
            r"`threshold` must be in \[0, 1\]. Received: threshold=1.5",
        ),
        (dict(opening=-1), ValueError, "Received: opening=-1"),
        (dict(min_size=2.5), TypeError, "`min_size` must be an integer"),
        (dict(closing=True), TypeError, "`closing` must be an integer"),
        (dict(fill_holes="yes"), TypeError, "`fill_holes` must be True or False"),
        (dict(edge_visible=1.5), ValueError, r"Received: edge_visible=1.5"),
        (dict(edge_max_size=-1), ValueError, r"Received: edge_max_size=-1"),
        (
            dict(edge_max_size=6000),
            ValueError,
            r"set `edge_visible` above 0 too, or `edge_max_size` to 0",
        ),
    ],
)
def test_options_are_validated(kwargs, error, message):
    with pytest.raises(error, match=message):
        postprocess(np.zeros((4, 4), np.float32), **kwargs)


@pytest.mark.parametrize(
    ("array", "error", "message"),
    [
        (np.full((4, 4), 255, np.uint8), TypeError, "mask > 0"),
        (np.full((4, 4), 1.5), ValueError, r"in \[0, 1\]"),
        (np.full((4, 4), np.nan), ValueError, "16 nan or inf values"),
        (np.zeros(4), ValueError, "Received: shape=\\(4,\\)"),
    ],
)
def test_bad_inputs_are_rejected(array, error, message):
    with pytest.raises(error, match=message):
        postprocess(array)


def test_postprocess_keys_are_the_keyword_options():
    parameters = inspect.signature(postprocess).parameters
    keyword_only = [n for n, p in parameters.items() if p.kind is p.KEYWORD_ONLY]
    assert tuple(keyword_only) == POSTPROCESS_KEYS
    # The one 64 px component touches every edge; edge_max_size 50 spares it.
    values = (0.4, 3, 3, True, 10, 0.5, 50, True)
    options = dict(zip(POSTPROCESS_KEYS, values, strict=True))
    assert postprocess(np.full((8, 8), 0.6), **options).all()


def test_component_stats_inputs():
    labels = np.zeros((4, 4), np.uint8)
    labels[0, 0], labels[3, 3] = 1, 2
    assert component_stats(labels)["n_components"] == 2
    assert component_stats(np.zeros((3, 3), bool))["largest_component_px"] == 0
    with pytest.raises(TypeError, match="threshold probabilities first"):
        component_stats(np.zeros((3, 3), np.float32))
    with pytest.raises(ValueError, match="2-D"):
        component_stats(np.zeros((3, 3, 3), bool))


# ---------------------------------------------------------------- real masks


def test_cleans_damaged_real_masks_back_to_the_original():
    masks = sorted((DATA / "isic2017" / "valid" / "masks").glob("*.png"))
    if not masks:
        pytest.skip(f"real data not found: {DATA / 'isic2017' / 'valid' / 'masks'} (see README)")
    rng = np.random.default_rng(0)
    cleaned = 0
    for path in masks[:12]:
        truth = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE) > 127
        if not np.array_equal(postprocess(truth, fill_holes=True, keep_largest=True), truth):
            continue  # several lesions or a real hole: not a single clean blob
        # Pinholes stay 7 px inside the outline, also where the lesion meets the image edge.
        interior = cv2.erode(truth.view(np.uint8), np.ones((15, 15), np.uint8), borderValue=0) > 0
        outside = ~(cv2.dilate(truth.view(np.uint8), np.ones((15, 15), np.uint8)) > 0)
        damaged = truth & ~(interior & (rng.random(truth.shape) < 0.05))  # pinholes
        damaged |= outside & (rng.random(truth.shape) < 0.002)  # false-positive specks
        probabilities = np.where(damaged, 0.8, 0.2).astype(np.float32)
        assert component_stats(damaged)["n_components"] > 5
        restored = postprocess(probabilities, fill_holes=True, keep_largest=True)
        assert np.array_equal(restored, truth), path.name
        cleaned += 1
    assert cleaned >= 3, "expected at least 3 single-blob masks among the first 12"
