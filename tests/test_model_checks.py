"""Hostile tiledseg.json values and broken model folders through the CLI (issue 14, §4 and §5).

Each case is a real model folder (Keras layout plus tiledseg.json) or .keras file on disk, run
through ``tiledseg predict`` in a subprocess: one ``error:`` line, exit code 2, no traceback,
nothing written.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, build_tiny_unet

from tiledseg.contract import ModelMeta
from tiledseg.io import write_image


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    import keras

    root = tmp_path_factory.mktemp("zoo") / "tiny"
    keras.saving.save_model(build_tiny_unet(), root, zipped=False)
    ModelMeta(name="tiny", downsampling=4, tile=64).write(root)
    return root


@pytest.fixture
def image(tmp_path) -> Path:
    return write_image(tmp_path / "x.png", np.zeros((40, 50, 3), np.uint8))


def _copy(folder: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folder, tmp_path / "model"))


def _predict(model: Path, image: Path, *flags: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    out = image.parent / "out"
    return subprocess.run(
        [sys.executable, "-m", "tiledseg", "predict", "--model", str(model), "--out", str(out),
         *flags, str(image)],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT,
    )  # fmt: skip


def _refused(result: subprocess.CompletedProcess, image: Path, *words: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for word in words:
        assert word in errors[0], errors[0]
    assert not list((image.parent / "out").glob("*.png"))


def test_the_healthy_folder_runs(folder, image):
    result = _predict(folder, image)
    assert result.returncode == 0, result.stderr
    assert "warning" not in result.stderr


@pytest.mark.parametrize(
    ("field", "value", "words"),
    [
        ("threshold", float("nan"), ["threshold", "finite"]),
        ("overlap", float("nan"), ["overlap", "finite"]),
        ("threshold", 1.5, ["threshold", "[0, 1]"]),
        ("postprocess", {"opening": -3}, ["opening", "[0, 255]", "-3"]),
        ("postprocess", {"min_size": "big"}, ["min_size", "integer", "'big'"]),
        ("postprocess", {"opening": 10**9}, ["opening", "[0, 255]"]),
        ("postprocess", {"fill_holes": "yes"}, ["fill_holes", "True or False"]),
        ("downsampling", 3, ["downsampling", "power of two", "3"]),
        ("downsampling", 2, ["downsampling=2", "downsamples by 4"]),
        ("scale", {"mode": "factor", "value": float("inf")}, ["value", "finite"]),
    ],
)
def test_hostile_metadata_values_are_refused_when_loaded(folder, image, field, value, words):
    model = _copy(folder, image.parent)
    data = json.loads((model / "tiledseg.json").read_text())
    data[field] = value
    (model / "tiledseg.json").write_text(json.dumps(data))  # NaN and Infinity as Python writes them
    _refused(_predict(model, image), image, *words)


@pytest.mark.parametrize(
    ("damage", "words"),
    [
        ("delete", ["model.weights.h5 is missing"]),
        ("empty", ["model.weights.h5 is empty"]),
        ("truncate", ["model.weights.h5 is truncated or corrupt"]),
        ("garbage", ["model.weights.h5 is not an HDF5 file"]),
    ],
)
def test_a_broken_weights_file_is_named_with_what_is_wrong(folder, image, damage, words):
    model = _copy(folder, image.parent)
    weights = model / "model.weights.h5"
    data = weights.read_bytes()
    if damage == "delete":
        weights.unlink()
    elif damage == "empty":
        weights.write_bytes(b"")
    elif damage == "truncate":
        weights.write_bytes(data[: len(data) // 2])
    else:
        weights.write_bytes(b"not hdf5 at all" * 10)
    result = _predict(model, image)
    _refused(result, image, *words)
    assert "weights_store" not in result.stderr


def test_a_model_folder_without_tiledseg_json_is_refused(folder, image):
    model = _copy(folder, image.parent)
    (model / "tiledseg.json").unlink()
    _refused(_predict(model, image), image, "without tiledseg.json", "its settings explicitly")


def test_a_bare_keras_file_runs_and_warns_which_defaults_it_used(image):
    model = image.parent / "bare.keras"
    build_tiny_unet().save(model)
    result = _predict(model, image, "--scale", "0.5", "--threshold", "0.4")
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1, result.stderr
    assert "tile 512 (--tile)" in warnings[0] and "overlap 0.25 (--overlap)" in warnings[0]
    assert "postprocess none" in warnings[0]
    assert "threshold" not in warnings[0] and "scale" not in warnings[0]  # given explicitly
    assert (image.parent / "out" / "x.png").is_file()
