"""The foreground rule for ground-truth masks (issue 14, section 3), through real files.

Each encoding is written to a real file and read back with tiledseg.io.read_mask; ambiguous
ones are refused with a reason, and evaluate's report lists them as skipped.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import build_tiny_unet
from PIL import Image

from tiledseg.cli import main
from tiledseg.errors import MaskValueError
from tiledseg.io import read_mask


def _truth(height: int = 96, width: int = 128) -> np.ndarray:
    mask = np.zeros((height, width), bool)
    mask[20:70, 30:100] = True
    mask[75:90, 5:20] = True
    return mask


def _write(path: Path, array: np.ndarray, params: tuple[int, ...] = ()) -> Path:
    assert cv2.imwrite(str(path), array, list(params))
    return path


def _encode(tmp_path: Path, kind: str, mask: np.ndarray) -> Path:
    u8 = mask.astype(np.uint8)
    if kind == "0/1":
        return _write(tmp_path / "m.png", u8)
    if kind == "0/255":
        return _write(tmp_path / "m.png", u8 * 255)
    if kind == "0/65535":
        return _write(tmp_path / "m.png", mask.astype(np.uint16) * 65535)
    if kind == "16-bit 0/255":
        return _write(tmp_path / "m.png", mask.astype(np.uint16) * 255)
    if kind == "16-bit TIFF 0/1":
        return _write(tmp_path / "m.tif", mask.astype(np.uint16))
    if kind == "label 0/2":
        return _write(tmp_path / "m.png", u8 * 2)
    if kind == "palette":
        image = Image.fromarray(u8, "P")
        image.putpalette([0, 0, 0, 128, 0, 0])
        image.save(tmp_path / "m.png")
        return tmp_path / "m.png"
    if kind == "rgb":
        colour = np.zeros((*mask.shape, 3), np.uint8)
        colour[mask] = (0, 200, 0)
        return _write(tmp_path / "m.png", colour)
    if kind == "jpeg-noisy":
        return _write(tmp_path / "m.jpg", u8 * 255, (cv2.IMWRITE_JPEG_QUALITY, 70))
    if kind == "webp-noisy":
        return _write(tmp_path / "m.webp", u8 * 255, (cv2.IMWRITE_WEBP_QUALITY, 60))
    raise AssertionError(kind)


@pytest.mark.parametrize(
    "kind",
    ["0/1", "0/255", "0/65535", "16-bit 0/255", "16-bit TIFF 0/1", "label 0/2", "palette", "rgb",
     "jpeg-noisy", "webp-noisy"],
)  # fmt: skip
def test_every_binary_encoding_reads_its_foreground(tmp_path, kind):
    truth = _truth()
    got = read_mask(_encode(tmp_path, kind, truth), shape=truth.shape)
    agreement = (got == truth).mean()
    assert agreement == 1.0 if "noisy" not in kind else agreement > 0.99


def test_empty_and_full_masks_are_valid(tmp_path):
    assert not read_mask(_write(tmp_path / "e.png", np.zeros((8, 9), np.uint16))).any()
    assert read_mask(_write(tmp_path / "f.png", np.full((8, 9), 255, np.uint8))).all()


def _with_alpha(colour: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """An RGBA array (Pillow's channel order) from RGB or grey values and an alpha plane."""
    if colour.ndim == 2:
        colour = np.dstack([colour] * 3)
    return np.dstack([colour, alpha]).astype(colour.dtype)


def test_opaque_labels_on_a_transparent_background_read_their_foreground(tmp_path):
    """What annotation tools export: transparent background, opaque coloured labels (rule 5)."""
    truth = _truth()
    colour = np.zeros((*truth.shape, 3), np.uint8)
    colour[truth] = (255, 0, 0)
    Image.fromarray(_with_alpha(colour, truth * np.uint8(255)), "RGBA").save(tmp_path / "t.png")
    assert np.array_equal(read_mask(tmp_path / "t.png", shape=truth.shape), truth)
    # A palette with a transparent index 0 (GIMP's indexed export), and an alpha that varies
    # without making anything transparent: the colours decide.
    palette = Image.fromarray(truth.astype(np.uint8), "P")
    palette.putpalette([0, 0, 0, 255, 255, 255])
    palette.save(tmp_path / "p.png", transparency=0)
    assert np.array_equal(read_mask(tmp_path / "p.png"), truth)
    semi = _with_alpha(colour, np.where(truth, 255, 180).astype(np.uint8))
    Image.fromarray(semi, "RGBA").save(tmp_path / "s.png")
    assert np.array_equal(read_mask(tmp_path / "s.png"), truth)


@pytest.mark.parametrize("kind", ["white RGBA", "black RGBA", "LA", "16-bit RGBA"])
def test_a_shape_drawn_only_in_transparency_is_refused(tmp_path, kind):
    """A mask whose colour is all white (or all black) with the shape in its alpha would read
    as all foreground (or none) from its colours: refused, not misread."""
    truth = _truth()
    alpha = truth.astype(np.uint8) * 255
    path = tmp_path / "alpha.png"
    if kind == "white RGBA":
        Image.fromarray(_with_alpha(np.full(truth.shape, 255, np.uint8), alpha), "RGBA").save(path)
    elif kind == "black RGBA":
        Image.fromarray(_with_alpha(np.zeros(truth.shape, np.uint8), alpha), "RGBA").save(path)
    elif kind == "LA":
        Image.fromarray(np.dstack([np.full(truth.shape, 255, np.uint8), alpha]), "LA").save(path)
    else:  # OpenCV writes 16-bit BGRA
        white = np.full((*truth.shape, 3), 65535, np.uint16)
        _write(path, np.dstack([white, truth.astype(np.uint16) * 65535]))
    with pytest.raises(MaskValueError) as refused:
        read_mask(path)
    message = str(refused.value)
    assert "alpha.png" in message and "transparent" in message and "without an alpha" in message


def _label_map(mask):
    labels = mask.astype(np.uint8)
    labels[75:90, 5:20] = 2
    return labels


def _interpolated(mask):
    small = cv2.resize(mask.astype(np.uint8) * 255, (50, 40), interpolation=cv2.INTER_LINEAR)
    return cv2.resize(small, mask.shape[::-1], interpolation=cv2.INTER_LINEAR)


def _two_colours(mask):
    colour = np.zeros((*mask.shape, 3), np.uint8)
    colour[mask] = (255, 0, 0)
    colour[75:90, 5:20] = (0, 255, 0)
    return colour


@pytest.mark.parametrize(
    ("name", "make", "params", "reason"),
    [
        ("labels.png", _label_map, (), "3 levels (0, 1, 2)"),
        ("one-two.png", lambda m: m.astype(np.uint8) + 1, (), "neither is 0"),
        ("three16.png", lambda m: (_label_map(m).astype(np.uint16) * 32767), (), "3 levels"),
        ("resized.png", _interpolated, (), "nearest-neighbour"),
        ("classes.png", _two_colours, (), "more than one colour"),
        ("faint.jpg", lambda m: m.astype(np.uint8) * 40, (cv2.IMWRITE_JPEG_QUALITY, 60),
         "only reach"),
        ("photo.jpg", lambda m: np.tile(np.arange(128, dtype=np.uint8) * 2, (96, 1)), (),
         "between 64 and 191"),
    ],
)  # fmt: skip
def test_ambiguous_masks_are_refused_with_the_reason(tmp_path, name, make, params, reason):
    path = _write(tmp_path / name, make(_truth()), params)
    with pytest.raises(MaskValueError) as refused:
        read_mask(path)
    assert name in str(refused.value) and reason in str(refused.value)


def test_evaluate_scores_a_16_bit_mask_and_skips_a_label_map(shared_data, tmp_path):
    source = shared_data / "bloodcell" / "test"
    first, second = sorted((source / "images").glob("*.jpg"))[:2]
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for path in (first, second):
        (images / path.name).symlink_to(path)
    truth = read_mask(source / "masks" / f"{first.stem}.png")
    _write(masks / f"{first.stem}.png", truth.astype(np.uint16) * 255)  # once read as empty
    labels = truth.astype(np.uint8)
    labels[:10, :10] = 2
    _write(masks / f"{second.stem}.png", labels)
    reference = tmp_path / "reference"
    reference.mkdir()
    (reference / first.name).symlink_to(first)
    model = tmp_path / "m.keras"
    build_tiny_unet(seed=2).save(model)
    common = ["--model", str(model), "--tile", "256"]
    report = tmp_path / "r.json"
    code = main(["evaluate", *common, "--images", str(images), "--masks", str(masks),
                 "--json", str(report)])  # fmt: skip
    assert code == 2
    data = json.loads(report.read_text())
    assert [row["image"] for row in data["images"]] == [first.stem]
    assert data["skipped"][0]["image"] == second.stem
    assert "3 levels (0, 1, 2)" in data["skipped"][0]["reason"]
    # The 16-bit 0/255 mask scores exactly as the original 8-bit 0/255 one.
    eight = tmp_path / "eight.json"
    main(["evaluate", *common, "--images", str(reference), "--masks", str(source / "masks"),
          "--json", str(eight)])  # fmt: skip
    expected = json.loads(eight.read_text())["images"][0]
    assert data["images"][0]["dice"] == pytest.approx(expected["dice"], abs=1e-12)
    assert expected["dice"] > 0.05  # a real score, not the empty-mask zero
