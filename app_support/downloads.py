"""Full-resolution outputs as bytes for ``st.download_button``, written by ``tiledseg.io``.

The pages pass these as callables (``data=lambda: ...``), so the PNGs of a 24-megapixel image
are encoded only when someone clicks, not on every rerun.
"""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

__all__ = [
    "evaluation_report",
    "image_png",
    "mask_png",
    "overlay_jpeg",
    "probabilities_png",
    "rows_csv",
    "rows_json",
    "zip_of",
]


def _via_file(write: Callable[[Path], Any], name: str) -> bytes:
    # tiledseg.io validates and encodes; a temporary file keeps one implementation of both.
    with tempfile.TemporaryDirectory(prefix="tiledseg-app-") as folder:
        path = Path(folder) / name
        write(path)
        return path.read_bytes()


def mask_png(mask: np.ndarray) -> bytes:
    """A bool mask as a 0/255 PNG (:func:`tiledseg.io.write_mask`)."""
    from tiledseg.io import write_mask

    return _via_file(lambda path: write_mask(path, mask), "mask.png")


def probabilities_png(probabilities: np.ndarray) -> bytes:
    """Probabilities as an 8-bit grey PNG, value = round(p * 255)."""
    from tiledseg.io import write_probabilities

    clipped = np.clip(probabilities, 0.0, 1.0)  # blending may overshoot 1 by float rounding
    return _via_file(lambda path: write_probabilities(path, clipped), "probabilities.png")


def image_png(image: np.ndarray) -> bytes:
    """An RGB uint8 image (e.g. an overlay) as PNG."""
    from tiledseg.io import write_image

    return _via_file(lambda path: write_image(path, image), "image.png")


def overlay_jpeg(image: np.ndarray, mask: np.ndarray, **style: Any) -> bytes:
    """The full-size overlay (:func:`tiledseg.viz.overlay`, ``style`` its options) as JPEG,
    with an outline thick enough to see at full size."""
    from tiledseg import viz
    from tiledseg.io import write_image

    thickness = max(2, max(image.shape[:2]) // 800)
    picture = viz.overlay(image, mask, contour_thickness=thickness, **style)
    return _via_file(lambda path: write_image(path, picture, quality=90), "overlay.jpg")


def rows_csv(rows: Iterable[dict[str, Any]]) -> bytes:
    """Dict rows as CSV (columns in first-seen order)."""
    import csv

    rows = list(rows)
    columns: list[str] = []
    for row in rows:
        columns.extend(name for name in row if name not in columns)
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def rows_json(payload: Any) -> bytes:
    """Any JSON-ready payload, indented; NaN is written as null."""

    def clean(value: Any) -> Any:
        if isinstance(value, float) and value != value:
            return None
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [clean(v) for v in value]
        if isinstance(value, np.generic):
            return clean(value.item())
        return value

    return (json.dumps(clean(payload), indent=2) + "\n").encode("utf-8")


def zip_of(files: Iterable[tuple[str, Callable[[], bytes]]]) -> bytes:
    """A ZIP of ``(name, make_bytes)`` entries; each is encoded as it is written.

    A name given again (``a.jpg`` and ``a.png`` both give ``masks/a.png``) becomes
    ``masks/a-2.png``: a ZIP may hold two entries of one name, but unzipping keeps only one.
    """
    buffer = io.BytesIO()
    seen: set[str] = set()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, make in files:
            archive.writestr(_unique_name(name, seen), make())
    return buffer.getvalue()


def _unique_name(name: str, seen: set[str]) -> str:
    path = PurePosixPath(name)
    unique, count = name, 1
    while unique in seen:
        count += 1
        unique = str(path.with_name(f"{path.stem}-{count}{path.suffix}"))
    seen.add(unique)
    return unique


def evaluation_report(
    header: dict[str, Any],
    mean: dict[str, float],
    rows: list[dict[str, Any]],
    skipped: list[dict[str, str]],
    left_out: dict[str, list[str]],
) -> dict[str, Any]:
    """The Evaluate page's JSON report: what ran, the means, and every file the means omit.

    Args:
        header: model, revision and settings.
        mean: the means over ``rows``.
        rows: one dict of metrics per scored pair (``image``, ``mask``, metrics).
        skipped: ``{"image", "mask", "skipped"}`` for each pair that could not be scored, the
            reason in ``skipped``.
        left_out: names matched to nothing, by why (``images_without_mask``,
            ``masks_without_image``, ``ambiguous_images``, ``ambiguous_masks``).

    Returns:
        A JSON-ready dict; ``counts`` says over how many of the pairs the means are, as the
        ``tiledseg evaluate`` report does.
    """
    return {
        **header,
        "mean": mean,
        "counts": {"pairs": len(rows) + len(skipped), "scored": len(rows), "skipped": len(skipped)},
        "images": rows,
        "skipped": skipped,
        "left_out": {key: list(names) for key, names in left_out.items()},
    }
