"""AppTest of the Predict page on real ISIC 2017 images, checked against tiledseg directly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import MODEL_ID, app_environment

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120
STEM = "ISIC_0015124"
KEY = f"predict_{MODEL_ID}"


@pytest.fixture(scope="module")
def lesion(shared_data) -> tuple[str, bytes]:
    path = shared_data / "isic2017" / "valid" / "images" / f"{STEM}.jpg"
    return path.name, path.read_bytes()


def _expected_stats(zoo_root, data: bytes, threshold: float, **options) -> dict:
    """What the page should show, computed with tiledseg and model_zoo and no app code."""
    import model_zoo
    from tiledseg import predict_tiled
    from tiledseg.io import read_image
    from tiledseg.postprocess import component_stats, postprocess

    with app_environment(zoo_root):
        zoo = model_zoo.load(MODEL_ID)
    probabilities = predict_tiled(read_image(data), zoo, tta=zoo.meta.tta)  # as the app does
    options = {**zoo.meta.postprocess, **options}
    mask = postprocess(probabilities, threshold=threshold, **options)
    return component_stats(mask)


def _predict_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    return at.switch_page("app_pages/predict.py").run()


def _metrics(at: AppTest) -> dict:
    return {metric.label: (metric.value, metric.proto.delta) for metric in at.metric}


def test_upload_segments_a_real_image_and_threshold_reuses_the_probabilities(zoo_root, lesion):
    at = _predict_page()
    assert at.info[0].value.startswith("Upload an image")
    at.file_uploader(key="predict_upload").set_value((*lesion, "image/jpeg")).run()
    assert not at.exception and not at.error
    assert at.image[0].captions == [f"Overlay · {STEM}.jpg"]
    assert at.image[1].captions == [f"Mask · {STEM}.jpg"]
    # the probability map and, beside it, the uncertainty (binary entropy, in bits)
    charts = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert [chart["layout"]["title"]["text"] for chart in charts] == [
        "Probability map",
        "Uncertainty (entropy, bits)",
    ]
    assert "binary entropy" in at.caption[-1].value
    expected = _expected_stats(zoo_root, lesion[1], threshold=0.5)
    metrics = _metrics(at)
    assert metrics["Area"] == (
        f"{100 * expected['area_fraction']:.2f} %",
        f"{expected['area_px']:,} px",
    )
    assert metrics["Components"][0] == str(expected["n_components"])
    assert metrics["Inference"][1].endswith("MP/s")  # a fresh run

    at.slider(key=f"{KEY}_threshold").set_value(0.8).run()
    assert not at.exception and not at.error
    metrics = _metrics(at)
    assert metrics["Inference"][1] == "cached"  # re-thresholded without running the network
    stricter = _expected_stats(zoo_root, lesion[1], threshold=0.8)
    assert stricter["area_px"] < expected["area_px"]
    assert metrics["Area"][1] == f"{stricter['area_px']:,} px"
    labels = [button.label for button in at.get("download_button")]
    assert labels == ["Mask PNG", "Overlay PNG", "Probability PNG"]


def test_edge_cut_objects_can_be_dropped_live(zoo_root, lesion):
    """The edge step's two inputs: the size limit is off until the share is set; both apply to
    the cached probabilities, as the library does."""
    at = _predict_page()
    at.file_uploader(key="predict_upload").set_value((*lesion, "image/jpeg")).run()
    size = at.number_input(key=f"{KEY}_edge_max_size")
    assert at.number_input(key=f"{KEY}_edge_visible").value == 0.0 and size.disabled
    at.number_input(key=f"{KEY}_edge_visible").set_value(0.9).run()
    assert not at.exception and not at.error
    assert not at.number_input(key=f"{KEY}_edge_max_size").disabled
    metrics = _metrics(at)
    assert metrics["Inference"][1] == "cached"
    everything = _expected_stats(zoo_root, lesion[1], threshold=0.5)
    expected = _expected_stats(zoo_root, lesion[1], threshold=0.5, edge_visible=0.9)
    # The colour model also finds the photo's dark corners, which the edge cuts.
    assert expected["n_components"] < everything["n_components"]
    assert metrics["Area"][1] == f"{expected['area_px']:,} px"
    assert metrics["Components"][0] == str(expected["n_components"])
    at.number_input(key=f"{KEY}_edge_max_size").set_value(50).run()
    limited = _expected_stats(zoo_root, lesion[1], 0.5, edge_visible=0.9, edge_max_size=50)
    assert _metrics(at)["Area"][1] == f"{limited['area_px']:,} px"


def test_applied_settings_run_again_and_draw_the_grid(zoo_root, lesion):
    at = _predict_page()
    at.file_uploader(key="predict_upload").set_value((*lesion, "image/jpeg")).run()
    at.selectbox(key=f"{KEY}_tile").set_value(64)
    at.slider(key=f"{KEY}_overlap").set_value(0.5)
    next(b for b in at.button if b.label == "Apply settings").click().run()
    assert not at.exception and not at.error
    assert "tile 64 · overlap 0.5" in at.caption[1].value
    assert _metrics(at)["Inference"][1].endswith("MP/s")  # new settings: a new inference
    tiles = int(next(c.value for c in at.caption if " megapixels" in c.value).split(" tile")[0])
    assert tiles > 4  # 256x386 at short side 256, in 64 px tiles overlapping by half
    at.toggle(key="predict_grid").set_value(True).run()
    assert not at.exception and not at.error


def test_precision_setting_runs_the_network_in_bfloat16(zoo_root, lesion):
    at = _predict_page()
    at.file_uploader(key="predict_upload").set_value((*lesion, "image/jpeg")).run()
    area = _metrics(at)["Area"]
    at.selectbox(key=f"{KEY}_precision").set_value("bfloat16")
    next(b for b in at.button if b.label == "Apply settings").click().run()
    assert not at.exception and not at.error
    assert at.caption[1].value.endswith("· bfloat16")
    metrics = _metrics(at)
    assert metrics["Inference"][1].endswith("MP/s")  # a new inference, not the cached one
    # The same lesion to within a few boundary pixels (bfloat16 moves probabilities < 1e-2).
    area_px = int(area[1].split()[0].replace(",", ""))
    new_px = int(metrics["Area"][1].split()[0].replace(",", ""))
    assert abs(new_px - area_px) <= 0.01 * area_px


def test_corrupt_upload_is_an_error_not_a_traceback(zoo_root, lesion):
    at = _predict_page()
    at.file_uploader(key="predict_upload").set_value(("broken.jpg", lesion[1][:600], "image/jpeg"))
    at.run()
    assert not at.exception
    assert "broken.jpg" in at.error[0].value and "Cannot read" in at.error[0].value
    assert "Save the file again as PNG or JPEG" in at.error[0].value


def test_a_batch_lists_every_image_and_offers_a_zip(zoo_root, shared_data, lesion):
    other = shared_data / "isic2017" / "valid" / "images" / "ISIC_0014937.jpg"
    at = _predict_page()
    at.file_uploader(key="predict_upload").set_value(
        [(*lesion, "image/jpeg"), (other.name, other.read_bytes(), "image/jpeg")]
    )
    at.run()
    assert not at.exception and not at.error
    table = at.dataframe[0].value
    assert list(table["image"]) == [f"{STEM}.jpg", other.name]
    assert at.selectbox(key="predict_shown").options == [f"{STEM}.jpg", other.name]
    assert "All 2 (ZIP)" in [button.label for button in at.get("download_button")]
    # Two uploads of one name (from two folders) are two results, each one selectable.
    at.file_uploader(key="predict_upload").set_value(
        [(*lesion, "image/jpeg"), (lesion[0], other.read_bytes(), "image/jpeg")]
    )
    at.run()
    assert not at.exception and not at.error
    assert at.selectbox(key="predict_shown").options == [f"{STEM}.jpg", f"{STEM}.jpg"]
    at.selectbox(key="predict_shown").set_value(1).run()
    assert not at.exception and at.selectbox(key="predict_shown").value == 1


def test_samples_come_from_the_shared_data(zoo_root, shared_data):
    at = _predict_page()
    at.radio(key="predict_source").set_value("Sample").run()
    assert not at.exception and not at.error
    first = sorted((shared_data / "isic2017" / "valid" / "images").iterdir())[0].name
    assert at.selectbox(key="predict_sample").value == f"isic2017/valid · {first}"
    assert at.image[0].captions == [f"Overlay · {first}"]


def test_image_above_the_pixel_limit_is_an_error_saying_what_a_web_user_can_do(
    zoo_root, lesion, monkeypatch
):
    monkeypatch.setenv("TILEDSEG_MAX_PIXELS", "50000")  # the lesion is 256x387 = 99,072 px
    at = _predict_page()
    at.file_uploader(key="predict_upload").set_value((*lesion, "image/jpeg")).run()
    assert not at.exception
    message = at.error[0].value
    assert "above the limit of 50,000 pixels" in message
    # no advice for the server's operator (environment variables, Python arguments)
    assert "TILEDSEG_MAX_PIXELS" not in message and "max_pixels" not in message
    assert "Shrink the image" in message


def test_runtime_setting_runs_the_network_in_onnxruntime_with_the_same_mask(zoo_root, lesion):
    pytest.importorskip("onnxruntime")
    at = _predict_page()
    at.file_uploader(key="predict_upload").set_value((*lesion, "image/jpeg")).run()
    assert at.selectbox(key=f"{KEY}_runtime").value == "auto"
    # The reference is Keras in float32: `auto` is OpenVINO bfloat16 on a CPU with AMX.
    at.selectbox(key=f"{KEY}_runtime").set_value("keras")
    at.selectbox(key=f"{KEY}_precision").set_value("float32")
    next(b for b in at.button if b.label == "Apply settings").click().run()
    assert not at.exception and not at.error
    area = _metrics(at)["Area"]
    at.selectbox(key=f"{KEY}_runtime").set_value("onnxruntime")
    next(b for b in at.button if b.label == "Apply settings").click().run()
    assert not at.exception and not at.error
    assert at.caption[1].value.endswith("· onnxruntime")
    metrics = _metrics(at)
    assert metrics["Inference"][1].endswith("MP/s")  # a new inference, not the cached one
    # float32 in another runtime: the same mask to within a pixel or two.
    area_px = int(area[1].split()[0].replace(",", ""))
    new_px = int(metrics["Area"][1].split()[0].replace(",", ""))
    assert abs(new_px - area_px) <= 2


def test_the_server_chooses_the_runtime_the_settings_start_on(zoo_root, lesion, monkeypatch):
    """TILEDSEG_APP_RUNTIME=keras (a host with little memory): the page starts on Keras."""
    monkeypatch.setenv("TILEDSEG_APP_RUNTIME", "keras")
    at = _predict_page()
    at.file_uploader(key="predict_upload").set_value((*lesion, "image/jpeg")).run()
    assert not at.exception and not at.error
    assert at.selectbox(key=f"{KEY}_runtime").value == "keras"
    assert at.caption[1].value.endswith("· keras")


def test_a_runtime_setting_that_is_no_runtime_falls_back_to_auto_and_says_so(monkeypatch, caplog):
    from app_support.runs import default_runtime

    monkeypatch.setenv("TILEDSEG_APP_RUNTIME", " OpenVINO ")
    assert default_runtime() == "openvino"
    monkeypatch.setenv("TILEDSEG_APP_RUNTIME", "tensorrt")
    with caplog.at_level("WARNING", logger="app_support.runs"):
        assert default_runtime() == "auto"
    assert "TILEDSEG_APP_RUNTIME='tensorrt' is not a runtime" in caplog.text
    assert "auto, keras, openvino, onnxruntime" in caplog.text


def test_12_bit_data_in_a_16_bit_upload_is_warned_on_every_run(zoo_root, lesion):
    import cv2
    import numpy as np

    from tiledseg.io import read_image

    image = read_image(lesion[1])
    data = cv2.imencode(".png", image[..., ::-1].astype(np.uint16) * 16)[1].tobytes()
    at = _predict_page()
    at.file_uploader(key="predict_upload").set_value(("camera.png", data, "image/png")).run()
    assert not at.exception and not at.error
    assert any("camera.png is a 16-bit image whose values reach" in w.value for w in at.warning)
    at.slider(key=f"{KEY}_threshold").set_value(0.8).run()  # the decode is cached now
    assert any("camera.png is a 16-bit image whose values reach" in w.value for w in at.warning)
