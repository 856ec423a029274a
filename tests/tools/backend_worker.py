"""Run the engine or a tiny training on another Keras backend, for tests/test_backends.py.

    KERAS_BACKEND=jax python tests/tools/backend_worker.py predict OUT.npz IMAGE.npy MODEL_ID...
    KERAS_BACKEND=jax python tests/tools/backend_worker.py train RUN_ROOT OVERRIDES.json IMAGE.npy

``predict`` writes each bundled model's tiled probabilities (float32 and bfloat16) for the image;
``train`` trains with ``--distribute`` semantics (DataParallel on JAX), then writes the best
checkpoint's probabilities for the image beside the run directory as ``probabilities.npy``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import keras
import numpy as np


def predict(out: Path, image_path: Path, model_ids: list[str]) -> None:
    from model_zoo import load
    from tiledseg import predict_tiled

    image = np.load(image_path)
    results = {"backend": np.array(keras.backend.backend())}
    for model_id in model_ids:
        zoo = load(model_id)
        for precision in ("float32", "bfloat16"):
            # runtime="keras": this backend's own kernels (auto hands CPU tiles to OpenVINO).
            results[f"{model_id}/{precision}"] = predict_tiled(
                image, zoo, tta="none", precision=precision, runtime="keras"
            )
    np.savez(out, **results)


def train(run_root: Path, overrides_path: Path, image_path: Path) -> None:
    from tiledseg import predict_tiled
    from training import train as training
    from training.config import load_config

    config = load_config(overrides=json.loads(overrides_path.read_text()))
    run_dir = training.train(config, runs_dir=run_root, distribute=True)
    model = keras.saving.load_model(run_dir / "model.keras", safe_mode=True)
    image = np.load(image_path)
    np.save(
        run_dir / "probabilities.npy",
        predict_tiled(image, model, tile=64, tta="none", runtime="keras", precision="float32"),
    )
    print(run_dir)


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "predict":
        predict(Path(arguments[0]), Path(arguments[1]), arguments[2:])
    elif command == "train":
        train(Path(arguments[0]), Path(arguments[1]), Path(arguments[2]))
    else:
        sys.exit(f"unknown command {command!r}: use predict or train")
