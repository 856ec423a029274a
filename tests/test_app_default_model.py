"""The app as shipped: `streamlit run app.py` opens on the bundled default model, offline.

No environment override here: the zoo is the checkout's own ``model_zoo/bundled``. In CI the
default model must be bundled; elsewhere the test skips until it is.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from app_support import DEFAULT_MODEL

REPO = Path(__file__).resolve().parents[1]
APP = str(REPO / "app.py")
DEFAULT_ID = DEFAULT_MODEL
STEM = "ISIC_0015124"


@pytest.fixture
def shipped_model(monkeypatch, tmp_path):
    if not (REPO / "model_zoo" / "bundled" / DEFAULT_ID / "config.json").is_file():
        reason = f"model_zoo/bundled/{DEFAULT_ID} is not bundled"
        if os.environ.get("CI"):
            pytest.fail(f"{reason}; the app must open on it (python -m model_zoo bundle ...)")
        pytest.skip(f"{reason} yet: `python -m model_zoo bundle RUN_DIR --id {DEFAULT_ID}`")
    import huggingface_hub.constants as constants

    # HF_HUB_OFFLINE=1 with an empty cache: nothing may come from the network.
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("TILEDSEG_BUNDLED_DIR", "TILEDSEG_DEFAULT_MODEL", "TILEDSEG_SERVING_URL"):
        monkeypatch.delenv(name, raising=False)


def test_opens_on_the_bundled_default_model_and_segments_offline(shipped_model, shared_data):
    at = AppTest.from_file(APP, default_timeout=180).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="model_choice").value == DEFAULT_ID
    assert at.subheader[0].value == f"Model: {DEFAULT_ID}"
    facts = at.table[0].value
    assert dict(zip(facts.iloc[:, 0], facts.iloc[:, 1], strict=True))["Source"] == "bundled"

    path = shared_data / "isic2017" / "valid" / "images" / f"{STEM}.jpg"
    at.switch_page("app_pages/predict.py").run()
    at.file_uploader(key="predict_upload").set_value((path.name, path.read_bytes(), "image/jpeg"))
    at.run()
    assert not at.exception and not at.error
    area = next(metric for metric in at.metric if metric.label == "Area")
    assert 0.0 < float(area.value.rstrip(" %")) < 100.0
