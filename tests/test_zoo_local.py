"""model_zoo without a Hub: staging, validation, loading, bundling, listing, export, Spaces.

Every model is a real tiny Keras UNet built in the test; nothing is mocked.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import keras
import numpy as np
import pytest
from huggingface_hub import SpaceCard
from zoo_fixtures import REPO_ROOT, build_tiny_model, make_run_dir, tree_checksum

import model_zoo
from model_zoo.cli import main
from model_zoo.errors import (
    MetadataVersionError,
    ModelLoadError,
    ModelNotFoundError,
    StagingError,
    UnsafeModelError,
)
from model_zoo.layout import (
    GOLDEN_INPUT_FILE,
    GOLDEN_OUTPUT_FILE,
    HUB_ALLOW_PATTERNS,
    PACKAGE_DIR,
    REPO_REQUIRED_FILES,
    SAVEDMODEL_META_FILE,
    SELECTION_FILE,
)
from model_zoo.registry import bundled_ids
from model_zoo.space import check_space, publish_space


@pytest.fixture(scope="module")
def zoo_env(tmp_path_factory):
    """An empty bundled zoo and registry of our own, so the checkout's are never touched."""
    root = tmp_path_factory.mktemp("zoo")
    (root / "bundled").mkdir()
    (root / "registry.json").write_text('{"format_version": "1.0", "models": []}')
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TILEDSEG_BUNDLED_DIR", str(root / "bundled"))
        patch.setenv("TILEDSEG_REGISTRY", str(root / "registry.json"))
        model_zoo.clear_cache()
        yield root
        model_zoo.clear_cache()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    return make_run_dir(tmp_path_factory.mktemp("runs"))


@pytest.fixture(scope="module")
def staged(run_dir, tmp_path_factory, zoo_env):
    """The folder `publish --dry-run` stages, with the run's checksum before and after."""
    before = tree_checksum(run_dir)
    out = tmp_path_factory.mktemp("stage") / "tiny"
    assert (
        main(
            [
                "publish",
                str(run_dir),
                "--repo-id",
                "acme/tiny",
                "--dry-run",
                "--stage-dir",
                str(out),
            ]
        )
        == 0
    )
    return out, before


def _image(height=48, width=80, seed=3):
    return np.random.default_rng(seed).uniform(0, 255, (1, height, width, 3)).astype("float32")


def _forward(model, images):
    return keras.ops.convert_to_numpy(model(images, training=False))


def test_publish_dry_run_stages_the_full_layout_and_leaves_the_run_untouched(
    run_dir, staged, capsys
):
    out, before = staged
    assert tree_checksum(run_dir) == before
    for name in (*REPO_REQUIRED_FILES, "golden/input.npy", "golden/output.npy"):
        assert (out / name).is_file(), name
    assert not (out / "previews").exists() and not (out / "model.keras").exists()
    meta = json.loads((out / "tiledseg.json").read_text())
    assert meta["format_version"] == model_zoo.FORMAT_VERSION and meta["name"] == "tiny"
    assert meta["scale"] == {"mode": "short_side", "value": 256} and meta["downsampling"] == 4
    assert meta["metrics"][0]["split"] == "isic2017/fullres"
    assert meta["metrics"][0]["values"] == {"dice": 0.71, "jaccard": 0.58}
    assert meta["keras_version"] == keras.__version__ and meta["parameter_count"] > 0
    assert meta["dataset"]["licence"] == "CC-0" and meta["date"]
    # Plain Keras loads the staged folder, and it computes what the run's checkpoint computes.
    plain = keras.saving.load_model(out, safe_mode=True)
    original = keras.saving.load_model(run_dir / "model.keras", compile=False)
    images = _image()
    np.testing.assert_allclose(_forward(plain, images), _forward(original, images), atol=1e-6)
    assert model_zoo.validate_staged(out).meta.threshold == 0.5
    # How the settings were chosen travels too, and the card says so.
    assert (out / "selection.json").read_bytes() == (run_dir / "selection.json").read_bytes()
    card = (out / "README.md").read_text()
    assert (
        "chosen on `isic2017/valid` by mean dice, from 3 candidates varying threshold: "
        "the best-scoring one (0.7200)"
    ) in card


def test_publish_dry_run_prints_the_staged_path_last(run_dir, tmp_path, capsys, zoo_env):
    out = tmp_path / "stage"
    code = main(
        ["publish", str(run_dir), "--repo-id", "tiny", "--dry-run", "--stage-dir", str(out)]
    )
    lines = capsys.readouterr().out.strip().splitlines()
    assert code == 0 and lines[-1] == str(out)
    assert "tiledseg/tiny" in lines[0]  # a bare NAME takes the default organisation


def test_publish_refuses_a_non_empty_stage_dir(run_dir, tmp_path, capsys):
    (tmp_path / "keep.txt").write_text("x")
    code = main(
        ["publish", str(run_dir), "--repo-id", "a/b", "--dry-run", "--stage-dir", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 2 and "must be absent or empty" in err and "Traceback" not in err
    assert [p.name for p in tmp_path.iterdir()] == ["keep.txt"]


def test_publish_rejects_an_incomplete_run_before_writing_anything(tmp_path, capsys):
    run = make_run_dir(tmp_path / "runs", with_eval=False)
    before = tree_checksum(run)
    out = tmp_path / "stage"
    code = main(["publish", str(run), "--repo-id", "a/b", "--dry-run", "--stage-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and "missing ['eval.json']" in err
    assert not out.exists() and tree_checksum(run) == before


def test_a_run_without_a_selection_table_stages_without_one(tmp_path):
    run = make_run_dir(tmp_path / "runs", with_selection=False)
    out = model_zoo.stage_run(run, tmp_path / "stage", model_id="tiny", repo_id="a/b")
    model_zoo.validate_staged(out)
    assert not (out / "selection.json").exists()
    assert "were chosen on" not in (out / "README.md").read_text()


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "is not readable JSON"),
        ("[1, 2]", "it holds a list, not an object"),
        ('{"split": "v", "metric": "dice", "candidates": []}', "non-empty list"),
        ('{"split": "v", "metric": "dice", "candidates": [{"jaccard": 0.5}]}', "no candidate"),
        ('{"metric": "dice", "candidates": [{"dice": 0.5}]}', "'split' must be text"),
    ],
)
def test_publish_rejects_a_broken_selection_table_before_writing_anything(
    tmp_path, capsys, content, message
):
    run = make_run_dir(tmp_path / "runs")
    (run / "selection.json").write_text(content)
    before = tree_checksum(run)
    out = tmp_path / "stage"
    code = main(["publish", str(run), "--repo-id", "a/b", "--dry-run", "--stage-dir", str(out)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and message in err, err
    assert "selection.json" in err and "--resume RUN" in err and "Traceback" not in err
    assert not out.exists() and tree_checksum(run) == before


def test_publish_refuses_a_checkpoint_that_safe_mode_refuses(tmp_path, capsys):
    run = make_run_dir(tmp_path / "runs", lambda_layer=True)
    before = tree_checksum(run)
    code = main(
        ["publish", str(run), "--repo-id", "a/b", "--dry-run", "--stage-dir", str(tmp_path / "s")]
    )
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "safe_mode refused" in err
    assert "Traceback" not in err and tree_checksum(run) == before


def test_load_unsafe_checkpoint_raises_unsafe_model_error(tmp_path):
    model = build_tiny_model(lambda_layer=True)
    keras.saving.save_model(model, tmp_path / "unsafe", zipped=False)
    with pytest.raises(UnsafeModelError, match="safe_mode refused") as info:
        model_zoo.load(tmp_path / "unsafe")
    assert isinstance(info.value, ModelLoadError)


def test_load_staged_folder_gives_model_meta_card_and_is_cached(staged):
    out, _ = staged
    zoo_model = model_zoo.load(str(out))
    assert isinstance(zoo_model.model, keras.Model)
    assert zoo_model.meta.tile == 256 and zoo_model.meta.postprocess["min_size"] == 64
    assert zoo_model.card.startswith("---") and "library_name: keras" in zoo_model.card
    assert zoo_model.path == out.resolve() and zoo_model.source == "local"
    assert zoo_model.revision is None and zoo_model.id == "tiny"
    assert model_zoo.load(out) is zoo_model
    model_zoo.clear_cache()
    assert model_zoo.load(out) is not zoo_model


def test_load_a_run_dir_or_its_checkpoint_reads_inference_json(run_dir):
    for ref in (run_dir, run_dir / "model.keras"):
        zoo_model = model_zoo.load(ref)
        assert zoo_model.meta.scale.to_dict() == {"mode": "short_side", "value": 256}
        assert zoo_model.meta.tile == 256 and zoo_model.meta.downsampling == 4
        assert zoo_model.card == ""


def test_load_a_bare_keras_file_uses_default_meta(tmp_path):
    keras.saving.save_model(build_tiny_model(), tmp_path / "bare.keras")
    zoo_model = model_zoo.load(tmp_path / "bare.keras")
    meta = zoo_model.meta
    assert (meta.tile, meta.overlap, meta.blend, meta.threshold) == (512, 0.25, "gaussian", 0.5)
    assert meta.scale.to_dict() == {"mode": "factor", "value": 1.0} and meta.downsampling == 4


@pytest.mark.parametrize(("version", "word"), [("2.0", "newer"), ("0.1", "older")])
def test_too_new_or_old_metadata_is_refused_with_a_clear_cli_error(
    staged, tmp_path, capsys, version, word
):
    out, _ = staged
    copy = tmp_path / "model"
    shutil.copytree(out, copy)
    meta = json.loads((copy / "tiledseg.json").read_text())
    (copy / "tiledseg.json").write_text(json.dumps({**meta, "format_version": version}))
    with pytest.raises(MetadataVersionError, match=f"{word} than this tiledseg supports"):
        model_zoo.load(copy)
    code = main(["export", str(copy), "--out", str(tmp_path / "serving" / "m" / "1")])
    err = capsys.readouterr().err
    assert code == 2 and f"format_version {version}" in err and "1.x" in err
    assert "Traceback" not in err and not (tmp_path / "serving" / "m" / "1").exists()


def test_unknown_ids_and_paths_list_what_is_accepted(zoo_env, staged, capsys):
    with pytest.raises(ModelNotFoundError) as info:
        model_zoo.load("no-such-model")
    message = str(info.value)
    assert "Unknown model id 'no-such-model'" in message and "Known ids:" in message
    assert "hf://ORG/NAME" in message and "a bundled id" in message
    with pytest.raises(ModelNotFoundError, match=r"No such file or directory: \./missing\.keras"):
        model_zoo.load("./missing.keras")
    with pytest.raises(ModelNotFoundError, match="needs ORG/NAME"):
        model_zoo.load("hf://lonely")
    assert main(["pull", "no-such-model"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: Unknown model id") and "Traceback" not in err


def test_revisions_apply_to_hub_references_only(staged):
    with pytest.raises(ModelLoadError, match="has no revisions"):
        model_zoo.load(staged[0], revision="main")
    with pytest.raises(ValueError, match="Two different revisions"):
        model_zoo.resolve("acme/tiny@v1", revision="v2")


def test_bundle_validates_then_replaces_atomically(run_dir, tmp_path, zoo_env, capsys):
    bundled = zoo_env / "bundled"
    assert main(["bundle", str(run_dir), "--id", "tiny-bundle"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(bundled / "tiny-bundle")
    first = model_zoo.load("tiny-bundle")
    assert first.source == "bundled" and first.meta.name == "tiny-bundle"
    assert "tiledseg/tiny-bundle" in first.card
    first_golden = np.load(bundled / "tiny-bundle" / "golden" / "output.npy")

    # A run safe_mode refuses must leave the existing bundle exactly as it was.
    before = tree_checksum(bundled)
    bad = make_run_dir(tmp_path / "bad", lambda_layer=True)
    assert main(["bundle", str(bad), "--id", "tiny-bundle"]) == 2
    assert "safe_mode refused" in capsys.readouterr().err
    assert tree_checksum(bundled) == before

    other = make_run_dir(tmp_path / "other", seed=7, threshold=0.3)
    assert main(["bundle", str(other), "--id", "tiny-bundle"]) == 0
    assert [p.name for p in bundled.iterdir()] == ["tiny-bundle"]  # no staging leftovers
    assert json.loads((bundled / "tiny-bundle" / "tiledseg.json").read_text())["threshold"] == 0.3
    assert not np.allclose(np.load(bundled / "tiny-bundle" / "golden" / "output.npy"), first_golden)
    model_zoo.clear_cache()


def test_pull_and_list_a_bundled_model_offline(run_dir, zoo_env, capsys):
    model_zoo.bundle(run_dir, "tiny-listed")
    capsys.readouterr()
    assert main(["pull", "tiny-listed"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert "nothing to download" in lines[0]
    assert lines[-1] == str((zoo_env / "bundled" / "tiny-listed").resolve())

    assert main(["list", "--json"]) == 0
    entries = {e["id"]: e for e in json.loads(capsys.readouterr().out)}
    entry = entries["tiny-listed"]
    assert entry["source"] == "bundled" and entry["offline"] is True
    assert entry["metric"] == "dice 0.710 (isic2017/fullres)" and entry["dataset"] == "isic2017"
    assert entry["task"] == "binary-segmentation" and entry["size_bytes"] > 10_000
    assert main(["list"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == [
        "id",
        "task",
        "dataset",
        "metric",
        "size",
        "source",
        "offline",
    ]
    assert "tiny-listed" in table


def test_export_savedmodel_for_tf_serving_matches_keras(staged, tmp_path, capsys):
    import tensorflow as tf

    out, _ = staged
    version_dir = tmp_path / "serving" / "tiny" / "1"
    assert main(["export", str(out), "--format", "savedmodel", "--out", str(version_dir)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(version_dir)
    assert (version_dir / "saved_model.pb").is_file()
    assert model_zoo.load_meta(version_dir / SAVEDMODEL_META_FILE).tile == 256

    served = tf.saved_model.load(str(version_dir)).signatures["serving_default"]
    spec = served.structured_input_signature[1]["images"]
    assert spec.dtype == tf.float32 and spec.shape.as_list() == [None, None, None, 3]
    images = _image(40, 72)
    actual = served(images=tf.constant(images))["probabilities"].numpy()
    expected = _forward(model_zoo.load(out).model, images)
    assert actual.shape == (1, 40, 72, 1)
    np.testing.assert_allclose(actual, expected, atol=1e-4)

    (tmp_path / "a-file").write_text("")
    for bad, message in (
        (version_dir, "already exists"),
        (tmp_path / "serving" / "x" / "v1", "integer"),
        (tmp_path / "a-file" / "tiny" / "1", "a-file is a file, not a folder"),
        (Path("/proc/tiledseg-test/tiny/1"), "cannot be created in /proc/tiledseg-test/tiny"),
    ):
        assert main(["export", str(out), "--out", str(bad)]) == 2
        error = capsys.readouterr().err
        assert message in error and error.startswith("error: ") and "Traceback" not in error
    for fmt in ("onnx", "openvino"):  # the runtime exports check the same, before loading
        assert main(["export", str(out), "--format", fmt, "--out", str(tmp_path / "a-file")]) == 2
        assert "already exists" in capsys.readouterr().err
        bad = tmp_path / "a-file" / "sub"
        assert main(["export", str(out), "--format", fmt, "--out", str(bad)]) == 2
        assert "is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exited:
        main(["export", str(out), "--format", "tflite", "--out", str(tmp_path / "o" / "1")])
    assert exited.value.code == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_space_dry_run_stages_a_docker_space(tmp_path, capsys):
    out = tmp_path / "space"
    assert main(["space", "--repo-id", "acme/demo", "--dry-run", "--stage-dir", str(out)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    data = SpaceCard.load(out / "README.md").data
    # Spaces build Streamlit apps from a Dockerfile now; the streamlit SDK keys must be gone.
    assert data.sdk == "docker" and data.app_port == 7860
    assert data.get("sdk_version") is None and data.get("app_file") is None
    assert "Not a medical device" in (out / "README.md").read_text()
    assert (out / "Dockerfile").read_bytes() == (REPO_ROOT / "deploy/Dockerfile.app").read_bytes()
    assert (out / ".dockerignore").read_bytes() == (REPO_ROOT / ".dockerignore").read_bytes()
    for package in ("tiledseg/__init__.py", "model_zoo/__init__.py", "model_zoo/registry.json"):
        assert (out / package).is_file(), package
    assert (out / "model_zoo" / "bundled").is_dir()
    for item in ("app.py", "app_pages", ".streamlit", "app_support", "training"):
        assert (out / item).exists(), item
    requirements = (out / "requirements.txt").read_text().splitlines()
    assert "streamlit==1.67.0" in requirements and not any(r.startswith("-e") for r in requirements)
    assert not list(out.rglob("__pycache__"))
    check_space(out)
    dockerfile = out / "Dockerfile"
    dockerfile.write_text(dockerfile.read_text().replace("7860", "8501"))
    with pytest.raises(StagingError, match="does not expose and serve app_port 7860"):
        check_space(out)


def test_space_upload_requires_the_app_and_checks_before_any_network_call(tmp_path):
    project = tmp_path / "project"
    for package in ("tiledseg", "model_zoo"):
        shutil.copytree(
            REPO_ROOT / package, project / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    with pytest.raises(StagingError, match=r"the Dockerfile is missing; app\.py is not in"):
        publish_space("acme/demo", project_root=project, stage_dir=tmp_path / "s1")
    (project / "app.py").write_text("import streamlit as st\nst.title('tiledseg')\n")
    (project / "deploy").mkdir()
    shutil.copy(REPO_ROOT / "deploy" / "Dockerfile.app", project / "deploy" / "Dockerfile.app")
    (project / "requirements.txt").write_text("-e .\nstreamlit==1.67.0\n")
    result = publish_space(
        "acme/demo", project_root=project, stage_dir=tmp_path / "s2", dry_run=True
    )
    check_space(result.staged, require_app=True)
    assert set(result.missing) == {
        "app_pages",
        ".streamlit",
        "app_support",
        ".dockerignore",
    }


def test_hub_download_patterns_cover_the_layout():
    for name in REPO_REQUIRED_FILES:
        assert name in HUB_ALLOW_PATTERNS
    assert "golden/*" in HUB_ALLOW_PATTERNS
    assert SELECTION_FILE in HUB_ALLOW_PATTERNS


@pytest.mark.slow
@pytest.mark.parametrize("model_id", bundled_ids(PACKAGE_DIR / "bundled"))
def test_bundled_model_is_valid_and_reproduces_its_golden_output(model_id):
    # The checkout's own bundled models (none until training bundles some).
    folder = PACKAGE_DIR / "bundled" / model_id
    assert (folder / GOLDEN_INPUT_FILE).is_file() and (folder / GOLDEN_OUTPUT_FILE).is_file()
    zoo_model = model_zoo.validate_staged(folder)  # safe_mode load, schema, card, golden pair
    assert zoo_model.meta.name == model_id and zoo_model.meta.metrics
