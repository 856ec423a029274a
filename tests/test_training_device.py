"""The device training flow at tiny scale: prepare here, train on JAX as the device would (the same
script, without wheels), check under TensorFlow here; and each way it refuses."""

from __future__ import annotations

import os
import shutil
import subprocess
import tarfile
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT

from training import device
from training.config import load_config
from training.data import load_pairs

CONFIG = REPO_ROOT / "training" / "configs" / "isic2017.toml"


def _tiny_sets(root: Path) -> list[str]:
    return [
        f'data.root="{root}"',
        'eval.split="isic2017/valid"',
        "model.base_filters=8",
        "model.num_levels=3",
        'data.scale={mode="short_side", value=64}',
        "data.crop_size=64",
        "train.epochs=2",
        "train.batch_size=4",
        "train.verbose=0",
        "preview.count=1",
        "inference.tile=[64]",
        "inference.threshold=[0.5]",
        'inference.tta=["none"]',
        "inference.postprocess=[{}]",
    ]


@pytest.fixture(scope="module")
def tiny_root(shared_data, tmp_path_factory) -> Path:
    """8 real training and 4 validation pairs in the data set's folder layout."""
    root = tmp_path_factory.mktemp("data")
    for split, count in (("train", 8), ("valid", 4)):
        for image, mask in load_pairs(shared_data / "isic2017" / split)[:count]:
            for path, kind in ((image, "images"), (mask, "masks")):
                folder = root / "isic2017" / split / kind
                folder.mkdir(parents=True, exist_ok=True)
                shutil.copy(path, folder / path.name)
    return root


@pytest.fixture(scope="module")
def device_archive(tiny_root, tmp_path_factory) -> Path:
    """prepare, then training/device_train.sh on JAX, as on the device (no wheels to install)."""
    work = tmp_path_factory.mktemp("device")
    sets = _tiny_sets(tiny_root)
    data_dir = work / ".data"
    sizes = device.prepare(CONFIG, overrides=sets, data_dir=data_dir, wheels=False)
    assert sizes["data"] > 0
    assert sorted(p.name for p in (data_dir / "isic2017").iterdir()) == ["train", "valid"]
    arguments = [item for assignment in sets for item in ("--set", assignment)]
    environment = {
        **os.environ,
        "KERAS_BACKEND": "jax",
        "TILEDSEG_NO_WHEELS": "1",
        "OUT": str(work / "out"),
    }
    options = ["--data-dir", str(data_dir), "--minutes", "2", "--workers", "1"]
    result = subprocess.run(
        ["bash", "training/device_train.sh", str(CONFIG), *arguments, *options],
        cwd=REPO_ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    previews = list((work / "out").glob(f"*{device.PREVIEWS_SUFFIX}"))
    runs = [path for path in (work / "out").glob("*.tar") if path not in previews]
    assert len(runs) == 1 and len(previews) == 1 and (work / "out" / "train.log").is_file()
    return runs[0]


@pytest.mark.slow
def test_a_device_run_checks_under_tensorflow_and_evaluates(device_archive, tiny_root, tmp_path):
    with tarfile.open(device_archive) as tar:
        names = tar.getnames()
    assert not any("/resume" in name for name in names)  # the optimizer state stays there
    assert not any("/previews" in name for name in names)  # they come back in their own file
    result = device.check(device_archive, runs_dir=tmp_path)
    run_dir = result["run_dir"]
    assert sorted(p.name for p in (run_dir / "previews").iterdir()) == [
        "epoch_001.png",
        "epoch_002.png",
    ]
    assert result["max_difference"] < device.SAME_TO
    assert result["eval"]["split"] == "isic2017/valid" and result["eval"]["count"]
    # The run now reads as one trained here: this machine's data root and eval split.
    config = load_config(run_dir / "config.toml")
    assert config["data"]["root"] == str(tiny_root)
    assert config["eval"]["split"] == "isic2017/valid"
    device_info = (run_dir / device.DEVICE_FILE).read_text()
    assert '"backend": "jax"' in device_info
    # ... and bundles like one: the zoo folder loads and carries the eval split's metrics.
    import model_zoo

    folder = model_zoo.bundle(run_dir, "tiny-device", root=tmp_path / "zoo")
    loaded = model_zoo.load(str(folder))
    assert loaded.meta.metrics[0]["split"] == "isic2017/valid"


@pytest.mark.slow
def test_check_refuses_a_run_that_predicts_differently(device_archive, tmp_path):
    unpacked = tmp_path / "unpacked"
    with tarfile.open(device_archive) as tar:
        tar.extractall(unpacked, filter="data")
    (run_dir,) = unpacked.iterdir()
    check_file = run_dir / device.BACKEND_CHECK_FILE
    with np.load(check_file) as saved:
        arrays = {name: saved[name] for name in saved.files}
    arrays["probabilities_0"] = arrays["probabilities_0"] + 1e-3
    np.savez_compressed(check_file, **arrays)
    tampered = tmp_path / "tampered.tar"
    with tarfile.open(tampered, "w") as tar:
        tar.add(run_dir, arcname=run_dir.name)
    with pytest.raises(ValueError, match="predicts differently on tensorflow than on jax"):
        device.check(tampered, runs_dir=tmp_path / "runs")
    with pytest.raises(FileExistsError, match="exists already"):
        device.check(tampered, runs_dir=tmp_path / "runs")


def test_check_names_an_archive_that_is_not_a_run(tmp_path):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    archive = tmp_path / "notes.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tmp_path / "notes", arcname="notes")
    with pytest.raises(ValueError, match=r"not a device run: it lacks model\.keras"):
        device.check(archive, runs_dir=tmp_path / "runs")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        device.check(tmp_path / "missing.tar", runs_dir=tmp_path / "runs")


def test_prepare_refuses_what_cannot_travel(tiny_root, tmp_path, monkeypatch):
    sets = _tiny_sets(tiny_root)
    data_dir = tmp_path / ".data"
    csv_split = [*sets, 'data.train="pairs.csv"']
    with pytest.raises(ValueError, match="a CSV or an absolute path cannot travel"):
        device.prepare(CONFIG, overrides=csv_split, data_dir=data_dir, wheels=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        device.prepare(
            CONFIG, overrides=[*sets, 'data.valid="nowhere"'], data_dir=data_dir, wheels=False
        )
    # This checkout against a limit below its size: the error says so and what to do.
    monkeypatch.setattr(device, "TRAVEL_LIMIT", 2**20)
    with pytest.raises(ValueError, match=r"at most 64 MiB travels\. Add --slim"):
        device.prepare(CONFIG, overrides=sets, data_dir=data_dir, wheels=False)


def test_slim_paths_are_removed_and_restored_from_git(tmp_path):
    def git(*args):
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    weights = tmp_path / "model_zoo" / "bundled" / "m" / "model.weights.h5"
    card = tmp_path / "model_zoo" / "bundled" / "m" / "README.md"
    shot = tmp_path / "docs" / "screenshots" / "home.png"
    for path in (weights, card, shot):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(path.name.encode())
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "files")
    removed = device.remove_slim_paths(tmp_path)
    assert sorted(removed) == ["docs/screenshots/home.png", "model_zoo/bundled/m/model.weights.h5"]
    assert card.is_file() and not weights.exists() and not shot.exists()
    assert sorted(device.restore_slim_paths(tmp_path)) == sorted(removed)
    assert weights.read_bytes() == b"model.weights.h5" and shot.is_file()
    assert device.restore_slim_paths(tmp_path) == []


def test_the_device_script_passes_on_the_commands_usage_error(tmp_path):
    # Without a config the script ends with the command's own usage error and its exit code.
    result = subprocess.run(
        ["bash", "training/device_train.sh"],
        cwd=REPO_ROOT,
        env={**os.environ, "TILEDSEG_NO_WHEELS": "1", "OUT": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "usage: python -m training.device train" in result.stdout + result.stderr
    assert "usage:" in (tmp_path / "train.log").read_text()
