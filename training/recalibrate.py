"""Recompute a trained model's batch-norm statistics as exact averages over training data.

Batch norm keeps moving averages of its inputs' mean and variance (Keras' momentum 0.99: a window
of about 100 steps). A short run, or one whose encoder is unfrozen late, ends with averages that
still remember earlier weights, and validation then scores lower than training for that reason
alone. Recalibration runs the final weights over training crops (no augmentation, no weight
update) and sets each batch norm's statistics to the plain average over those batches, the way
"precise BN" does (Wu & Johnson 2021, "Rethinking batch in BatchNorm").

    python -m training.recalibrate runs/<run> [--batches 30]

It rewrites ``model.keras`` atomically and records what it did in ``recalibration.json``;
run ``python -m training.train --resume RUN --set train.epochs=<epochs done>`` afterwards to
choose the inference settings and evaluate again.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from pathlib import Path

import keras
import numpy as np

from training.config import load_config
from training.data import SegmentationDataset, load_pairs, split_source
from training.run_dir import CONFIG_FILE, MODEL_FILE, save_model_atomic, write_json

__all__ = ["main", "recalibrate_batch_norm"]

RECALIBRATION_FILE = "recalibration.json"


def recalibrate_batch_norm(model: keras.Model, batches) -> int:
    """Set every ``BatchNormalization`` layer's statistics to their average over ``batches``.

    The k-th batch gets weight 1/(k+1) (momentum k/(k+1)), so after n batches each moving mean
    and variance is the mean of the n per-batch statistics. Weights other than the statistics
    are untouched.

    Args:
        model: a trained model (its batch norms are updated in place).
        batches: an iterable of image batches (float32, N x H x W x C), or (images, masks) pairs.

    Returns:
        The number of batches used.
    """
    norms = [
        layer for layer in _all_layers(model) if isinstance(layer, keras.layers.BatchNormalization)
    ]
    if not norms:
        return 0
    saved = [(layer.momentum, layer.trainable) for layer in norms]
    count = 0
    try:
        for layer in norms:
            layer.trainable = True  # a frozen batch norm ignores training=True
        for batch in batches:
            images = batch[0] if isinstance(batch, (tuple, list)) else batch
            for layer in norms:
                layer.momentum = count / (count + 1.0)
            model(np.asarray(images, dtype="float32"), training=True)
            count += 1
    finally:
        for layer, (momentum, trainable) in zip(norms, saved, strict=True):
            layer.momentum, layer.trainable = momentum, trainable
    return count


def _all_layers(model: keras.Model):
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            yield from _all_layers(layer)
        else:
            yield layer


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m training.recalibrate", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--batches", type=int, default=30, help="training batches to average")
    args = parser.parse_args(argv)
    if args.batches < 1:
        parser.error(f"--batches must be at least 1. Received: {args.batches}")
    config = load_config(args.run_dir / CONFIG_FILE)
    data = config["data"]
    root = Path(data["root"])
    pairs = load_pairs(split_source(root, data["train"]))
    dataset = SegmentationDataset(
        pairs,
        training=False,
        scale=data["scale"],
        crop_size=data["crop_size"],
        batch_size=config["train"]["batch_size"],
        cache=False,
        workers=1,
        seed=config["seed"],
    )
    import training.losses  # noqa: F401  registers the loss and metrics for the checkpoint

    model = keras.saving.load_model(args.run_dir / MODEL_FILE, safe_mode=True)
    # spread the batches over the whole training split
    chosen = np.linspace(0, len(dataset) - 1, min(args.batches, len(dataset))).round().astype(int)
    started = time.perf_counter()
    used = recalibrate_batch_norm(model, (dataset[int(index)] for index in chosen))
    save_model_atomic(model, args.run_dir / MODEL_FILE)
    seconds = time.perf_counter() - started
    write_json(
        args.run_dir / RECALIBRATION_FILE,
        {
            "batches": used,
            "batch_size": config["train"]["batch_size"],
            "seconds": round(seconds, 1),
        },
    )
    print(
        f"Batch-norm statistics of {args.run_dir / MODEL_FILE} averaged over {used} batches "
        f"of training crops in {seconds:.0f} s."
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
