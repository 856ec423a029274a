"""The command line on real images: outputs, the evaluate report, bad files and exit codes."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from conftest import build_tiny_unet

from tiledseg.cli import main
from tiledseg.io import read_image, read_mask, write_image, write_mask


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_tiny_unet(seed=11).save(path)
    return path


def _linked_pairs(source, folder, count: int = 3):
    """The first ``count`` real images of ``source`` and their masks, linked into ``folder``."""
    images, masks = folder / "images", folder / "masks"
    images.mkdir()
    masks.mkdir()
    for path in sorted((source / "images").glob("*.jpg"))[:count]:
        (images / path.name).symlink_to(path)
        (masks / f"{path.stem}.png").symlink_to(source / "masks" / f"{path.stem}.png")
    return images, masks


@pytest.fixture
def bloodcell_pairs(shared_data, tmp_path):
    """Three real blood-smear images and masks, linked into fresh folders."""
    return _linked_pairs(shared_data / "bloodcell" / "test", tmp_path)


def test_predict_writes_full_size_masks_overlays_and_probabilities(
    shared_data, model_file, tmp_path, capsys
):
    image_path = shared_data / "isic2017" / "fullres" / "images" / "ISIC_0001769.jpg"
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            "--model",
            str(model_file),
            "--out",
            str(out),
            "--tile",
            "256",
            "--overlay",
            "--probs",
            str(image_path),
        ]
    )
    assert code == 0
    image = read_image(image_path)
    mask = read_mask(out / "ISIC_0001769.png")
    assert mask.shape == image.shape[:2]
    raw = np.unique(read_image(out / "ISIC_0001769.png"))
    assert set(raw.tolist()) <= {0, 255}
    assert read_image(out / "ISIC_0001769_overlay.jpg").shape == image.shape
    assert read_image(out / "ISIC_0001769_prob.png").shape == image.shape
    assert "ISIC_0001769.jpg" in capsys.readouterr().out


def test_predict_a_directory_with_one_bad_file_processes_the_rest(
    bloodcell_pairs, model_file, tmp_path, capsys
):
    images, _ = bloodcell_pairs
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    out = tmp_path / "out"
    code = main(
        ["predict", "--model", str(model_file), "--out", str(out), "--no-tiling", str(images)]
    )
    assert code == 2
    assert len(list(out.glob("*.png"))) == 3
    assert not (out / "broken.png").exists()
    err = capsys.readouterr().err
    assert "broken.jpg" in err and "Traceback" not in err


def test_evaluate_reports_per_image_metrics_and_means(
    bloodcell_pairs, model_file, tmp_path, capsys
):
    images, masks = bloodcell_pairs
    report_path, csv_path = tmp_path / "report.json", tmp_path / "report.csv"
    code = main(
        [
            "evaluate",
            "--model",
            str(model_file),
            "--images",
            str(images),
            "--masks",
            str(masks),
            "--json",
            str(report_path),
            "--csv",
            str(csv_path),
            "--tile",
            "256",
        ]
    )
    assert code == 0
    report = json.loads(report_path.read_text())
    assert len(report["images"]) == 3
    expected_keys = {
        "image",
        "dice",
        "jaccard",
        "threshold_jaccard",
        "sensitivity",
        "specificity",
        "accuracy",
        "precision",
        "hd95",
        "seconds",
    }
    assert set(report["images"][0]) == expected_keys
    assert report["mean"]["dice"] == pytest.approx(
        np.mean([row["dice"] for row in report["images"]])
    )
    assert report["settings"]["tile"] == 256
    assert len(csv_path.read_text().strip().splitlines()) == 4
    assert "mean" in capsys.readouterr().out


def _evaluate_each(model, flag, values, images, masks, tmp_path) -> dict[str, dict]:
    """``tiledseg evaluate`` of ``model`` once per value of ``flag``: each run's JSON report."""
    reports = {}
    for value in values:
        path = tmp_path / f"{value}.json"
        arguments = ["--images", str(images), "--masks", str(masks), "--json", str(path)]
        assert main(["evaluate", "--model", model, flag, value, *arguments]) == 0
        reports[value] = json.loads(path.read_text())
    return reports


def test_evaluate_in_bfloat16_reports_it_and_keeps_the_dice(bloodcell_pairs, tmp_path):
    images, masks = bloodcell_pairs
    reports = _evaluate_each(
        "unet-bloodcell", "--precision", ("float32", "bfloat16"), images, masks, tmp_path
    )
    assert reports["bfloat16"]["settings"]["precision"] == "bfloat16"
    assert reports["float32"]["settings"]["precision"] == "float32"
    assert reports["bfloat16"]["mean"]["dice"] == pytest.approx(
        reports["float32"]["mean"]["dice"], abs=0.002
    )


def test_evaluate_matches_masks_with_the_isic_suffix(shared_data, model_file, tmp_path):
    source = shared_data / "isic2017" / "valid"
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for path in sorted((source / "images").glob("*.jpg"))[:2]:
        (images / path.name).symlink_to(path)
        (masks / f"{path.stem}_segmentation.png").symlink_to(source / "masks" / f"{path.stem}.png")
    report_path = tmp_path / "r.json"
    assert (
        main(
            [
                "evaluate",
                "--model",
                str(model_file),
                "--images",
                str(images),
                "--masks",
                str(masks),
                "--json",
                str(report_path),
            ]
        )
        == 0
    )
    assert len(json.loads(report_path.read_text())["images"]) == 2


def test_evaluate_skips_a_mask_of_the_wrong_size(bloodcell_pairs, model_file, tmp_path, capsys):
    images, masks = bloodcell_pairs
    victim = sorted(masks.iterdir())[0]
    victim.unlink()  # a link to the shared data: replace the link, not the real file
    write_mask(victim, np.zeros((10, 10), np.uint8))
    code = main(
        [
            "evaluate",
            "--model",
            str(model_file),
            "--images",
            str(images),
            "--masks",
            str(masks),
            "--json",
            str(tmp_path / "r.json"),
        ]
    )
    assert code == 2
    assert "10x10" in capsys.readouterr().err
    assert len(json.loads((tmp_path / "r.json").read_text())["images"]) == 2


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--model", "no/such-model.keras"], "no/such-model.keras"),
        (["--overlap", "1.5"], "Received: overlap=1.5"),
    ],
)
def test_user_errors_print_one_line_and_exit_2(model_file, tmp_path, arguments, message):
    image = tmp_path / "x.png"
    write_image(image, np.zeros((20, 20, 3), np.uint8))
    full = [
        "predict",
        "--model",
        str(model_file),
        "--out",
        str(tmp_path / "o"),
        *arguments,
        str(image),
    ]
    result = subprocess.run(
        [sys.executable, "-m", "tiledseg", *full], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["predict", "--out", "x"])
    assert exited.value.code == 2
    assert "--model" in capsys.readouterr().err


def test_evaluate_the_default_isic_model_on_full_size_photos(shared_data, tmp_path):
    """The bundled default ISIC model through the CLI on real full-size photos, at its own
    settings, on the default runtime and on Keras: good masks, and the same on both."""
    images, masks = _linked_pairs(shared_data / "isic2017" / "fullres", tmp_path)
    reports = _evaluate_each(
        "effunet-isic2017", "--runtime", ("auto", "keras"), images, masks, tmp_path
    )
    for report in reports.values():
        assert len(report["images"]) == 3
        # 0.874 as bundled now (0.919, 0.822, 0.882: ISIC_0001769, ISIC_0003462, ISIC_0003582);
        # the stage-one model had 0.884, the old UNet 0.80
        assert report["mean"]["jaccard"] > 0.85
    assert reports["auto"]["mean"]["dice"] == pytest.approx(
        reports["keras"]["mean"]["dice"], abs=0.002
    )


def test_evaluate_the_pretrained_blood_cell_model_on_real_slides(bloodcell_pairs, tmp_path):
    """The bundled EfficientNet blood-cell model through the CLI on three real test slides at
    its own settings (flips, threshold 0.5, float32): good masks, as on all ten test slides."""
    images, masks = bloodcell_pairs
    report = _evaluate_each("effunet-bloodcell", "--runtime", ("keras",), images, masks, tmp_path)
    report = report["keras"]
    assert len(report["images"]) == 3
    assert report["settings"]["tta"] == "flips" and report["settings"]["precision"] == "float32"
    assert report["settings"]["postprocess"] == {
        "min_size": 3000,
        "edge_visible": 0.35,
        "edge_max_size": 6000,
    }
    # 0.970 on these three slides as bundled (0.989, 0.975, 0.946), 0.967 on all ten
    assert report["mean"]["dice"] > 0.95


def test_a_scale_far_from_the_models_own_is_a_warning(shared_data, tmp_path, capsys):
    """--scale that shows a photo at over 2x (or under 1/2) the size the model was trained at
    (short side 256 px) warns, per image; the model's own scale, or one near it, does not."""
    photo = read_image(shared_data / "isic2017" / "fullres" / "images" / "ISIC_0001769.jpg")
    height, width = photo.shape[:2]
    small = tmp_path / "photo.png"  # short side 600 px
    factor = 600 / min(height, width)
    write_image(small, cv2.resize(photo, (round(width * factor), round(height * factor))))
    arguments = ["predict", "--model", "unet-isic2017", "--no-tta", str(small), "--overwrite"]
    for scale, expected in (("1", "2.3x"), ("0.1", "0.23x"), (None, None), ("0.5", None)):
        extra = ["--scale", scale] if scale else []
        assert main([*arguments, "--out", str(tmp_path / "out"), *extra]) == 0
        err = capsys.readouterr().err
        if expected is None:
            assert "trained at" not in err
        else:
            assert (
                f"warning: photo.png: --scale {scale} shows this {read_image(small).shape[1]}x600 "
                f"image to the network at {expected} the size the model was trained at"
            ) in err
            assert "leave --scale out to use the model's own scale" in err


def test_each_image_of_12_bit_data_in_16_bits_gets_its_warning(shared_data, tmp_path, capsys):
    """Python prints a warning once per place; the CLI prints it for every image it concerns."""
    slide = read_image(sorted((shared_data / "bloodcell" / "test" / "images").glob("*.jpg"))[0])
    small = cv2.resize(slide, (320, 240), interpolation=cv2.INTER_AREA)
    folder = tmp_path / "camera"
    folder.mkdir()
    for name in ("one.png", "two.png"):  # 12-bit values in 16-bit PNGs
        cv2.imwrite(str(folder / name), (small[..., ::-1].astype(np.uint16) * 16))
    out = tmp_path / "out"
    assert main(["predict", "--model", "unet-bloodcell", "--out", str(out), str(folder)]) == 0
    err = capsys.readouterr().err
    for name in ("one.png", "two.png"):
        assert f"warning: {folder / name} is a 16-bit image whose values reach only" in err
        assert (out / name).is_file()
