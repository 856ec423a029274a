"""Full-resolution evaluation and the choice of inference defaults, through the tiledseg engine.

Every prediction goes through :class:`tiledseg.TiledPredictor` (the one tiled-inference
implementation) at the model's pixel scale, then :func:`tiledseg.postprocess.postprocess`, and
is scored against the full-size mask with :func:`tiledseg.metrics.segmentation_metrics`.

Command line::

    python -m training.evaluate RUN_DIR_OR_MODEL --images DIR --masks DIR [--output eval.json]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import keras
import numpy as np

from tiledseg import PixelScale, TiledPredictor
from tiledseg import metrics as tiledseg_metrics
from tiledseg._validation import validate_choice, validate_range
from tiledseg.errors import IMAGE_ERRORS, TiledsegError
from tiledseg.io import read_image, read_mask
from tiledseg.metrics import mean_metrics, metric_counts, segmentation_metrics
from tiledseg.postprocess import postprocess, validate_postprocess_options
from tiledseg.precision import PRECISIONS
from tiledseg.tiling import downsampling_factor
from training.config import SELECTION_METRICS
from training.run_dir import INFERENCE_FILE, MODEL_FILE, read_json, write_json

__all__ = [
    "SELECTION_METRICS",
    "default_settings",
    "evaluate_pairs",
    "load_for_evaluation",
    "main",
    "select_inference_settings",
    "tiled_predictor",
]

_SETTING_KEYS = ("scale", "tile", "overlap", "blend", "threshold", "tta", "postprocess", "frame")


def default_settings(scale: PixelScale | dict | float = 1.0) -> dict[str, Any]:
    """Inference settings with the engine's defaults at a given pixel scale."""
    return {
        "scale": PixelScale.from_value(scale).to_dict(),
        "tile": 512,
        "overlap": 0.25,
        "blend": "gaussian",
        "threshold": 0.5,
        "tta": None,
        "postprocess": {},
        "frame": 0,
    }


def tiled_predictor(
    model: keras.Model, settings: dict[str, Any], *, precision: str | None = None
) -> TiledPredictor:
    """The engine with a run's inference settings (``inference.json`` keys; threshold unused)."""
    return TiledPredictor(
        model,
        tile=settings["tile"],
        overlap=settings["overlap"],
        blend=settings["blend"],
        scale=PixelScale.from_value(settings["scale"]),
        tta=settings["tta"],
        precision=precision,
        frame=settings.get("frame", 0),
    )


def _what_ran(predictor: TiledPredictor) -> dict[str, str]:
    """The runtime and precision the engine resolved, recorded beside each score."""
    resolved = predictor.resolved_settings()
    return {"precision": resolved["precision"], "runtime": resolved["runtime"]}


def _foreground(probabilities: np.ndarray) -> np.ndarray:
    # Binary evaluation: a softmax model's foreground is every class but 0.
    if probabilities.ndim == 3 and probabilities.shape[2] > 1:
        return 1.0 - probabilities[..., 0]
    return probabilities if probabilities.ndim == 2 else probabilities[..., 0]


def evaluate_pairs(
    model: keras.Model,
    pairs: Sequence[tuple[Path, Path]],
    settings: dict[str, Any],
    *,
    split: str = "",
    progress: Callable[[int, int, str], None] | None = None,
    precision: str | None = None,
    skip_unreadable: bool = False,
) -> dict[str, Any]:
    """Predict each image at full size through the engine and score it against its mask.

    Args:
        model: keras.Model taking 0..255 pixels.
        pairs: (image path, mask path) pairs.
        settings: inference settings (keys scale, tile, overlap, blend, threshold, tta,
            postprocess), e.g. a run's ``inference.json``.
        split: str, a name for the data (recorded in the result).
        progress: called as ``progress(done, total, image_stem)`` after each image.
        precision: the network's precision (:func:`tiledseg.predict_tiled`); default the
            settings' own ``precision`` (a run's pinned one), else the engine's ``"auto"``.
        skip_unreadable: bool, default False. If True, a pair whose image or mask cannot be
            read (corrupt, empty, wrong size, over the pixel limit, missing) is left out and
            listed under ``"skipped"`` with the reason, instead of stopping the whole run.

    Returns:
        The ``eval.json`` dict: ``{"split", "settings", "mean", "count", "images",
        "skipped", "wall_seconds"}``; ``images`` holds one dict of metrics per image,
        ``skipped`` one ``{"image", "reason"}`` per pair left out, and ``settings`` records
        the runtime and precision the engine resolved, so a score says what made it.

    Raises:
        TiledsegError: with ``skip_unreadable``, when no pair at all could be scored.

    Example:
        >>> report = evaluate_pairs(model, load_pairs("../shared/data/isic2017/fullres"),
        ...                         default_settings({"mode": "short_side", "value": 256}))
        >>> round(report["mean"]["jaccard"], 3)  # doctest: +SKIP
    """
    if not pairs:
        raise ValueError("`pairs` is empty: there is nothing to evaluate.")
    precision = precision if precision is not None else settings.get("precision")
    settings = {key: settings[key] for key in _SETTING_KEYS}
    # Every setting is checked before the first image, not after minutes of them.
    validate_postprocess_options({"threshold": settings["threshold"], **settings["postprocess"]})
    predictor = tiled_predictor(model, settings, precision=precision)
    rows = []
    skipped = []
    started = time.perf_counter()
    for done, (image_path, mask_path) in enumerate(pairs, start=1):
        stem = Path(image_path).stem
        try:
            image = read_image(image_path)
            truth = read_mask(mask_path, shape=image.shape[:2])
            probabilities = _foreground(predictor(image))
        except IMAGE_ERRORS as error:  # one bad pair; a bad setting still stops the run
            if not skip_unreadable:
                raise
            skipped.append({"image": stem, "reason": str(error)})
        else:
            predicted = postprocess(
                probabilities, threshold=settings["threshold"], **settings["postprocess"]
            )
            rows.append({"image": stem, **segmentation_metrics(predicted, truth)})
        if progress is not None:
            progress(done, len(pairs), stem)
    if not rows:
        first = skipped[0]
        raise TiledsegError(
            f"None of the {len(pairs)} pairs could be scored: {first['image']}: "
            f"{first['reason']}" + (f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else "")
        )
    scores = [{k: v for k, v in row.items() if k != "image"} for row in rows]
    return {
        "split": split,
        "settings": {**settings, **_what_ran(predictor)},
        "mean": mean_metrics(scores),
        "count": metric_counts(scores),
        "images": rows,
        "skipped": skipped,
        "wall_seconds": round(time.perf_counter() - started, 2),
    }


def _scorer(metric: str) -> Callable[[np.ndarray, np.ndarray], float]:
    # One metric function, not segmentation_metrics: hd95 would cost more than the search.
    validate_choice(metric, SELECTION_METRICS, "metric")
    return getattr(tiledseg_metrics, metric)


def select_inference_settings(
    model: keras.Model,
    pairs: Sequence[tuple[Path, Path]],
    *,
    scale: PixelScale | dict | float,
    tiles: Sequence[int] = (512,),
    overlaps: Sequence[float] = (0.25,),
    blend: str = "gaussian",
    ttas: Sequence[str | None] = (None,),
    thresholds: Sequence[float] = (0.5,),
    postprocess_options: Sequence[dict[str, Any]] = ({},),
    metric: str = "dice",
    frame: int = 0,
    precision: str | None = None,
    margin: float = 0.0,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Choose tile, overlap, tta, threshold and post-processing by mean ``metric`` on ``pairs``.

    Each (tile, overlap, tta) needs one pass of the engine over the images; thresholds and
    post-processing options are then tried on the kept probability maps. The choice is the
    first candidate, in the order listed, that scores within ``margin`` of the best one: ties
    (and, with a margin, gains too small to trust) keep the earlier candidate, so list the
    defaults and the cheaper settings (no flips) first.

    Args:
        model: keras.Model.
        pairs: validation (image, mask) pairs (never the test split).
        scale: the model's training pixel scale (not searched).
        tiles, overlaps, blend, ttas, thresholds, postprocess_options: the candidates.
        metric: str, default "dice". One of "dice", "jaccard", "threshold_jaccard",
            "sensitivity", "specificity" (higher is better).
        frame: int, default 0. The black frame the model was trained with (not searched).
        precision: the precision the chosen settings will run in (not searched; a run's
            ``inference.precision``), so they are chosen on what users get. Default: "auto".
        margin: float in [0, 1), default 0. How far below the best mean score a candidate
            listed earlier may be and still be chosen: e.g. 0.001 keeps no flips (a quarter of
            the tile passes) unless flips gain more than 0.001.

    Returns:
        (best settings, one row per candidate with its mean score and the runtime and
        precision the engine ran it in).

    Example:
        >>> best, table = select_inference_settings(model, valid_pairs, scale=1.0,
        ...                                         thresholds=[0.4, 0.5, 0.6])
    """
    if not pairs:
        raise ValueError("`pairs` is empty: there is nothing to choose settings on.")
    validate_range(margin, "margin", low=0.0, high=1.0, high_inclusive=False)
    score = _scorer(metric)
    truths = []
    images = []
    for image_path, mask_path in pairs:
        image = read_image(image_path)
        images.append(image)
        truths.append(read_mask(mask_path, shape=image.shape[:2]))
    table = []
    candidates = []
    for tile, overlap, tta in itertools.product(tiles, overlaps, ttas):
        settings = default_settings(scale)
        settings.update(
            tile=int(tile), overlap=float(overlap), blend=blend, tta=tta, frame=int(frame)
        )
        predictor = tiled_predictor(model, settings, precision=precision)
        engine = _what_ran(predictor)
        maps = [_foreground(predictor(image)) for image in images]
        for threshold, options in itertools.product(thresholds, postprocess_options):
            candidate = {**settings, "threshold": float(threshold), "postprocess": dict(options)}
            scores = [
                float(score(postprocess(p, threshold=float(threshold), **options), t))
                for p, t in zip(maps, truths, strict=True)
            ]
            mean = float(np.mean(scores))
            table.append({**candidate, **engine, metric: mean})
            candidates.append(candidate)
    best = max(row[metric] for row in table)
    chosen = next(i for i, row in enumerate(table) if row[metric] >= best - margin)
    return candidates[chosen], table


def load_for_evaluation(reference: str) -> tuple[keras.Model, dict[str, Any]]:
    """Load a run directory, a ``.keras`` file or a zoo reference, with its inference settings.

    A run directory gives ``model.keras`` and ``inference.json``; a ``.keras`` file the engine's
    defaults; anything else goes through :func:`tiledseg.loading.load_model` and its metadata.
    """
    path = Path(reference)
    if path.is_dir() and (path / MODEL_FILE).is_file():
        model = keras.saving.load_model(path / MODEL_FILE, safe_mode=True)
        settings = default_settings()
        if (path / INFERENCE_FILE).is_file():
            chosen = read_json(path / INFERENCE_FILE)
            settings.update({k: chosen[k] for k in (*_SETTING_KEYS, "precision") if k in chosen})
        return model, settings
    if path.suffix == ".keras" and path.is_file():
        return keras.saving.load_model(path, safe_mode=True), default_settings()
    from tiledseg.loading import load_model

    loaded = load_model(reference)
    if isinstance(loaded, keras.Model):
        return loaded, default_settings()
    meta = loaded.meta
    settings = default_settings(getattr(meta, "scale", 1.0))
    for key in _SETTING_KEYS[1:]:
        value = getattr(meta, key, None)
        if value is not None or key == "tta":
            settings[key] = value if key != "postprocess" else dict(value or {})
    if getattr(meta, "precision", None) is not None:
        settings["precision"] = meta.precision
    return loaded.model, settings


def _parse_scale(text: str) -> PixelScale:
    mode, value = text.split("=", 1) if "=" in text else ("factor", text)
    try:
        number = float(value)
    except ValueError:
        raise ValueError(
            f"`--scale` must be a factor (0.25) or mode=value (short_side=256). Received: {text!r}"
        ) from None
    return PixelScale(mode.strip(), number)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m training.evaluate",
        description="Evaluate a model at full resolution through the tiledseg engine.",
    )
    parser.add_argument("model", help="run directory, .keras file, or zoo reference")
    parser.add_argument("--images", required=True, help="folder of images")
    parser.add_argument("--masks", required=True, help="folder of masks (<id>.png)")
    parser.add_argument("--split", default="", help="name recorded in the report")
    parser.add_argument("--scale", help="factor (0.25) or mode=value (short_side=256)")
    parser.add_argument("--tile", type=int)
    parser.add_argument("--overlap", type=float)
    parser.add_argument("--threshold", type=float)
    parser.add_argument("--tta", choices=["none", "flips"])
    parser.add_argument(
        "--precision", choices=PRECISIONS, help="default: the model's own, else auto"
    )
    parser.add_argument("--output", help="write the report as JSON here")
    args = parser.parse_args(argv)

    from training.data import load_pairs

    try:
        pairs = load_pairs({"images": args.images, "masks": args.masks})
        if args.output:  # never over an input (a mask folder is one typo away), nor a folder
            from tiledseg.output_plan import check_writable_file

            inputs = [path for pair in pairs for path in pair]
            check_writable_file(Path(args.output), "--output", inputs)
        model, settings = load_for_evaluation(args.model)
        if args.scale:
            settings["scale"] = _parse_scale(args.scale).to_dict()
        for key in ("tile", "overlap", "threshold"):
            if getattr(args, key) is not None:
                settings[key] = getattr(args, key)
        if args.tta:
            settings["tta"] = None if args.tta == "none" else args.tta
        if args.precision:
            settings["precision"] = args.precision
        print(f"Evaluating {len(pairs)} images, factor {downsampling_factor(model)}, {settings}")
        report = evaluate_pairs(
            model,
            pairs,
            settings,
            split=args.split or str(args.images),
            progress=lambda done, total, stem: print(f"  [{done}/{total}] {stem}", flush=True),
            skip_unreadable=True,
        )
    except (TiledsegError, OSError, ValueError, TypeError) as error:
        # A bad setting or file: one line that names it (the settings are checked first).
        print(f"error: {error}", file=sys.stderr)
        return 2
    for entry in report["skipped"]:
        print(f"skipped {entry['image']}: {entry['reason']}", file=sys.stderr)
    if report["skipped"]:
        # The means are over fewer images than asked for: say so, and exit non-zero.
        print(
            f"Means over {len(report['images'])} of {len(pairs)} images "
            f"({len(report['skipped'])} skipped):"
        )
    for name, value in report["mean"].items():
        print(f"{name:>18}: {value:.4f}")
    print(f"{'wall seconds':>18}: {report['wall_seconds']}")
    if args.output:
        write_json(args.output, report)
        print(f"Wrote {args.output}")
    return 2 if report["skipped"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
