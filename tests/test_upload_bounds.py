"""Bounded uploads in the app (issue 14, section 2): ZIP archives and the model's scale.

ZIP archives are refused on the sizes they declare (per entry, in all, entry count) and on the
bytes they really hold while being read. On the Predict page a strip that would be enlarged
beyond the limit at the model's scale is an error, not a crash, and the scale box is bounded.
"""

from __future__ import annotations

import io
import struct
import tracemalloc
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import MODEL_ID

from app_support import uploads
from app_support.uploads import Upload, read_zip
from tiledseg.errors import ImageReadError

APP = str(Path(__file__).resolve().parents[1] / "app.py")


def _zip(entries: dict[str, bytes], level: int = 9) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=level) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """A ZIP of a few hundred KiB whose one mask expands beyond the per-entry limit."""
    data = _zip({"set/masks/a.png": bytes(uploads.MAX_ZIP_ENTRY_BYTES + 1)})
    assert len(data) < 1024**2
    return data


def test_an_entry_declared_too_large_is_refused_before_it_is_read(bomb):
    tracemalloc.start()
    try:
        with pytest.raises(ImageReadError) as refused:
            read_zip(Upload.from_bytes("bomb.zip", bomb))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert "set/masks/a.png would expand to 256.0 MiB" in str(refused.value)
    assert "above the limit of 256.0 MiB per file" in str(refused.value)
    assert peak < 16 * 1024**2  # nothing of the entry was decompressed


def test_the_total_and_the_entry_count_are_bounded(monkeypatch):
    entries = {f"set/images/{i}.png": bytes(1000) for i in range(5)}
    monkeypatch.setattr(uploads, "MAX_ZIP_BYTES", 4000)
    with pytest.raises(ImageReadError, match=r"expand to 0\.0 MiB, above the limit"):
        read_zip(Upload.from_bytes("set.zip", _zip(entries)))
    monkeypatch.undo()
    many = _zip({f"set/images/{i}.png": b"" for i in range(uploads.MAX_ZIP_ENTRIES + 1)})
    with pytest.raises(ImageReadError, match="2,001 entries, above the limit of 2,000"):
        read_zip(Upload.from_bytes("many.zip", many))


def _lie_about_size(data: bytes, declared: int) -> bytes:
    """Patch the uncompressed size in the local header and the central directory."""
    patched = bytearray(data)
    local = patched.index(b"PK\x03\x04")
    central = patched.index(b"PK\x01\x02")
    patched[local + 22 : local + 26] = struct.pack("<I", declared)
    patched[central + 24 : central + 28] = struct.pack("<I", declared)
    return bytes(patched)


def test_an_entry_holding_more_than_it_declares_is_refused_while_reading():
    honest = _zip({"set/images/a.png": b"x" * 100_000})
    crafted = _lie_about_size(honest, 10)
    assert zipfile.ZipFile(io.BytesIO(crafted)).infolist()[0].file_size == 10
    with pytest.raises(ImageReadError, match=r"set/images/a\.png"):
        read_zip(Upload.from_bytes("crafted.zip", crafted))
    images, _ = read_zip(Upload.from_bytes("honest.zip", honest))
    assert images[0].data == b"x" * 100_000


def _page(zoo_root, page: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120).run()
    return at.switch_page(page).run()


def test_evaluate_page_shows_the_zip_bound_as_an_error(zoo_root, bomb):
    at = _page(zoo_root, "app_pages/evaluate.py")
    at.radio(key="evaluate_source").set_value("ZIP archive").run()
    at.file_uploader(key="evaluate_zip").set_value(("bomb.zip", bomb, "application/zip")).run()
    assert not at.exception
    assert any("above the limit of 256.0 MiB per file" in error.value for error in at.error)


def test_predict_page_refuses_an_enlargement_beyond_the_limit(zoo_root):
    _, png = cv2.imencode(".png", np.zeros((3, 50000, 3), np.uint8))
    at = _page(zoo_root, "app_pages/predict.py")
    at.file_uploader(key="predict_upload").set_value(("strip.png", png.tobytes(), "image/png"))
    at.run()
    assert not at.exception
    messages = " ".join(error.value for error in at.error)
    assert "3x50000" in messages and "256x4266667" in messages
    # what a web user can do, not the server's environment
    assert "TILEDSEG_MAX_SCALED_PIXELS" not in messages and "Upload a smaller image" in messages


def test_the_scale_box_is_bounded_and_a_huge_factor_is_an_error(zoo_root):
    at = _page(zoo_root, "app_pages/predict.py")
    _, png = cv2.imencode(".png", np.full((40, 60, 3), 128, np.uint8))
    at.file_uploader(key="predict_upload").set_value(("small.png", png.tobytes(), "image/png"))
    at.run()
    assert not at.exception and not at.error
    box = at.number_input(key=f"predict_{MODEL_ID}_scale_value")
    assert (box.min, box.max) == (0.01, 16384.0)  # it accepted 100000
    at.selectbox(key=f"predict_{MODEL_ID}_scale_mode").set_value("factor")
    box.set_value(16384.0)
    next(b for b in at.button if b.label == "Apply settings").click().run()
    assert not at.exception
    messages = " ".join(error.value for error in at.error)
    assert "40x60" in messages and "655360x983040" in messages
