"""AppTest of the Tiling Lab: the seeds' two ways and the engine's on one real image, scored as
tiledseg scores them, with seam maps on a colour scale and a grid whose tiles can be told apart."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import MODEL_ID, app_environment

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120
STEM = "ISIC_0015124"
KEY = f"tiling_lab_{MODEL_ID}"


@pytest.fixture(scope="module")
def pair(shared_data):
    folder = shared_data / "isic2017" / "valid"
    image = folder / "images" / f"{STEM}.jpg"
    mask = folder / "masks" / f"{STEM}.png"
    return (image.name, image.read_bytes(), "image/jpeg"), (mask.name, mask.read_bytes(), "")


def _lab(pair) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    at.switch_page("app_pages/tiling_lab.py").run()
    at.file_uploader(key="tiling_lab_upload").set_value(pair[0])
    at.file_uploader(key="tiling_lab_mask").set_value(pair[1])
    return at.run()


def _expected(zoo_root, pair, tile: int, overlap: float) -> dict[str, float]:
    import model_zoo
    from tiledseg import predict_tiled, predict_whole
    from tiledseg.io import read_image, read_mask
    from tiledseg.metrics import dice

    with app_environment(zoo_root):
        zoo = model_zoo.load(MODEL_ID)
    image = read_image(pair[0][1])
    truth = read_mask(pair[1][1])
    threshold = zoo.meta.threshold
    blended = predict_tiled(image, zoo, tile=tile, overlap=overlap, blend=zoo.meta.blend)
    squashed = predict_whole(image, zoo, input_size=(tile, tile))
    return {
        "Seeds, squashed": dice(squashed > threshold, truth),
        "tiledseg": dice(blended > threshold, truth),
    }


def test_seeds_ways_and_the_engine_with_times_dice_seams_and_grid(zoo_root, pair):
    at = _lab(pair)
    assert not at.exception and not at.error
    metrics = {metric.label: metric.value for metric in at.metric}
    for method in ("Seeds, squashed", "Seeds, native tiles", "tiledseg"):
        assert metrics[f"{method} time"].endswith(" s")
    expected = _expected(zoo_root, pair, tile=128, overlap=0.25)
    assert metrics["Seeds, squashed Dice"] == f"{expected['Seeds, squashed']:.4f}"
    assert metrics["tiledseg Dice"] == f"{expected['tiledseg']:.4f}"
    assert 0.0 <= float(metrics["Seeds, native tiles Dice"]) <= 1.0
    assert len(at.image) == 2  # the overlays side by side, the grid
    # the two seam maps carry a colour scale up to the larger maximum, not a fixed 1
    seams = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert len(seams) == 2
    tops = {figure["data"][0]["zmax"] for figure in seams}
    assert len(tops) == 1 and 0.01 <= tops.pop() < 1
    assert all(figure["data"][0]["colorbar"]["title"]["text"] == "|Δp|" for figure in seams)
    caption = at.image[1].captions[0]
    assert re.match(r"\d+ tiles \(\d+ rows x \d+ columns\) of 128x128 px", caption), caption


def test_compare_applies_new_tile_and_overlap(zoo_root, pair):
    at = _lab(pair)
    at.select_slider(key=f"{KEY}_tile").set_value(64)
    at.slider(key=f"{KEY}_overlap").set_value(0.5)
    next(b for b in at.button if b.label == "Compare").click().run()
    assert not at.exception and not at.error
    metrics = {metric.label: metric.value for metric in at.metric}
    expected = _expected(zoo_root, pair, tile=64, overlap=0.5)
    assert metrics["tiledseg Dice"] == f"{expected['tiledseg']:.4f}"
    assert "of 64x64 px" in at.image[1].captions[0]


def test_mask_of_another_size_is_an_error(zoo_root, pair, shared_data):
    wrong = shared_data / "isic2017" / "valid" / "masks" / "ISIC_0006815.png"
    at = _lab((pair[0], (wrong.name, wrong.read_bytes(), "")))
    assert not at.exception
    assert "masks must have the image's height and width" in at.error[0].value
