"""Turn a training run directory into a zoo repository folder, and check such a folder.

The run directory is only read. Staging writes a fresh folder (Keras' Hub layout plus
``tiledseg.json``, the card, the history, the selection table where the run has one, and a golden
input/output pair); validation reloads it
exactly as a user would before anything is uploaded or bundled.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from model_zoo.card import check_card, render_card
from model_zoo.errors import ModelLoadError, StagingError
from model_zoo.layout import (
    CARD_FILE,
    EXAMPLES_DIR,
    GOLDEN_INPUT_FILE,
    GOLDEN_OUTPUT_FILE,
    HISTORY_FILE,
    META_FILE,
    REPO_REQUIRED_FILES,
    RUN_CHECKPOINT_FILE,
    RUN_CONFIG_FILE,
    RUN_EXAMPLES_DIR,
    RUN_HISTORY_FILE,
    RUN_REQUIRED_FILES,
    RUN_SELECTION_FILE,
    SELECTION_FILE,
)
from model_zoo.loader import load_folder, load_keras_model
from model_zoo.run_meta import meta_from_run
from tiledseg.contract import ModelMeta

__all__ = ["GOLDEN_TOLERANCE", "meta_from_run", "read_selection", "stage_run", "validate_staged"]

GOLDEN_TOLERANCE = 1e-4
_GOLDEN_SIDE = 64
_GOLDEN_SEED = 20170


def stage_run(
    run_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    model_id: str,
    repo_id: str,
    description: str = "",
    license: str = "apache-2.0",
) -> Path:
    """Write the zoo repository folder of a training run; the run directory is not modified.

    Args:
        run_dir: str or Path, a training run directory (``model.keras``, ``config.toml``,
            ``history.csv``, ``eval.json``, ``inference.json``, ``dataset.json``).
        out_dir: str, Path or None: an absent or empty folder to write; None makes a new
            temporary folder (kept, so it can be inspected or uploaded).
        model_id: str, the model's id recorded in ``tiledseg.json``.
        repo_id: str, ``ORG/NAME`` used in the card's loading snippets.
        description: str, one sentence for listings and the card.
        license: str, the Hub licence id of the weights.

    Returns:
        Path of the staged folder. Run :func:`validate_staged` on it before using it.

    Raises:
        StagingError: the run directory is incomplete or invalid, or ``out_dir`` is not empty.

    Example:
        >>> folder = stage_run("runs/unet-isic2017-20250101", model_id="unet-isic2017",
        ...                    repo_id="tiledseg/unet-isic2017")  # doctest: +SKIP
    """
    import keras

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise StagingError(f"Not a training run directory: {run_dir} does not exist.")
    missing = [name for name in RUN_REQUIRED_FILES if not (run_dir / name).is_file()]
    if missing:
        raise StagingError(
            f"{run_dir} is not a complete training run directory: missing {missing}. "
            f"A run directory holds {list(RUN_REQUIRED_FILES)} (written by training)."
        )
    selection = read_selection(run_dir / RUN_SELECTION_FILE)
    out = _prepare_out_dir(out_dir, model_id)
    try:
        model = load_keras_model(run_dir / RUN_CHECKPOINT_FILE)
    except ModelLoadError as error:
        raise StagingError(f"The run's checkpoint cannot be published: {error}") from None
    meta = meta_from_run(run_dir, model, name=model_id, description=description)

    keras.saving.save_model(model, out, zipped=False)
    meta.write(out / META_FILE)
    shutil.copyfile(run_dir / RUN_HISTORY_FILE, out / HISTORY_FILE)
    config_text = (run_dir / RUN_CONFIG_FILE).read_text(encoding="utf-8")
    card = render_card(
        meta,
        repo_id=repo_id,
        license=license,
        training_config=config_text,
        selection=selection,
    )
    (out / CARD_FILE).write_text(card, encoding="utf-8")
    if selection is not None:
        shutil.copyfile(run_dir / RUN_SELECTION_FILE, out / SELECTION_FILE)
    _write_golden(model, meta, out)
    examples = run_dir / RUN_EXAMPLES_DIR
    if examples.is_dir():
        # Training puts only images whose licence allows redistribution here.
        shutil.copytree(examples, out / EXAMPLES_DIR)
    return out


def validate_staged(folder: str | Path) -> Any:
    """Check a staged folder the way a user would load it; nothing is uploaded.

    Checks: every layout file is present; ``tiledseg.json`` passes the schema and has
    metrics; the card's front matter parses with the required keys; the model loads with
    ``safe_mode=True`` and reproduces the golden output to :data:`GOLDEN_TOLERANCE`.

    Args:
        folder: str or Path.

    Returns:
        ZooModel, the model as loaded from the folder.

    Raises:
        StagingError: with every problem found, and what to fix.
    """
    folder = Path(folder)
    missing = [name for name in REPO_REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise StagingError(f"The staged folder {folder} lacks {missing}.")
    try:
        check_card(folder / CARD_FILE)
        zoo_model = load_folder(folder)
    except ModelLoadError as error:
        raise StagingError(f"The staged folder {folder} is invalid: {error}") from None
    if not zoo_model.meta.metrics:
        raise StagingError(
            f"{folder / META_FILE} has no metrics: publish only evaluated models "
            "(training writes eval.json)."
        )
    _check_golden(zoo_model.model, folder)
    read_selection(folder / SELECTION_FILE)
    return zoo_model


def read_selection(path: str | Path) -> dict[str, Any] | None:
    """Read and check a selection table (``selection.json``); None where there is no such file.

    Training writes it when it chooses the inference settings: the validation ``split``, the
    ``metric``, the ``margin`` and every candidate setting with its mean score. Runs from before
    the table existed have none, and stage without it.

    Raises:
        StagingError: the file is not JSON or not such a table, naming what is wrong.
    """
    path = Path(path)
    if not path.is_file():
        return None
    redo = (
        "rechoose with `python -m training.train --resume RUN` (same train.epochs), "
        "or remove the file"
    )
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StagingError(f"{path} is not readable JSON ({error}): {redo}.") from None
    candidates = data.get("candidates") if isinstance(data, dict) else None
    problems = []
    if not isinstance(data, dict):
        problems.append(f"it holds a {type(data).__name__}, not an object")
    else:
        for key in ("split", "metric"):
            if not isinstance(data.get(key), str) or not data[key]:
                problems.append(f"{key!r} must be text (got {data.get(key)!r})")
        if not isinstance(candidates, list) or not candidates:
            problems.append("'candidates' must be a non-empty list")
        elif not all(isinstance(row, dict) for row in candidates):
            problems.append("every candidate must be an object")
        elif isinstance(data.get("metric"), str) and not any(
            isinstance(row.get(data["metric"]), (int, float)) for row in candidates
        ):
            problems.append(f"no candidate has a {data['metric']!r} score")
    if problems:
        raise StagingError(f"{path} is not a selection table: {'; '.join(problems)}; {redo}.")
    return data


def _prepare_out_dir(out_dir: str | Path | None, model_id: str) -> Path:
    if out_dir is None:
        return Path(tempfile.mkdtemp(prefix=f"tiledseg-stage-{model_id}-"))
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise StagingError(f"The stage folder {out} must be absent or empty.")
    out.mkdir(parents=True, exist_ok=True)
    return out


def _golden_input(meta: ModelMeta) -> np.ndarray:
    # A multiple of the downsampling factor, so any UNet accepts it unpadded.
    side = -(-max(_GOLDEN_SIDE, meta.downsampling) // meta.downsampling) * meta.downsampling
    rng = np.random.default_rng(_GOLDEN_SEED)
    return rng.integers(0, 256, size=(1, side, side, meta.input_channels), dtype=np.uint8)


def _write_golden(model: Any, meta: ModelMeta, out: Path) -> None:
    golden_in = _golden_input(meta)
    golden_out = _forward(model, golden_in)
    (out / GOLDEN_INPUT_FILE).parent.mkdir(parents=True, exist_ok=True)
    np.save(out / GOLDEN_INPUT_FILE, golden_in)
    np.save(out / GOLDEN_OUTPUT_FILE, golden_out)


def _forward(model: Any, images: np.ndarray) -> np.ndarray:
    # A direct call, not predict(): one small batch, and no tf.function retracing per shape.
    import keras

    outputs = model(keras.ops.convert_to_tensor(images.astype("float32")), training=False)
    return np.asarray(keras.ops.convert_to_numpy(outputs), dtype="float32")


def _check_golden(model: Any, folder: Path) -> None:
    paths = (folder / GOLDEN_INPUT_FILE, folder / GOLDEN_OUTPUT_FILE)
    if not all(p.is_file() for p in paths):
        return  # optional in the layout; staging always writes it
    golden_in, golden_out = (np.load(p, allow_pickle=False) for p in paths)
    actual = _forward(model, golden_in)
    if actual.shape != golden_out.shape:
        raise StagingError(
            f"The model's output shape {actual.shape} differs from the golden output's "
            f"{golden_out.shape} in {folder}."
        )
    error = float(np.max(np.abs(actual - golden_out)))
    if error > GOLDEN_TOLERANCE:
        raise StagingError(
            f"The model in {folder} does not reproduce its golden output (max difference "
            f"{error:.2e} > {GOLDEN_TOLERANCE}): the weights or the numerics changed."
        )
