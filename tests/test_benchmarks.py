"""The benchmarks' code paths on small real inputs, and MONAI's sliding window against
tiledseg's tiler.

Each runs in a subprocess, as a user runs it: the GPU benchmark on JAX, MONAI on PyTorch, the
CPU benchmarks on TensorFlow. The speeds they print are not asserted (they belong to the
machine); what is checked is that every row runs, says what ran it, and agrees with Keras.
Run as a script, this file is the PyTorch worker: ``python tests/test_benchmarks.py monai OUT``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from tiledseg.runtimes import choose_runtime

REPO_ROOT = Path(__file__).resolve().parents[1]
TILE, OVERLAP = 128, 0.25
# Float rounding only: the same tiles, windows and weighted sums in another order. A window
# centred half a pixel off ((tile / 2) rather than (tile - 1) / 2) gives 2.5e-4 here, sigma 4 %
# off 4e-4, MONAI's own window (clamped at 1e-3) 0.09, a grid shifted by the padding 0.17.
SAME_TO = 1e-5


def _run(backend: str, arguments: list[str], timeout: int = 300) -> subprocess.CompletedProcess:
    """Run ``python ARGUMENTS`` on a Keras backend; fail with its output if it fails or hangs.

    A child still running at ``timeout`` gets SIGABRT first, which Python's faulthandler
    (enabled in the child) answers by printing every thread's stack: a rare hang of the PyTorch
    worker (once in many full runs, after TensorFlow's start-up lines: Keras imports TensorFlow
    on every backend where it is installed) then shows where it waits.
    """
    environment = {
        **os.environ,
        "KERAS_BACKEND": backend,
        "JAX_PLATFORMS": "cpu",
        "PYTHONFAULTHANDLER": "1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
    }
    command = [sys.executable, *arguments]
    with subprocess.Popen(
        command,
        cwd=REPO_ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as child:
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.send_signal(signal.SIGABRT)
            try:
                stdout, stderr = child.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                child.kill()
                stdout, stderr = child.communicate()
            raise AssertionError(
                f"{command} on {backend} still ran after {timeout} s; its stacks at SIGABRT:\n"
                + stdout[-3000:]
                + stderr[-12000:]
            ) from None
    done = subprocess.CompletedProcess(command, child.returncode, stdout, stderr)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


def test_benchmark_runs_end_to_end_on_cpu(tmp_path):
    out = tmp_path / "bench.json"
    done = _run(
        "jax",
        [
            *("-m", "benchmarks.bench_gpu", "--quick", "--models", "seedlike"),
            *("--batch-sizes", "4", "--repeats", "2", "--json", str(out)),
        ],
    )
    document = json.loads(out.read_text())
    rows = document["rows"]
    # The product's defaults on this CPU: OpenVINO bfloat16 where the CPU computes it natively.
    auto = choose_runtime("auto", "auto", on_gpu=False)
    assert {(row["method"], row["precision"]) for row in rows} == {
        ("tiledseg", "float32"),
        ("tiledseg", "bfloat16"),
        ("model-only", "float32"),
        ("model-only", "bfloat16"),
        ("whole-image", "float32"),
        ("whole-image", "bfloat16"),
        ("tiledseg-auto", auto.precision),
        ("seeds", "float32"),
    }
    for row in rows:
        assert row["backend"] == "jax" and row["image"] == "320x224"
        assert row["median_s"] > 0 and row["first_call_s"] > 0 and row["runs"] >= 1
        assert row["megapixels_per_s"] > 0
    tiled = next(r for r in rows if r["method"] == "tiledseg" and r["precision"] == "bfloat16")
    # 320x224, 128 px tiles at a 96 px stride: 2 rows of 3 tiles; batch 4 makes one band of
    # both rows, run as batches of 4 (the second padded).
    assert tiled["batch_size"] == 4 and tiled["batch_sizes_requested"] == [4]
    assert tiled["tiles"] == 6 and tiled["tile"] == [128, 128]
    assert 0 < tiled["max_abs_diff_vs_float32"] <= 1e-2
    names = {ratio["name"] for ratio in document["ratios"]}
    assert {"tiledseg / model-only", "seeds / tiledseg", "tiledseg-auto / whole-image"} <= names
    assert document["models"]["seedlike-3L"]["parameters"] > 0
    assert document["machine"]["backend"] == "jax" and document["skipped"] == []
    assert "| jax | seedlike-3L | 320x224 | tiledseg |" in done.stdout


def test_cpu_runtime_benchmark_runs_every_row_on_a_real_slide(tmp_path):
    """bench_cpu_runtimes (the README's runtime table) on the bundled blood-cell UNet and a real
    slide shrunk to 320x256: one tile per call, every runtime's row and the auto row."""
    from benchmarks.bench_cpu_runtimes import DEFAULT, rows_for
    from tiledseg.runtimes.cpu import native_bfloat16

    out = tmp_path / "runtimes.json"
    done = _run(
        "tensorflow",
        [
            *("-m", "benchmarks.bench_cpu_runtimes", "--cases", "unet-bloodcell:320x256"),
            *("--repeats", "1", "--json", str(out)),
        ],
    )
    document = json.loads(out.read_text())
    assert document["machine"]["native_bfloat16"] == native_bfloat16()
    (case,) = document["cases"]
    rows = {(row["runtime"], row["precision"]): row for row in case["rows"]}
    expected = rows_for(native_bfloat16(), ["keras", "openvino", "onnxruntime"])
    assert list(rows) == expected
    auto = choose_runtime("auto", "auto", on_gpu=False)  # unet-bloodcell pins no precision
    assert rows[("auto", DEFAULT)]["ran_as"] == [auto.runtime, auto.precision]
    for (runtime, precision), row in rows.items():
        if runtime != "auto":
            assert row["ran_as"] == [runtime, precision]
        assert row["tiles"] == 1 and row["end_to_end_s"] > 0 and row["model_only_s"] > 0
        limit = 1e-4 if row["ran_as"][1] == "float32" else 0.1
        assert row["max_abs_diff_vs_keras_f32"] <= limit, (runtime, precision)
    # One conversion per runtime (one OpenVINO file serves both its precisions), timed.
    converted = sorted(entry["entry"].split("/")[1].split("-")[0] for entry in case["conversions"])
    assert converted == ["onnx", "openvino"]
    assert all(entry["conversion_s"] > 0 for entry in case["conversions"])
    assert set(document["second_start_s"]) == {
        "unet-bloodcell/openvino",
        "unet-bloodcell/onnxruntime",
    }
    speedup = "openvino-float32 end_to_end speedup vs keras-float32"
    assert case["ratios"][speedup] > 0 and '"second_start_s"' in done.stdout


def test_cpu_runtime_results_are_strict_json_with_null_for_what_was_not_measured(tmp_path):
    """A row whose model-only time was skipped (large images) is written as null, not NaN,
    which strict parsers (browsers, jq) refuse; a NaN that slips through is an error."""
    import pytest

    from benchmarks.bench_cpu_runtimes import _write, parse_args

    out = tmp_path / "results.json"
    row = {"model_only_s": None, "end_to_end_over_model_only": None, "end_to_end_s": 0.5}
    _write(out, {"cpu": "x"}, [{"rows": [row]}])
    text = out.read_text()
    assert "NaN" not in text
    assert json.loads(text)["cases"][0]["rows"][0]["model_only_s"] is None
    with pytest.raises(ValueError):
        _write(out, {"cpu": "x"}, [{"rows": [{"model_only_s": float("nan")}]}])
    assert json.loads(out.read_text()) == json.loads(text)  # nothing half-written kept
    with pytest.raises(SystemExit):
        parse_args(["--repeats", "0"])


def test_every_stored_benchmark_result_is_strict_json():
    def refuse(name):
        raise ValueError(f"{name} in a results file")

    results = sorted((Path(__file__).parents[1] / "benchmarks" / "results").glob("*.json"))
    assert results
    for path in results:
        json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_tiling_benchmark_times_every_method_on_one_grid(tmp_path):
    """bench_tiling (the README's engine-overhead table) on a small seed-like UNet."""
    out = tmp_path / "tiling.json"
    done = _run(
        "tensorflow",
        [
            *("benchmarks/bench_tiling.py", "--levels", "2", "--filters", "4"),
            *("--sizes", "320x224", "--tile", "128", "--repeats", "1", "--json", str(out)),
        ],
    )
    document = json.loads(out.read_text())
    methods = {row["method"] for row in document["rows"]}
    assert {"tiledseg", "model-only", "whole-image", "seeds"} <= methods
    assert all(row["median_s"] > 0 for row in document["rows"])
    assert document["machine"]["backend"] == "tensorflow"
    assert any("tiledseg/model-only" in line for line in document["ratios"])
    assert "tiledseg/model-only" in done.stdout


def test_train_step_benchmark_times_both_precisions(tmp_path):
    """bench_train_step (float32 against mixed bfloat16) on a tiny config: one child process
    per dtype policy, as Keras' policy is global."""
    config = tmp_path / "tiny.toml"
    config.write_text(
        "[model]\nbase_filters = 4\nnum_levels = 2\n"
        "[data]\ncrop_size = 64\n[train]\nbatch_size = 2\n",
        encoding="utf-8",
    )
    out = tmp_path / "steps.json"
    done = _run(
        "tensorflow",
        ["-m", "benchmarks.bench_train_step", str(config), "--steps", "1", "--json", str(out)],
    )
    rows = json.loads(out.read_text())["rows"]
    assert [row["policy"] for row in rows] == ["float32", "mixed_bfloat16"]
    assert all(row["step_s"] > 0 and row["crop"] == 64 and row["batch"] == 2 for row in rows)
    assert rows[0]["parameters"] == rows[1]["parameters"] > 0
    assert "the speed of float32" in done.stdout
    missing = subprocess.run(
        [sys.executable, "-m", "benchmarks.bench_train_step", str(tmp_path / "none.toml")],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert missing.returncode == 2 and "none.toml does not exist" in missing.stderr


def test_monai_sliding_window_agrees_with_tiledseg(tmp_path):
    out = tmp_path / "monai.json"
    _run("torch", [str(Path(__file__).resolve()), "monai", str(out)])
    result = json.loads(out.read_text())
    aligned, unaligned = result["aligned"], result["unaligned"]
    # A size on the downsampling factor's grid and on the stride: both tilers cut the same tiles.
    assert aligned["tiledseg_starts"] == aligned["monai_starts"]
    # With the same (unclamped) Gaussian window, the two probability maps are the same.
    assert aligned["same_window"] < SAME_TO
    # MONAI's own window is that Gaussian clamped at 1e-3 and nothing else ...
    assert aligned["default_vs_clamped_window"] < SAME_TO
    # ... and the clamp is a real difference, as monai_peer's docstring says.
    assert 1e-3 < aligned["default_window"] < 0.5
    # A size off the factor's grid: tiledseg pads and its last tiles start elsewhere; where both
    # grids use the same tiles the maps agree, beyond that they do not.
    assert unaligned["tiledseg_starts"] != unaligned["monai_starts"]
    assert unaligned["same_window_common_tiles"] < SAME_TO
    assert unaligned["same_window"] > 1e-3


def test_app_memory_benchmark_drives_a_browser_session_of_real_photos(tmp_path, shared_data):
    """Two full-size photos through the real app in Chromium; what the README's RSS table is
    made of. The 3 GB limit is the issue's, checked on the short session too."""
    out = tmp_path / "rss.json"
    arguments = ["--images", "2", "--slider-steps", "1", "--json", str(out)]
    done = _run(
        "tensorflow",
        ["benchmarks/bench_app_rss.py", *arguments, "--log", str(tmp_path / "server.log")],
        timeout=600,
    )
    assert "server ready on the Predict page" in done.stdout
    result = json.loads(out.read_text())
    photos = sorted((shared_data / "isic2017" / "fullres" / "images").glob("*.jpg"))[:2]
    assert [row["image"] for row in result["rows"]] == [photo.name for photo in photos]
    assert all(row["seconds"] > 0 and row["rss_mb"] > 100 for row in result["rows"])
    summary = result["summary"]
    assert summary["images"] == 2 and summary["ready_mb"] > 100
    assert summary["peak_mb"] >= summary["ready_mb"]
    assert summary["under_limit"] and summary["peak_mb"] < summary["limit_mb"]


def _monai_worker(out: Path) -> None:
    import random

    import keras

    from benchmarks.monai_peer import (
        common_extent,
        gaussian_window,
        monai_starts,
        predict_monai,
    )
    from tiledseg import predict_tiled
    from tiledseg.engine import describe_grid

    random.seed(0)  # Keras' default seed comes from Python's `random`
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    skip = x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    for _ in range(2):  # downsampling factor 4
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.Concatenate()([keras.layers.UpSampling2D(4)(x), skip])
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(x)
    network = keras.Model(inputs, outputs)

    window = gaussian_window(TILE)
    rng = np.random.default_rng(0)
    result = {}
    # 224 = 128 + 96 and 320 = 128 + 2 * 96, multiples of 4; 300 x 202 is not on the grid.
    for name, (height, width) in {"aligned": (224, 320), "unaligned": (300, 202)}.items():
        image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        ours = predict_tiled(
            image,
            network,
            tile=TILE,
            overlap=OVERLAP,
            blend="gaussian",
            batch_size=4,
            tta="none",
            precision="float32",
        )

        def monai(weight_map=None, image=image):
            return predict_monai(
                image,
                network,
                tile=TILE,
                overlap=OVERLAP,
                batch_size=4,
                device="cpu",
                weight_map=weight_map,
            )

        same, default = monai(window), monai()
        clamped = monai(np.maximum(window, 1e-3))
        grid = describe_grid(image.shape, network, tile=TILE, overlap=OVERLAP)
        starts = (monai_starts(height, TILE, OVERLAP), monai_starts(width, TILE, OVERLAP))
        rows = common_extent(grid.rows.starts, starts[0])
        cols = common_extent(grid.cols.starts, starts[1])
        result[name] = {
            "tiledseg_starts": [list(grid.rows.starts), list(grid.cols.starts)],
            "monai_starts": [list(starts[0]), list(starts[1])],
            "same_window": float(np.abs(ours - same).max()),
            "same_window_common_tiles": float(np.abs(ours - same)[:rows, :cols].max()),
            "default_window": float(np.abs(ours - default).max()),
            "default_vs_clamped_window": float(np.abs(default - clamped).max()),
        }
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command != "monai":
        sys.exit(f"unknown command {command!r}: use monai OUT.json")
    _monai_worker(Path(arguments[0]))
