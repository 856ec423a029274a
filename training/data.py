"""Training data: image/mask pairs brought to the model's pixel scale, cropped, augmented.

Datasets are ``keras.utils.PyDataset`` objects (NumPy batches, optional worker threads), not
``tf.data``, so training runs on every Keras backend. Images reach the model as float32 pixel
values 0..255 (the model normalises inside its graph); masks as float32 0/1, ``(H, W, 1)``.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np

from tiledseg._validation import validate_range
from tiledseg.errors import IMAGE_ERRORS, TiledsegError
from tiledseg.io import image_size, pair_images_and_masks, read_image, read_mask
from tiledseg.scale import PixelScale, add_frame, resize_image, scaled_shape
from training.augment import Augmenter

__all__ = [
    "SegmentationDataset",
    "check_pairs",
    "crop_starts",
    "frame_crop",
    "load_pairs",
    "pad_to_size",
    "prepare_pair",
    "random_crop",
    "read_pair",
    "split_label",
    "split_source",
]

Pair = tuple[Path, Path]
_PAD = cv2.BORDER_REFLECT_101


def _pairs_from_csv(path: Path) -> list[Pair]:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        if not reader.fieldnames or not {"image", "mask"} <= set(reader.fieldnames):
            raise ValueError(
                f"CSV {path} needs a header with columns 'image' and 'mask' (paths relative to "
                f"the CSV's folder or absolute). Received columns: {reader.fieldnames}"
            )
        pairs = [(path.parent / row["image"], path.parent / row["mask"]) for row in reader]
    missing = [str(p) for pair in pairs for p in pair if not p.is_file()]
    if missing:
        raise FileNotFoundError(
            f"{len(missing)} file(s) listed in {path} do not exist, e.g. {missing[0]}"
        )
    return pairs


def split_source(root: Path, value: str | dict) -> Path | dict[str, str]:
    """A config's data split (a folder, CSV or ``{images, masks}`` table) under ``root``."""
    if isinstance(value, dict):
        return {key: str(root / value[key]) for key in ("images", "masks")}
    return root / value


def split_label(value: str | dict) -> str:
    """How a split is named in reports: its folder, or its images folder."""
    return value if isinstance(value, str) else value["images"]


def load_pairs(source: str | os.PathLike | dict[str, Any]) -> list[Pair]:
    """List (image, mask) file pairs.

    Args:
        source: a folder holding ``images/`` and ``masks/`` (masks named ``<id>.png`` or
            ``<id>_segmentation.png``), a dict ``{"images": DIR, "masks": DIR}``, or a ``.csv``
            file with columns ``image`` and ``mask``.

    Returns:
        Sorted list of (image path, mask path).

    Raises:
        FileNotFoundError: the folder or a listed file is missing, or no pair was found.
        ValueError: some images have no mask (the message names one).

    Example:
        >>> pairs = load_pairs("../shared/data/isic2017/valid")
        >>> len(pairs)
        52
    """
    if isinstance(source, dict):
        images, masks = Path(source["images"]), Path(source["masks"])
        label = f"images {images} with masks {masks}"
    else:
        path = Path(source)
        if path.suffix.lower() == ".csv":
            pairs = _pairs_from_csv(path)
            if not pairs:
                raise FileNotFoundError(f"CSV {path} lists no pairs.")
            return pairs
        images, masks = path / "images", path / "masks"
        label = str(path)
    for folder in (images, masks):
        if not folder.is_dir():
            raise FileNotFoundError(
                f"Folder {folder} does not exist. A dataset is a folder with images/ and "
                "masks/, a {images, masks} pair of folders, or a CSV of pairs."
            )
    pairs, unpaired = pair_images_and_masks([images], masks)
    if unpaired:
        raise ValueError(
            f"{len(unpaired)} image(s) in {images} have no mask in {masks} (looked for "
            f"<id>.png and <id>_segmentation.png), e.g. {unpaired[0].name}."
        )
    if not pairs:
        raise FileNotFoundError(f"No image/mask pairs found in {label}.")
    return sorted(pairs)


def read_pair(image_path: str | os.PathLike, mask_path: str | os.PathLike):
    """Read an image (RGB uint8) and its mask (uint8 0/1), checking they have the same size."""
    image = read_image(image_path)
    mask = read_mask(mask_path, shape=image.shape[:2])
    return image, mask.astype(np.uint8)


def check_pairs(pairs: Sequence[Pair], label: str, *, shown: int = 10) -> None:
    """Read every pair once, so a bad file stops a run before training, not in its epoch 1.

    Training reads its images lazily, inside Keras' data workers, where a corrupt file surfaces
    as a TensorFlow traceback minutes or hours in; and a bad file in the final evaluation split
    would end a finished run. All bad pairs are named at once, so one pass fixes them.

    Args:
        pairs: (image, mask) paths.
        label: what the pairs are, for the message (``"data.train (isic2017/train)"``).
        shown: how many bad pairs the message lists in full.

    Raises:
        TiledsegError: naming each pair that cannot be read (missing, empty, corrupt, not an
            image, over the pixel limit) or whose mask is not binary or not the image's size.
    """
    bad = []
    for image_path, mask_path in pairs:
        try:
            read_pair(image_path, mask_path)
        except IMAGE_ERRORS as error:
            bad.append(f"{Path(image_path).name}: {error}")
    if bad:
        more = f"\n  ... and {len(bad) - shown} more" if len(bad) > shown else ""
        raise TiledsegError(
            f"{len(bad)} of {len(pairs)} pairs in {label} cannot be used; fix or remove them "
            "(from the folder or CSV), then start again:\n  " + "\n  ".join(bad[:shown]) + more
        )


def prepare_pair(
    image: np.ndarray, mask: np.ndarray, scale: PixelScale
) -> tuple[np.ndarray, np.ndarray]:
    """Bring a pair to the model's pixel scale.

    The image is resized as the engine resizes it (area to shrink, cubic to enlarge); the mask
    with area (or linear) interpolation, then thresholded at one half, as the 256 px ISIC masks
    were made.

    Args:
        image: uint8 (H, W, C).
        mask: uint8 (H, W) with values 0/1.
        scale: the model's PixelScale.

    Returns:
        (image, mask) at the scaled size; the mask stays uint8 0/1.
    """
    height, width = image.shape[:2]
    shape = scaled_shape(height, width, scale.factor_for(height, width))
    if shape == (height, width):
        return image, mask
    image = resize_image(image, shape)
    shrinking = shape[0] * shape[1] < height * width
    interpolation = cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR
    resized = cv2.resize(mask.astype(np.float32), shape[::-1], interpolation=interpolation)
    return image, (resized >= 0.5).astype(np.uint8)


def pad_to_size(
    image: np.ndarray, mask: np.ndarray, height: int, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Pad a pair (bottom/right, mirrored) to at least ``height`` x ``width``.

    Mirroring matches the engine's default padding and keeps image and labels consistent.
    """
    pad_h, pad_w = max(0, height - image.shape[0]), max(0, width - image.shape[1])
    if pad_h == 0 and pad_w == 0:
        return image, mask
    # Mirroring needs at least 2 px; a 1 px side is replicated instead.
    border = _PAD if min(image.shape[:2]) > 1 else cv2.BORDER_REPLICATE
    image = cv2.copyMakeBorder(image, 0, pad_h, 0, pad_w, border)
    mask = cv2.copyMakeBorder(mask, 0, pad_h, 0, pad_w, border)
    return image, mask


def random_crop(
    image: np.ndarray, mask: np.ndarray, size: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A random ``size`` x ``size`` crop of a pair, padding first where the image is smaller."""
    image, mask = pad_to_size(image, mask, size, size)
    top = int(rng.integers(0, image.shape[0] - size + 1))
    left = int(rng.integers(0, image.shape[1] - size + 1))
    return image[top : top + size, left : left + size], mask[top : top + size, left : left + size]


def frame_crop(
    image: np.ndarray, mask: np.ndarray, size: int, frame: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A crop of a framed pair that holds 1 to ``frame`` px of the frame on a random side."""
    image, mask = pad_to_size(image, mask, size, size)
    height, width = image.shape[:2]
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    into_frame = int(rng.integers(0, frame))  # 0: the whole frame is in the crop
    side = int(rng.integers(4))
    if side == 0:
        top = min(into_frame, height - size)
    elif side == 1:
        top = max(0, height - size - into_frame)
    elif side == 2:
        left = min(into_frame, width - size)
    else:
        left = max(0, width - size - into_frame)
    return image[top : top + size, left : left + size], mask[top : top + size, left : left + size]


def crop_starts(length: int, size: int) -> list[int]:
    """Start offsets of the fewest ``size`` windows covering ``length``, the last flush.

    Example:
        >>> crop_starts(341, 256)
        [0, 85]
    """
    if length <= size:
        return [0]
    count = math.ceil(length / size)
    step = (length - size) / (count - 1)
    return [round(index * step) for index in range(count)]


class SegmentationDataset(keras.utils.PyDataset):
    """Batches of fixed-size crops of image/mask pairs at the model's pixel scale.

    Training (``training=True``): each epoch visits every pair ``crops_per_image`` times in a
    shuffled order, taking a random crop of each and augmenting it; incomplete last batches are
    dropped. Evaluation: every pair is covered by a fixed grid of crops (the last flush with the
    edge), in order, without augmentation, so validation scores are repeatable. Randomness
    depends only on (seed, epoch, sample index), never on the worker that draws it.

    Args:
        pairs: list of (image path, mask path), e.g. from :func:`load_pairs`.
        scale: PixelScale (or dict, or float factor): the model's pixel scale.
        crop_size: int >= 8. Side of the square crops; a multiple of the model's downsampling.
        batch_size: int >= 1.
        training: bool, default False. Random crops and augmentation versus a fixed grid.
        augmenter: Augmenter or None. Applied in training only.
        crops_per_image: int >= 1, default 1. Crops per pair per pass (training).
        batches_per_epoch: int >= 1 or None (default): training batches per Keras epoch. None
            is one pass over the pairs; a number cuts an endless stream of shuffled passes into
            epochs of that many batches, so each epoch has them all and the next goes on where
            it stopped (Keras' ``steps_per_epoch`` over a finite dataset instead ran an epoch
            short every time a pass ran out).
        seed: int, default 0.
        cache: bool, default True. Keep decoded, scaled pairs in memory after the first read.
        workers: int >= 1, default 1. Worker threads (``keras.utils.PyDataset``).
        max_queue_size: int, default 10. Batches prepared ahead by the workers.
        frame: int >= 0, default 0. Black pixels around every image (mask 0), as the engine
            adds around an image for a model whose metadata has a ``frame``: the network can
            then tell the image's own edge from a tile's edge (where annotators leave cells
            cut by the edge unlabelled, it can learn which).
        frame_p: float in [0, 1], default 0.5. With a frame, the share of training crops
            placed on the frame (1 to ``frame`` px of it at a random side), so edges are
            seen often; the rest are uniform over the framed image.

    Example:
        >>> data = SegmentationDataset(load_pairs("../shared/data/isic2017/valid"),
        ...                            scale={"mode": "short_side", "value": 64},
        ...                            crop_size=64, batch_size=4)
        >>> images, masks = data[0]
        >>> images.shape, masks.shape
        ((4, 64, 64, 3), (4, 64, 64, 1))
    """

    def __init__(
        self,
        pairs: Sequence[Pair],
        *,
        scale: PixelScale | dict | float,
        crop_size: int,
        batch_size: int,
        training: bool = False,
        augmenter: Augmenter | None = None,
        crops_per_image: int = 1,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        cache: bool = True,
        workers: int = 1,
        max_queue_size: int = 10,
        frame: int = 0,
        frame_p: float = 0.5,
    ):
        validate_range(frame, "frame", low=0, integer=True)
        validate_range(frame_p, "frame_p", low=0.0, high=1.0)
        validate_range(crop_size, "crop_size", low=8, integer=True)
        validate_range(batch_size, "batch_size", low=1, integer=True)
        validate_range(crops_per_image, "crops_per_image", low=1, integer=True)
        validate_range(workers, "workers", low=1, integer=True)
        if batches_per_epoch is not None:
            validate_range(batches_per_epoch, "batches_per_epoch", low=1, integer=True)
        if not pairs:
            raise ValueError("`pairs` is empty: there is nothing to train or validate on.")
        super().__init__(workers=workers, use_multiprocessing=False, max_queue_size=max_queue_size)
        self.pairs = [(Path(image), Path(mask)) for image, mask in pairs]
        self.scale = PixelScale.from_value(scale)
        self.crop_size = crop_size
        self.batch_size = batch_size
        self.training = training
        self.augmenter = augmenter
        self.crops_per_image = crops_per_image
        self.batches_per_epoch = batches_per_epoch if training else None
        self.seed = int(seed)
        self.frame = int(frame)
        self.frame_p = float(frame_p)
        self.epoch = 0
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None
        self._windows = None if training else self._grid_windows()
        samples = len(self.pairs) * crops_per_image if training else len(self._windows)
        if training and samples < batch_size:
            raise ValueError(
                f"`batch_size` ({batch_size}) is larger than the training samples per epoch "
                f"({samples} = pairs x crops_per_image). Lower batch_size or add data."
            )

    def _pair(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image, mask = read_pair(*self.pairs[index])
        image, mask = prepare_pair(image, mask, self.scale)
        prepared = add_frame(image, self.frame), add_frame(mask, self.frame)
        if self._cache is not None:
            self._cache[index] = prepared
        return prepared

    def _grid_windows(self) -> list[tuple[int, int, int]]:
        windows = []
        for index, (image_path, _) in enumerate(self.pairs):
            # With a cache, reading now also fills it; without, the header gives the size.
            if self._cache is not None:
                height, width = self._pair(index)[0].shape[:2]
            else:
                height, width = self._scaled_size(image_path)
            for top in crop_starts(height, self.crop_size):
                for left in crop_starts(width, self.crop_size):
                    windows.append((index, top, left))
        return windows

    def _scaled_size(self, image_path: Path) -> tuple[int, int]:
        height, width = image_size(image_path)
        height, width = scaled_shape(height, width, self.scale.factor_for(height, width))
        return height + 2 * self.frame, width + 2 * self.frame

    def __len__(self) -> int:
        if self.training:
            return self.batches_per_epoch or self._batches_per_pass()
        return math.ceil(len(self._windows) / self.batch_size)

    def _batches_per_pass(self) -> int:
        return len(self.pairs) * self.crops_per_image // self.batch_size

    def on_epoch_end(self) -> None:
        self.epoch += 1

    def _training_sample(self, position: int, order: np.ndarray, pass_index: int):
        rng = np.random.default_rng([self.seed, pass_index, position])
        image, mask = self._pair(int(order[position]) % len(self.pairs))
        if self.frame and rng.random() < self.frame_p:
            image, mask = frame_crop(image, mask, self.crop_size, self.frame, rng)
        else:
            image, mask = random_crop(image, mask, self.crop_size, rng)
        if self.augmenter is not None:
            image, mask = self.augmenter(image, mask, seed=int(rng.integers(2**31)))
        return image, mask

    def _window_sample(self, position: int):
        index, top, left = self._windows[position]
        image, mask = pad_to_size(*self._pair(index), self.crop_size, self.crop_size)
        size = self.crop_size
        return image[top : top + size, left : left + size], mask[
            top : top + size, left : left + size
        ]

    def __getitem__(self, batch_index: int) -> tuple[np.ndarray, np.ndarray]:
        if not 0 <= batch_index < len(self):
            raise IndexError(f"Batch {batch_index} out of range [0, {len(self)}).")
        if self.training:
            # The batch's place in the stream of passes (one pass an epoch by default).
            pass_index, in_pass = divmod(
                self.epoch * len(self) + batch_index, self._batches_per_pass()
            )
            order = np.random.default_rng([self.seed, pass_index]).permutation(
                len(self.pairs) * self.crops_per_image
            )
            first = in_pass * self.batch_size
            samples = [
                self._training_sample(p, order, pass_index)
                for p in range(first, first + self.batch_size)
            ]
        else:
            first = batch_index * self.batch_size
            last = min(first + self.batch_size, len(self._windows))
            samples = [self._window_sample(p) for p in range(first, last)]
        images = np.stack([image for image, _ in samples]).astype(np.float32)
        masks = np.stack([mask for _, mask in samples]).astype(np.float32)[..., None]
        return images, masks
