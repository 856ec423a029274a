"""Keras callbacks of a training run: checkpoints, history, time limit, previews."""

from __future__ import annotations

import csv
import io
import math
import os
import time
from pathlib import Path
from typing import Any

import cv2
import keras
import numpy as np

from training.run_dir import (
    HISTORY_COLUMNS,
    RESUME_MODEL_FILE,
    RESUME_STATE_FILE,
    save_model_atomic,
    write_json,
)

__all__ = [
    "BestCheckpoint",
    "HistoryWriter",
    "Previews",
    "ResumeState",
    "TimeLimit",
    "current_learning_rate",
    "float32_copy",
]


def _float32_policies(config: Any) -> Any:
    """The config with every layer's dtype policy set to float32 (weights are float32 anyway)."""
    if isinstance(config, dict):
        if config.get("class_name") == "DTypePolicy" and "config" in config:
            return {**config, "config": {**config["config"], "name": "float32"}}
        return {key: _float32_policies(value) for key, value in config.items()}
    if isinstance(config, list):
        return [_float32_policies(item) for item in config]
    return config


def float32_copy(model: keras.Model) -> keras.Model:
    """An uncompiled float32 copy of a functional model with the same weights.

    What gets published: it loads with plain Keras and no custom objects (no compile config,
    so no custom loss or metric), and computes in float32 whatever precision it trained in.
    """
    clone = keras.Model.from_config(_float32_policies(model.get_config()))
    clone.set_weights(model.get_weights())
    return clone


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate now (its schedule's value at the current step)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class BestCheckpoint(keras.callbacks.Callback):
    """Save a float32, uncompiled copy of the model when ``monitor`` improves (higher is better)."""

    def __init__(self, path: Path, monitor: str = "val_dice", best: float = -math.inf):
        super().__init__()
        self.path = Path(path)
        self.monitor = monitor
        self.best = best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        value = (logs or {}).get(self.monitor)
        if value is None:
            raise KeyError(
                f"Metric {self.monitor!r} is missing from the epoch logs ({sorted(logs or {})}); "
                "the run needs validation data and the dice metric."
            )
        if float(value) > self.best:
            print(
                f"\nEpoch {epoch + 1}: {self.monitor} improved to {float(value):.4f}; "
                f"saving {self.path.name}"
            )
            self.best = float(value)
            save_model_atomic(float32_copy(self.model), self.path)


class ResumeState(keras.callbacks.Callback):
    """Save the compiled model (with its optimizer) and the epoch count after every epoch."""

    def __init__(self, run_dir: Path, best: BestCheckpoint):
        super().__init__()
        self.run_dir = Path(run_dir)
        self.best = best

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        save_model_atomic(self.model, self.run_dir / RESUME_MODEL_FILE)
        write_json(
            self.run_dir / RESUME_STATE_FILE,
            {"epoch": epoch + 1, "best": self.best.best, "monitor": self.best.monitor},
        )


class HistoryWriter(keras.callbacks.Callback):
    """Rewrite ``history.csv`` after every epoch (keeping rows of earlier, resumed epochs)."""

    def __init__(self, path: Path, initial_epoch: int = 0):
        super().__init__()
        self.path = Path(path)
        self.rows: list[dict[str, Any]] = []
        if initial_epoch and self.path.is_file():
            with self.path.open(newline="", encoding="utf-8") as handle:
                self.rows = [r for r in csv.DictReader(handle) if int(r["epoch"]) <= initial_epoch]
        self._learning_rate = math.nan

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        # Read before the epoch: ReduceLROnPlateau changes it at the epoch's end.
        self._learning_rate = current_learning_rate(self.model)

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        logs = logs or {}
        row = {"epoch": epoch + 1, "lr": self._learning_rate}
        row.update({key: logs.get(key, math.nan) for key in HISTORY_COLUMNS[1:-1]})
        self.rows.append(row)
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=HISTORY_COLUMNS, lineterminator="\n")
        writer.writeheader()
        for item in self.rows:
            writer.writerow({key: item.get(key, "") for key in HISTORY_COLUMNS})
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        temporary.write_text(buffer.getvalue(), encoding="utf-8")
        os.replace(temporary, self.path)


class TimeLimit(keras.callbacks.Callback):
    """Stop before an epoch would end past ``minutes`` of training (0 = no limit)."""

    def __init__(self, minutes: float):
        super().__init__()
        self.seconds = minutes * 60.0
        self.started = time.monotonic()
        self.epoch_seconds: list[float] = []
        self._epoch_start = self.started

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        self._epoch_start = time.monotonic()

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        now = time.monotonic()
        self.epoch_seconds.append(now - self._epoch_start)
        if self.seconds > 0 and now - self.started + max(self.epoch_seconds) > self.seconds:
            print(f"\nTime limit of {self.seconds / 60:.1f} min reached after epoch {epoch + 1}.")
            self.model.stop_training = True


def _panel_row(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray, height: int):
    width = max(1, round(image.shape[1] * height / image.shape[0]))

    def fit(picture: np.ndarray, interpolation: int) -> np.ndarray:
        return cv2.resize(picture, (width, height), interpolation=interpolation)

    grey = [
        np.repeat(fit(mask.astype(np.uint8) * 255, cv2.INTER_NEAREST)[..., None], 3, axis=2)
        for mask in (truth, predicted)
    ]
    separator = np.full((height, 4, 3), 255, np.uint8)
    return np.concatenate([fit(image, cv2.INTER_AREA), separator, grey[0], separator, grey[1]], 1)


class Previews(keras.callbacks.Callback):
    """After each epoch, predict a few validation images with the tiled engine and save panels.

    ``previews/epoch_XXX.png``: one row per image, image | ground truth | prediction.
    """

    def __init__(
        self,
        folder: Path,
        pairs: list[tuple[Path, Path]],
        *,
        scale: dict,
        tile: int,
        threshold: float = 0.5,
        height: int = 192,
    ):
        super().__init__()
        from training.data import read_pair

        self.folder = Path(folder)
        self.samples = [read_pair(*pair) for pair in pairs]
        self.scale = scale
        self.tile = tile
        self.threshold = threshold
        self.height = height
        self._predictor = None

    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        if not self.samples:
            return
        from tiledseg import PixelScale, TiledPredictor
        from tiledseg.io import write_image

        if self._predictor is None:
            # One predictor for the run: its compiled band functions follow the live weights.
            self._predictor = TiledPredictor(
                self.model, tile=self.tile, scale=PixelScale.from_value(self.scale)
            )
        rows = []
        for image, truth in self.samples:
            probabilities = self._predictor(image)
            if probabilities.ndim == 3:
                predicted = np.argmax(probabilities, axis=2) > 0
            else:
                predicted = probabilities > self.threshold
            rows.append(_panel_row(image, truth, predicted, self.height))
        width = max(row.shape[1] for row in rows)
        padded = [
            np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows
        ]
        write_image(self.folder / f"epoch_{epoch + 1:03d}.png", np.concatenate(padded, axis=0))
