"""Painted dermoscopy artefacts (training.occluders) on real ISIC crops, and their settings."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from training.augment import Augmenter
from training.data import load_pairs, read_pair
from training.occluders import OCCLUDER_KINDS, paint_occluders


@pytest.fixture(scope="module")
def isic_crop(shared_data):
    image_path, mask_path = load_pairs(shared_data / "isic2017" / "train")[3]
    image, mask = read_pair(image_path, mask_path)
    image = cv2.resize(image, (256, 256), interpolation=cv2.INTER_AREA)
    mask = cv2.resize(mask, (256, 256), interpolation=cv2.INTER_NEAREST)
    assert 0 < mask.mean() < 1  # a lesion and some skin: both sides of the check below exist
    return image, mask


@pytest.mark.parametrize("kind", ["sticker", "ink", "ruler"])
def test_stickers_ink_and_rulers_keep_off_the_lesion(isic_crop, kind):
    image, mask = isic_crop
    changed_anywhere = False
    for seed in range(8):
        painted = paint_occluders(image, mask, seed=seed, kinds=[kind], count=2)
        assert painted.shape == image.shape and painted.dtype == np.uint8
        lesion = mask > 0
        # The lesion's pixels are untouched (rounding of the blend aside).
        assert np.abs(painted[lesion].astype(int) - image[lesion]).max() <= 1
        changed_anywhere |= bool(np.any(np.abs(painted.astype(int) - image) > 20))
    assert changed_anywhere  # the artefacts were painted, so the check above means something


@pytest.mark.parametrize("kind", ["hair", "vignette"])
def test_hair_and_vignette_may_cross_the_lesion(isic_crop, kind):
    image, mask = isic_crop
    painted = [paint_occluders(image, mask, seed=s, kinds=[kind]) for s in range(8)]
    lesion = mask > 0
    assert any(np.abs(p[lesion].astype(int) - image[lesion]).max() > 20 for p in painted)


def test_the_seed_fixes_the_artefacts(isic_crop):
    image, mask = isic_crop
    first = paint_occluders(image, mask, seed=3, count=3)
    np.testing.assert_array_equal(paint_occluders(image, mask, seed=3, count=3), first)
    assert not np.array_equal(paint_occluders(image, mask, seed=4, count=3), first)


def test_the_augmenter_paints_before_the_rest_and_keeps_the_mask(isic_crop):
    image, mask = isic_crop
    augment = Augmenter({"occluder_p": 1.0, "occluder_kinds": ["sticker"], "occluder_max": 1})
    assert augment.enabled
    painted, same_mask = augment(image, mask, seed=1)
    np.testing.assert_array_equal(same_mask, mask)
    assert not np.array_equal(painted, image)
    never = Augmenter({"occluder_p": 0.0, "hflip": False})
    assert not never.enabled


def test_bad_occluder_settings_say_what_is_allowed(isic_crop):
    image, mask = isic_crop
    with pytest.raises(ValueError, match=r"occluder_kinds.*\['sticker'"):
        Augmenter({"occluder_p": 0.5, "occluder_kinds": ["stickers"]})
    with pytest.raises(ValueError, match="occluder_max"):
        Augmenter({"occluder_p": 0.5, "occluder_max": 0})
    with pytest.raises(ValueError, match=r"`occluder_p` must be in \[0.0, 1.0\]"):
        Augmenter({"occluder_p": 1.5})
    with pytest.raises(ValueError, match="non-empty list"):
        paint_occluders(image, mask, seed=0, kinds=[])
    with pytest.raises(ValueError, match=r"uint8 \(H, W, 3\).*float32"):
        paint_occluders(image.astype(np.float32), mask, seed=0, kinds=OCCLUDER_KINDS)
