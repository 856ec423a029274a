"""The app as a shared server (AppTest): no disk oracle, no server paths, no cross-session leaks,
bounded caches.

A visitor's typed model reference must get the same answer whether or not a path of that name
exists on the server; messages must not show the server's paths; one session must not learn
that another uploaded the same bytes; the model and result stores are bounded by size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import MODEL_ID, app_environment, make_bundle

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120
STEM = "ISIC_0015124"


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """HF_HUB_OFFLINE=1 with an empty cache, as huggingface_hub reads them (at import)."""
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub-cache"
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    return cache


def _typed(ref: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.selectbox(key="model_choice").set_value("Another Hub model…").run()
    at.text_input(key="model_custom_ref").set_value(ref).run()
    assert not at.exception
    return at


def _message(at: AppTest, ref: str) -> str:
    from app_support.guard import plain_name

    (error,) = [e.value for e in at.error]
    prefix = f"**Model {plain_name(ref)}**: "  # a typed reference shows as typed, not Markdown
    assert error.startswith(prefix), error
    return error[len(prefix) :]


def test_every_refused_path_gets_one_message_whether_it_exists_or_not(zoo_root, tmp_path):
    from app_support.guard import REFUSED_REFERENCE

    (tmp_path / "model.keras").write_bytes(b"not a model")
    refs = [
        "/root/.ssh",  # exists
        "/nonexistent/x",  # does not
        str(zoo_root / MODEL_ID),  # a real zoo model folder on the server
        str(tmp_path / "model.keras"),
        str(tmp_path / "missing.keras"),
        "~/.bashrc",
        "../shared/data",
        "./app.py",
        "a/b/c",
    ]
    messages = {ref: _message(_typed(ref), ref) for ref in refs}
    assert set(messages.values()) == {REFUSED_REFERENCE}, messages
    assert "/root" not in REFUSED_REFERENCE and "exist" not in REFUSED_REFERENCE


def test_a_plain_name_is_never_looked_up_on_the_disk(zoo_root):
    # "tests" and "app_pages" are folders beside app.py; "nothing-here" is not.
    answers = {ref: _message(_typed(ref), ref) for ref in ("tests", "app_pages", "nothing-here")}
    for ref, message in answers.items():
        assert message.startswith(f"Unknown model id {ref!r}."), message
        assert message.replace(ref, "NAME") == answers["tests"].replace("tests", "NAME")


def test_hub_errors_show_no_server_paths(zoo_root, offline_hub):
    at = _typed("acme/unet")
    message = _message(at, "acme/unet")
    assert "is not in the Hugging Face cache" in message and "HF_HUB_OFFLINE is set" in message
    assert str(offline_hub) not in message and "[server path]" in message
    assert "/tmp" not in message and "/root" not in message


def test_the_allow_list_refuses_other_hub_repositories_before_any_download(
    zoo_root, offline_hub, monkeypatch
):
    monkeypatch.setenv("TILEDSEG_APP_ALLOWED_MODELS", "tiledseg/*, acme/unet-isic2017")
    refused = _message(_typed("other/model"), "other/model")
    assert "other/model is not one of them" in refused
    assert "tiledseg/*, acme/unet-isic2017" in refused
    assert not offline_hub.exists()  # nothing was asked of the Hub or its cache
    # An allowed repository goes on to the Hub (here: offline, so "not in the cache").
    allowed = _message(_typed("tiledseg/unet-x@v1"), "tiledseg/unet-x@v1")
    assert "is not in the Hugging Face cache" in allowed
    monkeypatch.setenv("TILEDSEG_APP_ALLOWED_MODELS", "none")
    assert "matching none" in _message(_typed("tiledseg/unet-x"), "tiledseg/unet-x")
    # Models in the app's own list are not affected.
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    assert at.subheader[0].value == f"Model: {MODEL_ID}"


def _inference_label(at: AppTest) -> str:
    return next(m.proto.delta for m in at.metric if m.label == "Inference")


def _upload(at: AppTest, name: str, data: bytes) -> AppTest:
    at.file_uploader(key="predict_upload").set_value((name, data, "image/jpeg")).run()
    assert not at.exception and not at.error
    return at


def test_cached_is_per_session_and_sessions_do_not_share_uploads(zoo_root, shared_data):
    from app_support.widgets import result_store

    path = shared_data / "isic2017" / "valid" / "images" / f"{STEM}.jpg"
    data = path.read_bytes()
    result_store().clear()
    first = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    first.switch_page("app_pages/predict.py").run()
    second = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    second.switch_page("app_pages/predict.py").run()

    assert _inference_label(_upload(first, path.name, data)).endswith("MP/s")
    first.slider(key=f"predict_{MODEL_ID}_threshold").set_value(0.7).run()
    assert _inference_label(first) == "cached"  # its own result
    # The same bytes in another session: run again, not "cached", not taken from the first.
    assert _inference_label(_upload(second, path.name, data)).endswith("MP/s")
    probabilities = [key for key in result_store()._items if key[0] == "tiled"]
    assert len(probabilities) == 2
    # The server's own samples are shared, but another session's run is still not "cached".
    first.radio(key="predict_source").set_value("Sample").run()
    assert _inference_label(first).endswith("MP/s")
    second.radio(key="predict_source").set_value("Sample").run()
    assert not second.exception and not second.error
    assert _inference_label(second).endswith("MP/s")
    assert len([key for key in result_store()._items if key[0] == "tiled"]) == 3


def test_result_store_evicts_by_size_and_model_store_by_size_and_count():
    from app_support.store import ResultStore

    store = ResultStore(max_bytes=3000, max_entries=3)
    for name in "abcd":
        store.put(name, np.zeros(100, np.float32))  # 400 bytes each
    assert store.get("a") is None and len(store) == 3  # the count bound
    store.put("big", np.zeros(600, np.float32))  # 2400 bytes: "b" and "c" go, by size
    assert [k for k in "bcd" if store.get(k) is not None] == ["d"]
    assert store.nbytes == 2800
    store.put("model", object(), nbytes=2500)  # sized by its weights, not by arrays
    # "d" was used after "big" (just above), so "big" is the least recent and goes.
    assert store.get("big") is None and store.get("d") is not None and store.nbytes == 2900
    with pytest.raises(ValueError, match="max_entries"):
        ResultStore(max_bytes=10, max_entries=0)


def test_loaded_models_are_sized_by_their_weights_and_bounded(tmp_path, monkeypatch):
    import model_zoo.loader
    from app_support import models

    for name in ("m1", "m2", "m3"):
        make_bundle(tmp_path, name)
    monkeypatch.setattr(models, "_MAX_MODELS", 2)
    models.model_store.clear()
    with app_environment(tmp_path):
        loaded = [models.load_model(name) for name in ("m1", "m2", "m3")]
    assert loaded[0].nbytes == 4 * (3 + 1)  # the colour model: a 3x1 kernel and a bias
    store = models.model_store()
    assert len(store) == 2 and store.nbytes == 2 * loaded[0].nbytes
    # The zoo's own per-process cache holds none of them: the app's store is the only one.
    assert not [key for key in model_zoo.loader._CACHE if "/m" in key[0]]
    models.model_store.clear()


def test_one_run_holds_at_most_the_pixel_budget(zoo_root, shared_data, monkeypatch):
    monkeypatch.setenv("TILEDSEG_APP_MAX_RUN_MEGAPIXELS", "1")
    photo = shared_data / "isic2017" / "fullres" / "images" / "ISIC_0010459.jpg"  # 1024x768
    data = photo.read_bytes()
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("app_pages/predict.py").run()
    files = [("first.jpg", data, "image/jpeg"), ("second.jpg", data, "image/jpeg")]
    at.file_uploader(key="predict_upload").set_value(files).run()
    assert not at.exception and not at.error
    (warning,) = [w.value for w in at.warning]
    assert "1 of 2 files were left out of this run" in warning
    assert "Left out: second.jpg" in warning and "TILEDSEG_APP_MAX_RUN_MEGAPIXELS" in warning
    assert at.image[0].captions == ["Overlay · first.jpg"]
    assert not at.dataframe  # one image: no batch table
