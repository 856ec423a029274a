"""A tiny real training run (8 real ISIC pairs at 64 px) and the run directory it writes;
resuming it, the one-device distributed path, and the evaluation command line."""

from __future__ import annotations

import copy
import csv
import json
import shutil
import tomllib
from pathlib import Path

import keras
import numpy as np
import pytest

from training import evaluate, train
from training.config import load_config
from training.data import load_pairs
from training.run_dir import HISTORY_COLUMNS

CONFIGS = Path(__file__).resolve().parents[1] / "training" / "configs"

EPOCHS = 4


def _write_csv(path, pairs):
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "mask"])
        writer.writerows((str(image), str(mask)) for image, mask in pairs)
    return str(path)


def tiny_overrides(shared_data: Path, folder: Path) -> list[str]:
    """Config overrides for a tiny real run: 8 ISIC pairs at 64 px, split files in ``folder``."""
    splits = {
        "train": load_pairs(shared_data / "isic2017" / "train")[:8],
        "valid": load_pairs(shared_data / "isic2017" / "valid")[:4],
        "test": load_pairs(shared_data / "isic2017" / "fullres")[:2],
    }
    paths = {name: _write_csv(folder / f"{name}.csv", pairs) for name, pairs in splits.items()}
    return [
        "name=tiny",
        "seed=5",
        "model.base_filters=8",
        "model.num_levels=3",
        f"data.train={json.dumps(paths['train'])}",
        f"data.valid={json.dumps(paths['valid'])}",
        f"eval.split={json.dumps(paths['test'])}",
        'data.scale={mode="short_side", value=64}',
        "data.crop_size=64",
        "data.crops_per_image=2",
        "data.workers=2",
        f"train.epochs={EPOCHS}",
        "train.batch_size=4",
        "train.learning_rate=5e-3",
        'train.schedule="constant"',
        "train.verbose=0",
        "preview.count=2",
        "inference.tile=[64]",
        "inference.threshold=[0.4, 0.5]",
        "inference.postprocess=[{}, {fill_holes=true}]",
        'dataset={name="ISIC 2017 Task 1", id="isic2017", licence="CC-0"}',
    ]


@pytest.fixture(scope="module")
def tiny_config(shared_data, tmp_path_factory):
    return load_config(overrides=tiny_overrides(shared_data, tmp_path_factory.mktemp("splits")))


@pytest.fixture(scope="module")
def tiny_run(tiny_config, tmp_path_factory):
    return train.train(copy.deepcopy(tiny_config), runs_dir=tmp_path_factory.mktemp("runs"))


def _history(run_dir):
    with (run_dir / "history.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_training_lowers_the_loss_and_logs_every_epoch(tiny_run):
    rows = _history(tiny_run)
    assert list(rows[0]) == list(HISTORY_COLUMNS)
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 1))
    losses = [float(row["loss"]) for row in rows]
    assert losses[-1] < losses[0] and min(losses[1:]) < 0.9 * losses[0], losses
    assert all(0 <= float(row["val_dice"]) <= 1 for row in rows)
    assert all(float(row["lr"]) == pytest.approx(5e-3) for row in rows)


def test_run_directory_follows_the_contract(tiny_run):
    names = {path.name for path in tiny_run.iterdir()}
    assert {
        "model.keras",
        "config.toml",
        "history.csv",
        "eval.json",
        "inference.json",
        "dataset.json",
        "previews",
    } <= names
    assert tiny_run.name.startswith("tiny-")
    previews = sorted(path.name for path in (tiny_run / "previews").iterdir())
    assert previews == [f"epoch_{epoch:03d}.png" for epoch in range(1, EPOCHS + 1)]

    config = tomllib.loads((tiny_run / "config.toml").read_text())
    assert config["train"]["epochs"] == EPOCHS and config["model"]["base_filters"] == 8

    inference = json.loads((tiny_run / "inference.json").read_text())
    assert inference["scale"] == {"mode": "short_side", "value": 64}
    assert inference["tile"] == 64 and inference["overlap"] == 0.25
    assert inference["blend"] == "gaussian" and inference["tta"] is None
    assert inference["threshold"] in (0.4, 0.5)
    assert inference["postprocess"] in ({}, {"fill_holes": True})
    assert inference["downsampling"] == 4 and inference["input_channels"] == 3
    assert inference["normalization"] == "rescale_0_1 inside the model"
    assert inference["classes"] == [{"name": "foreground", "color": [255, 64, 64]}]
    assert inference["frame"] == 0
    assert set(inference) == {
        "scale",
        "tile",
        "overlap",
        "blend",
        "threshold",
        "tta",
        "postprocess",
        "frame",
        "downsampling",
        "input_channels",
        "normalization",
        "classes",
    }
    selection = json.loads((tiny_run / "selection.json").read_text())
    assert selection["metric"] == "dice" and len(selection["candidates"]) == 4
    assert selection["margin"] == 0.0
    best = max(selection["candidates"], key=lambda row: row["dice"])
    assert (best["threshold"], best["postprocess"]) == (
        inference["threshold"],
        inference["postprocess"],
    )

    report = json.loads((tiny_run / "eval.json").read_text())
    assert report["split"].endswith("test.csv")
    assert report["settings"]["threshold"] == inference["threshold"]
    assert [row["image"] for row in report["images"]] == ["ISIC_0001769", "ISIC_0003462"]
    for name in ("dice", "jaccard", "threshold_jaccard", "sensitivity", "specificity"):
        assert 0 <= report["mean"][name] <= 1
        assert report["mean"][name] == pytest.approx(
            np.mean([row[name] for row in report["images"]])
        )

    dataset = json.loads((tiny_run / "dataset.json").read_text())
    assert dataset["licence"] == "CC-0" and dataset["train_split"].endswith("train.csv")


def test_best_checkpoint_is_plain_float32_keras(tiny_run, shared_data):
    model = keras.saving.load_model(tiny_run / "model.keras", safe_mode=True)
    assert not model.compiled
    assert {layer.compute_dtype for layer in model.layers} == {"float32"}
    best = max(float(row["val_dice"]) for row in _history(tiny_run))
    state = json.loads((tiny_run / "resume" / "state.json").read_text())
    assert state["epoch"] == EPOCHS and state["best"] == pytest.approx(best)
    image = np.zeros((1, 64, 96, 3), "float32")
    assert model.predict(image, verbose=0).shape == (1, 64, 96, 1)


def test_resume_continues_from_the_saved_epoch(tiny_run, tmp_path):
    copy = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, copy)
    config = load_config(copy / "config.toml", overrides=[f"train.epochs={EPOCHS + 1}"])
    train.train(config, resume=copy)
    rows = _history(copy)
    assert [int(row["epoch"]) for row in rows] == list(range(1, EPOCHS + 2))
    assert rows[:EPOCHS] == _history(tiny_run)
    assert json.loads((copy / "resume" / "state.json").read_text())["epoch"] == EPOCHS + 1
    assert (copy / "previews" / f"epoch_{EPOCHS + 1:03d}.png").is_file()


def test_resume_says_the_schedule_keeps_its_length(tiny_config, tmp_path, capsys):
    # The cosine schedule is saved with the optimizer: resuming with more epochs keeps it.
    config = copy.deepcopy(tiny_config)
    config["train"].update(epochs=1, schedule="cosine")
    config["preview"] = {"count": 0}
    config["eval"] = {"split": ""}
    run_dir = train.train(config, runs_dir=tmp_path)
    capsys.readouterr()
    resumed = load_config(run_dir / "config.toml", overrides=["train.epochs=2"])
    train.train(resumed, resume=run_dir)
    printed = capsys.readouterr().out
    assert "CosineDecay schedule was built for 1 epochs" in printed
    assert "train.epochs=2 only sets where training stops" in printed
    rates = [float(row["lr"]) for row in _history(run_dir)]
    # Epoch 2 ran past the schedule's end, at its floor (a 2-epoch schedule would be halfway).
    assert rates[1] == pytest.approx(config["train"]["min_learning_rate"], rel=1e-3)


def test_distributed_code_path_runs_on_one_device(tiny_config, tmp_path):
    config = copy.deepcopy(tiny_config)
    config["train"]["epochs"] = 1
    config["preview"] = {"count": 0}
    config["eval"] = {"split": ""}
    run_dir = train.train(config, runs_dir=tmp_path, distribute=True)
    assert len(_history(run_dir)) == 1
    report = json.loads((run_dir / "eval.json").read_text())
    assert report["split"].endswith("valid.csv") and len(report["images"]) == 4


def test_evaluate_command_uses_the_run_settings(tiny_run, shared_data, tmp_path, capsys):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for image, mask in load_pairs(shared_data / "isic2017" / "valid")[:3]:
        (images / image.name).symlink_to(image)
        (masks / mask.name).symlink_to(mask)
    output = tmp_path / "report.json"
    status = evaluate.main(
        [str(tiny_run), "--images", str(images), "--masks", str(masks), "--output", str(output)]
    )
    assert status == 0
    report = json.loads(output.read_text())
    inference = json.loads((tiny_run / "inference.json").read_text())
    engine = {k: report["settings"].pop(k) for k in ("precision", "runtime")}
    assert report["settings"] == {k: inference[k] for k in report["settings"]}
    assert engine["runtime"] in {"keras", "openvino"} and engine["precision"] in {
        "float32",
        "bfloat16",
    }
    # A precision asked for is the one that runs, and the report says so.
    assert (
        evaluate.main(
            [
                str(tiny_run),
                "--images",
                str(images),
                "--masks",
                str(masks),
                "--output",
                str(output),
                "--precision",
                "bfloat16",
            ]
        )
        == 0
    )
    assert json.loads(output.read_text())["settings"]["precision"] == "bfloat16"
    assert len(report["images"]) == 3 and 0 <= report["mean"]["dice"] <= 1
    assert "jaccard" in capsys.readouterr().out
    assert (
        evaluate.main([str(tiny_run), "--images", str(tmp_path / "no"), "--masks", str(masks)]) == 2
    )
    # A bad setting or a corrupt image is one error line, not a traceback.
    arguments = [str(tiny_run), "--images", str(images), "--masks", str(masks)]
    capsys.readouterr()
    assert evaluate.main([*arguments, "--threshold", "1.5"]) == 2
    assert capsys.readouterr().err.strip() == (
        "error: `threshold` must be in [0, 1]. Received: threshold=1.5"
    )
    assert evaluate.main([*arguments, "--scale", "short_side=abc"]) == 2
    assert "factor (0.25) or mode=value (short_side=256). Received: 'short_side=abc'" in (
        capsys.readouterr().err
    )
    # The report is never written over an input (a mask folder is one typo away).
    mask = sorted(masks.iterdir())[0]
    before = mask.read_bytes()
    assert evaluate.main([*arguments, "--output", str(mask)]) == 2
    assert "is one of the inputs" in capsys.readouterr().err and mask.read_bytes() == before
    first = sorted(images.iterdir())[0]
    first.unlink()
    first.write_bytes(b"\xff\xd8 not a JPEG")
    # One corrupt image is skipped and named; the means are over the rest, and say so.
    assert evaluate.main([*arguments, "--output", str(output)]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"skipped {first.stem}: ") and "Traceback" not in captured.err
    assert first.name in captured.err
    assert "Means over 2 of 3 images (1 skipped):" in captured.out
    partial = json.loads(output.read_text())
    others = sorted(path.stem for path in images.iterdir() if path != first)
    assert sorted(row["image"] for row in partial["images"]) == others
    assert [entry["image"] for entry in partial["skipped"]] == [first.stem]
    assert 0 <= partial["mean"]["dice"] <= 1
    # When nothing can be scored, it is one error line and no report.
    for image in images.iterdir():
        image.unlink()
        image.write_bytes(b"")
    output.unlink()
    assert evaluate.main([*arguments, "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: None of the 3 pairs could be scored: ")
    assert "(and 2 more)" in error
    assert not output.exists()


def test_bad_training_pairs_stop_the_run_before_it_starts(shared_data, tmp_path, capsys):
    """A corrupt image and a mask of another size in data.train are both named, before any
    model is built or run directory written (not as a TensorFlow traceback in epoch 1)."""
    overrides = tiny_overrides(shared_data, tmp_path)
    pairs = load_pairs(shared_data / "isic2017" / "train")[:8]
    other_mask = load_pairs(shared_data / "isic2017" / "fullres")[0][1]  # another size
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    for index, (image, mask) in enumerate(pairs):
        linked = images / image.name
        if index == 2:
            linked.write_bytes(b"\xff\xd8 not a JPEG")
        else:
            linked.symlink_to(image)
        rows.append((linked, other_mask if index == 5 else mask))
    _write_csv(tmp_path / "train.csv", rows)  # the split tiny_overrides points data.train at
    runs = tmp_path / "runs"
    arguments = [item for override in overrides for item in ("--set", override)]
    status = train.main([str(CONFIGS / "isic2017.toml"), *arguments, "--runs-dir", str(runs)])
    assert status == 2
    error = capsys.readouterr().err
    assert error.startswith("error: 2 of 8 pairs in data.train (") and "Traceback" not in error
    assert f"{pairs[2][0].name}: Cannot read" in error
    assert f"{pairs[5][0].name}: " in error and "height and width" in error
    assert not runs.exists()


def test_train_command_reports_config_errors(tmp_path, capsys):
    assert train.main(["--set", "train.epoch=1", "--from-seed-config", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert train.main(["--set", "train.epoch=1", str(CONFIGS / "isic2017.toml")]) == 2
    assert "Did you mean 'epochs'" in capsys.readouterr().err
    # A relative data.root that does not resolve names where it was looked for, and how to fix.
    missing = tmp_path / "nowhere"
    assert train.main([str(CONFIGS / "isic2017.toml"), "--set", f'data.root="{missing}"']) == 2
    error = capsys.readouterr().err
    assert f"is {missing}, which is not a folder" in error and "--set data.root=" in error
    with pytest.raises(SystemExit):
        train.main([])


def test_steps_per_epoch_shorter_than_a_pass_trains_every_step_of_every_epoch(
    shared_data, tmp_path
):
    """4 batches a pass, 3 steps an epoch: each epoch trains 3 steps (Keras' own
    steps_per_epoch over the finite dataset ran epoch 2 with the 1 batch left), also after a
    resume."""
    config = load_config(
        overrides=[
            *tiny_overrides(shared_data, tmp_path),
            "train.epochs=2",
            "train.steps_per_epoch=3",
            "preview.count=0",
            'eval.split=""',
        ]
    )
    run_dir = train.train(copy.deepcopy(config), runs_dir=tmp_path)
    last = keras.saving.load_model(run_dir / "resume" / "last.keras", safe_mode=True)
    assert int(last.optimizer.iterations.numpy()) == 2 * 3
    resumed = load_config(run_dir / "config.toml", overrides=["train.epochs=3"])
    train.train(resumed, runs_dir=tmp_path, resume=run_dir)
    last = keras.saving.load_model(run_dir / "resume" / "last.keras", safe_mode=True)
    assert int(last.optimizer.iterations.numpy()) == 3 * 3


def test_a_pinned_precision_travels_from_the_config_to_the_metadata(tiny_run, tmp_path):
    """``inference.precision`` (not the engine's auto) lands in inference.json and tiledseg.json;
    resuming a finished run only chooses the settings and evaluates again."""
    staging = pytest.importorskip("model_zoo.staging")
    run_dir = tmp_path / tiny_run.name
    shutil.copytree(tiny_run, run_dir)
    config = load_config(run_dir / "config.toml", overrides=['inference.precision="float32"'])
    train.train(config, runs_dir=tmp_path, resume=run_dir)
    assert len(_history(run_dir)) == EPOCHS  # no more training
    assert json.loads((run_dir / "inference.json").read_text())["precision"] == "float32"
    # The settings were chosen and scored in that precision, not in the engine's auto (which
    # is bfloat16 on a CPU with native bfloat16).
    selection = json.loads((run_dir / "selection.json").read_text())
    assert {row["precision"] for row in selection["candidates"]} == {"float32"}
    assert json.loads((run_dir / "eval.json").read_text())["settings"]["precision"] == "float32"
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    assert staging.meta_from_run(run_dir, model, name="tiny").precision == "float32"
    assert "precision" not in json.loads((tiny_run / "inference.json").read_text())  # auto
    with pytest.raises(ValueError, match=r"inference\.precision"):
        train.train(
            load_config(run_dir / "config.toml", overrides=['inference.precision="fp8"']),
            runs_dir=tmp_path,
            resume=run_dir,
        )


def test_a_selection_margin_keeps_the_first_listed_candidate_near_the_best(tiny_run):
    """With ``margin`` the choice is the first candidate, in the order listed, within that much
    of the best score; with 0 it is the best (the first of equals)."""
    model = keras.saving.load_model(tiny_run / "model.keras", safe_mode=True)
    pairs = load_pairs(load_config(tiny_run / "config.toml")["data"]["valid"])
    options = {
        "scale": {"mode": "short_side", "value": 64},
        "tiles": [64],
        "thresholds": [0.1, 0.3, 0.5, 0.7, 0.9],
        "precision": "float32",
    }
    chosen, table = evaluate.select_inference_settings(model, pairs, **options)
    scores = [row["dice"] for row in table]
    assert len(set(scores)) > 2, scores  # else the margins below could not tell rows apart
    assert chosen["threshold"] == table[scores.index(max(scores))]["threshold"]
    for score in sorted(set(scores)):
        margin = max(scores) - score
        chosen, _ = evaluate.select_inference_settings(
            model, pairs, **options, margin=margin + 1e-9
        )
        first = next(row for row in table if row["dice"] >= score)
        assert chosen["threshold"] == first["threshold"], (margin, scores)
    with pytest.raises(ValueError, match="margin"):
        evaluate.select_inference_settings(model, pairs, **options, margin=1.0)


def test_the_model_zoo_accepts_the_run_directory(tiny_run):
    staging = pytest.importorskip("model_zoo.staging")
    model = keras.saving.load_model(tiny_run / "model.keras", safe_mode=True)
    meta = staging.meta_from_run(tiny_run, model, name="tiny")
    inference = json.loads((tiny_run / "inference.json").read_text())
    assert meta.threshold == inference["threshold"] and meta.downsampling == 4
    assert meta.architecture == "unet"


def test_a_staged_run_carries_its_selection_table_and_says_so_in_the_card(tiny_run, tmp_path):
    staging = pytest.importorskip("model_zoo.staging")
    out = staging.stage_run(tiny_run, tmp_path / "staged", model_id="tiny", repo_id="acme/tiny")
    staging.validate_staged(out)
    selection = json.loads((tiny_run / "selection.json").read_text())
    assert json.loads((out / "selection.json").read_text()) == selection
    card = (out / "README.md").read_text()
    best = max(row[selection["metric"]] for row in selection["candidates"])
    assert (
        f"chosen on `{selection['split']}` by mean {selection['metric']}, from "
        f"{len(selection['candidates'])} candidates"
    ) in card
    assert f"({best:.4f})" in card and "`selection.json`" in card


def test_init_weights_start_a_run_from_another_checkpoint(tiny_run, tiny_config, tmp_path):
    config = copy.deepcopy(tiny_config)
    config["model"]["init_weights"] = str(tiny_run)  # a run directory: its model.keras
    # A learning rate too small to move a kernel: the run ends where it started.
    config["train"].update(epochs=1, learning_rate=1e-12)
    config["preview"] = {"count": 0}
    config["eval"] = {"split": ""}
    run_dir = train.train(config, runs_dir=tmp_path)
    start = keras.saving.load_model(tiny_run / "model.keras", safe_mode=True)
    tuned = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    kernels = [w for w in start.weights if "kernel" in w.path]
    tuned_kernels = [w for w in tuned.weights if "kernel" in w.path]
    assert kernels and len(tuned_kernels) == len(kernels)
    for before, after in zip(kernels, tuned_kernels, strict=True):
        np.testing.assert_allclose(after.numpy(), before.numpy(), atol=1e-6)
    # ...and a run from scratch does not (so the check above means something).
    fresh = copy.deepcopy(config)
    fresh["model"]["init_weights"] = ""
    scratch = keras.saving.load_model(
        train.train(fresh, runs_dir=tmp_path / "scratch") / "model.keras", safe_mode=True
    )
    scratch_kernel = next(w for w in scratch.weights if "kernel" in w.path)
    assert not np.allclose(scratch_kernel.numpy(), kernels[0].numpy())


def test_init_weights_that_are_missing_or_do_not_fit_say_so(tiny_run, tiny_config, tmp_path):
    config = copy.deepcopy(tiny_config)
    config["model"]["init_weights"] = str(tmp_path / "nothing.weights.h5")
    with pytest.raises(FileNotFoundError, match=r"init_weights.*nothing\.weights\.h5"):
        train.train(copy.deepcopy(config), runs_dir=tmp_path)
    config["model"].update(init_weights=str(tiny_run / "model.keras"), base_filters=4)
    with pytest.raises(ValueError, match="does not fit the model the config builds"):
        train.train(config, runs_dir=tmp_path)
