"""The metadata of a training run directory, read from its inference, dataset and eval files.

Used by staging (which writes it as ``tiledseg.json``) and by the loader (a run directory
loaded directly has no ``tiledseg.json``).
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from model_zoo.errors import StagingError
from model_zoo.layout import RUN_CONFIG_FILE, RUN_DATASET_FILE, RUN_EVAL_FILE, RUN_INFERENCE_FILE
from tiledseg.contract import ModelMeta, utc_timestamp

__all__ = ["meta_from_run"]

_INFERENCE_KEYS = (
    "scale",
    "tile",
    "overlap",
    "blend",
    "threshold",
    "tta",
    "precision",
    "postprocess",
    "frame",
    "downsampling",
    "input_channels",
    "normalization",
    "classes",
)


def meta_from_run(
    run_dir: str | Path,
    model: Any,
    *,
    name: str = "",
    description: str = "",
    require_eval: bool = True,
) -> ModelMeta:
    """Build the metadata of a training run from its inference, dataset and eval files.

    Args:
        run_dir: str or Path, the training run directory.
        model: keras.Model, the run's checkpoint (for parameter count and fallbacks).
        name: str, the model's id.
        description: str, one sentence; a default is made from the dataset name.
        require_eval: bool, default True: ``eval.json`` and ``dataset.json`` must exist.

    Returns:
        ModelMeta.

    Raises:
        StagingError: a file is missing, not JSON, or has fields the schema rejects.
    """
    import keras

    import tiledseg
    from tiledseg.tiling import downsampling_factor

    run_dir = Path(run_dir)
    inference = _read_json(run_dir / RUN_INFERENCE_FILE)
    unknown = sorted(set(inference) - set(_INFERENCE_KEYS))
    if unknown:
        raise StagingError(
            f"{run_dir / RUN_INFERENCE_FILE} has unknown keys {unknown}; "
            f"expected keys among {list(_INFERENCE_KEYS)}."
        )
    optional = not require_eval
    dataset = _read_json(run_dir / RUN_DATASET_FILE, optional=optional) or {}
    evaluation = _read_json(run_dir / RUN_EVAL_FILE, optional=optional)
    metrics = []
    if evaluation is not None:
        missing = [key for key in ("split", "settings", "mean") if key not in evaluation]
        if missing:
            raise StagingError(f"{run_dir / RUN_EVAL_FILE} lacks {missing}.")
        metrics.append(
            {
                "split": evaluation["split"],
                "settings": evaluation["settings"],
                "values": evaluation["mean"],
                "num_images": len(evaluation.get("images", [])),
            }
        )
    classes = inference.get("classes") or ModelMeta().classes
    fields = {key: inference[key] for key in _INFERENCE_KEYS if key in inference}
    # The run's value wins: a walk over layers can over-count parallel strided paths.
    fields.setdefault("downsampling", int(downsampling_factor(model)))
    try:
        return ModelMeta(
            **fields,
            name=name,
            description=description or _default_description(dataset),
            task="binary-segmentation" if len(classes) == 1 else "multiclass-segmentation",
            architecture=_architecture(run_dir, model),
            dataset=dataset,
            metrics=metrics,
            tiledseg_version=getattr(tiledseg, "__version__", ""),
            keras_version=keras.__version__,
            date=utc_timestamp(),
            parameter_count=int(model.count_params()),
        )
    except (TypeError, ValueError) as error:
        raise StagingError(f"The run directory {run_dir} gives invalid metadata: {error}") from None


def _read_json(path: Path, *, optional: bool = False) -> Any:
    if optional and not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise StagingError(f"Missing {path} (written by training).") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise StagingError(f"Cannot read {path} as JSON: {error}") from None


def _architecture(run_dir: Path, model: Any) -> str:
    try:
        config = tomllib.loads((run_dir / RUN_CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise StagingError(f"Cannot read {run_dir / RUN_CONFIG_FILE}: {error}") from None
    section = config.get("model", {})
    if isinstance(section, dict):
        for key in ("architecture", "arch", "name"):
            if isinstance(section.get(key), str):
                return section[key]
    return str(model.name)


def _default_description(dataset: dict[str, Any]) -> str:
    name = dataset.get("name")
    return f"Segmentation model trained on {name}." if name else "Segmentation model."
