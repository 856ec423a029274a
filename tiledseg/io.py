"""Read images and masks safely, encode and write outputs atomically, list and pair image files.

Decoding uses Pillow rather than OpenCV because Pillow reads the size from the header without
decoding (so the pixel limit is checked first), raises on truncated files where OpenCV warns on
stderr and returns grey-filled pixels, and says why a file is unreadable where ``cv2.imdecode``
only returns None. One exception: Pillow keeps just the high byte of 16-bit colour PNG/TIFF, so
after Pillow has checked those files OpenCV decodes them at full depth (IMREAD_COLOR applies
EXIF orientation there too). Writing uses ``cv2.imencode``, then one atomic write of the bytes.
"""

from __future__ import annotations

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS_ENV",
    "atomic_write_bytes",
    "encode_image",
    "encode_mask",
    "encode_probabilities",
    "find_mask",
    "image_size",
    "list_images",
    "pair_images_and_masks",
    "read_image",
    "read_image_and_notes",
    "read_mask",
    "to_uint8",
    "write_image",
    "write_mask",
    "write_probabilities",
]

import io
import os
import struct
import unicodedata
import warnings
import zlib
from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from tiledseg._validation import validate_choice, validate_range
from tiledseg.atomic import atomic_write_bytes
from tiledseg.errors import BitDepthWarning, ImageReadError, MaskSizeError, PixelLimitError
from tiledseg.limits import env_limit
from tiledseg.masks import LOSSY_FORMATS, check_alpha, foreground

DEFAULT_MAX_PIXELS = 80_000_000
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".bmp", ".webp")
MAX_PIXELS_ENV = "TILEDSEG_MAX_PIXELS"

_Source = str | os.PathLike | bytes
# Pillow names camera JPEGs with extra pictures "MPO"; they decode as JPEG.
_FORMATS = {"JPEG", "MPO", "PNG", "TIFF", "BMP", "WEBP"}
_SUPPORTED = "JPEG, PNG, TIFF, BMP and WebP"
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, struct.error, zlib.error)
_WRITE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")

# Our own limit (checked from the header before any decoding) replaces Pillow's bomb check,
# whose DecompressionBombError would otherwise fire first, without our size and advice.
Image.MAX_IMAGE_PIXELS = None


def _resolve_max_pixels(max_pixels: int | None) -> int:
    if max_pixels is not None:
        return validate_range(max_pixels, "max_pixels", low=1, integer=True)
    return env_limit(MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, example=120_000_000)


def _open(source: _Source, name: str | None) -> tuple[str, bytes | Path]:
    """Return a label for messages and the bytes or path to decode; reject missing/empty files."""
    if isinstance(source, bytes | bytearray | memoryview):
        label = name or "<image bytes>"
        if len(source) == 0:
            raise ImageReadError(label, "the data is empty (0 bytes)")
        return label, bytes(source)
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"`source` must be a path or bytes. Received: source={source!r}")
    path = Path(source)
    label = name or str(path)
    if not path.exists():
        raise ImageReadError(label, "no such file")
    if not path.is_file():
        raise ImageReadError(label, "it is a directory, not an image file")
    if path.stat().st_size == 0:
        raise ImageReadError(label, "the file is empty (0 bytes)")
    return label, path


def _pillow_open(label: str, data: bytes | Path) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data) if isinstance(data, bytes) else data)
    except UnidentifiedImageError:
        raise ImageReadError(
            label, f"not an image or an unsupported format (supported: {_SUPPORTED})"
        ) from None
    except _DECODE_ERRORS as error:
        raise ImageReadError(label, f"the header is corrupt ({error})") from error
    if image.format not in _FORMATS:
        image.close()
        raise ImageReadError(
            label,
            f"{image.format} images are not supported (supported: {_SUPPORTED}); "
            "convert it to PNG first",
        )
    return image


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    """(H, W) after EXIF orientation, from the header only."""
    width, height = image.size
    # A PNG's eXIf chunk may follow the pixel data, and Pillow would decode it all to find it.
    cheap = image.format != "PNG" or "exif" in image.info
    if cheap and image.getexif().get(ExifTags.Base.Orientation) in (5, 6, 7, 8):
        width, height = height, width
    return height, width


def _decode(
    source: _Source, name: str | None, max_pixels: int | None
) -> tuple[str, np.ndarray, str]:
    """Decode to HxW (grey) or HxWx3 (RGB) uint8/uint16 values, oriented, alpha dropped.

    Returns the label for messages, the values and Pillow's format name ("PNG", "JPEG", ...).
    """
    limit = _resolve_max_pixels(max_pixels)
    label, data = _open(source, name)
    with _pillow_open(label, data) as image:
        height, width = _oriented_size(image)
        if height * width > limit:
            raise PixelLimitError(
                label,
                f"the image is {height}x{width} (HxW) = {height * width:,} pixels, above the "
                f"limit of {limit:,} pixels. If you trust the file, raise the limit with "
                f"max_pixels={height * width} or the environment variable "
                f"{MAX_PIXELS_ENV}={height * width}",
            )
        try:
            return label, _pixels(image, label, data), str(image.format)
        except ImageReadError:
            raise
        except _DECODE_ERRORS as error:
            raise ImageReadError(label, f"the file is corrupt or truncated ({error})") from error


def _pixels(image: Image.Image, label: str, data: bytes | Path) -> np.ndarray:
    # Pillow empties `tile` once loaded, so look for 16-bit samples first.
    deep_colour = image.mode in ("RGB", "RGBA", "LA") and any(
        ";16" in str(tile.args) for tile in image.tile
    )
    image.load()  # Decodes everything, so truncation is caught here even for deep colour.
    if deep_colour:
        raw = data if isinstance(data, bytes) else data.read_bytes()
        bgr = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_ANYDEPTH | cv2.IMREAD_COLOR)
        if bgr is None:
            raise ImageReadError(label, "OpenCV could not decode its 16-bit colour data")
        return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    image = ImageOps.exif_transpose(image)
    if image.mode.startswith("I;16"):
        return np.asarray(image).astype(np.uint16)
    if image.mode == "I":
        values = np.asarray(image)
        if values.min() < 0 or values.max() > 65535:
            raise ImageReadError(label, "32-bit pixel values are not supported; save as 16 bit")
        return values.astype(np.uint16)
    if image.mode == "F":
        raise ImageReadError(label, "floating-point pixels are not supported; save as 8 or 16 bit")
    if image.mode in ("1", "L", "LA", "La"):
        return np.asarray(image.convert("L"))
    # Palettes may carry transparency, which Pillow only expands cleanly through RGBA.
    target = "RGBA" if image.mode in ("P", "PA") else "RGB"
    return np.asarray(image.convert(target))[..., :3]


def _alpha(label: str, data: bytes | Path) -> np.ndarray | None:
    """The oriented alpha channel of a file that has one (8-bit), else None."""
    with _pillow_open(label, data) as image:
        transparent = image.mode in ("RGBA", "LA", "La", "RGBa", "PA") or (
            image.mode in ("P", "L", "RGB") and "transparency" in image.info
        )
        if not transparent:
            return None
        try:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGBA").getchannel("A"))
        except _DECODE_ERRORS as error:
            raise ImageReadError(label, f"the file is corrupt or truncated ({error})") from error


# A 16-bit image below 2**12 holds at most 12 bits of data: it would read as 0..15 of 255.
_NARROW_16_BIT = 4096


def to_uint8(values: np.ndarray, label: str = "the image") -> np.ndarray:
    """uint16 values as uint8, round(v / 257) (65535 -> 255, 257*k -> k); uint8 as it is.

    Warns:
        BitDepthWarning: the uint16 values stay under 4096 (10- or 12-bit data), so they come
            out nearly black; ``label`` names the image in the message.
    """
    if values.dtype != np.uint16:
        return values
    if 0 < (peak := int(values.max())) < _NARROW_16_BIT:
        warnings.warn(
            BitDepthWarning(
                f"{label} is a 16-bit image whose values reach only {peak} of 65535, as 10- or "
                f"12-bit camera data stored in 16 bits do; read as value/257 it is nearly black "
                f"(at most {round(peak / 257)} of 255), and a mask of it is unreliable. Save it "
                "as an 8-bit image with its full range (e.g. Fiji: Image > Adjust > Brightness/"
                "Contrast > Apply, then Image > Type > 8-bit) and use that."
            ),
            stacklevel=3,
        )
    # Rounding v/257, not keeping the high byte.
    return ((values.astype(np.uint32) + 128) // 257).astype(np.uint8)


def read_image(
    source: _Source, *, name: str | None = None, max_pixels: int | None = None
) -> np.ndarray:
    """Read an image file or its encoded bytes as RGB uint8, applying EXIF orientation.

    Args:
        source: str | PathLike | bytes. JPEG, PNG, TIFF, BMP or WebP; 8- or 16-bit; grey, RGB
            or RGBA (alpha dropped, grey copied to 3 channels). Multi-page files: first page.
        name: str | None, default None. Name used in error messages (useful for bytes).
        max_pixels: int | None, default None. Largest H*W accepted, checked from the header
            before decoding; None means env var TILEDSEG_MAX_PIXELS, else 80 megapixels.
    Returns:
        np.ndarray (H, W, 3) uint8 RGB. 16-bit values v become round(v / 257).
    Raises:
        ImageReadError: missing, empty, corrupt, truncated or unsupported (e.g. GIF) input.
        PixelLimitError: more pixels than the limit; the message says how to raise it.
    Warns:
        BitDepthWarning: a 16-bit image whose values stay under 4096 (10- or 12-bit data),
            which reads nearly black.
    Example:
        >>> read_image("lesion.jpg").shape  # doctest: +SKIP
        (2848, 4288, 3)
    """
    label, values, _ = _decode(source, name, max_pixels)
    values = to_uint8(values, label)
    return cv2.cvtColor(values, cv2.COLOR_GRAY2RGB) if values.ndim == 2 else values


def read_image_and_notes(
    source: _Source, *, name: str | None = None, max_pixels: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """:func:`read_image`, with its :class:`~tiledseg.errors.BitDepthWarning` returned as text.

    For front ends that show each image's notes with that image (Python's own filter would
    show a warning only for the first image of a run); other warnings are issued as usual.

    Returns:
        (the RGB uint8 image, the messages of its BitDepthWarnings).
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BitDepthWarning)
        image = read_image(source, name=name, max_pixels=max_pixels)
    notes = []
    for warning in caught:
        if issubclass(warning.category, BitDepthWarning):
            notes.append(str(warning.message))
        else:
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
    return image, notes


def read_mask(
    source: _Source,
    *,
    name: str | None = None,
    shape: tuple[int, ...] | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Read a binary mask: 0/1, 0/255, 0/65535, 16-bit 0/255, label, palette, RGB, JPEG-noisy.

    Foreground follows one rule (:mod:`tiledseg.masks`): with two levels, one of them 0, every
    pixel that is not 0; a lossless colour mask holds black and one colour; JPEG and WebP masks
    with noisy edges count a brightest channel above 127. Masks the rule cannot read
    unambiguously (several labels or colours, two levels without 0, interpolated edges in a
    lossless file, a faint JPEG) are refused with the reason.

    Args:
        source, name, max_pixels: as in `read_image`.
        shape: tuple | None, default None. The image's (H, W) to check against, or its
            whole shape (H, W, C) as ``image.shape`` gives it.
    Returns:
        np.ndarray (H, W) bool.
    Raises:
        ImageReadError, PixelLimitError: as in `read_image`.
        MaskValueError: the values cannot be read as one foreground (an ImageReadError).
        MaskSizeError: `shape` was given and the mask's height and width differ.
    Example:
        >>> read_mask("ISIC_0001769.png", shape=(2016, 3024)).dtype  # doctest: +SKIP
        dtype('bool')
    """
    if shape is not None:
        if not isinstance(shape, tuple | list) or len(shape) not in (2, 3):
            raise ValueError(
                "`shape` must be the image's (height, width), or its whole shape "
                f"(height, width, channels). Received: shape={shape!r}"
            )
        shape = tuple(shape[:2])  # `image.shape` works as it is
        for size in shape:
            validate_range(size, "shape", low=1, integer=True)
    label, values, image_format = _decode(source, name, max_pixels)
    mask = foreground(values, label, lossy=image_format in LOSSY_FORMATS)
    check_alpha(mask, _alpha(*_open(source, name)), label)
    if shape is not None and mask.shape != tuple(shape):
        (mask_h, mask_w), (image_h, image_w) = mask.shape, shape
        hint = ""
        if (mask_h, mask_w) == (image_w, image_h):
            hint = " The mask looks rotated by 90 degrees: check the image's EXIF orientation."
        # Sizes as width x height, as image viewers and editors show them: the advice to
        # resize must be followable as written.
        raise MaskSizeError(
            f"Mask {label} is {mask_w}x{mask_h} px (width x height) but its image is "
            f"{image_w}x{image_h}; masks must have the image's height and width. Check that the "
            f"mask belongs to this image, or resize it to {image_w}x{image_h} px (width x "
            "height) with nearest-neighbour interpolation." + hint
        )
    return mask


def image_size(source: _Source, *, name: str | None = None) -> tuple[int, int]:
    """Return an image's (H, W) after EXIF orientation, reading only its header.

    Raises ImageReadError as `read_image` does. Example: ``image_size("big.tif") -> (7000, 9000)``.
    """
    label, data = _open(source, name)
    with _pillow_open(label, data) as image:
        return _oriented_size(image)


def _encode_or_raise(suffix: str, image: np.ndarray, params: list[int], what: str) -> bytes:
    ok, encoded = cv2.imencode(suffix, image, params)
    if not ok:
        raise OSError(f"OpenCV could not encode {what} as {suffix}")
    return encoded.tobytes()


def _check_png(path: str | os.PathLike, what: str) -> Path:
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{what} must be saved as .png (lossless). Received: path={str(path)!r}")
    return path


def _as_2d(array: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.ndim != 2 or array.size == 0:
        raise ValueError(f"`{name}` must be a non-empty HxW array. Received: shape={array.shape}")
    return array


def encode_mask(mask: np.ndarray) -> bytes:
    """A binary mask (bool, 0/1 or 0/255; HxW or HxWx1) as the bytes of a 0/255 uint8 PNG.

    Raises ValueError for other values (threshold soft maps first, or use
    `encode_probabilities`). Example: ``encode_mask(probs > 0.5)[:4] == b"\\x89PNG"``.
    """
    mask = _as_2d(mask, "mask")
    if mask.dtype != bool:
        high = 1 if mask.max() <= 1 else 255
        foreground = mask == high
        if np.count_nonzero(foreground) + np.count_nonzero(mask == 0) != mask.size:
            raise ValueError(
                "`mask` must hold only 0/1 or 0/255 (or be bool); threshold soft values first "
                f"or use write_probabilities. Received: values from {mask.min()} to {mask.max()}"
            )
        mask = foreground
    return _encode_or_raise(".png", mask.astype(np.uint8) * 255, [], "the mask")


def encode_image(image: np.ndarray, suffix: str = ".png", *, quality: int = 92) -> bytes:
    """An RGB uint8 (H, W, 3) image encoded as ``suffix`` (.png, .jpg, .jpeg or .webp).

    `quality` (1-100, default 92) applies to JPEG and WebP. Raises ValueError for another
    suffix or array. Example: ``encode_image(overlay, ".jpg", quality=90)``.
    """
    suffix = validate_choice(suffix.lower(), _WRITE_SUFFIXES, "path suffix")
    validate_range(quality, "quality", low=1, high=100, integer=True)
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8 or image.size == 0:
        raise ValueError(
            "`image` must be a non-empty RGB uint8 array of shape (H, W, 3). "
            f"Received: shape={image.shape}, dtype={image.dtype}"
        )
    flag = {".png": None, ".webp": cv2.IMWRITE_WEBP_QUALITY}.get(suffix, cv2.IMWRITE_JPEG_QUALITY)
    params = [] if flag is None else [flag, quality]
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    return _encode_or_raise(suffix, bgr, params, "the image")


def encode_probabilities(probs: np.ndarray) -> bytes:
    """Foreground probabilities in [0, 1] (HxW) as the bytes of an 8-bit grey PNG.

    Each pixel stores round(p * 255); read back as value / 255 it is within 1/510 of p.
    Raises ValueError for values outside [0, 1] or NaN.
    """
    probs = _as_2d(probs, "probs").astype(np.float32, copy=False)
    invalid = ~((probs >= 0) & (probs <= 1))  # NaN fails both comparisons
    if invalid.any():
        raise ValueError(
            "`probs` must hold probabilities in [0, 1] without NaN. Received: "
            f"{np.count_nonzero(invalid)} invalid values, e.g. {probs[invalid][0]}"
        )
    levels = np.rint(probs * 255).astype(np.uint8)
    return _encode_or_raise(".png", levels, [], "the probabilities")


def write_mask(path: str | os.PathLike, mask: np.ndarray) -> Path:
    """Write a binary mask (bool, 0/1 or 0/255; HxW or HxWx1) as a 0/255 uint8 PNG, atomically.

    Raises ValueError for other values (threshold soft maps first, or use
    `write_probabilities`). Example: ``write_mask("out/ISIC_1.png", probs > 0.5)``.
    """
    path = _check_png(path, "Masks")
    return atomic_write_bytes(path, encode_mask(mask))


def write_image(path: str | os.PathLike, image: np.ndarray, *, quality: int = 92) -> Path:
    """Write an RGB uint8 (H, W, 3) image, atomically, as .png, .jpg, .jpeg or .webp.

    `quality` (1-100, default 92) applies to JPEG and WebP. Raises ValueError for another
    suffix or array. Example: ``write_image("out/overlay.jpg", overlay, quality=90)``.
    """
    path = Path(path)
    return atomic_write_bytes(path, encode_image(image, path.suffix, quality=quality))


def write_probabilities(path: str | os.PathLike, probs: np.ndarray) -> Path:
    """Write foreground probabilities in [0, 1] (HxW) as an 8-bit grey PNG, atomically.

    Each pixel stores round(p * 255); read back as value / 255 it is within 1/510 of p.
    Raises ValueError for values outside [0, 1] or NaN.
    Example: ``write_probabilities("out/ISIC_1_prob.png", probs)``.
    """
    path = _check_png(path, "Probabilities")
    return atomic_write_bytes(path, encode_probabilities(probs))


def list_images(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Expand files and directories into image paths.

    Files pass through as given. A directory gives its files with a suffix in IMAGE_EXTENSIONS
    (any case), sorted by name, not recursing and skipping hidden files. Raises
    FileNotFoundError naming a path that does not exist. Example: ``list_images(["scans/"])``.
    """
    if isinstance(paths, str | os.PathLike):
        paths = [paths]
    images: list[Path] = []
    for entry in map(Path, paths):
        if entry.is_dir():
            # Hidden files include macOS "._x.jpg" resource forks, which are not images.
            found = [p for p in entry.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS]
            found = [p for p in found if not p.name.startswith(".") and p.is_file()]
            images.extend(sorted(found, key=lambda p: p.name))
        elif entry.exists():
            images.append(entry)
        else:
            raise FileNotFoundError(f"No such file or directory: {str(entry)!r}")
    return images


def find_mask(image_path: str | os.PathLike, mask_dir: str | os.PathLike) -> Path | None:
    """Return `mask_dir/<stem>.png` or `mask_dir/<stem>_segmentation.png` (ISIC's spelling).

    Names are compared after Unicode NFC normalisation. Returns None where neither exists.
    Raises NotADirectoryError if `mask_dir` is not one.
    Example: ``find_mask("images/ISIC_0001769.jpg", "masks")`` -> ``masks/ISIC_0001769.png``.
    """
    image_path, mask_dir = Path(image_path), Path(mask_dir)
    if not mask_dir.is_dir():
        raise NotADirectoryError(f"Mask directory {str(mask_dir)!r} does not exist.")
    candidates = (f"{image_path.stem}.png", f"{image_path.stem}_segmentation.png")
    for candidate in candidates:
        if _is_mask_for(mask_dir / candidate, image_path):
            return mask_dir / candidate
    if image_path.stem.isascii():
        return None
    # A non-ASCII name has two Unicode spellings: macOS writes "Läsion" decomposed (NFD), most
    # other tools composed (NFC); compare the names after NFC, as the app does.
    by_name = {unicodedata.normalize("NFC", path.name): path for path in mask_dir.iterdir()}
    for candidate in candidates:
        mask_path = by_name.get(unicodedata.normalize("NFC", candidate))
        if mask_path is not None and _is_mask_for(mask_path, image_path):
            return mask_path
    return None


def _is_mask_for(mask_path: Path, image_path: Path) -> bool:
    # A PNG image kept beside its masks must not be taken for its own mask.
    return mask_path.is_file() and not (image_path.exists() and mask_path.samefile(image_path))


def pair_images_and_masks(
    image_paths: Iterable[str | os.PathLike], mask_dir: str | os.PathLike
) -> tuple[list[tuple[Path, Path]], list[Path]]:
    """Pair images (files or directories, as in `list_images`) with masks found by `find_mask`.

    Returns (pairs, unpaired): the (image, mask) pairs and the images without a mask.
    Example: ``pairs, missing = pair_images_and_masks(["data/images"], "data/masks")``.
    """
    pairs: list[tuple[Path, Path]] = []
    unpaired: list[Path] = []
    for image_path in list_images(image_paths):
        mask_path = find_mask(image_path, mask_dir)
        if mask_path is None:
            unpaired.append(image_path)
        else:
            pairs.append((image_path, mask_path))
    return pairs, unpaired
