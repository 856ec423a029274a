"""Command line: ``tiledseg predict`` and ``tiledseg evaluate`` (also ``python -m tiledseg``).

Exit codes: 0 success; 2 usage errors, user errors (bad model reference, unreadable file) or a
run where some files were skipped; 1 internal errors. User errors print one ``error:`` line,
never a traceback.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import math
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tiledseg.precision import PRECISIONS
from tiledseg.tiling import BLEND_MODES

__all__ = ["main"]

EXIT_OK, EXIT_INTERNAL, EXIT_USER = 0, 1, 2


class _UserError(Exception):
    """An error the user can fix; printed without a traceback."""


def _tile(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {value!r}") from None


def _inference_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inference (defaults come from the model's metadata)")
    group.add_argument(
        "--model",
        help="a .keras file, model directory, zoo id, org/name or hf://org/name[@revision]",
    )
    group.add_argument("--revision", help="Hub revision to pin (branch, tag or commit)")
    group.add_argument("--tile", type=_tile, help="tile side in px at the model's scale, or auto")
    group.add_argument("--overlap", type=float, help="fraction of a tile shared with a neighbour")
    group.add_argument("--blend", choices=BLEND_MODES)
    group.add_argument("--batch-size", type=int, help="tiles per forward call")
    group.add_argument("--threshold", type=float, help="probability threshold for the mask")
    group.add_argument(
        "--scale",
        type=float,
        help="resize factor before inference (default: the model's pixel scale)",
    )
    group.add_argument(
        "--no-tiling",
        action="store_true",
        help="whole-image inference at the model's scale (baseline)",
    )
    group.add_argument(
        "--tta",
        dest="tta",
        action="store_const",
        const="flips",
        help="average over flips (default: the model's metadata)",
    )
    group.add_argument(
        "--no-tta",
        dest="tta",
        action="store_const",
        const="none",
        help="no test-time flips, whatever the metadata says",
    )
    group.add_argument(
        "--precision",
        choices=PRECISIONS,
        help="network arithmetic (default auto: bfloat16 on a GPU, float32 on a CPU)",
    )
    _serving_flags(parser)


def _serving_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TensorFlow Serving (instead of --model)")
    group.add_argument(
        "--serving",
        metavar="URL",
        help="grpc://HOST:8500/MODEL_NAME[?version=N|label=L&signature=serving_default]",
    )
    group.add_argument(
        "--meta",
        metavar="PATH_OR_ID",
        help="the served model's tiledseg.json, its export folder, or its zoo id",
    )
    group.add_argument("--max-in-flight", type=int, help="batches sent at once (default 4)")
    group.add_argument("--deadline", type=float, help="seconds allowed per call (default 60)")
    group.add_argument("--max-message-mb", type=int, help="gRPC message size limit (default 512)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiledseg", description="Overlapped tiled segmentation of very large images."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="write masks for images")
    _inference_flags(predict)
    predict.add_argument("--out", required=True, type=Path, help="output directory")
    predict.add_argument("--overlay", action="store_true", help="also write <stem>_overlay.jpg")
    predict.add_argument("--probs", action="store_true", help="also write <stem>_prob.png")
    predict.add_argument("inputs", nargs="+", help="image files or directories")

    evaluate = commands.add_parser("evaluate", help="score masks against ground truth")
    _inference_flags(evaluate)
    evaluate.add_argument("--images", required=True, type=Path, help="directory of images")
    evaluate.add_argument(
        "--masks",
        required=True,
        type=Path,
        help="directory of masks named <stem>.png or <stem>_segmentation.png",
    )
    evaluate.add_argument("--json", type=Path, help="write per-image metrics and means as JSON")
    evaluate.add_argument("--csv", type=Path, help="write per-image metrics as CSV")
    return parser


class _Runner:
    """The model and settings shared by every image of one command."""

    def __init__(self, args: argparse.Namespace):
        from tiledseg import TiledPredictor
        from tiledseg.loading import load_model

        if (args.model is None) == (args.serving is None):
            raise _UserError("Give one of --model (run locally) or --serving (TF Serving URL)")
        if args.serving is None:
            if args.meta is not None:
                raise _UserError("--meta goes with --serving; a --model carries its metadata")
            self.model = load_model(args.model, revision=args.revision)
        else:
            self.model = _serving_model(args)
        meta = getattr(self.model, "meta", None)
        self.postprocess = dict(getattr(meta, "postprocess", None) or {})
        # The threshold may sit in the metadata on its own or among the post-processing steps.
        stored_threshold = self.postprocess.pop("threshold", None)
        self.threshold = next(
            (
                t
                for t in (args.threshold, getattr(meta, "threshold", None), stored_threshold)
                if t is not None
            ),
            0.5,
        )
        self.no_tiling = args.no_tiling
        self.settings = {
            key: value
            for key, value in {
                "tile": args.tile,
                "overlap": args.overlap,
                "blend": args.blend,
                "batch_size": args.batch_size,
                "scale": args.scale,
                "tta": args.tta,
                "precision": args.precision,
            }.items()
            if value is not None
        }
        try:
            self.predictor = TiledPredictor(self.model, **self.settings)
        except (ValueError, TypeError) as error:  # e.g. --overlap 1.5
            raise _UserError(str(error)) from None

    def probabilities(self, image, label: str):
        from tiledseg import predict_whole

        if self.no_tiling:
            return predict_whole(
                image,
                self.model,
                scale=self.settings.get("scale"),
                precision=self.settings.get("precision"),
            )
        bar = _TileBar(label)
        return self.predictor(image, progress=bar.update)

    def mask(self, probabilities):
        from tiledseg.postprocess import postprocess

        return postprocess(probabilities, threshold=self.threshold, **self.postprocess)

    def describe(self) -> dict[str, Any]:
        return {
            **self.predictor.resolved_settings(),
            "threshold": self.threshold,
            "postprocess": self.postprocess,
            "tiling": not self.no_tiling,
        }


def _serving_model(args: argparse.Namespace) -> Any:
    if args.meta is None:
        raise _UserError(
            "--serving needs --meta: the served model's tiledseg.json, its export folder "
            "(BASE/NAME/VERSION) or its zoo id; TF Serving does not serve the metadata"
        )
    from tiledseg.serving import ServingModel

    options = {
        "batch_size": args.batch_size,
        "max_in_flight": args.max_in_flight,
        "deadline_s": args.deadline,
        "max_message_mb": args.max_message_mb,
    }
    try:
        model = ServingModel(
            args.serving, meta=args.meta, **{k: v for k, v in options.items() if v is not None}
        )
    except (ValueError, TypeError) as error:  # bad URL or option; ModelLoadError is one too
        raise _UserError(str(error)) from None
    return model.check()  # unreachable server, missing model, wrong signature: before any image


class _TileBar:
    """A one-line progress bar over the tiles of one image, on stderr."""

    def __init__(self, label: str):
        self.label = label
        self.interactive = sys.stderr.isatty()

    def update(self, done: int, total: int) -> None:
        if not self.interactive and done < total:
            return
        width = 30
        filled = width * done // max(total, 1)
        end = "\n" if done >= total else ""
        print(
            f"\r{self.label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} tiles",
            end=end,
            file=sys.stderr,
            flush=True,
        )


def _predict(args: argparse.Namespace) -> int:
    from tiledseg import io as tio
    from tiledseg import viz

    try:
        images = tio.list_images(args.inputs)
    except FileNotFoundError as error:
        raise _UserError(str(error)) from None
    if not images:
        raise _UserError(
            f"No images found in {args.inputs}; supported: {', '.join(tio.IMAGE_EXTENSIONS)}"
        )
    runner = _Runner(args)
    args.out.mkdir(parents=True, exist_ok=True)
    failures = 0
    for number, path in enumerate(images, 1):
        label = f"[{number}/{len(images)}] {path.name}"
        try:
            image = tio.read_image(path)
        except _user_errors() as error:
            failures += 1
            print(f"skipped {path}: {error}", file=sys.stderr)
            continue
        started = time.perf_counter()
        probabilities = runner.probabilities(image, label)
        mask = runner.mask(probabilities)
        tio.write_mask(args.out / f"{path.stem}.png", mask)
        if args.overlay:
            tio.write_image(args.out / f"{path.stem}_overlay.jpg", viz.overlay(image, mask))
        if args.probs:
            tio.write_probabilities(args.out / f"{path.stem}_prob.png", _first(probabilities))
        seconds = time.perf_counter() - started
        print(
            f"{path.name}: {image.shape[1]}x{image.shape[0]} px, "
            f"{100 * float(mask.mean()):.1f}% foreground, {seconds:.2f} s -> "
            f"{args.out / (path.stem + '.png')}"
        )
    if failures:
        print(
            f"{failures} of {len(images)} file(s) skipped; see the messages above", file=sys.stderr
        )
        return EXIT_USER
    return EXIT_OK


def _first(probabilities):
    return probabilities if probabilities.ndim == 2 else probabilities[..., 0]


def _evaluate(args: argparse.Namespace) -> int:
    from tiledseg import io as tio
    from tiledseg import metrics

    for folder, flag in ((args.images, "--images"), (args.masks, "--masks")):
        if not folder.is_dir():
            raise _UserError(f"{flag} {folder} is not a directory")
    images = tio.list_images([args.images])
    pairs, unpaired = tio.pair_images_and_masks(images, args.masks)
    for path in unpaired:
        print(
            f"skipped {path.name}: no mask {path.stem}.png or {path.stem}_segmentation.png "
            f"in {args.masks}",
            file=sys.stderr,
        )
    if not pairs:
        raise _UserError(f"No image in {args.images} has a mask in {args.masks}")
    runner = _Runner(args)
    rows: list[dict[str, Any]] = []
    failures = len(unpaired)
    for number, (image_path, mask_path) in enumerate(pairs, 1):
        label = f"[{number}/{len(pairs)}] {image_path.name}"
        try:
            image = tio.read_image(image_path)
            truth = tio.read_mask(mask_path, shape=image.shape[:2])
        except _user_errors() as error:
            failures += 1
            print(f"skipped {image_path.name}: {error}", file=sys.stderr)
            continue
        started = time.perf_counter()
        mask = runner.mask(runner.probabilities(image, label))
        seconds = time.perf_counter() - started
        rows.append(
            {
                "image": image_path.stem,
                **metrics.segmentation_metrics(mask, truth),
                "seconds": seconds,
            }
        )
    if not rows:
        raise _UserError("No image could be evaluated; see the messages above")
    names = [*metrics.METRIC_NAMES, "seconds"]
    mean = metrics.mean_metrics([{k: r[k] for k in names} for r in rows])
    print(_table(rows, names, mean))
    report = {
        "images": rows,
        "mean": mean,
        "settings": {"model": args.model or args.serving, **runner.describe()},
    }
    if args.json:
        from tiledseg.io import atomic_write_bytes

        atomic_write_bytes(args.json, json.dumps(_finite(report), indent=2).encode())
    if args.csv:
        from tiledseg.io import atomic_write_bytes

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["image", *names])
        writer.writeheader()
        writer.writerows(rows)
        atomic_write_bytes(args.csv, buffer.getvalue().encode())
    return EXIT_USER if failures else EXIT_OK


def _finite(value: Any) -> Any:
    """JSON has no NaN: write undefined metrics (e.g. hd95 with an empty mask) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _table(rows: list[dict[str, Any]], names: list[str], mean: dict[str, float]) -> str:
    width = max(8, *(len(str(r["image"])) for r in rows))
    header = f"{'image':<{width}} " + " ".join(f"{n[:9]:>9}" for n in names)
    lines = [header, "-" * len(header)]
    for row in [*rows, {"image": "mean", **mean}]:
        lines.append(
            f"{row['image']:<{width}} "
            + " ".join(f"{row.get(n, float('nan')):>9.4f}" for n in names)
        )
    return "\n".join(lines)


def _user_errors() -> tuple[type[BaseException], ...]:
    from tiledseg.errors import TiledsegError

    return (TiledsegError, FileNotFoundError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    args = _parser().parse_args(argv)
    command = _predict if args.command == "predict" else _evaluate
    try:
        return command(args)
    except (_UserError, *_user_errors()) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER


if __name__ == "__main__":
    sys.exit(main())
