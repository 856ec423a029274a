"""Read the seeds' ``train_eval_infer.config`` INI files into a tiledseg experiment config.

The seeds (the TensorflowSlightlyFlexibleUNet projects) describe an experiment in one INI file
whose values are Python literals. :func:`read_seed_config` maps what has an equivalent here onto
the keys of :data:`training.config.DEFAULTS`; ``load_config(seed_config=...)`` merges it.
"""

from __future__ import annotations

import ast
import configparser
import math
import os
from pathlib import Path
from typing import Any

__all__ = ["read_seed_config"]

_SEED_MODELS = {"TensorflowUNet": "unet", "TensorflowAttentionUNet": "attention_unet"}
_SEED_LOSSES = {
    "bce_dice_loss": "bce_dice",
    "dice_loss": "dice",
    "iou_loss": "jaccard",
    "binary_crossentropy": "bce",
}


def _seed_value(text: str) -> Any:
    """Seeds' INI values are Python literals (``(7,7)``, ``[60, 120]``, ``"x"``, ``True``)."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip().strip('"').strip("'")


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, (list, tuple)) else value


def _seed_paths(section: dict[str, Any], base: Path) -> dict[str, str] | None:
    if "image_datapath" not in section or "mask_datapath" not in section:
        return None
    return {
        "images": str((base / section["image_datapath"]).resolve()),
        "masks": str((base / section["mask_datapath"]).resolve()),
    }


def _seed_augment(augmentor: dict, deformation: dict, distortion: dict) -> dict[str, Any]:
    augment: dict[str, Any] = {
        "hflip": bool(augmentor.get("hflip", True)),
        "vflip": bool(augmentor.get("vflip", True)),
    }
    if augmentor.get("rotation", True):
        angles = augmentor.get("angles", [90, 180, 270]) or []
        if all(int(angle) % 90 == 0 for angle in angles):
            augment["rot90"] = True
        else:  # any angle: free rotation
            augment.update(rot90=True, rotate=180.0, affine_p=0.5)
    shrinks = augmentor.get("shrinks") or []
    if shrinks:
        augment.update(scale=[float(min(shrinks)), 1.0], affine_p=0.5)
    shears = augmentor.get("shears") or []
    if shears:
        augment.update(shear=math.degrees(math.atan(max(shears))), affine_p=0.5)
    if augmentor.get("deformation", False):
        alpha = deformation.get("alpha", deformation.get("alpah", 1300))
        sigma = deformation.get("sigmoid", deformation.get("sigmoids", 8))
        augment.update(
            elastic_p=0.3, elastic_alpha=float(_first(alpha)), elastic_sigma=float(_first(sigma))
        )
    if augmentor.get("distortion", False):
        # The seeds' smooth field moves pixels by up to size * side; a 5-step grid distortion
        # moves its lines by about limit / 5 of the side, hence limit = 5 * size.
        size = max(distortion.get("distortions", [0.02]) or [0.02])
        augment.update(grid_p=0.3, grid_steps=5, grid_limit=min(0.9, 5 * float(size)))
    return augment


def read_seed_config(path: str | os.PathLike) -> dict[str, Any]:
    """Translate a seeds' ``train_eval_infer.config`` INI file into a config fragment.

    Reads sections ``[model] [train] [dataset] [augmentor] [deformation] [distortion]`` (and
    ``[eval]``, ``[test]``, ``[tiledinfer]`` where present). Paths are resolved against the INI
    file's folder, as the seeds ran from there. Seeds' settings with no equivalent here
    (``datasetclass``, ``color_order``, ``model_dir``, ``metrics``...) are ignored. The seeds
    resize every image to ``image_width`` x ``image_height``; here that size is the crop size.

    Args:
        path: the INI file.

    Returns:
        A dict to merge over :data:`DEFAULTS` (``load_config(seed_config=path)`` does).

    Raises:
        FileNotFoundError: the file is missing.
        ValueError: the file is not an INI file or lacks ``[model]``.

    Example:
        >>> read_seed_config("train_eval_infer.config")["model"]["num_levels"]
        8
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Seed config {path} does not exist.")
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except configparser.Error as error:
        raise ValueError(f"Seed config {path} is not a valid INI file: {error}") from error
    sections = {
        name: {key: _seed_value(value) for key, value in parser.items(name)}
        for name in parser.sections()
    }
    if "model" not in sections:
        raise ValueError(f"Seed config {path} has no [model] section; is it a seeds' config?")
    model, train = sections["model"], sections.get("train", {})
    base = path.parent

    config: dict[str, Any] = {"name": path.parent.name or "seed-experiment"}
    model_out: dict[str, Any] = {"architecture": _SEED_MODELS.get(model.get("model"), "unet")}
    for seed_key, key in (
        ("image_channels", "input_channels"),
        ("num_classes", "num_classes"),
        ("base_filters", "base_filters"),
        ("num_layers", "num_levels"),
    ):
        if seed_key in model:
            model_out[key] = int(model[seed_key])
    if "base_kernels" in model:
        model_out["base_kernel"] = int(_first(model["base_kernels"]))
    if "dilation" in model:
        model_out["dilation"] = int(_first(model["dilation"]))
    if "dropout_rate" in model:
        model_out["dropout"] = float(model["dropout_rate"])
    if "normalization" in model:
        model_out["batch_norm"] = bool(model["normalization"])
    config["model"] = model_out

    data: dict[str, Any] = {}
    sizes = [int(model[k]) for k in ("image_width", "image_height") if k in model]
    if sizes:
        data["crop_size"] = min(sizes)
    for section_name, key in (("train", "train"), ("eval", "valid")):
        paths = _seed_paths(sections.get(section_name, {}), base)
        if paths:
            data[key] = paths
    config["data"] = data
    test_paths = _seed_paths(sections.get("test", {}), base)
    if test_paths:
        config["eval"] = {"split": test_paths}

    train_out: dict[str, Any] = {}
    for seed_key, key, kind in (
        ("epochs", "epochs", int),
        ("batch_size", "batch_size", int),
        ("steps_per_epoch", "steps_per_epoch", int),
        ("patience", "early_stopping_patience", int),
        ("reducer_factor", "plateau_factor", float),
        ("reducer_patience", "plateau_patience", int),
    ):
        if seed_key in train:
            train_out[key] = kind(train[seed_key])
    for seed_key, key in (("learning_rate", "learning_rate"), ("clipvalue", "clipvalue")):
        if seed_key in model:
            train_out[key] = float(model[seed_key])
    if "loss" in model:
        train_out["loss"] = _SEED_LOSSES.get(str(model["loss"]), "bce_dice")
    if "learning_rate_reducer" in train:
        train_out["schedule"] = "plateau" if train["learning_rate_reducer"] else "constant"
    config["train"] = train_out

    infer_flag = train.get("epoch_change_infer", False) or train.get(
        "epoch_change_tiledinfer", False
    )
    config["preview"] = {"count": int(train.get("num_infer_images", 1)) if infer_flag else 0}
    tiled = sections.get("tiledinfer", {})
    if "overlapping" in tiled and sizes:
        tile = min(sizes)
        config["inference"] = {"tile": [tile], "overlap": [min(0.9, tiled["overlapping"] / tile)]}

    if "augmentor" in sections:
        config["augment"] = _seed_augment(
            sections["augmentor"], sections.get("deformation", {}), sections.get("distortion", {})
        )
    return config
