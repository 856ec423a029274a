"""AppTest of the Evaluate page: its metrics equal tiledseg.metrics on the same real pairs."""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_app_support import MODEL_ID, app_environment

APP = str(Path(__file__).resolve().parents[1] / "app.py")
TIMEOUT = 120
STEMS = ("ISIC_0015124", "ISIC_0014937")


@pytest.fixture(scope="module")
def pairs(shared_data) -> list[tuple[tuple, tuple]]:
    folder = shared_data / "isic2017" / "valid"
    out = []
    for stem in STEMS:
        image = folder / "images" / f"{stem}.jpg"
        mask = folder / "masks" / f"{stem}.png"
        out.append(
            (
                (image.name, image.read_bytes(), "image/jpeg"),
                (f"{stem}_segmentation.png", mask.read_bytes(), "image/png"),
            )
        )
    return out


def _expected_rows(zoo_root, pairs) -> list[dict]:
    """Per-image metrics computed with tiledseg and model_zoo only."""
    import model_zoo
    from tiledseg import predict_tiled
    from tiledseg.io import read_image, read_mask
    from tiledseg.metrics import segmentation_metrics
    from tiledseg.postprocess import postprocess

    with app_environment(zoo_root):
        zoo = model_zoo.load(MODEL_ID)
    rows = []
    for (_, image_bytes, _), (_, mask_bytes, _) in pairs:
        image = read_image(image_bytes)
        truth = read_mask(mask_bytes, shape=image.shape[:2])
        # The app applies every recommended setting, test-time augmentation included.
        probabilities = predict_tiled(image, zoo, tta=zoo.meta.tta)
        mask = postprocess(probabilities, threshold=zoo.meta.threshold, **zoo.meta.postprocess)
        rows.append(segmentation_metrics(mask, truth))
    return rows


def _evaluate_page() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=TIMEOUT).run()
    return at.switch_page("app_pages/evaluate.py").run()


def _metric(at: AppTest, label: str) -> str:
    return next(metric.value for metric in at.metric if metric.label == label)


def test_dice_metric_equals_tiledseg_metrics_on_the_same_pair(zoo_root, pairs):
    at = _evaluate_page()
    at.file_uploader(key="evaluate_images").set_value(pairs[0][0])
    at.file_uploader(key="evaluate_masks").set_value(pairs[0][1])
    at.run()
    assert not at.exception and not at.error and not at.warning
    expected = _expected_rows(zoo_root, pairs[:1])[0]
    assert _metric(at, "Dice") == f"{expected['dice']:.4f}"
    assert _metric(at, "Jaccard") == f"{expected['jaccard']:.4f}"
    assert _metric(at, "HD95 (px)") == f"{expected['hd95']:.1f}"
    assert at.image[0].captions[0].startswith(f"{STEMS[0]}.jpg: Dice {expected['dice']:.4f}")
    assert len(at.get("plotly_chart")) == 3  # per image, Dice vs threshold, precision-recall


def test_means_over_a_set_and_a_zip_give_the_same_numbers(zoo_root, pairs):
    expected = _expected_rows(zoo_root, pairs)
    mean_dice = sum(row["dice"] for row in expected) / len(expected)

    at = _evaluate_page()
    at.file_uploader(key="evaluate_images").set_value([image for image, _ in pairs])
    at.file_uploader(key="evaluate_masks").set_value([mask for _, mask in pairs])
    at.run()
    assert not at.exception and not at.error
    assert _metric(at, "Dice") == f"{mean_dice:.4f}"
    table = at.dataframe[0].value
    assert list(table["image"]) == [f"{stem}.jpg" for stem in STEMS]
    assert list(table["Dice"]) == pytest.approx([row["dice"] for row in expected], abs=1e-12)

    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for (image_name, image_bytes, _), (mask_name, mask_bytes, _) in pairs:
            bundle.writestr(f"set/images/{image_name}", image_bytes)
            bundle.writestr(f"set/masks/{mask_name}", mask_bytes)
    at.radio(key="evaluate_source").set_value("ZIP archive").run()
    at.file_uploader(key="evaluate_zip").set_value(
        ("set.zip", archive.getvalue(), "application/zip")
    )
    at.run()
    assert not at.exception and not at.error
    assert _metric(at, "Dice") == f"{mean_dice:.4f}"


def test_wrong_size_mask_and_unpaired_names_are_listed_not_crashed_on(zoo_root, pairs, shared_data):
    wrong = shared_data / "isic2017" / "valid" / "masks" / "ISIC_0006815.png"  # 256x385
    at = _evaluate_page()
    at.file_uploader(key="evaluate_images").set_value(
        [pairs[0][0], pairs[1][0], ("lonely.jpg", pairs[0][0][1], "image/jpeg")]
    )
    at.file_uploader(key="evaluate_masks").set_value(
        [pairs[0][1], (f"{STEMS[1]}.png", wrong.read_bytes(), "image/png"), ("extra.png", b"x", "")]
    )
    at.run()
    assert not at.exception
    error = at.error[0].value
    assert f"{STEMS[1]}.jpg + {STEMS[1]}.png" in error
    assert "masks must have the image's height and width" in error
    warning = at.warning[0].value
    assert "Images without a mask: lonely.jpg" in warning
    assert "Masks without an image: extra.png" in warning
    assert len(at.dataframe[0].value) == 1  # the good pair is still scored


def test_a_name_in_two_folders_of_a_zip_is_left_out_not_paired_by_chance(zoo_root, pairs):
    expected = _expected_rows(zoo_root, pairs)
    (image_name, _, _), (mask_name, _, _) = pairs[0]
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as bundle:
        for (name, data, _), (other_name, other_data, _) in pairs:
            bundle.writestr(f"visit1/images/{name}", data)
            bundle.writestr(f"visit1/masks/{other_name}", other_data)
        # A second visit of the first lesion: same names, another mask (the second lesion's).
        bundle.writestr(f"visit2/images/{image_name}", pairs[1][0][1])
        bundle.writestr(f"visit2/masks/{mask_name}", pairs[1][1][1])
    at = _evaluate_page()
    at.radio(key="evaluate_source").set_value("ZIP archive").run()
    at.file_uploader(key="evaluate_zip").set_value(
        ("visits.zip", archive.getvalue(), "application/zip")
    )
    at.run()
    assert not at.exception and not at.error
    warning = at.warning[0].value
    assert (
        f"Images left out, as their name matches more than one image or mask: {image_name}, "
        f"{image_name}" in warning
    )
    assert (
        f"Masks left out, as their name matches more than one mask or image: {mask_name}, "
        f"{mask_name}" in warning
    )
    assert list(at.dataframe[0].value["image"]) == [f"{STEMS[1]}.jpg"]
    assert _metric(at, "Dice") == f"{expected[1]['dice']:.4f}"


def test_corrupt_mask_is_an_error(zoo_root, pairs):
    at = _evaluate_page()
    at.file_uploader(key="evaluate_images").set_value(pairs[0][0])
    at.file_uploader(key="evaluate_masks").set_value((f"{STEMS[0]}.png", b"\x89PNG garbage", ""))
    at.run()
    assert not at.exception
    assert f"Cannot read {STEMS[0]}.png" in at.error[0].value
    # the reason ends its sentence before the advice starts another
    assert re.search(r"\)\. Save the file again as PNG or JPEG", at.error[0].value)
