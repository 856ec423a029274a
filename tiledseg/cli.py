"""Command line: ``tiledseg predict`` and ``tiledseg evaluate`` (also ``python -m tiledseg``).

Exit codes: 0 success; 2 usage errors, user errors (bad model reference, unreadable file) or a
run where some files were skipped; 1 internal errors; 130 interrupted (Ctrl-C). User errors
print one ``error:`` line, never a traceback. Every flag's value is checked when it is parsed
(finite numbers in their range); every output path is checked, and the output names are
planned (:mod:`tiledseg.output_plan`), before any model is loaded.
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
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tiledseg.precision import PRECISIONS
from tiledseg.runtimes.select import RUNTIMES
from tiledseg.tiling import BLEND_MODES

__all__ = ["main"]

EXIT_OK, EXIT_INTERNAL, EXIT_USER, EXIT_INTERRUPTED = 0, 1, 2, 130


class _UserError(Exception):
    """An error the user can fix; printed without a traceback."""


class _Progress:
    """How far a command got, for the one line printed on Ctrl-C."""

    def __init__(self) -> None:
        self.done = 0
        self.total: int | None = None


def _number(name: str, *, integer: bool = False, **bounds: Any) -> Any:
    """An argparse type: a finite number in range, checked by the library's validator."""
    from tiledseg._validation import validate_range

    def parse(text: str) -> int | float:
        try:
            value = int(text) if integer else float(text)
        except ValueError:
            kind = "an integer" if integer else "a number"
            raise argparse.ArgumentTypeError(f"expected {kind}, got {text!r}") from None
        try:
            return validate_range(value, name, integer=integer, **bounds)
        except (TypeError, ValueError) as error:
            raise argparse.ArgumentTypeError(str(error)) from None

    parse.__name__ = name  # argparse names the type in some messages
    return parse


def _text(name: str) -> Any:
    def parse(text: str) -> str:
        if not text.strip():
            raise argparse.ArgumentTypeError(f"{name} must not be empty. Received: {text!r}")
        return text

    return parse


def _tile(value: str) -> int | str:
    if value == "auto":
        return value
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer or 'auto', got {value!r}") from None
    return _number("tile", integer=True, low=1)(str(number))


def _inference_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("inference (defaults come from the model's metadata)")
    group.add_argument(
        "--model",
        type=_text("--model"),
        help="a .keras file, model directory, zoo id, org/name or hf://org/name[@revision]",
    )
    group.add_argument(
        "--revision", type=_text("--revision"), help="Hub revision to pin (branch, tag or commit)"
    )
    group.add_argument("--tile", type=_tile, help="tile side in px at the model's scale, or auto")
    group.add_argument(
        "--overlap",
        type=_number("overlap", low=0, high=1, high_inclusive=False),
        help="fraction of a tile shared with a neighbour, in [0, 1)",
    )
    group.add_argument("--blend", choices=BLEND_MODES)
    group.add_argument(
        "--batch-size", type=_number("batch_size", integer=True, low=1), help="tiles per call"
    )
    group.add_argument(
        "--threshold",
        type=_number("threshold", low=0, high=1),
        help="probability threshold for the mask, in [0, 1]",
    )
    group.add_argument(
        "--scale",
        type=_number("scale", low=0, low_inclusive=False),
        help="resize factor before inference, > 0 (default: the model's pixel scale)",
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
        help="network arithmetic (default: the model's metadata, else auto: bfloat16 on a GPU "
        "and on a CPU that computes it natively with OpenVINO, else float32)",
    )
    group.add_argument(
        "--runtime",
        choices=RUNTIMES,
        help="what runs the network (default auto: Keras on a GPU, OpenVINO on a CPU where "
        "installed)",
    )
    _serving_flags(parser)


def _serving_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("TensorFlow Serving (instead of --model)")
    group.add_argument(
        "--serving",
        metavar="URL",
        type=_text("--serving"),
        help="grpc://HOST:8500/MODEL_NAME[?version=N|label=L&signature=serving_default]; "
        "grpcs:// for TLS",
    )
    group.add_argument(
        "--meta",
        metavar="PATH_OR_ID",
        type=_text("--meta"),
        help="the served model's tiledseg.json, its export folder, or its zoo id",
    )
    group.add_argument(
        "--max-in-flight",
        type=_number("max_in_flight", integer=True, low=1),
        help="batches sent at once (default 4)",
    )
    group.add_argument(
        "--deadline",
        type=_number("deadline", low=0, low_inclusive=False),
        help="seconds allowed per call (default 60)",
    )
    group.add_argument(
        "--max-message-mb",
        type=_number("max_message_mb", integer=True, low=1),
        help="gRPC message size limit (default 512)",
    )
    group.add_argument(
        "--ca-file",
        metavar="PEM",
        type=_text("--ca-file"),
        help="for a grpcs:// URL: the certificate authority that signed the server's "
        "certificate (default: the system's roots)",
    )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tiledseg", description="Overlapped tiled segmentation of very large images."
    )
    commands = parser.add_subparsers(dest="command", required=True)

    predict = commands.add_parser("predict", help="write masks for images")
    _inference_flags(predict)
    predict.add_argument(
        "--out",
        required=True,
        type=Path,
        help="output folder (created; inputs there are never written over, and existing "
        "files only with --overwrite)",
    )
    predict.add_argument(
        "--overwrite",
        action="store_true",
        help="replace output files left in --out by an earlier run",
    )
    predict.add_argument("--overlay", action="store_true", help="also write <name>_overlay.jpg")
    predict.add_argument("--probs", action="store_true", help="also write <name>_prob.png")
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


# What only a TF Serving model uses, by flag (argparse dest, flag).
_SERVING_ONLY = (("max_in_flight", "--max-in-flight"), ("deadline", "--deadline"),
                 ("max_message_mb", "--max-message-mb"), ("ca_file", "--ca-file"),
                 ("meta", "--meta"))  # fmt: skip
# What whole-image inference (--no-tiling: one Keras pass, no flips) has no use for.
_TILING_ONLY = (("tile", "--tile"), ("overlap", "--overlap"), ("blend", "--blend"),
                ("batch_size", "--batch-size"), ("runtime", "--runtime"))  # fmt: skip


def _check_flags(args: argparse.Namespace) -> None:
    """Refuse flag combinations that would be ignored, and bad limits, before any work."""
    from tiledseg.io import DEFAULT_MAX_PIXELS, MAX_PIXELS_ENV
    from tiledseg.limits import (
        DEFAULT_MAX_SCALED_PIXELS,
        DEFAULT_MAX_TILES,
        MAX_SCALED_PIXELS_ENV,
        MAX_TILES_ENV,
        env_limit,
    )

    if (args.model is None) == (args.serving is None):
        raise _UserError("Give one of --model (run locally) or --serving (TF Serving URL)")
    if args.serving is None:
        given = [flag for dest, flag in _SERVING_ONLY if getattr(args, dest) is not None]
        if given:
            verb = "goes" if len(given) == 1 else "go"
            raise _UserError(
                f"{', '.join(given)} {verb} with --serving (a TF Serving model); a --model "
                "runs locally and carries its metadata. Drop it, or use --serving."
            )
    if args.no_tiling:
        given = [flag for dest, flag in _TILING_ONLY if getattr(args, dest) is not None]
        given += ["--tta"] if args.tta == "flips" else []
        if given:
            raise _UserError(
                f"--no-tiling runs the whole image in one Keras pass without test-time flips, "
                f"so {', '.join(given)} would be ignored. Drop them, or drop --no-tiling."
            )
    limits = (
        (MAX_PIXELS_ENV, DEFAULT_MAX_PIXELS, 120_000_000),
        (MAX_SCALED_PIXELS_ENV, DEFAULT_MAX_SCALED_PIXELS, 120_000_000),
        (MAX_TILES_ENV, DEFAULT_MAX_TILES, 100_000),
    )
    for variable, default, example in limits:
        try:
            env_limit(variable, default, example=example)
        except ValueError as error:
            raise _UserError(str(error)) from None


class _Runner:
    """The model and settings shared by every image of one command."""

    def __init__(self, args: argparse.Namespace):
        from tiledseg.quiet import import_keras_quietly

        _check_flags(args)  # again, for callers that did not check first
        import_keras_quietly()  # before anything imports it: no TensorFlow start-up notices
        from tiledseg import TiledPredictor

        if args.serving is None:
            self.model = _load_with_warnings(args)
        else:
            self.model = _serving_model(args)
        meta = getattr(self.model, "meta", None)
        # Only a --scale asked for can be far from the model's own; a bare .keras file has none.
        self.trained_scale = getattr(meta, "scale", None) if args.scale is not None else None
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
                "runtime": args.runtime,
            }.items()
            if value is not None
        }
        try:
            self.predictor = TiledPredictor(self.model, **self.settings)
        except (ValueError, TypeError) as error:  # e.g. --overlap 1.5
            raise _UserError(str(error)) from None

    def warn_about_scale(self, image, name: str) -> None:
        """One warning line where --scale shows the image far from the size the model knows."""
        from tiledseg.scale import RELIABLE_SCALE_RATIOS, scale_ratio

        if self.trained_scale is None:
            return
        height, width = image.shape[:2]
        ratio = scale_ratio(self.settings["scale"], self.trained_scale, height, width)
        low, high = RELIABLE_SCALE_RATIOS
        if not low <= ratio <= high:
            print(
                f"warning: {name}: --scale {self.settings['scale']:g} shows this {width}x{height} "
                f"image to the network at {ratio:.2g}x the size the model was trained at "
                f"({'larger' if ratio > 1 else 'smaller'}): expect a poor mask; leave --scale "
                "out to use the model's own scale",
                file=sys.stderr,
            )

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
        """The settings that ran (for the report): whole-image runs record no tiling settings."""
        settings = self.predictor.resolved_settings()
        if self.no_tiling:
            from tiledseg import TiledPredictor

            keras_run = TiledPredictor(self.model, **{**self.settings, "runtime": "keras"})
            whole = keras_run.resolved_settings()
            settings = {key: whole[key] for key in ("scale", "precision", "runtime", "frame")}
            settings["tta"] = None
        return {
            **settings,
            "threshold": self.threshold,
            "postprocess": self.postprocess,
            "tiling": not self.no_tiling,
        }


# The flag that sets each default a bare .keras file would run with.
_DEFAULT_FLAGS = {
    "scale": "scale",
    "tile": "tile",
    "overlap": "overlap",
    "blend": "blend",
    "threshold": "threshold",
    "tta": "tta",
    "postprocess": None,
}


def _load_with_warnings(args: argparse.Namespace) -> Any:
    """Load the model; a file without tiledseg.json gets one warning naming the defaults used."""
    import warnings

    from tiledseg.loading import DefaultSettingsWarning, load_model

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DefaultSettingsWarning)
        model = load_model(args.model, revision=args.revision)
    for warning in caught:
        if not isinstance(warning.message, DefaultSettingsWarning):
            warnings.warn_explicit(
                warning.message, warning.category, warning.filename, warning.lineno
            )
            continue
        defaults = warning.message.defaults
        unset = [
            f"{key} {value}" + (f" (--{flag.replace('_', '-')})" if flag else "")
            for key, value in defaults.items()
            if (flag := _DEFAULT_FLAGS.get(key)) is None or getattr(args, flag, None) is None
        ]
        print(
            f"warning: {args.model} has no tiledseg.json; defaults used: {', '.join(unset)}. "
            "They may not be the settings it was trained with.",
            file=sys.stderr,
        )
    return model


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
        "ca_file": args.ca_file,
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


def _report_stale(removed: list[Path]) -> None:
    if removed:
        folders = sorted({str(path.parent) for path in removed})
        print(
            f"removed {len(removed)} stale temporary file(s) left by an interrupted run in "
            f"{', '.join(folders)}",
            file=sys.stderr,
        )


def _predict(args: argparse.Namespace, progress: _Progress) -> int:
    from tiledseg import io as tio
    from tiledseg.output_plan import plan_outputs, prepare_folder

    _check_flags(args)
    try:
        images = tio.list_images(args.inputs)
    except FileNotFoundError as error:
        raise _UserError(str(error)) from None
    if not images:
        raise _UserError(
            f"No images found in {args.inputs}; supported: {', '.join(tio.IMAGE_EXTENSIONS)}"
        )
    # Every output name is settled, and the folder proved writable, before the model loads.
    plan = plan_outputs(
        images, args.out, overlay=args.overlay, probabilities=args.probs, overwrite=args.overwrite
    )
    _report_stale(prepare_folder(args.out, "--out"))
    progress.total = len(plan)
    runner = _Runner(args)
    failures = 0
    for number, outputs in enumerate(plan, 1):
        path = outputs.source
        label = f"[{number}/{len(plan)}] {path.name}"
        started = time.perf_counter()
        try:
            image = _read_image(path)
            runner.warn_about_scale(image, path.name)
            probabilities = runner.probabilities(image, label)
        except _image_errors() as error:  # unreadable, or too much work at the model's scale
            failures += 1
            print(f"skipped {path}: {error}", file=sys.stderr)
            continue
        mask = runner.mask(probabilities)
        _write_outputs(outputs, image, mask, probabilities)
        progress.done = number
        seconds = time.perf_counter() - started
        print(
            f"{path.name}: {image.shape[1]}x{image.shape[0]} px, "
            f"{100 * float(mask.mean()):.1f}% foreground, {seconds:.2f} s -> {outputs.mask}",
            flush=True,  # one line per finished image, also through a pipe (`| tee log`)
        )
    if failures:
        print(f"{failures} of {len(plan)} file(s) skipped; see the messages above", file=sys.stderr)
        return EXIT_USER
    return EXIT_OK


def _read_image(path: Path):
    """``read_image``, its notes about this image printed as one ``warning:`` line each."""
    from tiledseg import io as tio

    image, notes = tio.read_image_and_notes(path)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    return image


def _write_outputs(outputs, image, mask, probabilities) -> None:
    """Encode one image's outputs, then write them together: all of them or none."""
    from tiledseg import io as tio
    from tiledseg import viz
    from tiledseg.atomic import atomic_write_group

    files = {outputs.mask: tio.encode_mask(mask)}
    if outputs.overlay is not None:
        files[outputs.overlay] = tio.encode_image(viz.overlay(image, mask), ".jpg")
    if outputs.probabilities is not None:
        files[outputs.probabilities] = tio.encode_probabilities(_first(probabilities))
    atomic_write_group(files)


def _first(probabilities):
    return probabilities if probabilities.ndim == 2 else probabilities[..., 0]


def _evaluate(args: argparse.Namespace, progress: _Progress) -> int:
    from tiledseg import io as tio
    from tiledseg import metrics
    from tiledseg.output_plan import check_writable_file

    _check_flags(args)
    for folder, flag in ((args.images, "--images"), (args.masks, "--masks")):
        if not folder.is_dir():
            raise _UserError(f"{flag} {folder} is not a directory")
    images = tio.list_images([args.images])
    pairs, unpaired = tio.pair_images_and_masks(images, args.masks)
    # Images that share a stem (a.jpg beside a.png) are named by file name in the report.
    stems = Counter(path.stem for path in images)
    name = {path: path.name if stems[path.stem] > 1 else path.stem for path in images}
    if args.json is not None and args.csv is not None and args.json.resolve() == args.csv.resolve():
        raise _UserError(f"--json and --csv are the same file {args.json}; give two paths")
    inputs = [*images, *(mask for _, mask in pairs)]
    for path, flag in ((args.json, "--json"), (args.csv, "--csv")):
        if path is not None:
            _report_stale(check_writable_file(path, flag, inputs))
    skipped: list[dict[str, str]] = []
    for path in unpaired:
        reason = f"no mask {path.stem}.png or {path.stem}_segmentation.png in {args.masks}"
        skipped.append({"image": name[path], "reason": reason})
        print(f"skipped {path.name}: {reason}", file=sys.stderr)
    if not pairs:
        raise _UserError(f"No image in {args.images} has a mask in {args.masks}")
    progress.total = len(pairs)
    runner = _Runner(args)
    rows: list[dict[str, Any]] = []
    for number, (image_path, mask_path) in enumerate(pairs, 1):
        label = f"[{number}/{len(pairs)}] {image_path.name}"
        started = time.perf_counter()
        try:
            image = _read_image(image_path)
            truth = tio.read_mask(mask_path, shape=image.shape[:2])
            runner.warn_about_scale(image, image_path.name)
            mask = runner.mask(runner.probabilities(image, label))
        except _image_errors() as error:
            skipped.append({"image": name[image_path], "reason": str(error)})
            print(f"skipped {image_path.name}: {error}", file=sys.stderr)
            continue
        finally:
            progress.done = number
        seconds = time.perf_counter() - started
        rows.append(
            {
                "image": name[image_path],
                **metrics.segmentation_metrics(mask, truth),
                "seconds": seconds,
            }
        )
    if not rows:
        raise _UserError("No image could be evaluated; see the messages above")
    names = [*metrics.METRIC_NAMES, "seconds"]
    scores = [{k: r[k] for k in names} for r in rows]
    mean, counts = metrics.mean_metrics(scores), metrics.metric_counts(scores)
    found = len(rows) + len(skipped)
    print(_table(rows, names, mean, found, counts))
    report = {
        "images": rows,
        "mean": mean,
        # The means are over `evaluated` of `found` images; `skipped` says why the others are not.
        "counts": {"found": found, "evaluated": len(rows), "skipped": len(skipped)},
        # Per metric, the images its mean covers (hd95 is undefined where a mask is empty).
        "metric_counts": counts,
        "skipped": skipped,
        "settings": {"model": args.model or args.serving, **runner.describe()},
    }
    if args.json:
        from tiledseg.atomic import atomic_write_bytes

        atomic_write_bytes(args.json, json.dumps(_finite(report), indent=2).encode())
    if args.csv:
        from tiledseg.atomic import atomic_write_bytes

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["image", *names, "skipped"])
        writer.writeheader()
        writer.writerows(rows)
        # Skipped images are rows too, their metrics empty and the reason in the last column.
        writer.writerows({"image": s["image"], "skipped": s["reason"]} for s in skipped)
        atomic_write_bytes(args.csv, buffer.getvalue().encode())
    return EXIT_USER if skipped else EXIT_OK


def _finite(value: Any) -> Any:
    """JSON has no NaN: write undefined metrics (e.g. hd95 with an empty mask) as null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _table(
    rows: list[dict[str, Any]],
    names: list[str],
    mean: dict[str, float],
    found: int,
    counts: dict[str, int] | None = None,
) -> str:
    width = max(8, *(len(str(r["image"])) for r in rows))
    header = f"{'image':<{width}} " + " ".join(f"{n[:9]:>9}" for n in names)
    lines = [header, "-" * len(header)]
    for row in [*rows, {"image": "mean", **mean}]:
        lines.append(
            f"{row['image']:<{width}} "
            + " ".join(f"{row.get(n, float('nan')):>9.4f}" for n in names)
        )
    skipped = found - len(rows)
    note = f"; {skipped} skipped (see the messages above)" if skipped else ""
    fewer = [f"{n} over {c}" for n, c in (counts or {}).items() if c < len(rows)]
    if fewer:  # e.g. hd95, undefined where the prediction or the truth is empty
        note += f" ({', '.join(fewer)}: undefined on the others)"
    lines.append(f"means over {len(rows)} of {found} images{note}")
    return "\n".join(lines)


def _image_errors() -> tuple[type[BaseException], ...]:
    """Errors of one image (skip it, go on); others, such as a lost server, stop the run."""
    from tiledseg.errors import IMAGE_ERRORS

    return IMAGE_ERRORS


def _user_errors() -> tuple[type[BaseException], ...]:
    from tiledseg.errors import TiledsegError

    return (TiledsegError, FileNotFoundError)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    for stream in (sys.stdout, sys.stderr):
        # A file name that is not valid UTF-8 is printed escaped, not a crash mid-run.
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    command = _predict if args.command == "predict" else _evaluate
    progress = _Progress()
    try:
        return command(args, progress)
    except (_UserError, *_user_errors()) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USER
    except KeyboardInterrupt:
        # Writes are atomic and grouped per image, so what is on disk is whole.
        done = (
            f"after {progress.done} of {progress.total} images"
            if progress.total
            else "before any image"
        )
        start = "\n" if sys.stderr.isatty() else ""  # off the ^C echo and any progress bar
        print(
            f"{start}interrupted {done}; every output written is complete and no temporary "
            "file was left",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
