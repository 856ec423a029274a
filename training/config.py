"""Experiment configuration: one TOML file, command-line overrides, and the seeds' INI files.

A config is a nested dict shaped like :data:`DEFAULTS`; every key a file or ``--set`` gives must
exist there (the error suggests the closest spelling). ``augment`` is checked by
:class:`training.augment.Augmenter`; ``dataset`` and ``train.loss_options`` are free-form.

Data paths (``data.train``, ``data.valid``, ``eval.split``) are a folder with ``images/`` and
``masks/``, a ``{images, masks}`` table, or a CSV of pairs, relative to ``data.root``, which is
itself relative to the current directory.
"""

from __future__ import annotations

import ast
import configparser
import copy
import difflib
import json
import math
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from training.augment import AUGMENT_DEFAULTS

__all__ = [
    "DEFAULTS",
    "apply_override",
    "load_config",
    "read_seed_config",
    "to_toml",
    "write_config",
]

DEFAULTS: dict[str, Any] = {
    "name": "experiment",
    "seed": 1337,
    "model": {
        "architecture": "unet",
        "input_channels": 3,
        "num_classes": 1,
        "base_filters": 16,
        "num_levels": 5,
        "base_kernel": 3,
        "dilation": 1,
        "dropout": 0.0,
        "batch_norm": True,
        "activation": "relu",
        # backbone_unet only
        "encoder": "mobilenet_v2",
        "encoder_weights": "none",
        "decoder_filters": [160, 96, 64, 32, 16],
        "freeze_encoder": False,
    },
    "data": {
        "root": "../shared/data",
        "train": "",
        "valid": "",
        "scale": {"mode": "factor", "value": 1.0},
        "crop_size": 256,
        "crops_per_image": 1,
        "cache": True,
        "workers": 2,
        "max_queue_size": 10,
    },
    "augment": {},
    "train": {
        "epochs": 50,
        "batch_size": 8,
        "steps_per_epoch": 0,
        "loss": "bce_dice",
        "loss_options": {},
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "weight_decay": 0.0,
        "clipvalue": 0.0,
        "schedule": "plateau",
        "plateau_factor": 0.5,
        "plateau_patience": 5,
        "min_learning_rate": 1e-6,
        "early_stopping_patience": 15,
        "mixed_precision": "off",
        "time_limit_minutes": 0.0,
        "verbose": 1,
    },
    "preview": {"count": 3},
    "inference": {
        "tile": [512],
        "overlap": [0.25],
        "blend": "gaussian",
        "tta": ["none"],
        "threshold": [0.5],
        "postprocess": [{}],
        "select_metric": "dice",
        "classes": [{"name": "foreground", "color": [255, 64, 64]}],
    },
    "eval": {"split": ""},
    "dataset": {},
}

# Tables whose keys are not fixed here.
_FREE_TABLES = {("augment",), ("dataset",), ("train", "loss_options")}
# Keys that take a path string or an {images, masks} table.
_PATH_KEYS = {("data", "train"), ("data", "valid"), ("eval", "split")}


def _suggest(key: str, allowed: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(allowed), n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def _check(config: dict[str, Any], defaults: dict[str, Any], path: tuple[str, ...]) -> None:
    for key, value in config.items():
        where = ".".join((*path, key))
        if key not in defaults:
            raise ValueError(
                f"Unknown config key {where!r}.{_suggest(key, defaults)} Allowed keys here: "
                f"{sorted(defaults)}. Received: {where}={value!r}"
            )
        default = defaults[key]
        if (*path, key) in _FREE_TABLES:
            if not isinstance(value, dict):
                raise TypeError(f"`{where}` must be a table. Received: {where}={value!r}")
            continue
        if (*path, key) in _PATH_KEYS:
            if not isinstance(value, (str, dict)):
                raise TypeError(
                    f"`{where}` must be a path or a {{images, masks}} table. "
                    f"Received: {where}={value!r}"
                )
            continue
        if isinstance(default, dict) and default and key != "scale":
            if not isinstance(value, dict):
                raise TypeError(f"`{where}` must be a table. Received: {where}={value!r}")
            _check(value, default, (*path, key))
        elif not _same_kind(value, default):
            raise TypeError(f"`{where}` must be {_kind(default)}. Received: {where}={value!r}")


def _same_kind(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if isinstance(default, int):
        # The dilation schedule may also be a list of rates.
        return (isinstance(value, int) and not isinstance(value, bool)) or isinstance(value, list)
    return isinstance(value, type(default))


def _kind(default: Any) -> str:
    return {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "a list",
        dict: "a table",
    }.get(type(default), type(default).__name__)


def _merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict) and key != "scale":
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _parse_value(text: str) -> Any:
    """A ``--set`` value: TOML syntax (numbers, booleans, lists, quoted strings), else a string."""
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def apply_override(config: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Return ``config`` with one ``a.b=c`` assignment applied (the value in TOML syntax).

    Example:
        >>> apply_override(DEFAULTS, "train.epochs=5")["train"]["epochs"]
        5
    """
    if "=" not in assignment:
        raise ValueError(f"`--set` takes key=value, e.g. train.epochs=5. Received: {assignment!r}")
    dotted, text = assignment.split("=", 1)
    keys = dotted.strip().split(".")
    update: dict[str, Any] = {keys[-1]: _parse_value(text.strip())}
    for key in reversed(keys[:-1]):
        update = {key: update}
    return _merge(config, update)


def load_config(
    path: str | os.PathLike | None = None,
    *,
    overrides: Iterable[str] = (),
    seed_config: str | os.PathLike | None = None,
) -> dict[str, Any]:
    """Build an experiment config: defaults, then a seeds' INI file, the TOML file, overrides.

    Args:
        path: TOML experiment file, or None.
        overrides: ``"a.b=value"`` strings (``--set``), applied last.
        seed_config: a seeds' ``train_eval_infer.config`` INI file (``--from-seed-config``).

    Returns:
        The resolved config dict.

    Raises:
        FileNotFoundError: a file is missing.
        ValueError, TypeError: an unknown key or a value of the wrong kind.

    Example:
        >>> config = load_config("training/configs/isic2017.toml", overrides=["train.epochs=2"])
        >>> config["train"]["epochs"]
        2
    """
    config = copy.deepcopy(DEFAULTS)
    if seed_config is not None:
        config = _merge(config, read_seed_config(seed_config))
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Config file {path} does not exist.")
        try:
            config = _merge(config, tomllib.loads(path.read_text(encoding="utf-8")))
        except tomllib.TOMLDecodeError as error:
            raise ValueError(f"Config file {path} is not valid TOML: {error}") from error
    for assignment in overrides:
        config = apply_override(config, assignment)
    _check(config, DEFAULTS, ())
    config["augment"] = {**AUGMENT_DEFAULTS, **config["augment"]}
    return config


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"Cannot write a non-finite number to TOML. Received: {value}")
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items())
        return "{" + (f" {items} " if items else "") + "}"
    raise TypeError(f"Cannot write {type(value).__name__} to TOML. Received: {value!r}")


def _toml_key(key: str) -> str:
    bare = key.replace("_", "").replace("-", "").isalnum()
    return key if bare else json.dumps(key)


def to_toml(config: dict[str, Any], _prefix: str = "") -> str:
    """Serialise a config dict to TOML (tables for nested dicts, inline tables in lists).

    Example:
        >>> tomllib.loads(to_toml(DEFAULTS)) == DEFAULTS
        True
    """
    lines = []
    tables = []
    for key, value in config.items():
        if isinstance(value, dict) and key != "scale":
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    text = "\n".join(lines)
    for key, value in tables:
        name = f"{_prefix}{_toml_key(key)}"
        body = to_toml(value, f"{name}.")
        text += f"\n\n[{name}]\n{body}" if body.strip() else f"\n\n[{name}]"
    return text.strip("\n") + "\n" if not _prefix else text.strip("\n")


def write_config(config: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write a config as TOML atomically (temporary file, then rename)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(to_toml(config), encoding="utf-8")
    os.replace(temporary, path)
    return path


# ---- the seeds' train_eval_infer.config ---------------------------------------------------

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
