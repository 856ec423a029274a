"""Issue 7's benchmark: tiledseg against model-only, whole-image, the seeds and MONAI, on a GPU.

Usage (from the repository root; benchmarks/device_run.sh runs both backends and the report):
    KERAS_BACKEND=jax python -m benchmarks.bench_gpu --json benchmarks/out/bench_jax.json
    KERAS_BACKEND=torch python -m benchmarks.bench_gpu --methods tiledseg model-only monai \\
        --json benchmarks/out/bench_torch.json
    KERAS_BACKEND=jax python -m benchmarks.bench_gpu --quick   # a tiny CPU smoke run

Same network, same random uint8 image (fixed seed) for every method; see
:mod:`benchmarks.methods` for what each method is. Work runs in order of importance, so that a
time budget (``--budget-s``) cuts the least important rows, which are then listed as skipped:

1. the first model (the seed-like UNet by default), at every size: tiledseg and model-only (and
   MONAI on PyTorch) in each precision at the full band's batch, ``tile="auto"``, whole-image in
   the last precision, the seeds' algorithm;
2. the same model: the smaller batches of the sweep, whole-image in the other precisions;
3. the other models, as in 1 (without the seeds), then as in 2.

The engine gives each band call as many tile rows as fill the asked batch, so its batch is at
most the image's tile count; batch sizes that would exceed it run once, at that batch
(``batch_sizes_requested`` lists them). Model-only and MONAI use the same effective batch.
The JSON (``--json``) is rewritten after every row, so a run stopped early keeps what it
measured.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np

from benchmarks.measure import machine_info, memory_kind, time_method
from benchmarks.methods import METHODS, make_method
from benchmarks.models import SEEDLIKE, load_network
from benchmarks.report import format_row, format_table, ratios
from tiledseg.engine import describe_grid
from tiledseg.precision import with_precision

FULL = {
    "models": [SEEDLIKE, "unet-bloodcell", "unet-isic2017"],
    "sizes": ["1600x1200", "4288x2848", "6000x4000"],
    "levels": 7,
    "filters": 16,
    "kernel": 7,
    "dilation": 2,
    "tile": 512,
    "batch_sizes": [8, 16, 32, 64],
    "repeats": 10,
    "seeds_repeats": 3,
}
QUICK = {
    **FULL,
    "sizes": ["320x224"],
    "levels": 3,
    "filters": 4,
    "kernel": 3,
    "dilation": 1,
    "tile": 128,
    "batch_sizes": [2, 4],
    "repeats": 2,
    "seeds_repeats": 1,
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings for a CPU smoke run")
    parser.add_argument("--models", nargs="+", help=f"'{SEEDLIKE}' or zoo references")
    parser.add_argument("--sizes", nargs="+", help="WIDTHxHEIGHT, e.g. 6000x4000")
    parser.add_argument("--levels", type=int, help="seed-like UNet levels (8: 124.6M params)")
    parser.add_argument("--filters", type=int, help="seed-like UNet base filters")
    parser.add_argument("--kernel", type=int, help="seed-like UNet first kernel")
    parser.add_argument("--dilation", type=int, help="seed-like UNet dilation")
    parser.add_argument("--tile", type=int)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-sizes", type=int, nargs="+", help="the batch sweep")
    parser.add_argument("--precisions", nargs="+", default=["float32", "bfloat16"])
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, help="default: all for the backend"
    )
    parser.add_argument("--repeats", type=int, help="timed runs per method (median)")
    parser.add_argument("--seeds-repeats", type=int, help="timed runs of the slow seeds' method")
    parser.add_argument("--budget-s", type=float, help="start no new row after this many seconds")
    parser.add_argument("--json", type=Path, help="write machine, models, rows and ratios here")
    parser.add_argument("--no-table", action="store_true", help="print only the progress lines")
    args = parser.parse_args(argv)
    defaults = QUICK if args.quick else FULL
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.methods is None:
        args.methods = [m for m in METHODS if m != "monai" or keras.backend.backend() == "torch"]
    if "monai" in args.methods and keras.backend.backend() != "torch":
        parser.error("--methods monai needs KERAS_BACKEND=torch")
    return args


def plan(args, networks: dict[str, tuple[keras.Model, dict]]) -> list[dict[str, Any]]:
    """The work, most important first (see the module docstring)."""
    sizes = [tuple(int(v) for v in size.lower().split("x")) for size in args.sizes]
    first = next(iter(networks))
    items: list[dict[str, Any]] = []

    def add(model, size, method, precision=None, batch=None, requested=None, rank=0):
        if method in args.methods:
            items.append(
                {
                    "rank": rank,
                    "model": model,
                    "size": size,
                    "method": method,
                    "precision": precision,
                    "batch": batch,
                    "requested": requested,
                }
            )

    for model in networks:
        rank, later = (0, 1) if model == first else (2, 3)
        for width, height in sizes:
            grid = describe_grid(
                (height, width, 3), networks[model][0], tile=args.tile, overlap=args.overlap
            )
            batches: dict[int, list[int]] = {}
            for asked in args.batch_sizes:
                batches.setdefault(min(asked, grid.count), []).append(asked)
            full, *smaller = sorted(batches, reverse=True)
            for precision in args.precisions:
                for method in ("tiledseg", "model-only", "monai"):
                    add(model, (width, height), method, precision, full, batches[full], rank)
                    for batch in smaller:
                        add(model, (width, height), method, precision, batch, batches[batch], later)
            add(model, (width, height), "tiledseg-auto", rank=rank)
            add(model, (width, height), "whole-image", args.precisions[-1], 1, rank=rank)
            for precision in args.precisions[:-1]:
                add(model, (width, height), "whole-image", precision, 1, rank=later)
            if model == first:
                add(model, (width, height), "seeds", "float32", 1, rank=rank)
    return sorted(items, key=lambda item: item["rank"])  # stable: keeps the order within a rank


def run_item(item, args, networks, images, outputs) -> dict[str, Any]:
    network, info = networks[item["model"]]
    width, height = item["size"]
    if item["size"] not in images:
        rng = np.random.default_rng(0)
        images[item["size"]] = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    image = images[item["size"]]
    grid = describe_grid(image.shape, network, tile=args.tile, overlap=args.overlap)
    run, facts = make_method(
        item["method"],
        network,
        image,
        grid,
        overlap=args.overlap,
        batch_size=item["batch"],
        precision=item["precision"],
    )
    repeats = args.seeds_repeats if item["method"] == "seeds" else args.repeats
    timing = time_method(run, repeats)
    row = {
        "backend": keras.backend.backend(),
        "model": info["label"],
        "model_ref": item["model"],
        "image": f"{width}x{height}",
        "method": item["method"],
        "precision": facts.get("precision", item["precision"]),
        "batch_size": item["batch"],
        "batch_sizes_requested": item["requested"],
        "tile": facts.get("tile", list(grid.tile_shape)),
        "tiles": facts.get("tiles", 1 if item["method"] == "whole-image" else grid.count),
        "first_call_s": round(timing.first_s, 4),
        "median_s": round(timing.median_s, 4),
        "runs": timing.runs,
        "megapixels_per_s": round(width * height / 1e6 / timing.median_s, 3),
        "peak_memory_mb": None if timing.peak_mb is None else round(timing.peak_mb, 1),
        "peak_rose": timing.peak_rose,
    }
    if item["method"] in ("tiledseg", "monai"):
        outputs[(item["model"], item["size"], item["method"], row["precision"])] = timing.output
    if item["method"] == "monai":
        row.update(_monai_differences(item, image, grid, network, args, outputs))
    return row


def _monai_differences(item, image, grid, network, args, outputs) -> dict[str, Any]:
    """MONAI against tiledseg (same precision): everywhere, and where both use the same tiles."""
    from benchmarks.monai_peer import common_extent, gaussian_window, monai_starts, predict_monai

    key = (item["model"], item["size"])
    ours = outputs.get((*key, "tiledseg", item["precision"]))
    theirs = outputs[(*key, "monai", item["precision"])]
    if ours is None:
        return {}
    tile = grid.rows.tile
    rows = common_extent(grid.rows.starts, monai_starts(image.shape[0], tile, args.overlap))
    cols = common_extent(grid.cols.starts, monai_starts(image.shape[1], tile, args.overlap))
    difference = np.abs(ours - theirs)
    # MONAI once more with tiledseg's own (unclamped) window: where the grids agree, what is
    # left is arithmetic (batch composition, convolution algorithms).
    same_window = predict_monai(
        image,
        with_precision(network, item["precision"]),
        tile=tile,
        overlap=args.overlap,
        batch_size=item["batch"],
        weight_map=gaussian_window(tile),
    )
    return {
        "max_abs_diff_vs_tiledseg": float(difference.max()),
        "mean_abs_diff_vs_tiledseg": float(difference.mean()),
        "common_tiles_extent": [min(rows, image.shape[0]), min(cols, image.shape[1])],
        "max_abs_diff_common_tiles": float(difference[:rows, :cols].max()),
        "max_abs_diff_common_tiles_same_window": float(
            np.abs(ours - same_window)[:rows, :cols].max()
        ),
    }


def _bf16_difference(rows, outputs) -> None:
    """On each bfloat16 tiledseg row: max |bf16 - fp32| of the probabilities."""
    for row in rows:
        if row["method"] != "tiledseg" or row["precision"] == "float32":
            continue
        if "max_abs_diff_vs_float32" in row:
            continue
        size = tuple(int(v) for v in row["image"].split("x"))
        model = row["model_ref"]
        fp32 = outputs.get((model, size, "tiledseg", "float32"))
        low = outputs.get((model, size, "tiledseg", row["precision"]))
        if fp32 is not None and low is not None:
            row["max_abs_diff_vs_float32"] = float(np.abs(fp32 - low).max())


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    networks = {}
    for name in args.models:
        networks[name] = load_network(
            name,
            levels=args.levels,
            filters=args.filters,
            kernel=args.kernel,
            dilation=args.dilation,
        )
        info = networks[name][1]
        print(
            f"model {info['label']}: {info['parameters']:,} parameters, "
            f"downsampling {info['downsampling']} ({info['source']})",
            flush=True,
        )
    machine = machine_info()
    print(f"backend {machine['backend']} on {machine.get('device')}", flush=True)
    rows: list[dict[str, Any]] = []
    skipped: list[str] = []
    failed: list[dict[str, str]] = []
    images: dict = {}
    outputs: dict = {}
    for item in plan(args, networks):
        label = (
            f"{networks[item['model']][1]['label']} {item['size'][0]}x{item['size'][1]} "
            f"{item['method']} {item['precision'] or ''} batch={item['batch']}"
        )
        if args.budget_s is not None and time.monotonic() - started > args.budget_s:
            skipped.append(label)
            continue
        try:
            row = run_item(item, args, networks, images, outputs)
        except Exception as error:  # e.g. out of GPU memory: a finding, and the rest still runs
            failed.append({"row": label, "error": f"{type(error).__name__}: {error}"[:500]})
            print(f"FAILED {label}: {failed[-1]['error']}", flush=True)
            continue
        rows.append(row)
        _bf16_difference(rows, outputs)
        print(format_row(row), flush=True)
        if args.json:
            _write(args, machine, networks, rows, skipped, failed)
    if skipped:
        print(f"skipped (over --budget-s {args.budget_s}): {len(skipped)} rows", flush=True)
        for label in skipped:
            print(f"  {label}", flush=True)
    if args.json:
        _write(args, machine, networks, rows, skipped, failed)
    if not args.no_table:
        print(format_table(rows))
        for ratio in ratios(rows):
            print(ratio["text"])
    print(f"total {time.monotonic() - started:.0f} s", flush=True)
    return 0


def _write(args, machine, networks, rows, skipped, failed) -> None:
    document = {
        "machine": machine,
        "models": {networks[name][1]["label"]: networks[name][1] for name in networks},
        "settings": {
            "sizes": args.sizes,
            "tile": args.tile,
            "overlap": args.overlap,
            "blend": "gaussian",
            "tta": "none",
            "scale": 1.0,
            "batch_sizes": args.batch_sizes,
            "precisions": args.precisions,
            "methods": args.methods,
            "repeats": args.repeats,
            "seeds_repeats": args.seeds_repeats,
            "budget_s": args.budget_s,
            "image": "random uint8, numpy default_rng(0)",
            "peak_memory": memory_kind(),
            "first_call": (
                "first call on a fresh predictor or function: includes its tracing and "
                "compilation (JAX) and, in each image size's first row, the first image of it"
            ),
        },
        "rows": rows,
        "ratios": ratios(rows),
        "skipped": skipped,
        "failed": failed,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.json.with_name(args.json.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2, default=_plain))
    os.replace(temporary, args.json)


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


if __name__ == "__main__":
    sys.exit(main())
