"""Tests for training.data and training.augment: real pairs from ../shared/data, synthetic
patterns (made here) whose alignment under augmentation is measurable."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from tiledseg.scale import PixelScale
from training.augment import Augmenter, build_augmenter
from training.data import (
    SegmentationDataset,
    crop_starts,
    load_pairs,
    pad_to_size,
    prepare_pair,
    random_crop,
    read_pair,
)

GEOMETRY = {
    "hflip": True,
    "vflip": True,
    "rot90": True,
    "affine_p": 1.0,
    "rotate": 40.0,
    "scale": [0.8, 1.25],
    "shear": 10.0,
    "elastic_p": 1.0,
    "elastic_alpha": 300.0,
    "elastic_sigma": 10.0,
    "grid_p": 1.0,
    "grid_limit": 0.3,
}


def _blobs(size: int = 128, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A smooth random pattern; the mask is where it is bright, so alignment is checkable."""
    rng = np.random.default_rng(seed)
    field = cv2.resize(
        rng.uniform(0, 255, (8, 8)).astype(np.float32), (size, size), interpolation=cv2.INTER_CUBIC
    )
    pattern = np.clip(field, 0, 255).astype(np.uint8)
    mask = (pattern > 127).astype(np.uint8)
    return np.repeat(pattern[..., None], 3, axis=2), mask


def test_load_pairs_reads_real_folders(shared_data):
    pairs = load_pairs(shared_data / "isic2017" / "valid")
    assert len(pairs) == 52
    assert pairs == sorted(pairs)
    assert all(mask.stem == image.stem for image, mask in pairs)
    image, mask = read_pair(*pairs[0])
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert mask.shape == image.shape[:2] and set(np.unique(mask)) <= {0, 1}


def test_load_pairs_accepts_isic_mask_names_csv_and_tables(tmp_path):
    image, mask = _blobs(32)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    cv2.imwrite(str(tmp_path / "images" / "ISIC_1.jpg"), image)
    cv2.imwrite(str(tmp_path / "masks" / "ISIC_1_segmentation.png"), mask * 255)
    cv2.imwrite(str(tmp_path / "images" / "b.png"), image)
    cv2.imwrite(str(tmp_path / "masks" / "b.png"), mask * 255)
    pairs = load_pairs(tmp_path)
    assert [(i.name, m.name) for i, m in pairs] == [
        ("ISIC_1.jpg", "ISIC_1_segmentation.png"),
        ("b.png", "b.png"),
    ]
    assert load_pairs({"images": tmp_path / "images", "masks": tmp_path / "masks"}) == pairs
    csv_path = tmp_path / "pairs.csv"
    csv_path.write_text("image,mask\nimages/b.png,masks/b.png\n")
    assert load_pairs(csv_path) == [(tmp_path / "images/b.png", tmp_path / "masks/b.png")]

    (tmp_path / "images" / "orphan.jpg").write_bytes(
        (tmp_path / "images" / "ISIC_1.jpg").read_bytes()
    )
    with pytest.raises(ValueError, match=r"orphan\.jpg"):
        load_pairs(tmp_path)
    with pytest.raises(FileNotFoundError, match="images/ and"):
        load_pairs(tmp_path / "nowhere")
    bad_csv = tmp_path / "bad.csv"
    bad_csv.write_text("img,seg\na,b\n")
    with pytest.raises(ValueError, match="columns 'image' and 'mask'"):
        load_pairs(bad_csv)


def test_prepare_pair_brings_a_full_size_pair_to_the_model_scale(shared_data):
    image_path, mask_path = load_pairs(shared_data / "isic2017" / "fullres")[0]
    image, mask = read_pair(image_path, mask_path)
    small_image, small_mask = prepare_pair(image, mask, PixelScale("short_side", 256))
    height, width = image.shape[:2]
    assert min(small_image.shape[:2]) == 256
    assert small_image.shape[1] / small_image.shape[0] == pytest.approx(width / height, rel=0.01)
    assert small_mask.shape == small_image.shape[:2] and small_mask.dtype == np.uint8
    assert set(np.unique(small_mask)) <= {0, 1}
    assert small_mask.mean() == pytest.approx(mask.mean(), abs=0.01)
    same = prepare_pair(image, mask, PixelScale("factor", 1.0))
    assert same[0] is image and same[1] is mask


def test_crops_pad_small_images_and_cover_large_ones():
    image, mask = _blobs(40)
    image, mask = image[:, :30], mask[:, :30]
    crop_image, crop_mask = random_crop(image, mask, 64, np.random.default_rng(0))
    assert crop_image.shape == (64, 64, 3) and crop_mask.shape == (64, 64)
    padded_image, padded_mask = pad_to_size(image, mask, 64, 64)
    np.testing.assert_array_equal(padded_image[:40, :30], image)
    # Mirrored padding: the padded mask mirrors the image exactly as before.
    np.testing.assert_array_equal(padded_mask, (padded_image[..., 0] > 127).astype(np.uint8))
    assert crop_starts(256, 256) == [0]
    assert crop_starts(100, 256) == [0]
    assert crop_starts(341, 256) == [0, 85]
    assert crop_starts(1600, 512) == [0, 363, 725, 1088]


# Six real pairs at 64 px, 2 crops each, batches of 4: 3 training batches a pass.
SMALL_TRAINING = dict(
    scale={"mode": "short_side", "value": 64},
    crop_size=32,
    batch_size=4,
    training=True,
    crops_per_image=2,
    seed=3,
)


def test_training_dataset_batches_are_shaped_and_repeatable(shared_data):
    pairs = load_pairs(shared_data / "isic2017" / "valid")[:6]
    options = dict(SMALL_TRAINING, augmenter=Augmenter(GEOMETRY))
    data = SegmentationDataset(pairs, **options)
    assert len(data) == 3  # 12 crops, full batches only
    images, masks = data[0]
    assert images.shape == (4, 32, 32, 3) and images.dtype == np.float32
    assert masks.shape == (4, 32, 32, 1) and set(np.unique(masks)) <= {0.0, 1.0}
    assert images.min() >= 0 and images.max() <= 255 and images.max() > 1
    again = SegmentationDataset(pairs, **options)[0]
    np.testing.assert_array_equal(again[0], images)
    np.testing.assert_array_equal(again[1], masks)
    data.on_epoch_end()
    assert not np.array_equal(data[0][0], images)
    with pytest.raises(IndexError):
        data[3]
    with pytest.raises(ValueError, match="larger than the training samples"):
        SegmentationDataset(pairs[:1], **{**options, "batch_size": 8})


def test_epochs_of_a_set_length_cut_one_stream_of_passes(shared_data):
    """batches_per_epoch=2 over 3-batch passes: every epoch has 2 full batches, and they are
    the passes' batches in order (epoch 1 = pass 0's last, then pass 1's first)."""
    pairs = load_pairs(shared_data / "isic2017" / "valid")[:6]
    options = SMALL_TRAINING
    passes = SegmentationDataset(pairs, **options)
    stream = []
    for _ in range(2):
        stream += [passes[index][0] for index in range(len(passes))]
        passes.on_epoch_end()
    epochs = SegmentationDataset(pairs, **options, batches_per_epoch=2)
    cut = []
    for _ in range(3):
        assert len(epochs) == 2
        cut += [epochs[index][0] for index in range(len(epochs))]
        epochs.on_epoch_end()
    for mine, theirs in zip(cut, stream, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    with pytest.raises(ValueError, match="batches_per_epoch"):
        SegmentationDataset(pairs, **options, batches_per_epoch=0)


def test_validation_dataset_covers_every_image_with_a_fixed_grid(shared_data):
    pairs = load_pairs(shared_data / "isic2017" / "valid")[:3]
    data = SegmentationDataset(
        pairs, scale={"mode": "short_side", "value": 64}, crop_size=64, batch_size=2
    )
    expected = 0
    for image_path, mask_path in pairs:
        image, mask = prepare_pair(*read_pair(image_path, mask_path), PixelScale("short_side", 64))
        expected += len(crop_starts(image.shape[0], 64)) * len(crop_starts(image.shape[1], 64))
    assert len(data._windows) == expected
    assert len(data) == -(-expected // 2)
    last_images, _ = data[len(data) - 1]
    assert len(last_images) == expected - 2 * (len(data) - 1)
    first_images, first_masks = data[0]
    image, mask = prepare_pair(*read_pair(*pairs[0]), PixelScale("short_side", 64))
    np.testing.assert_array_equal(first_images[0], image[:64, :64].astype(np.float32))
    np.testing.assert_array_equal(first_masks[0, ..., 0], mask[:64, :64])


@pytest.mark.parametrize("seed", range(6))
def test_augmentation_moves_image_and_mask_together(seed):
    image, mask = _blobs(128, seed)
    augmented_image, augmented_mask = Augmenter(GEOMETRY)(image, mask, seed=seed)
    assert augmented_image.shape == image.shape and augmented_mask.shape == mask.shape
    assert augmented_mask.dtype == np.uint8 and set(np.unique(augmented_mask)) <= {0, 1}
    follows = np.mean((augmented_image[..., 0] > 127) == augmented_mask.astype(bool))
    unchanged = np.mean(augmented_mask == mask)
    # Only pixels on the pattern's edges may differ (linear versus nearest interpolation).
    assert follows > 0.97
    assert unchanged < 0.9  # the transform did move things, so the check above means something


def test_colour_transforms_leave_the_mask_alone_and_seeds_repeat():
    image, mask = _blobs(64)
    colour = Augmenter(
        {
            "color_p": 1.0,
            "brightness": 0.3,
            "contrast": 0.3,
            "hue": 0.05,
            "saturation": 0.2,
            "blur_p": 1.0,
            "blur_sigma": 1.5,
        }
    )
    changed_image, same_mask = colour(image, mask, seed=1)
    np.testing.assert_array_equal(same_mask, mask)
    assert not np.array_equal(changed_image, image)
    geometry = Augmenter(GEOMETRY)
    first = geometry(image, mask, seed=11)
    np.testing.assert_array_equal(geometry(image, mask, seed=11)[0], first[0])
    assert not np.array_equal(geometry(image, mask, seed=12)[0], first[0])


def test_augmentation_settings_are_checked():
    assert build_augmenter({}) is None
    assert build_augmenter({"hflip": True}) is not None
    with pytest.raises(ValueError, match="Did you mean 'rotate'"):
        Augmenter({"rotat": 10})
    with pytest.raises(ValueError, match=r"`elastic_p` must be in \[0.0, 1.0\]"):
        Augmenter({"elastic_p": 2.0})
    with pytest.raises(ValueError, match="scale"):
        Augmenter({"scale": [1.2, 0.8]})


def test_real_pair_stays_aligned_under_augmentation(shared_data):
    image_path, mask_path = load_pairs(shared_data / "isic2017" / "valid")[0]
    image, mask = read_pair(image_path, mask_path)
    flipped_image, flipped_mask = Augmenter({"hflip": True, "vflip": True, "rot90": True})(
        image, mask, seed=5
    )
    # Flips and 90-degree turns are exact: find which one was applied and check the mask.
    for turns in range(4):
        for flip in (None, 0, 1, -1):
            candidate = (
                np.rot90(image, turns) if flip is None else np.rot90(cv2.flip(image, flip), turns)
            )
            if candidate.shape == flipped_image.shape and np.array_equal(candidate, flipped_image):
                expected = (
                    np.rot90(mask, turns) if flip is None else np.rot90(cv2.flip(mask, flip), turns)
                )
                np.testing.assert_array_equal(flipped_mask, expected)
                return
    pytest.fail("the augmented image is not a flip/rotation of the original")


def test_tile_dataset_splits_real_pairs_into_tiles(shared_data, tmp_path):
    from training.tile_dataset import main, tile_pair

    pairs = load_pairs(shared_data / "bloodcell" / "valid")[:1]
    csv_path = tmp_path / "one.csv"
    csv_path.write_text(f"image,mask\n{pairs[0][0]},{pairs[0][1]}\n")
    assert main([str(csv_path), str(tmp_path / "tiles"), "--tile", "512", "--also-resized"]) == 0
    image, mask = read_pair(*pairs[0])
    rows, cols = (len(crop_starts(side, 512)) for side in image.shape[:2])
    written = sorted(path.name for path in (tmp_path / "tiles" / "images").iterdir())
    stem = pairs[0][0].stem
    assert len(written) == rows * cols + 1 and f"{stem}_resized.png" in written
    tiles = tile_pair(image, mask, 512)
    (last_row, last_col), last_image, last_mask = tiles[-1]
    assert (last_row, last_col) == (rows - 1, cols - 1)
    np.testing.assert_array_equal(last_image, image[-512:, -512:])
    tile_image, tile_mask = read_pair(
        tmp_path / "tiles" / "images" / f"{stem}_r{last_row}_c{last_col}.png",
        tmp_path / "tiles" / "masks" / f"{stem}_r{last_row}_c{last_col}.png",
    )
    np.testing.assert_array_equal(tile_image, last_image)
    np.testing.assert_array_equal(tile_mask, last_mask)
    resized, _ = read_pair(
        tmp_path / "tiles" / "images" / f"{stem}_resized.png",
        tmp_path / "tiles" / "masks" / f"{stem}_resized.png",
    )
    assert max(resized.shape[:2]) == 512
    assert main([str(tmp_path / "missing"), str(tmp_path / "out")]) == 2


def test_a_frame_surrounds_each_pair_and_frame_crops_hold_some_of_it(shared_data):
    pairs = load_pairs(shared_data / "bloodcell" / "valid")[:2]
    data = SegmentationDataset(
        pairs,
        scale=1.0,
        crop_size=256,
        batch_size=8,
        training=True,
        crops_per_image=8,
        frame=32,
        frame_p=1.0,
    )
    image, mask = data._pair(0)
    original = cv2.imread(str(pairs[0][0]))
    assert image.shape[:2] == (original.shape[0] + 64, original.shape[1] + 64)
    assert image[:32].max() == 0 and mask[:, -32:].max() == 0
    images, masks = data[0]
    for crop, crop_mask in zip(images, masks, strict=True):
        black_rows = np.flatnonzero(crop.max(axis=(1, 2)) == 0)
        black_cols = np.flatnonzero(crop.max(axis=(0, 2)) == 0)
        # 1 to 32 px of frame along one side (a crop near a corner may see two).
        widths = [len(black_rows), len(black_cols)]
        assert 1 <= max(widths) <= 32, widths
        assert crop_mask[black_rows].max(initial=0) == 0
        assert crop_mask[:, black_cols].max(initial=0) == 0
    valid = SegmentationDataset(pairs, scale=1.0, crop_size=256, batch_size=8, frame=32)
    assert max(top for _, top, _ in valid._windows) == image.shape[0] - 256


def test_frame_settings_are_checked():
    pair = [("a.jpg", "a.png")]
    with pytest.raises(ValueError, match="Received: frame=-1"):
        SegmentationDataset(pair, scale=1.0, crop_size=64, batch_size=1, frame=-1)
    with pytest.raises(ValueError, match="frame_p"):
        SegmentationDataset(pair, scale=1.0, crop_size=64, batch_size=1, frame_p=1.5)
