"""AppTest with a model served over TF Serving's gRPC protocol (``$TILEDSEG_SERVING_URL``).

The server is the protocol peer of ``tests/serving_peer.py`` (TF Serving's binary cannot be
installed here) over a SavedModel exported by ``model_zoo.export``, as deploy/ runs it.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from serving_peer import ProtocolPeer
from streamlit.testing.v1 import AppTest
from test_app_support import MODEL_ID, app_environment, make_bundle

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120
SERVED = f"served:{MODEL_ID}"
STEM = "ISIC_0015124"


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """The bundled colour model, exported and served; the app's environment points at both."""
    import model_zoo
    from model_zoo.export import export_savedmodel

    root = tmp_path_factory.mktemp("zoo")
    make_bundle(root)
    with app_environment(root):
        zoo = model_zoo.load(MODEL_ID)
        export = export_savedmodel(zoo, root / "serving" / MODEL_ID / "1")
        peer = ProtocolPeer({MODEL_ID: {1: export}}).start()
        saved = {
            name: os.environ.get(name) for name in ("TILEDSEG_SERVING_URL", "TILEDSEG_SERVING_META")
        }
        os.environ["TILEDSEG_SERVING_URL"] = peer.url(MODEL_ID)
        os.environ["TILEDSEG_SERVING_META"] = str(export.parent)
        try:
            yield peer
        finally:
            peer.stop()
            for name, value in saved.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def test_the_served_model_is_the_default_and_segments_through_the_server(served, shared_data):
    from tiledseg import predict_tiled
    from tiledseg.io import read_image
    from tiledseg.postprocess import component_stats, postprocess
    from tiledseg.serving import ServingModel

    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception and not at.error
    assert at.selectbox(key="model_choice").value == SERVED
    assert at.subheader[0].value == f"Model: {SERVED}"

    path = shared_data / "isic2017" / "valid" / "images" / f"{STEM}.jpg"
    at.switch_page("app_pages/predict.py").run()
    calls_before = served.stats.predict_calls
    at.file_uploader(key="predict_upload").set_value((path.name, path.read_bytes(), "image/jpeg"))
    at.run()
    assert not at.exception and not at.error
    assert served.stats.predict_calls > calls_before  # the tiles went to the server

    client = ServingModel(
        os.environ["TILEDSEG_SERVING_URL"], meta=os.environ["TILEDSEG_SERVING_META"]
    )
    probabilities = predict_tiled(read_image(path), client, tta=client.meta.tta)
    expected = component_stats(postprocess(probabilities, threshold=client.meta.threshold))
    area = next(metric for metric in at.metric if metric.label == "Area")
    assert area.proto.delta == f"{expected['area_px']:,} px"


def test_tiling_lab_with_a_served_model_skips_the_seeds_baseline(served, shared_data):
    folder = shared_data / "isic2017" / "valid"
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("app_pages/tiling_lab.py").run()
    image, mask = folder / "images" / f"{STEM}.jpg", folder / "masks" / f"{STEM}.png"
    at.file_uploader(key="tiling_lab_upload").set_value((image.name, image.read_bytes(), ""))
    at.file_uploader(key="tiling_lab_mask").set_value((mask.name, mask.read_bytes(), ""))
    at.run()
    assert not at.exception and not at.error
    assert "shown for zoo models only" in at.info[0].value
    labels = {metric.label for metric in at.metric}
    assert {"Seeds, squashed Dice", "tiledseg Dice"} <= labels
    assert "Seeds, native tiles Dice" not in labels  # the seeds' tiling calls model.predict


def test_an_unreachable_server_is_an_error(served, monkeypatch):
    monkeypatch.setenv("TILEDSEG_SERVING_URL", f"grpc://127.0.0.1:9/{MODEL_ID}")
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.error and f"Model {SERVED}" in at.error[0].value
