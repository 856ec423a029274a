"""Shared test set-up: quiet TensorFlow, the real data folder, small real models."""

from __future__ import annotations

import os
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# For tests of the engine's arithmetic against Keras itself: `auto` on a CPU with AMX or
# AVX512-BF16 is OpenVINO in bfloat16, which moves probabilities by up to ~0.05.
KERAS_F32 = {"runtime": "keras", "precision": "float32"}


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real data set beside the checkout (../shared/data); skip only where it is absent."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{SHARED_DATA} is missing; CI must have ../shared/data beside the repo")
        pytest.skip(f"real data not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


def build_tiny_unet(levels: int = 2, filters: int = 4, classes: int = 1, seed: int = 0):
    """A small fully convolutional UNet from built-in layers, with deterministic weights."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    skips = []
    for _ in range(levels):
        skips.append(x)
        x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    for _ in range(levels):
        x = keras.layers.UpSampling2D()(x)
        x = keras.layers.Concatenate()([x, skips.pop()])
        x = keras.layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
    activation = "sigmoid" if classes == 1 else "softmax"
    outputs = keras.layers.Conv2D(classes, 1, activation=activation)(x)
    return keras.Model(inputs, outputs, name="tiny_unet")


@pytest.fixture(scope="session")
def tiny_unet():
    return build_tiny_unet()


@pytest.fixture(scope="module")
def zoo_root(tmp_path_factory):
    """A zoo with one small bundled model, and the app's environment pointed at it."""
    from test_app_support import app_environment, make_bundle

    root = tmp_path_factory.mktemp("zoo")
    make_bundle(root)
    with app_environment(root):
        yield root
