"""AppTest of the Tiling Lab: three methods on one real image, scored as tiledseg scores them."""

from __future__ import annotations

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
    return {
        "Whole image": dice(predict_whole(image, zoo) > threshold, truth),
        "Blended tiling": dice(blended > threshold, truth),
    }


def test_three_methods_with_times_dice_seams_and_grid(zoo_root, pair):
    at = _lab(pair)
    assert not at.exception and not at.error
    metrics = {metric.label: metric.value for metric in at.metric}
    for method in ("Whole image", "Seeds' tiling", "Blended tiling"):
        assert metrics[f"{method} time"].endswith(" s")
    expected = _expected(zoo_root, pair, tile=128, overlap=0.25)
    assert metrics["Whole image Dice"] == f"{expected['Whole image']:.4f}"
    assert metrics["Blended tiling Dice"] == f"{expected['Blended tiling']:.4f}"
    assert 0.0 < float(metrics["Seeds' tiling Dice"]) <= 1.0
    assert len(at.image) == 3  # the three overlays, the seam maps, the grid
    assert "tiles of 128x128 px" in at.image[2].captions[0]


def test_compare_applies_new_tile_and_overlap(zoo_root, pair):
    at = _lab(pair)
    at.select_slider(key=f"{KEY}_tile").set_value(64)
    at.slider(key=f"{KEY}_overlap").set_value(0.5)
    next(b for b in at.button if b.label == "Compare").click().run()
    assert not at.exception and not at.error
    metrics = {metric.label: metric.value for metric in at.metric}
    expected = _expected(zoo_root, pair, tile=64, overlap=0.5)
    assert metrics["Blended tiling Dice"] == f"{expected['Blended tiling']:.4f}"
    assert "tiles of 64x64 px" in at.image[2].captions[0]


def test_mask_of_another_size_is_an_error(zoo_root, pair, shared_data):
    wrong = shared_data / "isic2017" / "valid" / "masks" / "ISIC_0006815.png"
    at = _lab((pair[0], (wrong.name, wrong.read_bytes(), "")))
    assert not at.exception
    assert "masks must have the image's height and width" in at.error[0].value
