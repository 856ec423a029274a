"""Tests for tiledseg.io: fixtures are made in tmp_path; real pairs come from ../shared/data."""

from __future__ import annotations

import os
import stat
import struct
import unicodedata
import warnings
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from tiledseg.errors import BitDepthWarning, ImageReadError, MaskSizeError, PixelLimitError
from tiledseg.io import (
    DEFAULT_MAX_PIXELS,
    IMAGE_EXTENSIONS,
    atomic_write_bytes,
    find_mask,
    image_size,
    list_images,
    pair_images_and_masks,
    read_image,
    read_mask,
    write_image,
    write_mask,
    write_probabilities,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(
    not DATA.is_dir(), reason=f"real data not found at {DATA} (see shared/data/README.md)"
)


def _reference_rgb(height: int = 24, width: int = 32) -> np.ndarray:
    y, x = np.mgrid[:height, :width]
    red, green = x * 255 // (width - 1), y * 255 // (height - 1)
    return np.stack([red, green, (red + green) // 3 + 20], axis=-1).astype(np.uint8)


def _reference_mask(height: int = 48, width: int = 64) -> np.ndarray:
    mask = np.zeros((height, width), np.uint8)
    cv2.ellipse(mask, (20, 24), (12, 16), 0, 0, 360, 1, -1)
    cv2.rectangle(mask, (40, 5), (58, 20), 1, -1)
    return mask.astype(bool)


def _write_cv2(path: Path, array: np.ndarray, params: tuple[int, ...] = ()) -> Path:
    assert cv2.imwrite(str(path), array, list(params))
    return path


def _png_header_only(height: int, width: int) -> bytes:
    """A grey PNG whose header claims height x width but whose pixel data is almost empty."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + payload))
        return struct.pack(">I", len(payload)) + kind + payload + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 100)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )


# --- reading images -------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".png", ".tif", ".tiff", ".bmp", ".webp"])
def test_lossless_formats_read_as_rgb_exactly(tmp_path, suffix):
    rgb = _reference_rgb()
    params = (cv2.IMWRITE_WEBP_QUALITY, 101) if suffix == ".webp" else ()  # 101: lossless
    path = _write_cv2(tmp_path / f"image{suffix}", rgb[..., ::-1], params)
    image = read_image(path)
    assert image.dtype == np.uint8 and image.shape == (24, 32, 3)
    np.testing.assert_array_equal(image, rgb)
    assert image_size(path) == (24, 32)


def test_jpeg_reads_close_to_original(tmp_path):
    rgb = _reference_rgb(64, 80)
    path = _write_cv2(tmp_path / "image.JPG", rgb[..., ::-1], (cv2.IMWRITE_JPEG_QUALITY, 95))
    image = read_image(path)
    assert image.shape == (64, 80, 3)
    assert np.abs(image.astype(int) - rgb).mean() < 3
    opencv_rgb = cv2.imread(str(path))[..., ::-1]  # an independent decoder
    assert np.abs(image.astype(int) - opencv_rgb).mean() < 1


def test_12_bit_data_in_a_16_bit_file_is_read_with_a_warning(tmp_path):
    """A camera's 12-bit values in a 16-bit PNG read as 0..16 of 255: nearly black, so warned."""
    rgb = _reference_rgb(64, 64).astype(np.uint16) * 16  # 0..4080
    path = _write_cv2(tmp_path / "camera.png", rgb[..., ::-1])
    with pytest.warns(BitDepthWarning, match=r"camera\.png is a 16-bit image whose values reach"):
        image = read_image(path)
    assert image.max() <= 16  # still read, as value/257
    full = _write_cv2(tmp_path / "full.png", (rgb * 16)[..., ::-1])  # the whole 16-bit range
    eight = _write_cv2(tmp_path / "eight.png", (rgb // 16).astype(np.uint8))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(full), read_image(eight)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_16_bit_grey_and_colour_are_rounded_not_truncated(tmp_path, suffix):
    values = np.array([0, 128, 129, 257 * 100 + 128, 51500, 65535, 40000, 1000])
    grey = np.tile(values, (3, 1)).astype(np.uint16)
    colour = np.stack([grey, grey[:, ::-1], np.full_like(grey, 65535)], axis=-1)
    expected_grey = np.round(grey / 257).astype(np.uint8)
    expected_colour = np.round(colour / 257).astype(np.uint8)
    # Keeping the high byte would give 201 for 51500; rounding 51500/257 gives 200.
    assert expected_grey[0, 4] == 200 and 51500 >> 8 == 201

    got_grey = read_image(_write_cv2(tmp_path / f"grey{suffix}", grey))
    np.testing.assert_array_equal(got_grey, np.repeat(expected_grey[..., None], 3, axis=-1))
    got_colour = read_image(_write_cv2(tmp_path / f"colour{suffix}", colour[..., ::-1]))
    np.testing.assert_array_equal(got_colour, expected_colour)


def test_grey_rgba_and_palette_become_rgb(tmp_path):
    rgb = _reference_rgb()
    grey = rgb[..., 0]
    np.testing.assert_array_equal(
        read_image(_write_cv2(tmp_path / "grey.png", grey)), np.stack([grey] * 3, axis=-1)
    )
    alpha = np.zeros_like(grey)  # fully transparent: colour must survive, alpha is dropped
    rgba = np.dstack([rgb, alpha])
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    np.testing.assert_array_equal(read_image(tmp_path / "rgba.png"), rgb)
    Image.fromarray(np.dstack([grey, alpha]), "LA").save(tmp_path / "la.png")
    np.testing.assert_array_equal(read_image(tmp_path / "la.png"), np.stack([grey] * 3, axis=-1))

    indices = (np.arange(24 * 32).reshape(24, 32) % 3).astype(np.uint8)
    palette_image = Image.fromarray(indices, "P")
    palette_image.putpalette([10, 20, 30, 200, 0, 0, 0, 250, 5])
    palette_image.save(tmp_path / "palette.png")
    colours = np.array([[10, 20, 30], [200, 0, 0], [0, 250, 5]], np.uint8)
    np.testing.assert_array_equal(read_image(tmp_path / "palette.png"), colours[indices])


def test_exif_orientation_is_applied(tmp_path):
    stored = np.zeros((20, 40, 3), np.uint8)  # H=20, W=40 as stored
    stored[..., 2] = 255
    stored[:8, :8] = (255, 0, 0)  # red block at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())

    image = read_image(path)
    assert image.shape == (40, 20, 3)
    assert image_size(path) == (40, 20)
    assert image[2, 17, 0] > 200 and image[2, 17, 2] < 60  # now at the top-right
    assert image[37, 2, 2] > 200 and image[37, 2, 0] < 60
    # OpenCV's IMREAD_COLOR applies EXIF orientation as well: an independent check.
    opencv_rgb = cv2.imread(str(path), cv2.IMREAD_COLOR)[..., ::-1]
    assert np.abs(image.astype(int) - opencv_rgb).mean() < 2


def test_bytes_input_matches_path_and_names_errors(tmp_path):
    path = _write_cv2(tmp_path / "image.png", _reference_rgb()[..., ::-1])
    data = path.read_bytes()
    np.testing.assert_array_equal(read_image(data), read_image(path))
    np.testing.assert_array_equal(read_image(bytearray(data)), read_image(path))
    assert image_size(data) == (24, 32)
    with pytest.raises(ImageReadError, match=r"upload\.jpg"):
        read_image(b"this is not an image", name="upload.jpg")
    with pytest.raises(ImageReadError, match="<image bytes>"):
        read_image(b"")
    with pytest.raises(TypeError, match="path or bytes"):
        read_image(123)


# --- reading masks --------------------------------------------------------------------------


def _save_mask_variant(tmp_path: Path, kind: str, mask: np.ndarray) -> Path:
    path = tmp_path / f"mask_{kind.replace('/', '_')}.png"
    if kind == "0/255":
        _write_cv2(path, mask.astype(np.uint8) * 255)
    elif kind == "0/1":
        _write_cv2(path, mask.astype(np.uint8))
    elif kind == "16-bit":
        _write_cv2(path, mask.astype(np.uint16) * 65535)
    elif kind == "palette":  # PASCAL VOC style: index 1 is dark red
        image = Image.fromarray(mask.astype(np.uint8), "P")
        image.putpalette([0, 0, 0, 128, 0, 0])
        image.save(path)
    elif kind == "rgb":  # green on black
        colour = np.zeros((*mask.shape, 3), np.uint8)
        colour[mask] = (0, 200, 0)
        Image.fromarray(colour).save(path)
    elif kind == "rgba":
        Image.fromarray(
            np.dstack([mask.astype(np.uint8) * 255] * 3 + [np.full(mask.shape, 255, np.uint8)])
        ).save(path)
    elif kind == "1-bit":
        Image.fromarray(mask).convert("1").save(path)
    return path


@pytest.mark.parametrize("kind", ["0/255", "0/1", "16-bit", "palette", "rgb", "rgba", "1-bit"])
def test_mask_encodings_read_exactly(tmp_path, kind):
    mask = _reference_mask()
    got = read_mask(_save_mask_variant(tmp_path, kind, mask), shape=mask.shape)
    assert got.dtype == bool and got.shape == mask.shape
    np.testing.assert_array_equal(got, mask)


def test_jpeg_noisy_mask_agrees_with_clean_mask(tmp_path):
    mask = _reference_mask(96, 128)
    path = _write_cv2(
        tmp_path / "mask.jpg", mask.astype(np.uint8) * 255, (cv2.IMWRITE_JPEG_QUALITY, 70)
    )
    noisy = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    assert len(np.unique(noisy)) > 10, "fixture should really be noisy"
    assert (read_mask(path) == mask).mean() > 0.99


def test_mask_size_mismatch_names_both_sizes(tmp_path):
    path = _write_cv2(tmp_path / "ISIC_x_segmentation.png", np.zeros((767, 1022), np.uint8))
    with pytest.raises(MaskSizeError) as caught:
        read_mask(path, shape=(768, 1024))
    message = str(caught.value)
    # As width x height, as a user's image editor shows them, the resize target too.
    assert "is 1022x767 px (width x height) but its image is 1024x768;" in message
    assert "resize it to 1024x768 px (width x height)" in message
    assert "ISIC_x_segmentation.png" in message
    rotated = _write_cv2(tmp_path / "rotated.png", np.zeros((20, 30), np.uint8))
    with pytest.raises(MaskSizeError, match="rotated by 90 degrees"):
        read_mask(rotated, shape=(30, 20))
    with pytest.raises(ValueError, match="shape"):
        read_mask(rotated, shape=(20,))
    # An image's whole shape works as it is; its channels are not compared.
    assert read_mask(rotated, shape=(20, 30, 3)).shape == (20, 30)
    with pytest.raises(MaskSizeError, match="rotated by 90 degrees"):
        read_mask(rotated, shape=(30, 20, 3))


# --- pixel limit ----------------------------------------------------------------------------


def test_pixel_limit_argument_and_environment(tmp_path, monkeypatch):
    assert DEFAULT_MAX_PIXELS == 80_000_000
    path = _write_cv2(tmp_path / "wide.png", np.zeros((50, 100, 3), np.uint8))
    with pytest.raises(PixelLimitError) as caught:
        read_image(path, max_pixels=1000)
    message = str(caught.value)
    for part in ("wide.png", "50x100", "5,000", "1,000", "max_pixels", "TILEDSEG_MAX_PIXELS"):
        assert part in message
    assert isinstance(caught.value, ImageReadError)
    with pytest.raises(PixelLimitError):
        read_mask(path, max_pixels=4999)
    assert read_image(path, max_pixels=5000).shape == (50, 100, 3)

    monkeypatch.setenv("TILEDSEG_MAX_PIXELS", "4999")
    with pytest.raises(PixelLimitError, match="4,999"):
        read_image(path)
    assert read_image(path, max_pixels=5000).shape == (50, 100, 3)  # argument wins
    monkeypatch.setenv("TILEDSEG_MAX_PIXELS", "lots")
    with pytest.raises(ValueError, match="TILEDSEG_MAX_PIXELS"):
        read_image(path)
    with pytest.raises(ValueError, match="max_pixels"):
        read_image(path, max_pixels=0)


def test_pixel_limit_is_checked_from_the_header_before_decoding(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(14_000, 14_000))  # 196 MP: over Pillow's own bomb limit
    assert image_size(path) == (14_000, 14_000)
    with pytest.raises(PixelLimitError, match="14000x14000"):
        read_image(path)
    # Above our limit Pillow's DecompressionBombError must not preempt: decoding is attempted
    # and fails on the missing pixel data.
    with pytest.raises(ImageReadError, match="corrupt or truncated") as caught:
        read_image(path, max_pixels=200_000_000)
    assert not isinstance(caught.value, PixelLimitError)


# --- unreadable input -----------------------------------------------------------------------


def _corrupt_file(tmp_path: Path, kind: str) -> Path:
    jpeg = cv2.imencode(".jpg", _reference_rgb(64, 64), [cv2.IMWRITE_JPEG_QUALITY, 95])[1]
    png = cv2.imencode(".png", _reference_rgb(64, 64))[1]
    png16 = cv2.imencode(".png", _reference_rgb(64, 64).astype(np.uint16) * 257)[1]
    contents = {
        "truncated.jpg": jpeg.tobytes()[: len(jpeg) // 2],
        "truncated.png": png.tobytes()[: len(png) // 2],
        "truncated16.png": png16.tobytes()[: len(png16) // 2],  # decoded by OpenCV
        "random.jpg": np.random.default_rng(0).bytes(2000),
        "empty.png": b"",
        "notes.txt": b"just some text\n",
        "paper.pdf": b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n",
    }
    path = tmp_path / kind
    path.write_bytes(contents[kind])
    return path


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("truncated.jpg", "truncated"),
        ("truncated.png", "truncated"),
        ("truncated16.png", "truncated"),
        ("random.jpg", "not an image"),
        ("empty.png", "empty"),
        ("notes.txt", "not an image"),
        ("paper.pdf", "not an image"),
    ],
)
def test_unreadable_files_raise_image_read_error(tmp_path, kind, reason):
    path = _corrupt_file(tmp_path, kind)
    for reader in (read_image, read_mask):
        with pytest.raises(ImageReadError, match=reason) as caught:
            reader(path)
        assert caught.value.source == str(path) and str(path) in str(caught.value)


def test_gif_missing_and_directory_are_explained(tmp_path):
    Image.fromarray(_reference_rgb()).save(tmp_path / "anim.gif")
    with pytest.raises(ImageReadError, match=r"GIF images are not supported.*convert it to PNG"):
        read_image(tmp_path / "anim.gif")
    with pytest.raises(ImageReadError, match="GIF"):
        image_size(tmp_path / "anim.gif")
    with pytest.raises(ImageReadError, match=r"missing\.jpg.*no such file"):
        read_image(tmp_path / "missing.jpg")
    with pytest.raises(ImageReadError, match="directory"):
        read_image(tmp_path)


# --- writing --------------------------------------------------------------------------------


def test_write_mask_accepts_bool_01_and_0255(tmp_path):
    mask = _reference_mask()
    for i, given in enumerate(
        [mask, mask.astype(np.uint8), mask.astype(np.uint8) * 255, mask[..., None]]
    ):
        path = write_mask(tmp_path / f"m{i}.png", given)
        stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert stored.dtype == np.uint8 and stored.shape == mask.shape
        np.testing.assert_array_equal(stored, mask.astype(np.uint8) * 255)
        np.testing.assert_array_equal(read_mask(path), mask)


def test_write_image_round_trips_rgb(tmp_path):
    rgb = _reference_rgb(64, 80)
    png = write_image(tmp_path / "out.png", rgb)
    np.testing.assert_array_equal(cv2.imread(str(png))[..., ::-1], rgb)  # channel order kept
    for suffix in (".jpg", ".jpeg", ".webp"):
        path = write_image(tmp_path / f"out{suffix}", rgb, quality=95)
        assert np.abs(read_image(path).astype(int) - rgb).mean() < 3
    small = write_image(tmp_path / "low.jpg", rgb, quality=10).stat().st_size
    assert small < (tmp_path / "out.jpg").stat().st_size


def test_write_probabilities_stores_rounded_levels(tmp_path):
    probs = np.array([[0.0, 0.5, 1.0], [0.2, 0.999, 0.001]], np.float32)
    path = write_probabilities(tmp_path / "p.png", probs)
    stored = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(stored, [[0, 128, 255], [51, 255, 0]])
    assert np.abs(stored / 255 - probs).max() <= 1 / 510 + 1e-7
    for bad in (np.full((2, 2), 1.5), np.full((2, 2), np.nan)):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            write_probabilities(tmp_path / "bad.png", bad)


def test_failed_writes_leave_existing_file_untouched(tmp_path):
    target = tmp_path / "result.png"
    target.write_bytes(b"previous result")
    bad_calls = [
        (ValueError, lambda: write_mask(target, np.array([[0, 3], [1, 0]]))),
        (ValueError, lambda: write_mask(target, np.zeros((2, 2, 3)))),
        (ValueError, lambda: write_mask(tmp_path / "result.jpg", np.zeros((2, 2), bool))),
        (ValueError, lambda: write_image(target, np.zeros((4, 4, 3), np.float32))),
        (ValueError, lambda: write_image(tmp_path / "result.gif", np.zeros((4, 4, 3), np.uint8))),
        (ValueError, lambda: write_image(target, np.zeros((4, 4, 3), np.uint8), quality=0)),
        (TypeError, lambda: atomic_write_bytes(target, "text, not bytes")),
        (FileNotFoundError, lambda: atomic_write_bytes(tmp_path / "no_dir" / "x.png", b"x")),
    ]
    for error, call in bad_calls:
        with pytest.raises(error):
            call()
    assert target.read_bytes() == b"previous result"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.png"]


@pytest.mark.skipif(os.name != "posix", reason="RLIMIT_FSIZE is POSIX-only")
def test_write_interrupted_mid_way_leaves_no_partial_file(tmp_path):
    import resource
    import signal

    target = tmp_path / "mask.png"
    target.write_bytes(b"previous result")
    # A real mid-write failure: the OS refuses to grow any file past 64 KiB (EFBIG).
    old_limit = resource.getrlimit(resource.RLIMIT_FSIZE)
    old_handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 * 1024, old_limit[1]))
        with pytest.raises(OSError, match="too large"):
            atomic_write_bytes(target, b"x" * (1024 * 1024))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, old_limit)
        signal.signal(signal.SIGXFSZ, old_handler)
    assert target.read_bytes() == b"previous result"
    assert [p.name for p in tmp_path.iterdir()] == ["mask.png"]
    assert atomic_write_bytes(target, b"new") == target and target.read_bytes() == b"new"


def test_written_files_follow_the_umask(tmp_path):
    umask = os.umask(0)
    os.umask(umask)
    path = atomic_write_bytes(tmp_path / "out.bin", b"data")
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


# --- listing and pairing --------------------------------------------------------------------


def test_list_images_expands_directories_sorted_non_recursive(tmp_path):
    for name in ["b.png", "A.JPG", "c.tiff", "d.webp", "notes.txt", ".hidden.jpg", "e.bmp"]:
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "f.png").write_bytes(b"x")
    extra = tmp_path / "sub" / "f.png"
    listed = list_images([tmp_path, extra])
    assert [p.name for p in listed] == ["A.JPG", "b.png", "c.tiff", "d.webp", "e.bmp", "f.png"]
    assert list_images(str(tmp_path / "notes.txt")) == [tmp_path / "notes.txt"]  # files pass
    with pytest.raises(FileNotFoundError, match=r"nowhere\.jpg"):
        list_images([tmp_path / "nowhere.jpg"])
    assert set(IMAGE_EXTENSIONS) == {".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp"}


def test_find_mask_and_pairing_accept_both_spellings(tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for stem in ["a", "b", "c"]:
        (images / f"{stem}.jpg").write_bytes(b"x")
    (masks / "a.png").write_bytes(b"x")
    (masks / "a_segmentation.png").write_bytes(b"x")
    (masks / "b_segmentation.png").write_bytes(b"x")
    assert find_mask(images / "a.jpg", masks) == masks / "a.png"
    assert find_mask(images / "b.jpg", masks) == masks / "b_segmentation.png"
    assert find_mask(images / "c.jpg", masks) is None
    (masks / "d.png").write_bytes(b"x")  # a PNG image beside masks is not its own mask
    assert find_mask(masks / "d.png", masks) is None
    pairs, unpaired = pair_images_and_masks([images], masks)
    assert pairs == [
        (images / "a.jpg", masks / "a.png"),
        (images / "b.jpg", masks / "b_segmentation.png"),
    ]
    assert unpaired == [images / "c.jpg"]
    with pytest.raises(NotADirectoryError, match="nomasks"):
        find_mask(images / "a.jpg", tmp_path / "nomasks")


def test_find_mask_matches_a_name_spelled_decomposed_or_composed(tmp_path):
    """macOS writes "Läsion" decomposed (NFD), most tools composed (NFC): the same name."""
    nfd, nfc = unicodedata.normalize("NFD", "Läsion"), unicodedata.normalize("NFC", "Läsion")
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    (images / f"{nfd}.jpg").write_bytes(b"x")
    (images / f"{nfc}_2.jpg").write_bytes(b"x")
    (masks / f"{nfc}.png").write_bytes(b"x")
    (masks / f"{nfd}_2_segmentation.png").write_bytes(b"x")
    assert find_mask(images / f"{nfd}.jpg", masks) == masks / f"{nfc}.png"
    assert find_mask(images / f"{nfc}_2.jpg", masks) == masks / f"{nfd}_2_segmentation.png"
    (images / "Ünpaired.jpg").write_bytes(b"x")
    assert find_mask(images / "Ünpaired.jpg", masks) is None


@needs_data
@pytest.mark.parametrize(("subset", "count"), [("isic2017/valid", 52), ("bloodcell/test", 10)])
def test_real_data_lists_and_pairs(subset, count):
    listed = list_images([DATA / subset / "images"])
    assert len(listed) == count and listed == sorted(listed)
    assert all(p.suffix == ".jpg" for p in listed)
    pairs, unpaired = pair_images_and_masks(listed, DATA / subset / "masks")
    assert unpaired == [] and len(pairs) == count
    assert all(mask.stem == image.stem for image, mask in pairs)


@needs_data
def test_real_fullres_images_and_masks_match():
    pairs, unpaired = pair_images_and_masks(
        [DATA / "isic2017/fullres/images"], DATA / "isic2017/fullres/masks"
    )
    assert len(pairs) == 17 and unpaired == []
    for image_path, mask_path in pairs:  # header sizes of every pair against decoded masks
        mask = read_mask(mask_path, shape=image_size(image_path))
        assert mask.any() and not mask.all()
    largest = max(pairs, key=lambda pair: np.prod(image_size(pair[0])))[0]
    image = read_image(largest)
    assert image.shape == (2848, 4288, 3) and image.dtype == np.uint8
    mask = read_mask(find_mask(largest, DATA / "isic2017/fullres/masks"), shape=image.shape[:2])
    assert set(np.unique(mask)) == {False, True}
