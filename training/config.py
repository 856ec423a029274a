"""Experiment configuration: one TOML file, command-line overrides, and the seeds' INI files.

A config is a nested dict shaped like :data:`DEFAULTS`; every key a file or ``--set`` gives must
exist there (the error suggests the closest spelling). ``augment`` is checked by
:class:`training.augment.Augmenter`; ``dataset`` and ``train.loss_options`` are free-form.

Data paths (``data.train``, ``data.valid``, ``eval.split``) are a folder with ``images/`` and
``masks/``, a ``{images, masks}`` table, or a CSV of pairs, relative to ``data.root``, which is
itself relative to the current directory.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import os
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tiledseg._validation import validate_choice, validate_range
from tiledseg.contract import POSTPROCESS_KEYS
from tiledseg.precision import PRECISIONS
from tiledseg.tiling import BLEND_MODES
from training.augment import AUGMENT_DEFAULTS
from training.seed_config import read_seed_config

__all__ = [
    "DEFAULTS",
    "SELECTION_METRICS",
    "apply_override",
    "check_inference_config",
    "load_config",
    "read_seed_config",  # re-exported from training.seed_config
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
        # efficientnet_unet only
        "variant": "lite0",
        # Width of a full-resolution skip from the pixels into the last decoder stage; 0 is none.
        "input_skip_filters": 0,
        # Start from another checkpoint's weights (fine-tuning): a `.weights.h5` or `.keras` file,
        # or a zoo model folder or run directory holding one, of the same architecture.
        "init_weights": "",
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
        # Black px around each image (and at inference, through the metadata): 0 is none.
        "frame": 0,
        # With a frame, the share of training crops placed on it.
        "frame_p": 0.5,
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
        # efficientnet_unet: train only the decoder for this many epochs, then everything
        "freeze_encoder_epochs": 0,
        "verbose": 1,
    },
    "preview": {"count": 3},
    "inference": {
        "tile": [512],
        "overlap": [0.25],
        "blend": "gaussian",
        "tta": ["none"],
        # "auto" (the engine's choice) or the precision the model must run in (its metadata)
        "precision": "auto",
        "threshold": [0.5],
        "postprocess": [{}],
        "select_metric": "dice",
        # keep the first-listed candidate within this much of the best score (0: the best)
        "select_margin": 0.0,
        "classes": [{"name": "foreground", "color": [255, 64, 64]}],
    },
    "eval": {"split": ""},
    "dataset": {},
}

# Metrics the inference defaults may be chosen by (keys of tiledseg.metrics, higher is better).
SELECTION_METRICS = ("dice", "jaccard", "threshold_jaccard", "sensitivity", "specificity")

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

    A TOML file may start from another: ``extends = "effunet-bloodcell.toml"`` (a path relative
    to the file) takes that file's settings, and this file's keys then replace single values
    (tables merge key by key, lists are replaced whole). Chains are allowed; cycles are not.

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
        config = _merge(config, _read_toml(Path(path), ()))
    for assignment in overrides:
        config = apply_override(config, assignment)
    _check(config, DEFAULTS, ())
    _check_train_numbers(config["train"])
    config["augment"] = {**AUGMENT_DEFAULTS, **config["augment"]}
    return config


# [train] numbers and their ranges: (key, low, low_inclusive, high, integer).
_TRAIN_RANGES = (
    ("epochs", 1, True, None, True),
    ("batch_size", 1, True, None, True),
    ("steps_per_epoch", 0, True, None, True),
    ("learning_rate", 0, False, None, False),
    ("weight_decay", 0, True, None, False),
    ("clipvalue", 0, True, None, False),
    ("plateau_factor", 0, False, 1, False),
    ("plateau_patience", 0, True, None, True),
    ("min_learning_rate", 0, True, None, False),
    ("early_stopping_patience", 0, True, None, True),
    ("time_limit_minutes", 0, True, None, False),
    ("freeze_encoder_epochs", 0, True, None, True),
)


def _check_train_numbers(train: dict[str, Any]) -> None:
    """Finite numbers in range, so `train.epochs=-3` or a zero learning rate fails at once."""
    for key, low, low_inclusive, high, integer in _TRAIN_RANGES:
        validate_range(
            train[key], f"train.{key}", low=low, low_inclusive=low_inclusive, high=high,
            integer=integer,
        )  # fmt: skip


def _read_toml(path: Path, chain: tuple[Path, ...]) -> dict[str, Any]:
    """A TOML file's tables over those of the file its ``extends`` names (relative to it)."""
    if not path.is_file():
        named = f" (extended by {chain[-1]})" if chain else ""
        raise FileNotFoundError(f"Config file {path} does not exist{named}.")
    if path.resolve() in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path.resolve()))
        raise ValueError(f"Config files extend each other in a cycle: {cycle}")
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as error:
        raise ValueError(f"Config file {path} is not valid TOML: {error}") from error
    base = document.pop("extends", None)
    if base is None:
        return document
    if not isinstance(base, str):
        raise TypeError(
            f"`extends` in {path} must be a path to another TOML file. Received: {base!r}"
        )
    inherited = _read_toml(path.parent / base, (*chain, path.resolve()))
    return _merge(inherited, document)


def check_inference_config(config: dict[str, Any]) -> None:
    """Check the ``[inference]`` candidates, which only the end of a run uses.

    Training calls this first, so a typo fails before hours of training rather than after.

    Raises:
        ValueError, TypeError: a candidate value is not allowed.
    """
    inference = config["inference"]
    validate_choice(inference["select_metric"], SELECTION_METRICS, "inference.select_metric")
    validate_range(
        inference["select_margin"],
        "inference.select_margin",
        low=0.0,
        high=1.0,
        high_inclusive=False,
    )
    validate_choice(inference["blend"], BLEND_MODES, "inference.blend")
    for tta in inference["tta"]:
        validate_choice(tta, ("none", "flips"), "inference.tta")
    validate_choice(inference["precision"], PRECISIONS, "inference.precision")
    for tile in inference["tile"]:
        validate_range(tile, "inference.tile", low=1, integer=True)
    for overlap in inference["overlap"]:
        validate_range(overlap, "inference.overlap", low=0.0, high=1.0, high_inclusive=False)
    for threshold in inference["threshold"]:
        validate_range(threshold, "inference.threshold", low=0.0, high=1.0)
    allowed = list(POSTPROCESS_KEYS)  # the metadata's; the threshold has its own list
    for options in inference["postprocess"]:
        for key in options:
            validate_choice(key, allowed, "inference.postprocess key")
    for item in inference["classes"]:
        if set(item) != {"name", "color"}:
            raise ValueError(
                f"Each of `inference.classes` needs exactly `name` and `color`. Received: {item!r}"
            )


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
