"""Hostile and careless CLI input (issue 14): output names, paths, numbers, interrupts, skips.

Every case runs the real CLI (``tiledseg.cli.main`` or ``python -m tiledseg`` in a subprocess)
on real files. Cases that must be refused before any model is loaded pass a model reference
that does not exist: the refusal they print proves the model was never reached.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, build_tiny_unet

from tiledseg.cli import main
from tiledseg.io import read_mask, write_image, write_mask

NO_MODEL = "no/such-model.keras"


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("model") / "tiny.keras"
    build_tiny_unet(seed=5).save(path)
    return path


def _image(path: Path, value: int = 0, size: tuple[int, int] = (40, 56)) -> Path:
    rng = np.random.default_rng(value)
    write_image(path, rng.integers(0, 255, (*size, 3), dtype=np.uint8))
    return path


def _run(*arguments: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "tiledseg", *arguments],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
        cwd=REPO_ROOT,
    )


def _one_error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


# --- 1. outputs that overwrite inputs or each other -------------------------------------------


def test_inputs_sharing_a_stem_get_separate_outputs(model_file, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _image(folder / "a.png", 1)
    _image(folder / "gray.png", 2)
    write_image(folder / "a.jpg", np.full((40, 56, 3), 200, np.uint8))
    write_image(folder / "gray.jpg", np.zeros((30, 20, 3), np.uint8))
    out = tmp_path / "out"
    code = main(
        ["predict", "--model", str(model_file), "--out", str(out), "--overlay", str(folder)]
    )
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "a_jpg.png",
        "a_jpg_overlay.jpg",
        "a_png.png",
        "a_png_overlay.jpg",
        "gray_jpg.png",
        "gray_jpg_overlay.jpg",
        "gray_png.png",
        "gray_png_overlay.jpg",
    ]
    assert read_mask(out / "gray_jpg.png").shape == (30, 20)
    assert read_mask(out / "gray_png.png").shape == (40, 56)


def test_the_same_file_twice_is_processed_once(model_file, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    image = _image(folder / "b.jpg")
    out = tmp_path / "out"
    assert (
        main(["predict", "--model", str(model_file), "--out", str(out), str(folder), str(image)])
        == 0
    )
    assert sorted(p.name for p in out.iterdir()) == ["b.png"]


def test_same_name_in_two_folders_is_refused_before_the_model_loads(tmp_path):
    for folder in ("d1", "d2"):
        (tmp_path / folder).mkdir()
        _image(tmp_path / folder / "a.jpg")
    out = tmp_path / "out"
    result = _run(
        "predict",
        "--model",
        NO_MODEL,
        "--out",
        str(out),
        str(tmp_path / "d1"),
        str(tmp_path / "d2"),
    )
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "d1/a.jpg" in line and "d2/a.jpg" in line and "a.png" in line
    assert not out.exists()


def test_out_in_the_input_folder_never_replaces_a_png_input(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    original = _image(folder / "scan.png").read_bytes()
    result = _run("predict", "--model", NO_MODEL, "--out", str(folder), str(folder))
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "would replace the input" in line and "scan.png" in line
    assert (folder / "scan.png").read_bytes() == original
    assert sorted(p.name for p in folder.iterdir()) == ["scan.png"]


def test_an_output_name_taken_by_another_input_is_refused(tmp_path):
    # b.jpg's --probs output is b_prob.png, which is exactly the mask of the input b_prob.jpg.
    for name in ("b.jpg", "b_prob.jpg"):
        _image(tmp_path / name)
    result = _run(
        "predict", "--model", NO_MODEL, "--out", str(tmp_path / "o"), "--probs", str(tmp_path)
    )
    assert result.returncode == 2
    assert "would both write" in _one_error_line(result.stderr)


@pytest.mark.parametrize("kind", ["existing file", "unwritable", "under a file"])
def test_bad_out_folder_is_one_error_before_the_model_loads(tmp_path, kind):
    image = _image(tmp_path / "x.png")
    if kind == "existing file":
        out = tmp_path / "taken.txt"
        out.write_text("not a folder")
    elif kind == "unwritable":
        out = Path("/proc/tiledseg-test-out")  # cannot be created, even by root
    else:
        (tmp_path / "file").write_text("")
        out = tmp_path / "file" / "sub"
    result = _run("predict", "--model", NO_MODEL, "--out", str(out), str(image))
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "--out" in line and str(out) in line


@pytest.mark.parametrize("flag", ["--json", "--csv"])
def test_report_in_a_missing_folder_is_refused_before_the_model_loads(tmp_path, flag):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    _image(images / "a.jpg")
    write_mask(masks / "a.png", np.zeros((40, 56), bool))
    report = tmp_path / "missing" / "report.out"
    result = _run(
        "evaluate", "--model", NO_MODEL, "--images", str(images), "--masks", str(masks),
        flag, str(report),
    )  # fmt: skip
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert flag in line and "does not exist" in line


# --- 4. validation: every flag is a finite number in range, checked when parsed ------------------


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--threshold", "nan", "threshold"),
        ("--threshold", "1.5", "[0, 1]"),
        ("--threshold", "-0.1", "[0, 1]"),
        ("--overlap", "nan", "overlap"),
        ("--overlap", "1", "[0, 1)"),
        ("--scale", "nan", "scale"),
        ("--scale", "inf", "scale"),
        ("--scale", "0", "scale"),
        ("--tile", "0", "tile"),
        ("--tile", "big", "integer or 'auto'"),
        ("--batch-size", "0", "batch_size"),
        ("--deadline", "nan", "deadline"),
        ("--max-in-flight", "0", "max_in_flight"),
        ("--model", "", "--model must not be empty"),
        ("--model", "  ", "--model must not be empty"),
    ],
)
def test_bad_flag_values_exit_2_naming_the_value_and_range(tmp_path, flag, value, message):
    image = _image(tmp_path / "x.png")
    arguments = ["predict", "--out", str(tmp_path / "o"), str(image)]
    if flag != "--model":
        arguments[1:1] = ["--model", NO_MODEL]
    result = _run(*arguments[:1], flag, value, *arguments[1:], timeout=60)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "o").exists()


# --- 6. interrupted runs ------------------------------------------------------------------------


def test_stale_temporaries_of_a_killed_run_are_removed_by_the_next(model_file, tmp_path):
    image = _image(tmp_path / "x.png")
    out = tmp_path / "out"
    out.mkdir()
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    dead_pid = int(dead.stdout)
    old = out / ".x.png.3f2a1b0c9d8e.tmp"  # earlier naming, no process id: stale by age
    old.write_bytes(b"half")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    orphan = out / f".x_overlay.jpg.{dead_pid}-0123456789ab.tmp"  # its writer has exited
    orphan.write_bytes(b"half")
    live = out / f".other.png.{os.getpid()}-abcdefabcdef.tmp"  # a writer still running
    live.write_bytes(b"being written")
    keep = out / ".notes.tmp"  # not one of ours
    keep.write_text("mine")
    result = _run("predict", "--model", str(model_file), "--out", str(out), str(image))
    assert result.returncode == 0, result.stderr
    assert "removed 2 stale temporary file(s)" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, keep.name, "x.png"])


def test_ctrl_c_prints_one_line_and_leaves_only_complete_outputs(shared_data, model_file, tmp_path):
    source = sorted((shared_data / "bloodcell" / "test" / "images").glob("*.jpg"))[0]
    folder = tmp_path / "in"
    folder.mkdir()
    for number in range(40):
        (folder / f"slide{number:02d}.jpg").symlink_to(source)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "tiledseg", "predict", "--model", str(model_file)]
    command += ["--out", str(out), "--overlay", "--probs", "--tile", "128", str(folder)]
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=REPO_ROOT,
        # A terminal's Ctrl-C. A shell without job control starts a background job (`pytest &`,
        # as CI runners and nohup scripts do) with SIGINT ignored; children inherit that, and
        # Python then installs no handler. So the child gets the default a terminal gives.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    first = process.stdout.readline()  # one image done: the run is in the middle of its work
    assert "->" in first, process.stderr.read()
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len([line for line in lines if "interrupted" in line]) == 1
    assert lines[-1].startswith("interrupted after ") and "of 40 images" in lines[-1]
    names = {p.name for p in out.iterdir()}
    assert not [name for name in names if name.endswith(".tmp")]
    done = {name[: -len(".png")] for name in names if not name.endswith(("_prob.png", ".jpg"))}
    assert 1 <= len(done) < 40
    for stem in done:  # each image has all three outputs, or none
        assert {f"{stem}.png", f"{stem}_overlay.jpg", f"{stem}_prob.png"} <= names
    assert len(names) == 3 * len(done)


# --- 3. evaluate says which images the means are over -------------------------------------------


def test_evaluate_lists_skipped_images_with_reasons_in_json_csv_and_table(
    shared_data, model_file, tmp_path
):
    source = shared_data / "bloodcell" / "test"
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    paths = sorted((source / "images").glob("*.jpg"))[:3]
    for path in paths:
        (images / path.name).symlink_to(path)
    (masks / f"{paths[0].stem}.png").symlink_to(source / "masks" / f"{paths[0].stem}.png")
    write_mask(masks / f"{paths[1].stem}.png", np.zeros((8, 8), bool))  # wrong size
    # paths[2] has no mask at all
    report, table = tmp_path / "r.json", tmp_path / "r.csv"
    result = _run(
        "evaluate", "--model", str(model_file), "--images", str(images), "--masks", str(masks),
        "--json", str(report), "--csv", str(table), "--tile", "256",
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "means over 1 of 3 images; 2 skipped" in result.stdout
    data = json.loads(report.read_text())
    assert data["counts"] == {"found": 3, "evaluated": 1, "skipped": 2}
    reasons = {entry["image"]: entry["reason"] for entry in data["skipped"]}
    assert set(reasons) == {paths[1].stem, paths[2].stem}
    assert "8x8" in reasons[paths[1].stem] and "no mask" in reasons[paths[2].stem]
    rows = list(csv.DictReader(table.open()))
    assert [row["image"] for row in rows] == [paths[0].stem, paths[2].stem, paths[1].stem]
    assert rows[0]["skipped"] == "" and rows[0]["dice"]
    assert "no mask" in rows[1]["skipped"] and rows[1]["dice"] == ""


# --- 4. files already there, flags that would be ignored, limits (a probe of 2026-12-04) ---------


def test_predict_never_replaces_an_existing_file_unless_told(model_file, tmp_path):
    """`--out masks` beside `images/a.jpg` would have replaced the ground truth `masks/a.png`."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    image = _image(images / "a.jpg")
    truth = np.zeros((40, 56), bool)
    truth[5:20, 5:30] = True
    write_mask(masks / "a.png", truth)
    original = (masks / "a.png").read_bytes()
    result = _run("predict", "--model", NO_MODEL, "--out", str(masks), str(image))
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert "already holds 1 file(s)" in line and "a.png" in line and "--overwrite" in line
    assert (masks / "a.png").read_bytes() == original
    # A second run into its own output folder needs --overwrite too, and then replaces.
    out = tmp_path / "out"
    command = ["predict", "--model", str(model_file), "--out", str(out), str(image)]
    assert main(command) == 0
    assert main(command) == 2
    code = main([*command, "--overwrite"])
    assert code == 0 and read_mask(out / "a.png").shape == (40, 56)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--deadline", "3"), "--deadline goes with --serving"),
        (("--max-in-flight", "2", "--ca-file", "x.pem"), "--max-in-flight, --ca-file go with"),
        (("--meta", "unet-bloodcell"), "--meta goes with --serving"),
        (("--no-tiling", "--tile", "64"), "--tile would be ignored"),
        (("--no-tiling", "--tta", "--runtime", "keras"), "--runtime, --tta would be ignored"),
        (("--no-tiling", "--batch-size", "2", "--blend", "hann"), "--blend, --batch-size"),
    ],
)
def test_flags_that_would_be_ignored_are_refused_before_the_model_loads(tmp_path, extra, message):
    image = _image(tmp_path / "x.png")
    out = tmp_path / "out"
    result = _run("predict", "--model", NO_MODEL, *extra, "--out", str(out), str(image))
    assert result.returncode == 2
    assert message in _one_error_line(result.stderr)
    assert not out.exists()


@pytest.mark.parametrize(
    ("variable", "value"),
    [("TILEDSEG_MAX_PIXELS", "abc"), ("TILEDSEG_MAX_SCALED_PIXELS", "1e8"),
     ("TILEDSEG_MAX_TILES", "-5")],
)  # fmt: skip
def test_a_bad_limit_variable_is_one_error_before_the_model_loads(
    tmp_path, monkeypatch, variable, value
):
    image = _image(tmp_path / "x.png")
    monkeypatch.setenv(variable, value)
    result = _run("predict", "--model", NO_MODEL, "--out", str(tmp_path / "o"), str(image))
    assert result.returncode == 2
    line = _one_error_line(result.stderr)
    assert f"{variable} must be a positive whole number" in line and repr(value) in line


def test_a_whole_image_report_records_what_ran(model_file, tmp_path):
    """--no-tiling runs one Keras pass without flips: the report says so, and no tile size."""
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    _image(images / "a.png", 3)
    write_mask(masks / "a.png", np.ones((40, 56), bool))
    report = tmp_path / "r.json"
    code = main(
        ["evaluate", "--model", str(model_file), "--no-tiling", "--images", str(images),
         "--masks", str(masks), "--json", str(report)]
    )  # fmt: skip
    assert code == 0
    settings = json.loads(report.read_text())["settings"]
    assert settings["tiling"] is False and settings["runtime"] == "keras"
    assert settings["tta"] is None
    assert not {"tile", "overlap", "blend", "batch_size"} & set(settings)


def test_evaluate_names_images_sharing_a_stem_by_file_and_counts_each_mean(model_file, tmp_path):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    _image(images / "a.png", 1)
    write_image(images / "a.jpg", np.full((40, 56, 3), 90, np.uint8))
    _image(images / "b.png", 2)
    write_mask(masks / "a.png", np.ones((40, 56), bool))
    write_mask(masks / "b.png", np.zeros((40, 56), bool))  # empty truth: hd95 undefined
    report = tmp_path / "r.json"
    code = main(
        ["evaluate", "--model", str(model_file), "--images", str(images), "--masks", str(masks),
         "--json", str(report)]
    )  # fmt: skip
    assert code == 0
    data = json.loads(report.read_text())
    assert sorted(row["image"] for row in data["images"]) == ["a.jpg", "a.png", "b"]
    assert data["metric_counts"]["dice"] == 3 and data["metric_counts"]["hd95"] <= 2


def test_a_file_name_that_is_not_utf8_is_printed_escaped_and_the_run_goes_on(model_file, tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    _image(Path(os.fsdecode(os.fsencode(folder) + b"/caf\xe9.png")))  # Latin-1 on disk
    _image(folder / "z_next.png")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONIOENCODING": "utf-8:strict"}
    result = subprocess.run(
        [sys.executable, "-m", "tiledseg", "predict", "--model", str(model_file),
         "--out", str(tmp_path / "out"), str(folder)],
        capture_output=True, text=True, errors="replace", timeout=300, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "caf\\udce9.png" in result.stdout and "z_next.png" in result.stdout
    assert len(list((tmp_path / "out").iterdir())) == 2
