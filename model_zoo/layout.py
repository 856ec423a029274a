"""File names of a zoo model repository and of a training run directory, in one place.

A zoo repository (on the Hub, in the HF cache, or bundled in ``model_zoo/bundled/ID``) is Keras'
own Hub layout plus our files, so ``keras.saving.load_model("hf://org/name")`` works with no
tiledseg installed::

    config.json         Keras model config            (written by keras.saving.save_model)
    metadata.json       Keras version and save date   (written by keras.saving.save_model)
    model.weights.h5    weights                       (written by keras.saving.save_model)
    tiledseg.json       inference metadata, versioned (tiledseg.contract.ModelMeta)
    README.md           model card with the Hub's YAML front matter
    history.csv         training curves
    selection.json      how the inference settings were chosen: every candidate tried on the
                        validation split and its score (optional; written by training)
    golden/input.npy    a small input and the model's output on it, to detect numeric drift
    golden/output.npy
    examples/           optional images whose licence allows redistribution
"""

from __future__ import annotations

from pathlib import Path

# The contract's file names are the core's (tiledseg.contract); the zoo's own are defined here.
from tiledseg.contract import CONFIG_FILE, META_FILE, SAVEDMODEL_META_FILE

__all__ = [
    "CARD_FILE",
    "CONFIG_FILE",
    "EXAMPLES_DIR",
    "GOLDEN_INPUT_FILE",
    "GOLDEN_OUTPUT_FILE",
    "HISTORY_FILE",
    "HUB_ALLOW_PATTERNS",
    "KERAS_METADATA_FILE",
    "META_FILE",
    "PACKAGE_DIR",
    "REPO_REQUIRED_FILES",
    "RUN_CHECKPOINT_FILE",
    "RUN_CONFIG_FILE",
    "RUN_DATASET_FILE",
    "RUN_EVAL_FILE",
    "RUN_EXAMPLES_DIR",
    "RUN_HISTORY_FILE",
    "RUN_INFERENCE_FILE",
    "RUN_REQUIRED_FILES",
    "RUN_SELECTION_FILE",
    "SAVEDMODEL_META_FILE",
    "SELECTION_FILE",
    "SERVING_INPUT_NAME",
    "SERVING_OUTPUT_NAME",
    "SERVING_SIGNATURE",
    "WEIGHTS_FILE",
]

# --- A zoo repository -------------------------------------------------------------------------
KERAS_METADATA_FILE = "metadata.json"
WEIGHTS_FILE = "model.weights.h5"
CARD_FILE = "README.md"
HISTORY_FILE = "history.csv"
SELECTION_FILE = "selection.json"
GOLDEN_INPUT_FILE = "golden/input.npy"
GOLDEN_OUTPUT_FILE = "golden/output.npy"
EXAMPLES_DIR = "examples"

REPO_REQUIRED_FILES = (
    CONFIG_FILE,
    KERAS_METADATA_FILE,
    WEIGHTS_FILE,
    META_FILE,
    CARD_FILE,
    HISTORY_FILE,
)
# What `pull` downloads: the layout and nothing else a repo may carry (e.g. old checkpoints).
HUB_ALLOW_PATTERNS = [*REPO_REQUIRED_FILES, SELECTION_FILE, "golden/*", f"{EXAMPLES_DIR}/*"]

# --- A training run directory (written by training, read here, never modified) ----------------
RUN_CHECKPOINT_FILE = "model.keras"
RUN_CONFIG_FILE = "config.toml"
RUN_HISTORY_FILE = "history.csv"
RUN_EVAL_FILE = "eval.json"
RUN_INFERENCE_FILE = "inference.json"
RUN_DATASET_FILE = "dataset.json"
RUN_SELECTION_FILE = "selection.json"  # optional: runs before the selection table lack it
RUN_EXAMPLES_DIR = "examples"
RUN_REQUIRED_FILES = (
    RUN_CHECKPOINT_FILE,
    RUN_CONFIG_FILE,
    RUN_HISTORY_FILE,
    RUN_EVAL_FILE,
    RUN_INFERENCE_FILE,
    RUN_DATASET_FILE,
)

# --- A TF Serving export ---------------------------------------------------------------------
SERVING_SIGNATURE = "serving_default"
SERVING_INPUT_NAME = "images"
SERVING_OUTPUT_NAME = "probabilities"

# --- This package ----------------------------------------------------------------------------
PACKAGE_DIR = Path(__file__).resolve().parent
