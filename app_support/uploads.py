"""Files coming into the app: uploads, bundled samples, ZIP archives, and image/mask pairing.

Decoding is ``tiledseg.io`` (pixel limit, corrupt files, EXIF orientation); decoded arrays
are kept in the shared :class:`~app_support.store.ResultStore` by content hash, so a rerun
(every slider move) does not decode a 24-megapixel JPEG again.
"""

from __future__ import annotations

import hashlib
import io
import os
import secrets
import unicodedata
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from app_support.guard import plain_name, plain_names_in
from app_support.store import ResultStore

__all__ = [
    "IMAGE_TYPES",
    "MAX_RUN_MEGAPIXELS_ENV",
    "MAX_ZIP_BYTES",
    "MAX_ZIP_ENTRIES",
    "MAX_ZIP_ENTRY_BYTES",
    "SAMPLE_DIR_ENV",
    "Pairing",
    "Sample",
    "Upload",
    "decode_image",
    "decode_mask",
    "find_samples",
    "limit_run",
    "pair_by_name",
    "read_zip",
    "sample_dir",
    "uploads_from_widget",
]

# Extensions for st.file_uploader (it wants them without the dot).
IMAGE_TYPES = ["jpg", "jpeg", "png", "tif", "tiff", "bmp", "webp"]
SAMPLE_DIR_ENV = "TILEDSEG_SAMPLE_DIR"
# One page run holds every image it shows (pixels, probabilities, mask: about 8 bytes a pixel)
# whatever the result cache evicts, so the images of one run are bounded in pixels.
MAX_RUN_MEGAPIXELS_ENV = "TILEDSEG_APP_MAX_RUN_MEGAPIXELS"
DEFAULT_MAX_RUN_MEGAPIXELS = 120
# ZIP uploads are bounded (a "zip bomb" of 1.9 MB held a 1.88 GiB entry): the images and masks
# read from one archive may expand to MAX_ZIP_BYTES in all, MAX_ZIP_ENTRY_BYTES each (a 7000x5000
# 16-bit RGB TIFF is 210 MB), from at most MAX_ZIP_ENTRIES entries. The sizes the archive
# declares are checked first, then the bytes are counted while they are decompressed.
MAX_ZIP_BYTES = 1024**3
MAX_ZIP_ENTRY_BYTES = 256 * 1024**2
MAX_ZIP_ENTRIES = 2000
_ZIP_CHUNK = 1024**2
_SAMPLE_SETS = ("isic2017/valid", "isic2017/fullres", "bloodcell/valid")
_SAMPLES_PER_SET = 6
_MASK_SUFFIXES = ("", "_segmentation")


_SALT_KEY = "_upload_cache_salt"
_SHARED = b""


def _session_salt() -> bytes:
    """A random salt kept in this browser session's state (empty outside a session)."""
    from streamlit.runtime.scriptrunner import get_script_run_ctx

    if get_script_run_ctx(suppress_warning=True) is None:
        return _SHARED
    import streamlit as st

    return bytes.fromhex(st.session_state.setdefault(_SALT_KEY, secrets.token_hex(16)))


@dataclass(frozen=True)
class Upload:
    """One file's name and bytes, with a cache key.

    ``sha256`` is the cache key of everything derived from the file (decoded pixels,
    probabilities, masks): the SHA-256 of a per-session salt and the bytes for a visitor's
    upload, so two sessions uploading the same bytes never share a result and one cannot
    tell (from a label or from the speed of the answer) that another uploaded them; and of
    the bytes alone for the server's own samples, which every session shares.
    """

    name: str
    data: bytes
    sha256: str

    @classmethod
    def from_bytes(cls, name: str, data: bytes, *, shared: bool = False) -> Upload:
        """An upload of ``data``; ``shared=True`` for the server's own files (samples)."""
        salt = _SHARED if shared else _session_salt()
        return cls(name, bytes(data), hashlib.sha256(salt + data).hexdigest())

    @property
    def stem(self) -> str:
        return PurePosixPath(self.name).stem


@dataclass(frozen=True)
class Sample:
    """A sample image on disk, its ground-truth mask when there is one, and its data set's id
    (``isic2017``, ``bloodcell``; None for a model's own examples)."""

    label: str
    image: Path
    mask: Path | None
    dataset: str | None = None

    def upload(self) -> Upload:
        return Upload.from_bytes(self.image.name, self.image.read_bytes(), shared=True)

    def mask_upload(self) -> Upload | None:
        if self.mask is None:
            return None
        return Upload.from_bytes(self.mask.name, self.mask.read_bytes(), shared=True)


@dataclass(frozen=True)
class Pairing:
    """Images matched to masks by file name, and what could not be matched.

    ``ambiguous_images`` and ``ambiguous_masks`` name the files left out because their name
    matches more than one file (``a.jpg`` and ``a.png`` as images, or two ``a.png`` masks from
    two folders of a ZIP): scoring an image against a mask picked at random would be a silent
    error.
    """

    pairs: list[tuple[Upload, Upload]]
    images_without_mask: list[str]
    masks_without_image: list[str]
    ambiguous_images: list[str] = field(default_factory=list)
    ambiguous_masks: list[str] = field(default_factory=list)


def uploads_from_widget(files: Any) -> list[Upload]:
    """``st.file_uploader``'s value (None, one file or a list) as a list of Upload, at most
    :func:`limit_run`'s pixels (the rest are named in a warning)."""
    if files is None:
        return []
    if not isinstance(files, (list, tuple)):
        files = [files]
    return limit_run([Upload.from_bytes(file.name, file.getvalue()) for file in files])


def max_run_pixels() -> int:
    """``$TILEDSEG_APP_MAX_RUN_MEGAPIXELS`` (default 120) in pixels."""
    text = os.environ.get(MAX_RUN_MEGAPIXELS_ENV, "").strip()
    megapixels = int(text) if text.isdigit() and int(text) > 0 else DEFAULT_MAX_RUN_MEGAPIXELS
    return megapixels * 1_000_000


def limit_run(uploads: list[Upload], *, warn: bool = True) -> list[Upload]:
    """The first uploads whose pixels (read from their headers) fit one run's budget.

    The first upload is always kept (the pixel limit of :func:`tiledseg.io.read_image` bounds
    it alone); a file whose header cannot be read is kept, so decoding reports why.

    Args:
        uploads: list of Upload, in the order given.
        warn: bool, default True: ``st.warning`` naming the uploads left out.

    Returns:
        list of Upload.
    """
    from tiledseg.errors import ImageReadError
    from tiledseg.io import image_size

    budget, used, kept, left = max_run_pixels(), 0, [], []
    for upload in uploads:
        try:
            height, width = image_size(upload.data, name=upload.name)
        except ImageReadError:
            height = width = 0
        if kept and used + height * width > budget:
            left.append(upload.name)
            continue
        used += height * width
        kept.append(upload)
    if left and warn:
        import streamlit as st

        st.warning(
            f"{len(left)} of {len(uploads)} files were left out of this run: together they "
            f"pass this server's {budget / 1e6:g} megapixels per run "
            f"({MAX_RUN_MEGAPIXELS_ENV}). Left out: {', '.join(map(plain_name, left))}. "
            "Remove some files, or "
            "upload the rest in another run.",
            icon=":material/warning:",
        )
    return kept


def sample_dir() -> Path:
    """``$TILEDSEG_SAMPLE_DIR``, else ``../shared/data`` beside the checkout."""
    override = os.environ.get(SAMPLE_DIR_ENV, "").strip()
    if override:
        return Path(override).expanduser()
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def find_samples(
    model_path: str | os.PathLike | None = None, dataset: str | None = None
) -> list[Sample]:
    """A few images from the shared data folder, and the model's ``examples/`` images.

    Args:
        model_path: the zoo model's folder, whose ``examples/`` (images, with masks named
            ``<stem>_mask.png`` or in ``examples/masks/``) is listed first.
        dataset: str or None: keep only the shared samples of this data set id (a model's
            ``dataset.id``, e.g. ``bloodcell``); None keeps every set.

    Returns:
        list of Sample, possibly empty (no data folder, no examples).
    """
    from tiledseg.io import IMAGE_EXTENSIONS

    samples: list[Sample] = []
    if model_path is not None:
        examples = Path(model_path) / "examples"
        if examples.is_dir():
            for image in sorted(examples.iterdir()):
                if image.suffix.lower() in IMAGE_EXTENSIONS and not image.stem.endswith("_mask"):
                    mask = _first_file(
                        examples / f"{image.stem}_mask.png",
                        examples / "masks" / f"{image.stem}.png",
                    )
                    samples.append(Sample(f"model example · {image.name}", image, mask))
    root = sample_dir()
    for subset in _SAMPLE_SETS:
        tag = subset.split("/")[0]
        if dataset is not None and tag != dataset:
            continue
        images = root / subset / "images"
        if not images.is_dir():
            continue
        found = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS)
        for image in found[:_SAMPLES_PER_SET]:
            masks = root / subset / "masks"
            mask = _first_file(*(masks / f"{image.stem}{s}.png" for s in _MASK_SUFFIXES))
            samples.append(Sample(f"{subset} · {image.name}", image, mask, tag))
    return samples


def _first_file(*paths: Path) -> Path | None:
    return next((path for path in paths if path.is_file()), None)


def mask_stem(name: str) -> str:
    """The image stem a mask file belongs to: ``a.png`` and ``a_segmentation.png`` -> ``a``."""
    stem = PurePosixPath(name).stem
    return stem[: -len("_segmentation")] if stem.endswith("_segmentation") else stem


def _name_key(stem: str) -> str:
    # macOS writes names decomposed (NFD) in ZIPs and on disk; a browser may send them composed
    # (NFC): "Läsion.jpg" must pair with "Läsion.png" however each was spelled.
    return unicodedata.normalize("NFC", stem)


def pair_by_name(images: list[Upload], masks: list[Upload]) -> Pairing:
    """Match each image ``<stem>.*`` with the mask ``<stem>.png`` or ``<stem>_segmentation.png``.

    The same rule as :func:`tiledseg.io.find_mask`, applied to uploaded names (compared after
    Unicode NFC normalisation). ``<stem>.png`` wins over ``<stem>_segmentation.png`` when both
    were uploaded; a stem that two images share, or two masks of the same spelling, matches
    nothing and is listed in ``Pairing.ambiguous_images`` / ``ambiguous_masks``.

    Example:
        >>> a, m = Upload.from_bytes("a.jpg", b"1"), Upload.from_bytes("a_segmentation.png", b"2")
        >>> len(pair_by_name([a], [m]).pairs)
        1
    """
    candidates: dict[str, list[tuple[int, Upload]]] = {}
    for mask in masks:
        rank = 1 if PurePosixPath(mask.name).stem.endswith("_segmentation") else 0
        candidates.setdefault(_name_key(mask_stem(mask.name)), []).append((rank, mask))
    chosen: dict[str, Upload | None] = {}  # None: two masks of the best spelling
    for key, found in candidates.items():
        best = min(rank for rank, _ in found)
        top = [mask for rank, mask in found if rank == best]
        chosen[key] = top[0] if len(top) == 1 else None
    image_counts = Counter(_name_key(image.stem) for image in images)
    pairs, lonely_images, ambiguous_images, ambiguous_masks = [], [], [], []
    used: set[int] = set()
    for image in images:
        key = _name_key(image.stem)
        if image_counts[key] > 1 or (key in chosen and chosen[key] is None):
            ambiguous_images.append(image.name)
        elif key in chosen:
            mask = chosen[key]
            pairs.append((image, mask))
            used.add(id(mask))
        else:
            lonely_images.append(image.name)
    lonely_masks = []
    for mask in masks:
        key = _name_key(mask_stem(mask.name))
        if id(mask) in used:
            continue
        if chosen[key] is None or image_counts[key] > 1:
            ambiguous_masks.append(mask.name)
        else:
            lonely_masks.append(mask.name)
    return Pairing(pairs, lonely_images, lonely_masks, ambiguous_images, ambiguous_masks)


def read_zip(upload: Upload) -> tuple[list[Upload], list[Upload]]:
    """Images under ``images/`` and masks under ``masks/`` (at any depth) in a ZIP archive.

    Bounded: at most MAX_ZIP_ENTRIES entries, MAX_ZIP_ENTRY_BYTES per image or mask and
    MAX_ZIP_BYTES for all of them, checked on the declared sizes before anything is read and
    again on the bytes while they are decompressed (an entry larger than it declares is refused).

    Raises:
        tiledseg.errors.ImageReadError: not a ZIP, corrupt, encrypted, or above a bound; the
            message gives the sizes and the limit.
    """
    from tiledseg.errors import ImageReadError

    try:
        archive = zipfile.ZipFile(io.BytesIO(upload.data))
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError):
        raise ImageReadError(upload.name, "not a ZIP archive (or it is corrupt)") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > MAX_ZIP_ENTRIES:
            raise ImageReadError(
                upload.name,
                f"it has {len(infos):,} entries, above the limit of {MAX_ZIP_ENTRIES:,}; "
                "upload fewer images per archive",
            )
        wanted = [(entry, target) for entry in infos if (target := _zip_target(entry))]
        _check_declared_sizes(upload.name, [entry for entry, _ in wanted])
        images, masks = [], []
        budget = [MAX_ZIP_BYTES]
        for entry, target in wanted:
            data = _read_entry(upload.name, archive, entry, budget)
            name = PurePosixPath(entry.filename).name
            (masks if target == "masks" else images).append(Upload.from_bytes(name, data))
    images = limit_run(images)
    if not images and not masks:
        raise ImageReadError(
            upload.name, "it has no images/ or masks/ folder with image files in it"
        )
    return images, masks


def _zip_target(entry: zipfile.ZipInfo) -> str | None:
    """``"images"``, ``"masks"`` or None (skipped): folders, hidden files, other suffixes."""
    from tiledseg.io import IMAGE_EXTENSIONS

    path = PurePosixPath(entry.filename)
    if entry.is_dir() or path.name.startswith(".") or path.suffix.lower() not in IMAGE_EXTENSIONS:
        return None
    folders = {part.lower() for part in path.parts[:-1]}
    return "masks" if "masks" in folders else "images" if "images" in folders else None


def _mib(size: int) -> str:
    return f"{size / 1024**2:,.1f} MiB"


def _check_declared_sizes(archive_name: str, entries: list[zipfile.ZipInfo]) -> None:
    from tiledseg.errors import ImageReadError

    for entry in entries:
        if entry.file_size > MAX_ZIP_ENTRY_BYTES:
            raise ImageReadError(
                archive_name,
                f"{entry.filename} would expand to {_mib(entry.file_size)}, above the limit of "
                f"{_mib(MAX_ZIP_ENTRY_BYTES)} per file; upload it on its own or make it smaller",
            )
    total = sum(entry.file_size for entry in entries)
    if total > MAX_ZIP_BYTES:
        raise ImageReadError(
            archive_name,
            f"its images and masks would expand to {_mib(total)}, above the limit of "
            f"{_mib(MAX_ZIP_BYTES)}; split it into smaller archives or upload the files directly",
        )


def _read_entry(
    archive_name: str, archive: zipfile.ZipFile, entry: zipfile.ZipInfo, budget: list[int]
) -> bytes:
    """An entry's bytes, counted while decompressing against its declared size and the budget."""
    from tiledseg.errors import ImageReadError

    limit = min(entry.file_size, MAX_ZIP_ENTRY_BYTES, budget[0])
    chunks, size = [], 0
    try:
        with archive.open(entry) as stream:
            while chunk := stream.read(min(_ZIP_CHUNK, limit - size + 1)):
                size += len(chunk)
                if size > limit:
                    raise ImageReadError(
                        archive_name,
                        f"{entry.filename} holds more than the {entry.file_size:,} bytes it "
                        "declares; the archive is corrupt or crafted",
                    )
                chunks.append(chunk)
    except (zipfile.BadZipFile, EOFError, OSError, ValueError) as error:
        if isinstance(error, ImageReadError):
            raise
        raise ImageReadError(
            archive_name, f"{entry.filename} cannot be decompressed ({error})"
        ) from None
    except (RuntimeError, NotImplementedError) as error:  # encrypted, unsupported method
        raise ImageReadError(archive_name, f"{entry.filename} cannot be read ({error})") from None
    budget[0] -= size
    return b"".join(chunks)


def decode_image(store: ResultStore, upload: Upload) -> np.ndarray:
    """The upload as RGB uint8 (read-only), decoded once per content.

    A :class:`tiledseg.errors.BitDepthWarning` (10- or 12-bit data in a 16-bit file) is shown
    as ``st.warning`` each time the image is used.

    Raises:
        tiledseg.errors.ImageReadError, PixelLimitError: as :func:`tiledseg.io.read_image`.
    """
    from tiledseg.io import read_image_and_notes

    # The pixel limit is part of the key: a cached decode must not bypass a lower limit.
    key = ("image", upload.sha256, os.environ.get("TILEDSEG_MAX_PIXELS", ""))
    entry = store.get(key)
    if entry is None:
        image, notes = read_image_and_notes(upload.data, name=upload.name)
        entry = store.put(key, image, notes=notes)
    if entry.get("notes"):
        import streamlit as st

        # Shown on every run, not only the one that decoded it: the result is cached.
        for note in entry["notes"]:
            st.warning(plain_names_in(note, [upload.name]), icon=":material/contrast:")
    return entry["value"]


def decode_mask(store: ResultStore, upload: Upload, shape: tuple[int, int]) -> np.ndarray:
    """The upload as a bool mask of the image's ``shape`` (read-only).

    Raises:
        tiledseg.errors.ImageReadError, MaskSizeError: as :func:`tiledseg.io.read_mask`.
    """
    from tiledseg.io import read_mask

    key = ("mask", upload.sha256, tuple(shape), os.environ.get("TILEDSEG_MAX_PIXELS", ""))
    entry = store.get(key)
    if entry is None:
        entry = store.put(key, read_mask(upload.data, name=upload.name, shape=tuple(shape)))
    return entry["value"]
