"""Train a zoo model on the device machine (a GPU with JAX, no TensorFlow) and check it here.

The device machine has JAX and PyTorch but neither TensorFlow nor a network; a command runs at
most 10 minutes, 64 MiB of working tree travels to it and at most 8 files of 16 MiB come back.
So the work is split in three commands, from the repository root:

    python -m training.device prepare training/configs/isic2017.toml [--slim]   # here
    bash training/device_train.sh training/configs/isic2017.toml [--minutes 7]  # on the device
    python -m training.device check DEVICE_FILES/unet-isic2017-....tar           # here

``prepare`` copies the config's train and valid splits into ``.data/`` and the wheels the device
lacks into ``.whl/`` (both git-ignored; the ``run`` call carries them), and checks what would
travel against 64 MiB. ``--slim`` removes the bundled model weights and screenshots from the
working tree for the call (the ISIC images alone are 41 MiB); ``check`` puts them back from git.
``device_train.sh`` installs the wheels and runs ``train`` below with ``KERAS_BACKEND=jax``:
training within a time limit, with data-loading workers on all cores but two; it then predicts two
validation crops (kept in the run as ``backend_check.npz``) and packs the run directory without
its resume state into ``$OUT/<run>.tar``, the newest previews that fit into
``<run>-previews.tar``. ``check`` unpacks it into ``runs/``, loads the checkpoint under
TensorFlow with ``safe_mode=True``, predicts the same crops and fails unless they agree to
1e-4, then evaluates at full size on the config's eval split and writes
``eval.json``, so that ``python -m model_zoo bundle`` can take the run.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tiledseg.errors import TiledsegError
from training.config import load_config, write_config
from training.data import load_pairs, split_label, split_source
from training.run_dir import (
    CONFIG_FILE,
    EVAL_FILE,
    INFERENCE_FILE,
    MODEL_FILE,
    PREVIEWS_DIR,
    read_json,
    write_json,
)

__all__ = [
    "BACKEND_CHECK_FILE",
    "DEVICE_FILE",
    "SAME_TO",
    "check",
    "prepare",
    "remove_slim_paths",
    "restore_slim_paths",
    "train_on_device",
]

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / ".data"
WHEELS_DIR = REPO_ROOT / ".whl"
TRAVEL_LIMIT = 64 * 2**20
RETURN_LIMIT = 16 * 2**20
# Tracked files the training call does not need, removed by `prepare --slim`, restored by `check`.
SLIM_PATHS = ("model_zoo/bundled", "docs/screenshots")
BACKEND_CHECK_FILE = "backend_check.npz"
PREVIEWS_SUFFIX = "-previews.tar"
DEVICE_FILE = "device.json"
SAME_TO = 1e-4
_CHECK_CROP = 512
_CHECK_IMAGES = 2


def _splits(config: dict[str, Any]) -> list[str]:
    """The data folders (relative to ``data.root``) the training run reads."""
    folders = []
    for key in ("train", "valid"):
        value = config["data"][key]
        parts = [value["images"], value["masks"]] if isinstance(value, dict) else [value]
        for part in parts:
            if Path(part).is_absolute() or Path(part).suffix.lower() == ".csv":
                raise ValueError(
                    f"`data.{key}` must be a folder (or images/masks folders) under data.root "
                    f"for the device: a CSV or an absolute path cannot travel. Received: {part!r}"
                )
            folders.append(part)
    return folders


def _travelling_bytes(data_dir: Path, wheels_dir: Path, repo: Path = REPO_ROOT) -> dict[str, int]:
    """What a device call would send: the tracked and untracked-not-ignored files, and the carry."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    files = [repo / os.fsdecode(name) for name in listed if name]
    tree = sum(path.stat().st_size for path in files if path.is_file())

    def folder(path: Path) -> int:
        return sum(item.stat().st_size for item in path.rglob("*") if item.is_file())

    return {"tree": tree, "data": folder(data_dir), "wheels": folder(wheels_dir)}


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def remove_slim_paths(repo: Path = REPO_ROOT) -> list[str]:
    """Remove the bundled weights and screenshots from the working tree (git keeps them)."""
    removed = []
    for top in SLIM_PATHS:
        for path in sorted((repo / top).rglob("*")):
            if path.is_file() and path.suffix in (".h5", ".png", ".keras"):
                path.unlink()
                removed.append(str(path.relative_to(repo)))
    return removed


def restore_slim_paths(repo: Path = REPO_ROOT) -> list[str]:
    """Check out again what :func:`remove_slim_paths` removed; returns the paths restored."""
    missing = subprocess.run(
        ["git", "ls-files", "--deleted", "--", *SLIM_PATHS],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if missing:
        subprocess.run(["git", "checkout", "--", *missing], cwd=repo, check=True)
        print(f"Restored {len(missing)} file(s) removed by `prepare --slim`.")
    return missing


def prepare(
    config_path: str | os.PathLike,
    *,
    overrides: Sequence[str] = (),
    data_dir: str | os.PathLike = DATA_DIR,
    wheels: bool = True,
    slim: bool = False,
) -> dict[str, int]:
    """Copy a config's training data and the device's missing wheels where a call carries them.

    Args:
        config_path: the experiment TOML file.
        overrides: ``--set`` assignments, as for training.
        data_dir: where the data goes (default ``.data``), keeping the layout under data.root.
        wheels: fetch the wheels (``benchmarks/fetch_wheels.sh train``) into ``.whl``.
        slim: remove the bundled weights and screenshots from the working tree if the call
            would otherwise exceed 64 MiB.

    Returns:
        The bytes that would travel: ``{"tree", "data", "wheels"}``.

    Raises:
        ValueError: a split is not a folder under data.root, or the call would exceed 64 MiB.
        FileNotFoundError: a split is missing.
    """
    config = load_config(config_path, overrides=overrides)
    root = Path(config["data"]["root"])
    data_dir = Path(data_dir)
    folders = _splits(config)
    for folder in folders:
        if not (root / folder).is_dir():
            raise FileNotFoundError(f"Data folder {root / folder} does not exist.")
    if data_dir.exists():
        shutil.rmtree(data_dir)  # only this config's data travels
    for folder in folders:
        shutil.copytree(root / folder, data_dir / folder, dirs_exist_ok=True)
    if wheels:
        fetch = REPO_ROOT / "benchmarks" / "fetch_wheels.sh"
        subprocess.run(["bash", str(fetch), "train"], check=True)
    sizes = _travelling_bytes(data_dir, WHEELS_DIR)
    if sum(sizes.values()) > TRAVEL_LIMIT and slim:
        removed = remove_slim_paths()
        print(
            f"Removed {len(removed)} tracked file(s) for the call; `check` restores them, as "
            f"does `git checkout -- {' '.join(SLIM_PATHS)}`."
        )
        sizes = _travelling_bytes(data_dir, WHEELS_DIR)
    total = sum(sizes.values())
    summary = ", ".join(f"{key} {_mib(value)}" for key, value in sizes.items())
    if total > TRAVEL_LIMIT:
        hint = "" if slim else " Add --slim to leave the bundled weights and screenshots behind."
        raise ValueError(
            f"A device call would send {_mib(total)} ({summary}); at most 64 MiB travels.{hint}"
        )
    print(f"Ready: {_mib(total)} would travel ({summary}).")
    return sizes


def train_on_device(
    config_path: str | os.PathLike,
    *,
    overrides: Sequence[str] = (),
    minutes: float = 7.0,
    workers: int | None = None,
    out: str | os.PathLike,
    data_dir: str | os.PathLike = DATA_DIR,
) -> Path:
    """Train from ``data_dir`` within ``minutes``, record a backend check, pack the run.

    The eval split is not carried, so the run evaluates on its valid split on the device and
    ``check`` evaluates on the eval split on the other machine. Returns the run's ``.tar``; the
    newest previews that fit 16 MiB go beside it into ``<run>-previews.tar``.
    """
    import keras

    from training import train as training

    original = load_config(config_path, overrides=overrides)
    workers = workers or max(1, (os.cpu_count() or 2) - 2)
    device_overrides = [
        f"data.root={json.dumps(str(data_dir))}",
        f"data.workers={workers}",
        f"train.time_limit_minutes={minutes}",
        'eval.split=""',
    ]
    # The device's own settings come last: data.root given for `prepare` names the source here.
    config = load_config(config_path, overrides=[*overrides, *device_overrides])
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as runs:
        run_dir = training.train(config, runs_dir=runs)
        model = keras.saving.load_model(run_dir / MODEL_FILE, safe_mode=True)
        valid = load_pairs(split_source(Path(data_dir), original["data"]["valid"]))
        _write_backend_check(run_dir, model, valid[:_CHECK_IMAGES])
        write_json(
            run_dir / DEVICE_FILE,
            {
                "backend": keras.backend.backend(),
                "keras": keras.__version__,
                "accelerator": _accelerator(),
                "wall_seconds": round(time.perf_counter() - started, 1),
                "data_root": original["data"]["root"],
                "eval_split": original["eval"]["split"],
                "workers": workers,
                "minutes": minutes,
            },
        )
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        archive = out / f"{run_dir.name}.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(run_dir, arcname=run_dir.name, filter=_run_files)
        _pack_previews(run_dir, out / f"{run_dir.name}{PREVIEWS_SUFFIX}")
    print(f"Packed {archive} ({_mib(archive.stat().st_size)}).")
    return archive


def _run_files(member: tarfile.TarInfo) -> tarfile.TarInfo | None:
    # Left out: the optimizer state for resuming (three times the checkpoint, too big to come
    # back) and the previews, which go into their own archive.
    parts = Path(member.name).parts
    return None if len(parts) > 1 and parts[1] in ("resume", PREVIEWS_DIR) else member


def _pack_previews(run_dir: Path, archive: Path) -> None:
    """The newest epochs' preview panels that fit in one file that can come back."""
    budget = RETURN_LIMIT - 2**20  # room for the tar headers
    chosen = []
    for path in sorted((run_dir / PREVIEWS_DIR).glob("*.png"), reverse=True):
        if path.stat().st_size > budget:
            break
        budget -= path.stat().st_size
        chosen.append(path)
    if chosen:
        with tarfile.open(archive, "w") as tar:
            for path in sorted(chosen):
                tar.add(path, arcname=f"{run_dir.name}/{PREVIEWS_DIR}/{path.name}")


def _accelerator() -> str:
    import keras

    if keras.backend.backend() == "jax":
        import jax

        return ", ".join(sorted({device.device_kind for device in jax.devices()}))
    return "cpu"


def _check_predictor(model, inference: dict[str, Any]):
    """The engine as the backend check runs it on both machines: the run's settings, float32
    ("auto" would be bfloat16 on the GPU)."""
    from training.evaluate import tiled_predictor

    return tiled_predictor(model, inference, precision="float32")


def _write_backend_check(run_dir: Path, model, pairs) -> None:
    from tiledseg.io import read_image

    predictor = _check_predictor(model, read_json(run_dir / INFERENCE_FILE))
    arrays = {}
    for index, (image_path, _) in enumerate(pairs):
        crop = np.ascontiguousarray(read_image(image_path)[:_CHECK_CROP, :_CHECK_CROP])
        arrays[f"image_{index}"] = crop
        arrays[f"probabilities_{index}"] = predictor(crop)
    np.savez_compressed(run_dir / BACKEND_CHECK_FILE, **arrays)


def check(
    archive: str | os.PathLike,
    *,
    runs_dir: str | os.PathLike = "runs",
    data_root: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Unpack a device run, check it on this backend to 1e-4, evaluate it on its eval split.

    Args:
        archive: the ``.tar`` from ``train_on_device``.
        runs_dir: where the run directory is unpacked (it must not exist yet).
        data_root: the data root here (default: the config's own ``data.root``).

    Returns:
        ``{"run_dir", "max_difference", "eval"}`` (``eval`` is None without an eval split).

    Raises:
        ValueError: the predictions differ by more than 1e-4, or the archive is not a run.
        FileExistsError: the run directory exists already.
    """
    import keras

    import training.losses  # noqa: F401  registers the custom loss and metrics for loading
    from training.evaluate import evaluate_pairs

    restore_slim_paths()
    run_dir = _unpack(Path(archive), Path(runs_dir))
    device = read_json(run_dir / DEVICE_FILE)
    model = keras.saving.load_model(run_dir / MODEL_FILE, safe_mode=True)
    inference = read_json(run_dir / INFERENCE_FILE)
    predictor = _check_predictor(model, inference)
    worst = 0.0
    with np.load(run_dir / BACKEND_CHECK_FILE) as saved:
        for index in range(len(saved.files) // 2):
            ours = predictor(saved[f"image_{index}"])
            theirs = saved[f"probabilities_{index}"]
            if ours.shape != theirs.shape:
                raise ValueError(f"Crop {index}: shape {ours.shape} here, {theirs.shape} there.")
            worst = max(worst, float(np.abs(ours - theirs).max()))
    here = keras.backend.backend()
    print(f"{device['backend']} vs {here}: max |difference| {worst:.2e} (allowed {SAME_TO:g})")
    if worst > SAME_TO:
        raise ValueError(
            f"The checkpoint predicts differently on {here} than on {device['backend']}: "
            f"max |difference| {worst:.2e} > {SAME_TO:g}."
        )

    # The run's config names the device's data folder; point it back at this machine's data.
    config = load_config(run_dir / CONFIG_FILE)
    root = Path(data_root or device["data_root"])
    config["data"]["root"] = str(root)
    config["eval"]["split"] = device["eval_split"]
    write_config(config, run_dir / CONFIG_FILE)
    report = None
    if device["eval_split"]:
        pairs = load_pairs(split_source(root.resolve(), device["eval_split"]))
        report = evaluate_pairs(
            model,
            pairs,
            inference,
            split=split_label(device["eval_split"]),
            progress=lambda done, total, stem: print(f"  [{done}/{total}] {stem}", flush=True),
        )
        write_json(run_dir / EVAL_FILE, report)
        means = ", ".join(f"{key} {report['mean'][key]:.4f}" for key in ("dice", "jaccard"))
        print(f"{report['split']} ({len(pairs)} images): {means}")
    print(f"Run directory: {run_dir}\nNext: python -m model_zoo bundle {run_dir} --id NAME")
    return {"run_dir": run_dir, "max_difference": worst, "eval": report}


def _unpack(archive: Path, runs_dir: Path) -> Path:
    if not archive.is_file():
        raise FileNotFoundError(f"Archive {archive} does not exist.")
    with tarfile.open(archive) as tar:
        names = {Path(member.name).parts[0] for member in tar.getmembers()}
        if len(names) != 1:
            raise ValueError(f"{archive} holds {sorted(names)}, not one run directory.")
        run_dir = runs_dir / names.pop()
        if run_dir.exists():
            raise FileExistsError(f"{run_dir} exists already; move it away or pick --runs-dir.")
        runs_dir.mkdir(parents=True, exist_ok=True)
        tar.extractall(runs_dir, filter="data")
    for required in (MODEL_FILE, INFERENCE_FILE, DEVICE_FILE, BACKEND_CHECK_FILE):
        if not (run_dir / required).is_file():
            raise ValueError(f"{archive} is not a device run: it lacks {required}.")
    previews = archive.with_name(f"{run_dir.name}{PREVIEWS_SUFFIX}")
    if previews.is_file():
        with tarfile.open(previews) as tar:
            members = [
                m
                for m in tar.getmembers()
                if Path(m.name).parts[:2] == (run_dir.name, PREVIEWS_DIR)
            ]
            tar.extractall(runs_dir, members=members, filter="data")
    return run_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m training.device",
        description="Train a zoo model on the device machine and check it here.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    prep = commands.add_parser("prepare", help="copy data and wheels for a device call (here)")
    prep.add_argument("config")
    prep.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    prep.add_argument("--data-dir", default=str(DATA_DIR))
    prep.add_argument("--no-wheels", action="store_true", help="do not fetch wheels")
    prep.add_argument("--slim", action="store_true", help="leave bundled weights behind")
    run = commands.add_parser("train", help="train and pack the run (on the device)")
    run.add_argument("config")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    run.add_argument("--minutes", type=float, default=7.0, help="training time limit")
    run.add_argument("--workers", type=int, help="data-loading workers (default: cores - 2)")
    run.add_argument("--data-dir", default=str(DATA_DIR))
    run.add_argument("--out", default=os.environ.get("OUT", "device_out"))
    verify = commands.add_parser("check", help="check and evaluate a device run (here)")
    verify.add_argument("archive")
    verify.add_argument("--runs-dir", default="runs")
    verify.add_argument("--data-root", help="the data root here (default: the config's)")
    args = parser.parse_args(argv)
    try:
        if args.command == "prepare":
            prepare(
                args.config,
                overrides=args.set,
                data_dir=args.data_dir,
                wheels=not args.no_wheels,
                slim=args.slim,
            )
        elif args.command == "train":
            train_on_device(
                args.config,
                overrides=args.set,
                minutes=args.minutes,
                workers=args.workers,
                out=args.out,
                data_dir=args.data_dir,
            )
        else:
            check(args.archive, runs_dir=args.runs_dir, data_root=args.data_root)
    except (TiledsegError, OSError, ValueError, TypeError, subprocess.CalledProcessError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
