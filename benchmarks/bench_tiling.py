"""Time the tiled engine against model-only, whole-image and the seeds' tile-by-tile algorithm.

Usage (CPU here; on a GPU machine set KERAS_BACKEND=jax):
    python benchmarks/bench_tiling.py --sizes 1600x1200 6000x4000 --json benchmarks/out/cpu.json

Every method runs the same model on the same image. ``model-only`` runs the network alone on the
tiles of the engine's grid (already cut, in fixed batches), so ``tiledseg / model-only`` is the
engine's own overhead; ``seeds`` is :func:`tiledseg.baselines.predict_seed_tiles` on the same
tile grid. Times are medians after a warm-up call; peak memory is the process's resident-set
growth during the method (CPU) or the accelerator's peak bytes in use (JAX on GPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import psutil

from tiledseg import TiledPredictor, predict_whole
from tiledseg.baselines import predict_seed_tiles
from tiledseg.engine import _pad, describe_grid


def seed_like_unet(levels: int = 4, filters: int = 16, kernel: int = 3) -> keras.Model:
    """A random-weight UNet in the seeds' style (timing only)."""
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    skips = []
    for level in range(levels):
        size = max(3, kernel - 2 * level)
        x = keras.layers.Conv2D(filters * 2**level, size, padding="same", activation="relu")(x)
        x = keras.layers.Conv2D(filters * 2**level, size, padding="same", activation="relu")(x)
        skips.append(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(filters * 2**levels, 3, padding="same", activation="relu")(x)
    for level in reversed(range(levels)):
        x = keras.layers.Conv2DTranspose(filters * 2**level, 2, strides=2)(x)
        x = keras.layers.Concatenate()([x, skips[level]])
        x = keras.layers.Conv2D(filters * 2**level, 3, padding="same", activation="relu")(x)
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"seedlike_{levels}x{filters}")


class PeakMemory:
    """Peak resident-set growth of this process while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        self._process = psutil.Process()
        self._base = self._process.memory_info().rss
        self.peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)
        self.grown_mb = (self.peak - self._base) / 2**20


def _gpu_peak_mb() -> float | None:
    if keras.backend.backend() != "jax":
        return None
    import jax

    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**20


def timed(function, repeats: int) -> tuple[float, float, float]:
    """(first call seconds, median seconds, peak memory MB) of ``function()``."""
    started = time.perf_counter()
    _block(function())
    first = time.perf_counter() - started
    times = []
    with PeakMemory() as memory:
        for _ in range(repeats):
            started = time.perf_counter()
            _block(function())
            times.append(time.perf_counter() - started)
    gpu = _gpu_peak_mb()
    return first, statistics.median(times), gpu if gpu is not None else memory.grown_mb


def _block(value):
    return np.asarray(keras.ops.convert_to_numpy(value)) if value is not None else None


def model_only(network, image, grid, batch_size):
    """The network alone on the engine's tiles, cut beforehand, in fixed-size batches."""
    padded = _pad(image, grid.padded_shape, "reflect").astype(np.float32)
    tile_h, tile_w = grid.tile_shape
    tiles = np.stack(
        [padded[y : y + tile_h, x : x + tile_w] for y in grid.rows.starts for x in grid.cols.starts]
    )
    short = -len(tiles) % batch_size
    if short:
        tiles = np.concatenate([tiles, np.repeat(tiles[-1:], short, axis=0)])
    batches = [tiles[i : i + batch_size] for i in range(0, len(tiles), batch_size)]

    def run():
        out = None
        for batch in batches:
            out = network.predict_on_batch(batch)
        return out

    return run


def bench(network, size: tuple[int, int], tile, overlap, batch_sizes, repeats, with_seeds):
    width, height = size
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    megapixels = height * width / 1e6
    rows = []

    def record(method, batch, first, median, memory, tiles):
        rows.append(
            {
                "image": f"{width}x{height}",
                "method": method,
                "batch_size": batch,
                "tiles": tiles,
                "first_call_s": round(first, 4),
                "median_s": round(median, 4),
                "megapixels_per_s": round(megapixels / median, 3),
                "peak_memory_mb": round(memory, 1),
            }
        )
        print(
            f"{width}x{height} {method:<14} batch={batch!s:<4} tiles={tiles!s:<4} "
            f"first={first:7.3f}s median={median:7.3f}s {megapixels / median:8.2f} Mpx/s "
            f"peak={memory:8.1f} MB",
            flush=True,
        )

    grid = describe_grid(image.shape, network, tile=tile, overlap=overlap)
    for batch in batch_sizes:
        predictor = TiledPredictor(network, tile=tile, overlap=overlap, batch_size=batch)
        record("tiledseg", batch, *timed(lambda p=predictor: p(image), repeats), grid.count)
        record(
            "model-only",
            batch,
            *timed(model_only(network, image, grid, batch), repeats),
            grid.count,
        )
    if tile != "auto":
        auto = TiledPredictor(network, tile="auto", overlap=overlap)
        record(
            "tiledseg-auto",
            None,
            *timed(lambda: auto(image), repeats),
            auto.grid(image.shape).count,
        )
    record("whole-image", 1, *timed(lambda: predict_whole(image, network), repeats), 1)
    if with_seeds:
        record(
            "seeds",
            1,
            *timed(
                lambda: predict_seed_tiles(image, network, tile=tile, overlap=overlap),
                max(1, repeats // 3),
            ),
            grid.count,
        )
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model reference (default: a random seed-like UNet)")
    parser.add_argument("--levels", type=int, default=4)
    parser.add_argument("--filters", type=int, default=16)
    parser.add_argument("--sizes", nargs="+", default=["1600x1200", "6000x4000"])
    parser.add_argument("--tile", type=int, default=512)
    parser.add_argument("--overlap", type=float, default=0.25)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[4])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-seeds", action="store_true", help="skip the slow seeds' method")
    parser.add_argument("--json", type=Path, help="write the table as JSON")
    args = parser.parse_args(argv)

    if args.model:
        from tiledseg.loading import load_model

        loaded = load_model(args.model)
        network = getattr(loaded, "model", loaded)
    else:
        network = seed_like_unet(args.levels, args.filters)
    sizes = [tuple(int(v) for v in s.lower().split("x")) for s in args.sizes]
    rows = []
    for size in sizes:
        rows += bench(
            network,
            size,
            args.tile,
            args.overlap,
            args.batch_sizes,
            args.repeats,
            not args.no_seeds,
        )
    summary = _ratios(rows)
    for line in summary:
        print(line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "machine": {
                        "platform": platform.platform(),
                        "processor": platform.processor(),
                        "cpus": os.cpu_count(),
                        "backend": keras.backend.backend(),
                        "python": sys.version.split()[0],
                        "keras": keras.__version__,
                    },
                    "model": {"name": network.name, "parameters": int(network.count_params())},
                    "settings": {
                        "tile": args.tile,
                        "overlap": args.overlap,
                        "repeats": args.repeats,
                    },
                    "rows": rows,
                    "ratios": summary,
                },
                indent=2,
            )
        )
    return 0


def _ratios(rows):
    lines = []
    for image in dict.fromkeys(r["image"] for r in rows):
        by = {(r["method"], r["batch_size"]): r["median_s"] for r in rows if r["image"] == image}
        for (method, batch), seconds in by.items():
            if method != "tiledseg":
                continue
            model = by.get(("model-only", batch))
            seeds = by.get(("seeds", 1))
            text = f"{image} batch={batch}: tiledseg/model-only = {seconds / model:.3f}x"
            if seeds:
                text += f", seeds/tiledseg = {seeds / seconds:.2f}x"
            lines.append(text)
        whole, auto = by.get(("whole-image", 1)), by.get(("tiledseg-auto", None))
        if whole and auto:
            lines.append(f"{image}: tiledseg-auto/whole-image = {auto / whole:.3f}x")
    return lines


if __name__ == "__main__":
    sys.exit(main())
