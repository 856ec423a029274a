"""The app's support package (caching store, pairing, ZIPs), and the model bundle app tests use.

The other ``test_app_*.py`` files import :func:`make_bundle` and :func:`app_environment` from
here. The bundled model is real Keras, saved in the zoo layout and loaded by ``model_zoo``
exactly as a shipped one: a per-pixel logistic colour model (fitted once on ISIC 2017 training
pixels, coefficients below) behind an average pool, so it has a downsampling factor of 2 and
finds dark lesions on real dermoscopy images (mean Dice about 0.5 on isic2017/valid).
"""

from __future__ import annotations

import io
import json
import os
import unicodedata
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

MODEL_ID = "unet-isic2017"
# Logistic regression of "lesion" on RGB/255, fitted on 60 isic2017/train images.
_COLOUR_WEIGHTS = (13.58, -8.24, -10.16)
_COLOUR_BIAS = 0.95
_CARD = """---
license: apache-2.0
tags: [image-segmentation, tiledseg]
---
# {id}

A colour model standing in for a trained UNet in the app's tests.
"""


def build_colour_model():
    """A fully convolutional Keras model from built-in layers with fixed, meaningful weights."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(1, 1, name="colour_logit")(x)
    x = keras.layers.AveragePooling2D(2)(x)
    x = keras.layers.UpSampling2D(2)(x)
    outputs = keras.layers.Activation("sigmoid")(x)
    model = keras.Model(inputs, outputs, name="colour_lesion")
    kernel = np.array(_COLOUR_WEIGHTS, np.float32).reshape(1, 1, 3, 1)
    model.get_layer("colour_logit").set_weights([kernel, np.array([_COLOUR_BIAS], np.float32)])
    return model


def make_bundle(root: Path, model_id: str = MODEL_ID) -> Path:
    """Write a zoo model folder ``root/model_id`` (Keras layout, tiledseg.json, card, history)."""
    import keras

    from model_zoo import ModelMeta

    folder = root / model_id
    folder.mkdir(parents=True)
    keras.saving.save_model(build_colour_model(), folder, zipped=False)
    ModelMeta(
        name=model_id,
        description="Test stand-in: lesion pixels by colour.",
        architecture="colour-logistic",
        scale={"mode": "short_side", "value": 256},
        tile=128,
        overlap=0.25,
        downsampling=2,
        dataset={"name": "ISIC 2017 Task 1", "id": "isic2017", "licence": "CC-0"},
        metrics=[
            {"split": "isic2017/valid", "settings": {}, "values": {"dice": 0.5, "jaccard": 0.38}}
        ],
    ).write(folder)
    (folder / "README.md").write_text(_CARD.format(id=model_id), encoding="utf-8")
    (folder / "history.csv").write_text(
        "epoch,loss,dice,val_loss,val_dice\n1,0.6,0.3,0.62,0.28\n2,0.5,0.45,0.55,0.4\n",
        encoding="utf-8",
    )
    return folder


@contextmanager
def app_environment(root: Path, registry_models: list[dict] | None = None):
    """Point the zoo at ``root`` (bundled models) and a registry (empty by default)."""
    registry = root / "registry.json"
    document = {"format_version": "1.0", "models": registry_models or []}
    registry.write_text(json.dumps(document), encoding="utf-8")
    saved = {name: os.environ.get(name) for name in ("TILEDSEG_BUNDLED_DIR", "TILEDSEG_REGISTRY")}
    os.environ["TILEDSEG_BUNDLED_DIR"] = str(root)
    os.environ["TILEDSEG_REGISTRY"] = str(registry)
    try:
        yield root
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --- the support package itself ---------------------------------------------------------------


def test_store_evicts_oldest_and_freezes_arrays():
    from app_support.store import ResultStore

    store = ResultStore(max_bytes=1000)
    store.put("a", np.zeros(100, np.float32))  # 400 bytes
    store.put("b", np.zeros(100, np.float32))
    assert store.get("a") is not None  # "a" is now the most recent
    store.put("c", np.zeros(100, np.float32))  # 1200 > 1000: evicts "b"
    assert store.get("b") is None and store.get("a") is not None and store.get("c") is not None
    with pytest.raises(ValueError):
        store.get("a")["value"][0] = 1.0  # read-only: no session can change another's result
    store.put("huge", np.zeros(1000, np.float32))  # larger than the budget: returned, not kept
    assert store.get("huge") is None and len(store) == 2


def test_pair_by_name_matches_both_mask_spellings_and_lists_the_rest():
    from app_support.uploads import Upload, pair_by_name

    images = [Upload.from_bytes(n, n.encode()) for n in ("a.jpg", "b.jpg", "c.png")]
    masks = [Upload.from_bytes(n, n.encode()) for n in ("a.png", "b_segmentation.png", "z.png")]
    pairing = pair_by_name(images, masks)
    assert [(i.name, m.name) for i, m in pairing.pairs] == [
        ("a.jpg", "a.png"),
        ("b.jpg", "b_segmentation.png"),
    ]
    assert pairing.images_without_mask == ["c.png"]
    assert pairing.masks_without_image == ["z.png"]
    assert pairing.ambiguous_images == [] and pairing.ambiguous_masks == []


def test_pair_by_name_leaves_out_names_that_match_more_than_one_file():
    from app_support.uploads import Upload, pair_by_name

    def uploads(*names: str) -> list[Upload]:
        return [Upload.from_bytes(name, name.encode()) for name in names]

    # Two images of one stem, two masks of one spelling (two folders of a ZIP), and a name
    # that macOS spelled decomposed (NFD) while the browser sent its mask composed (NFC).
    nfd, nfc = unicodedata.normalize("NFD", "Läsion"), unicodedata.normalize("NFC", "Läsion")
    assert nfd != nfc
    pairing = pair_by_name(
        uploads("a.jpg", "a.png", "b.jpg", f"{nfd}.jpg", "c.jpg"),
        uploads("a.png", "b.png", "b.png", f"{nfc}.png", "c.png", "c_segmentation.png"),
    )
    assert [(i.name, m.name) for i, m in pairing.pairs] == [
        (f"{nfd}.jpg", f"{nfc}.png"),
        ("c.jpg", "c.png"),
    ]
    assert pairing.ambiguous_images == ["a.jpg", "a.png", "b.jpg"]
    assert pairing.ambiguous_masks == ["a.png", "b.png", "b.png"]
    assert pairing.images_without_mask == [] and pairing.masks_without_image == [
        "c_segmentation.png"
    ]


def test_zip_of_keeps_every_entry_when_names_repeat():
    from app_support.downloads import zip_of

    data = zip_of(
        [("masks/a.png", lambda: b"1"), ("masks/a.png", lambda: b"2"), ("a", lambda: b"3")]
    )
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert archive.namelist() == ["masks/a.png", "masks/a-2.png", "a"]
        assert archive.read("masks/a-2.png") == b"2"


def test_read_zip_takes_images_and_masks_folders_and_rejects_non_zip():
    from app_support.uploads import Upload, read_zip
    from tiledseg.errors import ImageReadError

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("set/images/a.jpg", b"jpeg")
        archive.writestr("set/masks/a.png", b"png")
        archive.writestr("set/readme.txt", b"text")
        archive.writestr("set/images/.hidden.jpg", b"x")
    images, masks = read_zip(Upload.from_bytes("set.zip", buffer.getvalue()))
    assert [u.name for u in images] == ["a.jpg"] and [u.name for u in masks] == ["a.png"]
    with pytest.raises(ImageReadError, match="not a ZIP"):
        read_zip(Upload.from_bytes("set.zip", b"not a zip"))


def test_bundle_loads_through_the_zoo_and_segments_a_real_lesion(tmp_path, shared_data):
    import model_zoo
    from tiledseg import predict_tiled
    from tiledseg.io import read_image, read_mask
    from tiledseg.metrics import dice

    make_bundle(tmp_path)
    with app_environment(tmp_path):
        assert [entry.id for entry in model_zoo.list_models()] == [MODEL_ID]
        zoo = model_zoo.load(MODEL_ID)
    folder = shared_data / "isic2017" / "valid"
    image = read_image(folder / "images" / "ISIC_0015124.jpg")
    truth = read_mask(folder / "masks" / "ISIC_0015124.png")
    score = dice(predict_tiled(image, zoo) > 0.5, truth)
    assert 0.85 < score <= 1.0, score


@pytest.mark.parametrize("name", ["Magma", "Inferno", "Viridis"])
def test_heatmap_colour_scales_avoid_the_colours_streamlit_replaces(name):
    """Streamlit's browser code swaps its placeholder colours (#000001...) in every Plotly
    figure for theme colours; Magma and Inferno start at one of them (#000004)."""
    from plotly.colors import get_colorscale
    from streamlit.elements.lib import streamlit_plotly_theme as theme

    from app_support import charts

    placeholders = {
        value.lower()
        for key, value in vars(theme).items()
        if key.isupper() and isinstance(value, str) and value.startswith("#0000")
    }
    assert "#000004" in placeholders  # what this guards against is still Streamlit's
    scale = charts.colorscale(name)
    assert not {color.lower() for _, color in scale} & placeholders
    assert [position for position, _ in scale] == [p for p, _ in get_colorscale(name)]
    figures = [
        charts.difference_figure(np.zeros((8, 8)), "d", 0.5),
        charts.uncertainty_figure(np.full((8, 8), 0.5)),
        charts.probability_figure(np.zeros((8, 8))),
    ]
    for figure in figures:
        colors = {color.lower() for _, color in figure.data[0].colorscale}
        assert not colors & placeholders


def test_the_evaluation_downloads_name_what_the_means_leave_out():
    import csv

    from app_support.downloads import evaluation_report, rows_csv, rows_json

    rows = [{"image": "a.jpg", "mask": "a.png", "dice": 0.9, "hd95": float("nan")}]
    skipped = [{"image": "b.jpg", "mask": "b.png", "skipped": "Cannot read b.png: empty."}]
    left_out = {"images_without_mask": ["c.jpg"], "ambiguous_masks": ["d.png", "d.png"]}
    report = json.loads(
        rows_json(evaluation_report({"model": "m"}, {"dice": 0.9}, rows, skipped, left_out))
    )
    assert report["counts"] == {"pairs": 2, "scored": 1, "skipped": 1}
    assert report["images"][0]["hd95"] is None and report["skipped"] == skipped
    assert report["left_out"] == left_out and report["model"] == "m"
    table = list(csv.DictReader(io.StringIO(rows_csv([*rows, *skipped]).decode())))
    assert [row["image"] for row in table] == ["a.jpg", "b.jpg"]
    assert table[0]["skipped"] == "" and table[1]["dice"] == ""
    assert table[1]["skipped"] == "Cannot read b.png: empty."


def test_file_names_are_escaped_for_markdown_only_where_markdown_would_act():
    from app_support.guard import plain_name, plain_names_in

    # Inside a word an underscore cannot open emphasis: ISIC names stay as they are.
    assert plain_name("ISIC_0001769_segmentation.png") == "ISIC_0001769_segmentation.png"
    assert plain_name("_draft_ *a* `b` [c](d) ~e~ $f$ <g> #h|i!.jpg") == (
        r"\_draft\_ \*a\* \`b\` \[c\](d) \~e\~ \$f\$ \<g\> \#h\|i\!.jpg"
    )
    # Every occurrence, the longer of two overlapping names whole; other text untouched.
    message = "Cannot read *a*.jpg.png (*a*.jpg): not an image"
    assert plain_names_in(message, ["*a*.jpg", "*a*.jpg.png"]) == (
        r"Cannot read \*a\*.jpg.png (\*a\*.jpg): not an image"
    )
    assert plain_names_in("`x` must be in [0, 1]", []) == "`x` must be in [0, 1]"
