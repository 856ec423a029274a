"""CPU runtimes: Keras, OpenVINO and ONNX Runtime, model-only and tiledseg end to end, one run.

    python -m benchmarks.bench_cpu_runtimes --json benchmarks/results/cpu_2core_runtimes.json

For each case (a bundled model on a real image resized to a size) and each row (runtime and
precision, and ``auto`` at its default precision), it times:

- ``end_to_end``: :class:`tiledseg.TiledPredictor` on the uint8 image (resize to the model's
  scale, tiles, blending, full-size probabilities), median of ``--repeats`` calls after one
  warm-up call (which for OpenVINO and ONNX Runtime includes loading the conversion);
- ``model_only``: the network alone on the same tiles, cut beforehand as float32, in the same
  batches: ``predict_on_batch`` for Keras, the runtime's ``predict_tiles`` for the others.

The conversion cache is a fresh folder per run, so the first conversion is measured
(``conversion_s``), and then a second start (a new model object, the conversion loaded from
disk: ``second_start_s``). The machine's load (``os.getloadavg``) is recorded before and after
each case: the CPU is shared, so compare ratios measured in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT.parent / "shared" / "data"
CASES = ("unet-bloodcell:1600x1200", "unet-bloodcell:6000x4000", "unet-isic2017:4288x2848")
# Which real image each model's cases are made from (resized where the size differs).
SOURCES = {
    "unet-bloodcell": "bloodcell/test/images",
    "unet-isic2017": "isic2017/fullres/images/ISIC_0014212.jpg",  # 4288x2848
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=list(CASES), help="MODEL:WIDTHxHEIGHT")
    parser.add_argument(
        "--repeats", type=_positive_int, default=3, help="timed calls per row (median)"
    )
    parser.add_argument(
        "--large-repeats",
        type=_positive_int,
        default=1,
        help="timed calls for images over 10 Mpx",
    )
    parser.add_argument("--runtimes", nargs="+", default=["keras", "openvino", "onnxruntime"])
    parser.add_argument(
        "--large-runtimes",
        nargs="+",
        default=["keras", "openvino"],
        help="runtimes for images over 10 Mpx (a call there takes minutes on 2 cores)",
    )
    parser.add_argument(
        "--large-model-only",
        nargs="*",
        default=["keras", "openvino"],
        help="runtimes whose model-only time is measured on images over 10 Mpx",
    )
    parser.add_argument(
        "--large-no-auto", action="store_true", help="no auto row on images over 10 Mpx"
    )
    parser.add_argument("--json", type=Path, help="write machine, rows and ratios here")
    return parser.parse_args(argv)


DEFAULT = "default"


def rows_for(native_bf16: bool, runtimes: list[str], auto: bool = True) -> list[tuple[str, str]]:
    rows = [(runtime, "float32") for runtime in runtimes]
    if "openvino" in runtimes and native_bf16:
        rows.append(("openvino", "bfloat16"))
    if auto:
        # The defaults a user gets: runtime auto, precision from the model's metadata (a model
        # pinned to float32 stays float32), else auto. Not precision="auto", which overrides a pin.
        rows.append(("auto", DEFAULT))
    return rows


def real_image(source: str, width: int, height: int) -> np.ndarray:
    from tiledseg.io import read_image

    path = DATA / source
    if path.is_dir():
        path = sorted(path.glob("*.jpg"))[0]
    image = read_image(path)
    if image.shape[:2] == (height, width):
        return image
    shrink = width * height < image.shape[0] * image.shape[1]
    return cv2.resize(
        image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    )


def model_only(predictor: Any, image: np.ndarray) -> tuple[Any, Any, int]:
    """``run()`` of the network alone on the predictor's own tiles and batches, a ``warm()``
    that runs only the first and last batches (they trace Keras' predict function for their
    shapes, which the engine's own band function does not), and the batch size."""
    import keras

    from tiledseg.band import default_batch
    from tiledseg.engine import _pad, _runner, _unwrap
    from tiledseg.scale import resize_image
    from tiledseg.tile_backend import is_tile_backend

    network, _ = _unwrap(predictor.model)
    settings = predictor.resolved_settings()
    grid = predictor.grid(image.shape)
    target = (grid.rows.length, grid.cols.length)
    padded = _pad(resize_image(image, target), grid.padded_shape, "reflect")
    runner = _runner(network, settings["precision"], settings["runtime"], grid.tile_shape)
    height, width = grid.tile_shape
    tiles = np.stack(
        [
            padded[y : y + height, x : x + width].astype(np.float32)
            for y in grid.rows.starts
            for x in grid.cols.starts
        ]
    )
    if is_tile_backend(runner):
        batch = runner.batch_size
        # The calls the engine sends: the last one padded only for a fixed-batch backend.
        chunks = _chunks(tiles, batch, pad=getattr(runner, "fixed_batch", True))
        call = runner.predict_tiles
    else:
        batch = default_batch(grid)
        chunks = [keras.ops.convert_to_tensor(c) for c in _chunks(tiles, batch, pad=False)]
        call = runner.predict_on_batch
    warm = [chunks[0], chunks[-1]] if len(chunks) > 1 else chunks  # both batch shapes
    return (lambda: [call(chunk) for chunk in chunks]), (lambda: [call(c) for c in warm]), batch


def _chunks(tiles: np.ndarray, batch: int, *, pad: bool) -> list[np.ndarray]:
    chunks = [tiles[i : i + batch] for i in range(0, len(tiles), batch)]
    if pad and len(chunks[-1]) < batch:
        last = chunks[-1]
        chunks[-1] = np.concatenate([last, np.repeat(last[-1:], batch - len(last), axis=0)])
    return chunks


def timed(run, repeats: int) -> tuple[float | None, list[float]]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return (statistics.median(times) if times else None), times


def run_case(name: str, args, native_bf16: bool) -> dict[str, Any]:
    import model_zoo
    from tiledseg import TiledPredictor
    from tiledseg.runtimes.cache import ENTRY_FILE, cache_root

    model_id = name.split(":")[0]
    source = SOURCES.get(model_id, SOURCES["unet-bloodcell"])
    width, height = (int(v) for v in name.split(":")[1].split("x"))
    image = real_image(source, width, height)
    zoo = model_zoo.load(model_id)
    large = width * height > 10e6
    repeats = args.large_repeats if large else args.repeats
    settings = {"tta": "none"}  # everything else from the model's metadata
    case = {"case": name, "model": model_id, "image": [height, width], "repeats": repeats}
    case["load_before"] = os.getloadavg()
    rows, outputs = [], {}
    runtimes = args.large_runtimes if large else args.runtimes
    auto = not (large and args.large_no_auto)
    for runtime, precision in rows_for(native_bf16, runtimes, auto):
        predictor = TiledPredictor(
            zoo, runtime=runtime, precision=None if precision == DEFAULT else precision, **settings
        )
        resolved = predictor.resolved_settings()
        grid = predictor.grid(image.shape)
        # Warm-up (conversion and compilation on first use); on a large image a corner of it
        # where that has the same tile shape, and its first full call is a timed one. A photo
        # scaled to a short side makes the corner a different tile (another compilation).
        corner = image[:1024, :1024]
        warm_on_corner = large and predictor.grid(corner.shape).tile_shape == grid.tile_shape
        start = time.perf_counter()
        warm = predictor(corner if warm_on_corner else image)
        first_s = time.perf_counter() - start
        e2e, e2e_all = timed(
            lambda p=predictor: p(image), repeats - 1 if warm_on_corner else repeats
        )
        if warm_on_corner:
            start = time.perf_counter()
            warm = predictor(image)
            e2e_all = [time.perf_counter() - start, *e2e_all]
            e2e = statistics.median(e2e_all)
        outputs[(runtime, precision)] = warm
        only_run, only_warm, batch = model_only(predictor, image)
        if large and runtime not in args.large_model_only:
            only, only_all = None, []  # not measured: null in the JSON
        else:
            # A whole pass to warm up a small image; on a large one its first and last
            # batches, which compile the batch shapes (timing that in made Keras' model-only
            # on a photo 0.3-0.9 s against 0.07-0.14 s end to end).
            only_warm() if large else only_run()
            only, only_all = timed(only_run, repeats)
        row = {
            "runtime": runtime,
            "precision": precision,
            "ran_as": [resolved["runtime"], resolved["precision"]],
            "tiles": grid.count,
            "tile": list(grid.tile_shape),
            "batch": batch,
            "first_call_s": first_s,
            "end_to_end_s": e2e,
            "end_to_end_all_s": e2e_all,
            "model_only_s": only,
            "model_only_all_s": only_all,
            "end_to_end_over_model_only": None if only is None else e2e / only,
        }
        reference = outputs.get(("keras", "float32"))
        if reference is not None:
            row["max_abs_diff_vs_keras_f32"] = float(
                np.max(np.abs(outputs[(runtime, precision)] - reference))
            )
        rows.append(row)
        print(json.dumps({"case": name, **{k: v for k, v in row.items() if "all" not in k}}))
    case["rows"] = rows
    case["load_after"] = os.getloadavg()
    by = {(r["runtime"], r["precision"]): r for r in rows}
    base = by.get(("keras", "float32"))
    ratios = {}
    if base:
        for key, row in by.items():
            ratios[f"{key[0]}-{key[1]} end_to_end speedup vs keras-float32"] = (
                base["end_to_end_s"] / row["end_to_end_s"]
            )
    if ("openvino", "float32") in by:
        ratios["openvino-float32 end_to_end / model_only"] = by[("openvino", "float32")][
            "end_to_end_over_model_only"
        ]
    case["ratios"] = ratios
    # The conversions of this run's cache: how long the first one took.
    case["conversions"] = [
        {"entry": str(p.parent.relative_to(cache_root())), **_conversion(p)}
        for p in sorted(cache_root().rglob(ENTRY_FILE))
    ]
    return case


def _conversion(entry_file: Path) -> dict[str, Any]:
    entry = json.loads(entry_file.read_text())
    return {"conversion_s": entry["conversion_s"], "runtime_version": entry["runtime_version"]}


def second_start(model_id: str, runtime: str) -> float:
    """Seconds to get a runtime backend for a freshly loaded model with the cache filled."""
    from model_zoo import bundled_dir, load_folder
    from tiledseg.runtimes import choose_runtime
    from tiledseg.runtimes.select import runtime_backend

    fresh = load_folder(bundled_dir() / model_id)  # a new network object: no process cache
    start = time.perf_counter()
    runtime_backend(fresh.model, choose_runtime(runtime, "float32", on_gpu=False))
    return time.perf_counter() - start


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    cache = tempfile.mkdtemp(prefix="tiledseg-bench-cache-")
    os.environ["TILEDSEG_CACHE_DIR"] = cache  # a fresh cache: the first conversion is timed
    import keras
    import onnxruntime
    import openvino

    from benchmarks.measure import cpu_report
    from tiledseg.runtimes.cpu import native_bfloat16

    native = native_bfloat16()
    report = cpu_report()
    machine = {
        "cpu": report["cpu"],
        "cores": report["cores"],
        "native_bfloat16": native,
        "bf16_flags": report["bf16_flags"],
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "openvino": openvino.__version__,
        "onnxruntime": onnxruntime.__version__,
    }
    print(json.dumps(machine))
    cases = []
    for name in args.cases:
        cases.append(run_case(name, args, native))
        if args.json:
            _write(args.json, machine, cases)
    # Only where a row converted the network: otherwise the "second" start is the first.
    converted = sorted(
        {
            (case["model"], row["ran_as"][0])
            for case in cases
            for row in case["rows"]
            if row["ran_as"][0] in ("openvino", "onnxruntime")
        }
    )
    starts = {f"{model}/{runtime}": second_start(model, runtime) for model, runtime in converted}
    print(json.dumps({"second_start_s": starts}))
    if args.json:
        _write(args.json, machine, cases, starts)
    return 0


def _write(path: Path, machine, cases, starts=None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"machine": machine, "cases": cases, "second_start_s": starts}
    # Strict JSON (no NaN), so browsers and jq read the results too.
    text = json.dumps(data, indent=2, default=float, allow_nan=False)
    path.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    raise SystemExit(main())
