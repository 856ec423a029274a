"""The training run directory: file names, creation, and atomic writes.

Layout (see notes/CONTRACTS.md)::

    runs/<name>-<timestamp>/
      model.keras      best checkpoint by validation dice (float32, uncompiled, safe_mode)
      config.toml      the resolved experiment config
      history.csv      epoch, loss, dice, iou, val_loss, val_dice, val_iou, lr
      eval.json        full-resolution evaluation through the tiledseg engine
      inference.json   inference defaults chosen on the validation split
      selection.json   every candidate setting tried on the validation split, with its score
      dataset.json     dataset name, licence, citation, splits
      previews/epoch_XXX.png   image | truth | prediction panels
      resume/last.keras, resume/state.json   the latest compiled state, for --resume
"""

from __future__ import annotations

import datetime
import json
import math
import os
from pathlib import Path
from typing import Any

import keras

__all__ = [
    "CONFIG_FILE",
    "DATASET_FILE",
    "EVAL_FILE",
    "HISTORY_COLUMNS",
    "HISTORY_FILE",
    "INFERENCE_FILE",
    "MODEL_FILE",
    "PREVIEWS_DIR",
    "RESUME_MODEL_FILE",
    "RESUME_STATE_FILE",
    "SELECTION_FILE",
    "new_run_dir",
    "read_json",
    "save_model_atomic",
    "write_json",
]

MODEL_FILE = "model.keras"
CONFIG_FILE = "config.toml"
HISTORY_FILE = "history.csv"
EVAL_FILE = "eval.json"
INFERENCE_FILE = "inference.json"
DATASET_FILE = "dataset.json"
SELECTION_FILE = "selection.json"
PREVIEWS_DIR = "previews"
RESUME_MODEL_FILE = "resume/last.keras"
RESUME_STATE_FILE = "resume/state.json"
HISTORY_COLUMNS = ("epoch", "loss", "dice", "iou", "val_loss", "val_dice", "val_iou", "lr")


def new_run_dir(runs_dir: str | os.PathLike, name: str) -> Path:
    """Create ``runs_dir/<name>-<YYYYmmdd-HHMMSS>`` (with a suffix if that exists)."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    base = Path(runs_dir) / f"{name}-{stamp}"
    candidate, counter = base, 1
    while candidate.exists():
        counter += 1
        candidate = base.with_name(f"{base.name}-{counter}")
    candidate.mkdir(parents=True)
    (candidate / PREVIEWS_DIR).mkdir()
    return candidate


def _finite(value: Any) -> Any:
    """JSON has no NaN: write None instead (e.g. hd95 where a mask is empty)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def write_json(path: str | os.PathLike, data: Any) -> Path:
    """Write JSON atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(json.dumps(_finite(data), indent=2, allow_nan=False) + "\n", "utf-8")
    os.replace(temporary, path)
    return path


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file."""
    return json.loads(Path(path).read_text(encoding="utf-8"))


def save_model_atomic(model: keras.Model, path: str | os.PathLike) -> Path:
    """Save a ``.keras`` file atomically, so a crash never leaves a half-written checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.tmp.keras")
    model.save(temporary)
    os.replace(temporary, path)
    return path
