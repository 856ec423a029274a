"""Train a segmentation model from an experiment config and write a run directory.

Command line::

    python -m training.train training/configs/isic2017.toml [--set train.epochs=5]
    python -m training.train --from-seed-config path/to/train_eval_infer.config
    python -m training.train --resume runs/unet-isic2017-20250101-120000

The run directory layout is described in :mod:`training.run_dir`.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import keras

from tiledseg._validation import validate_choice
from tiledseg.contract import WEIGHTS_FILE
from tiledseg.errors import TiledsegError
from tiledseg.scale import PixelScale
from tiledseg.tiling import downsampling_factor
from training import _callbacks as callbacks
from training.augment import build_augmenter
from training.config import check_inference_config, load_config, write_config
from training.data import (
    SegmentationDataset,
    check_pairs,
    load_pairs,
    split_label,
    split_source,
)
from training.evaluate import evaluate_pairs, select_inference_settings
from training.losses import DiceScore, IoUScore, get_loss
from training.models import build_model
from training.run_dir import (
    CONFIG_FILE,
    DATASET_FILE,
    EVAL_FILE,
    HISTORY_FILE,
    INFERENCE_FILE,
    MODEL_FILE,
    PREVIEWS_DIR,
    RESUME_MODEL_FILE,
    RESUME_STATE_FILE,
    SELECTION_FILE,
    new_run_dir,
    read_json,
    write_json,
)

__all__ = ["main", "train"]

PRECISIONS = ("off", "mixed_float16", "mixed_bfloat16")
SCHEDULES = ("plateau", "cosine", "constant")
OPTIMIZERS = ("adam", "adamw")
_NORMALIZATION = {
    "unet": "rescale_0_1 inside the model",
    "attention_unet": "rescale_0_1 inside the model",
    "mobilenet_v2": "rescale_-1_1 inside the model",
    "efficientnet_b0": "EfficientNet rescaling and normalization inside the model",
    "efficientnet_unet": "ImageNet mean/std normalization of 0..255 pixels inside the model",
}


def _load_init_weights(model: keras.Model, source: str) -> None:
    """Fine-tune from ``source``: a ``.weights.h5`` or ``.keras`` file, or a zoo model folder
    (:data:`tiledseg.contract.WEIGHTS_FILE`) or run directory (``model.keras``) holding one."""
    path = Path(source)
    if path.is_dir():
        held = [path / name for name in (WEIGHTS_FILE, MODEL_FILE) if (path / name).is_file()]
        path = held[0] if held else path / WEIGHTS_FILE
    if not path.is_file() or not path.name.endswith((".weights.h5", ".keras")):
        raise FileNotFoundError(
            f"`model.init_weights` must be a .weights.h5 or .keras file, or a zoo model folder or "
            f"run directory holding one. Received: model.init_weights={source!r} (not found: "
            f"{path})"
        )
    # Keras loads what it can match and only warns about layers it skips, which would leave
    # part of the model at random: a skip is an error here.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            model.load_weights(path)
            problem = next((str(w.message) for w in caught if "Skipping" in str(w.message)), "")
        except ValueError as error:
            problem = str(error)
    if problem:
        raise ValueError(
            f"`model.init_weights` ({path}) does not fit the model the config builds "
            f"({model.name}, {model.count_params():,} parameters): use weights of the same "
            f"architecture and settings. Keras said: {problem}"
        )
    print(f"Initial weights: {path}")


def _model_from_config(model_cfg: dict[str, Any]) -> keras.Model:
    common = {
        key: model_cfg[key] for key in ("input_channels", "num_classes", "batch_norm", "activation")
    }
    architecture = model_cfg["architecture"]
    if architecture == "backbone_unet":
        weights = None if model_cfg["encoder_weights"] == "none" else model_cfg["encoder_weights"]
        return build_model(
            architecture,
            encoder=model_cfg["encoder"],
            weights=weights,
            decoder_filters=model_cfg["decoder_filters"],
            freeze_encoder=model_cfg["freeze_encoder"],
            **common,
        )
    if architecture == "efficientnet_unet":
        weights = None if model_cfg["encoder_weights"] == "none" else model_cfg["encoder_weights"]
        return build_model(
            architecture,
            variant=model_cfg["variant"],
            weights=weights,
            num_classes=model_cfg["num_classes"],
            decoder_filters=model_cfg["decoder_filters"],
            batch_norm=model_cfg["batch_norm"],
            activation=model_cfg["activation"],
            freeze_encoder=model_cfg["freeze_encoder"],
            input_skip_filters=model_cfg["input_skip_filters"],
        )
    keys = ("base_filters", "num_levels", "base_kernel", "dilation", "dropout")
    return build_model(architecture, **common, **{key: model_cfg[key] for key in keys})


def _optimizer(train_cfg: dict[str, Any], steps_per_epoch: int) -> keras.optimizers.Optimizer:
    validate_choice(train_cfg["optimizer"], OPTIMIZERS, "train.optimizer")
    validate_choice(train_cfg["schedule"], SCHEDULES, "train.schedule")
    rate = train_cfg["learning_rate"]
    if train_cfg["schedule"] == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(
            rate,
            decay_steps=max(1, train_cfg["epochs"] * steps_per_epoch),
            alpha=train_cfg["min_learning_rate"] / rate,
        )
    options: dict[str, Any] = {"learning_rate": rate}
    if train_cfg["clipvalue"] > 0:
        options["clipvalue"] = train_cfg["clipvalue"]
    if train_cfg["optimizer"] == "adamw":
        return keras.optimizers.AdamW(weight_decay=train_cfg["weight_decay"], **options)
    return keras.optimizers.Adam(**options)


def _note_fixed_schedule(model: keras.Model, epochs: int, steps_per_epoch: int) -> None:
    """Say so when a resumed run's learning-rate schedule spans other epochs than asked.

    The schedule is part of the optimizer saved in the checkpoint, so resuming keeps the one
    built when the run started; ``train.epochs`` then only moves where training stops.
    """
    rate = model.optimizer.get_config().get("learning_rate")
    if not isinstance(rate, dict) or "decay_steps" not in rate.get("config", {}):
        return
    planned = rate["config"]["decay_steps"] / max(1, steps_per_epoch)
    if round(planned) != epochs:
        print(
            f"Note: this run's {rate.get('class_name', 'learning-rate')} schedule was built for "
            f"{planned:g} epochs when it started and is kept on resume; train.epochs={epochs} "
            "only sets where training stops."
        )


def _distribution(enabled: bool) -> tuple[contextlib.AbstractContextManager, int]:
    """A scope for data-parallel training on every local accelerator (or the CPU)."""
    if not enabled:
        return contextlib.nullcontext(), 1
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf  # the point here: tf.distribute

        devices = [device.name for device in tf.config.list_logical_devices("GPU")]
        strategy = tf.distribute.MirroredStrategy(devices or ["/cpu:0"])
        return strategy.scope(), strategy.num_replicas_in_sync
    if backend == "jax":
        devices = keras.distribution.list_devices()
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        return contextlib.nullcontext(), len(devices)
    raise ValueError(
        "`--distribute` works with the tensorflow (MirroredStrategy) and jax (DataParallel) "
        f"backends. Set KERAS_BACKEND to one of them. Received: backend={backend!r}"
    )


def _datasets(config: dict[str, Any], root: Path):
    data, train_cfg = config["data"], config["train"]
    common = {
        "scale": data["scale"],
        "crop_size": data["crop_size"],
        "batch_size": train_cfg["batch_size"],
        "cache": data["cache"],
        "workers": data["workers"],
        "max_queue_size": data["max_queue_size"],
        "frame": data["frame"],
        "seed": config["seed"],
    }
    for key in ("train", "valid"):
        if not data[key]:
            raise ValueError(f"`data.{key}` is empty: give a dataset folder, table or CSV.")
    train_pairs = load_pairs(split_source(root, data["train"]))
    valid_pairs = load_pairs(split_source(root, data["valid"]))
    for key, pairs in (("train", train_pairs), ("valid", valid_pairs)):
        check_pairs(pairs, f"data.{key} ({split_label(data[key])})")
    augmenter = build_augmenter(config["augment"])
    train_data = SegmentationDataset(
        train_pairs,
        training=True,
        augmenter=augmenter,
        crops_per_image=data["crops_per_image"],
        frame_p=data["frame_p"],
        batches_per_epoch=config["train"]["steps_per_epoch"] or None,
        **common,
    )
    valid_data = SegmentationDataset(valid_pairs, training=False, **common)
    return train_data, valid_data, valid_pairs


def _compile(model: keras.Model, config: dict[str, Any], steps_per_epoch: int) -> None:
    train_cfg = config["train"]
    model.compile(
        optimizer=_optimizer(train_cfg, steps_per_epoch),
        loss=get_loss(train_cfg["loss"], **train_cfg["loss_options"]),
        metrics=[DiceScore(), IoUScore()],
    )


def _callback_list(run_dir, config, initial_epoch, best_value, valid_pairs):
    train_cfg = config["train"]
    best = callbacks.BestCheckpoint(run_dir / MODEL_FILE, "val_dice", best_value)
    items = [
        callbacks.HistoryWriter(run_dir / HISTORY_FILE, initial_epoch),
        best,
        callbacks.ResumeState(run_dir, best),
        callbacks.TimeLimit(train_cfg["time_limit_minutes"]),
        keras.callbacks.EarlyStopping(
            monitor="val_dice", mode="max", patience=train_cfg["early_stopping_patience"]
        ),
    ]
    if train_cfg["schedule"] == "plateau":
        items.append(
            keras.callbacks.ReduceLROnPlateau(
                monitor="val_dice",
                mode="max",
                factor=train_cfg["plateau_factor"],
                patience=train_cfg["plateau_patience"],
                min_lr=train_cfg["min_learning_rate"],
                verbose=1,
            )
        )
    count = config["preview"]["count"]
    if count > 0:
        items.append(
            callbacks.Previews(
                run_dir / PREVIEWS_DIR,
                valid_pairs[:count],
                scale=config["data"]["scale"],
                tile=config["data"]["crop_size"],
            )
        )
    return items


def _phases(config: dict[str, Any], initial_epoch: int) -> list[tuple[int, int, bool]]:
    """``(start, end, encoder_trainable)`` fits: the encoder frozen for its first epochs, then all.

    With ``train.freeze_encoder_epochs`` = N > 0 (EfficientNet UNet only), epochs 1..N train the
    decoder on the pretrained encoder's features, then the whole network trains. Without it,
    one fit with the model as built (``model.freeze_encoder`` keeps the encoder frozen).
    """
    epochs = config["train"]["epochs"]
    frozen = config["train"]["freeze_encoder_epochs"]
    if initial_epoch >= epochs:
        return []
    if frozen <= 0:
        return [(initial_epoch, epochs, not config["model"]["freeze_encoder"])]
    if config["model"]["architecture"] != "efficientnet_unet":
        raise ValueError(
            "`train.freeze_encoder_epochs` needs model.architecture = 'efficientnet_unet'. "
            f"Received: architecture={config['model']['architecture']!r}"
        )
    phases = []
    if initial_epoch < frozen:
        phases.append((initial_epoch, min(frozen, epochs), False))
    if frozen < epochs:
        phases.append((max(initial_epoch, frozen), epochs, True))
    return phases


def _recompiles(model, config, phases: list[tuple[int, int, bool]]) -> bool:
    """Whether a phase will freeze or unfreeze the encoder, and so build a new optimizer (whose
    schedule then spans ``train.epochs``, unlike the checkpoint's)."""
    if config["model"]["architecture"] != "efficientnet_unet":
        return False
    from training.models.efficientnet_unet import encoder_layers

    layers = encoder_layers(model)
    return any(not _encoder_is(layers, trainable) for *_, trainable in phases)


def _encoder_is(layers, trainable: bool) -> bool:
    return all(layer.trainable == trainable for layer in layers)


def _set_encoder_trainable(model, config, steps: int, epoch: int, trainable: bool) -> None:
    """Freeze or unfreeze the encoder and recompile if that changes anything.

    Keras builds the training step for the variables trainable at compile time, so a change
    needs a new compile; the new optimizer is moved to the run's step, so a cosine schedule goes
    on from epoch ``epoch`` instead of restarting.
    """
    if config["model"]["architecture"] != "efficientnet_unet":
        return
    from training.models.efficientnet_unet import encoder_layers, set_encoder_trainable

    if _encoder_is(encoder_layers(model), trainable):
        return
    set_encoder_trainable(model, trainable)
    _compile(model, config, steps)
    model.optimizer.iterations.assign(epoch * steps)
    count = sum(int(math.prod(weight.shape)) for weight in model.trainable_weights)
    state = "trainable" if trainable else "frozen"
    print(
        f"Epoch {epoch + 1}: encoder {state}, {count:,} trainable parameters; new optimizer, "
        f"its schedule spans train.epochs={config['train']['epochs']} from step {epoch * steps}"
    )


def _finish(run_dir: Path, config: dict[str, Any], root: Path, valid_pairs) -> dict[str, Any]:
    """Choose inference defaults on the validation split, then evaluate at full size."""
    model = keras.saving.load_model(run_dir / MODEL_FILE, safe_mode=True)
    inference_cfg = config["inference"]
    scale = PixelScale.from_value(config["data"]["scale"])
    # Chosen and scored in the precision the checkpoint will run in (what travels below).
    precision = inference_cfg["precision"]
    print(f"Choosing inference settings on {len(valid_pairs)} validation images...")
    settings, table = select_inference_settings(
        model,
        valid_pairs,
        scale=scale,
        tiles=inference_cfg["tile"],
        overlaps=inference_cfg["overlap"],
        blend=inference_cfg["blend"],
        ttas=[None if tta == "none" else tta for tta in inference_cfg["tta"]],
        thresholds=inference_cfg["threshold"],
        postprocess_options=inference_cfg["postprocess"],
        metric=inference_cfg["select_metric"],
        frame=config["data"]["frame"],
        precision=precision,
        margin=inference_cfg["select_margin"],
    )
    model_cfg = config["model"]
    normalization = model_cfg["architecture"]
    if normalization == "backbone_unet":
        normalization = model_cfg["encoder"]
    inference = {  # the precision travels to the metadata unless it is the engine's auto
        **settings,
        **({} if precision == "auto" else {"precision": precision}),
        "downsampling": downsampling_factor(model),
        "input_channels": model_cfg["input_channels"],
        "normalization": _NORMALIZATION[normalization],
        "classes": inference_cfg["classes"],
    }
    # inference.json holds exactly the contract's keys (the zoo rejects others).
    write_json(run_dir / INFERENCE_FILE, inference)
    selection = {
        "split": split_label(config["data"]["valid"]),
        "metric": inference_cfg["select_metric"],
        "margin": inference_cfg["select_margin"],
        "candidates": table,
    }
    write_json(run_dir / SELECTION_FILE, selection)

    split = config["eval"]["split"] or config["data"]["valid"]
    pairs = load_pairs(split_source(root, split)) if config["eval"]["split"] else valid_pairs
    print(f"Evaluating at full resolution on {len(pairs)} images ({split_label(split)})...")
    report = evaluate_pairs(
        model,
        pairs,
        settings,
        split=split_label(split),
        progress=lambda done, total, stem: print(f"  [{done}/{total}] {stem}", flush=True),
        precision=precision,
    )
    write_json(run_dir / EVAL_FILE, report)
    return report


def train(
    config: dict[str, Any],
    *,
    runs_dir: str | Path = "runs",
    resume: str | Path | None = None,
    distribute: bool = False,
) -> Path:
    """Train a model as ``config`` says and write a run directory.

    Args:
        config: a resolved config (:func:`training.config.load_config`).
        runs_dir: where the run directory is created. Default "runs".
        resume: an existing run directory to continue (its config.toml is ``config``).
        distribute: train data-parallel on all local devices (MirroredStrategy on TensorFlow,
            DataParallel on JAX); with one device this runs the same code path on it.

    Returns:
        The run directory.

    Raises:
        ValueError, FileNotFoundError: bad config or data.

    Example:
        >>> run = train(load_config("training/configs/isic2017.toml",
        ...                         overrides=["train.epochs=1"]))
    """
    train_cfg = config["train"]
    validate_choice(train_cfg["mixed_precision"], PRECISIONS, "train.mixed_precision")
    given = config["data"]["root"]
    root = Path(given).resolve()
    splits = (config["data"]["train"], config["data"]["valid"], config["eval"]["split"])
    under_root = [
        path
        for split in splits
        for path in ([split] if isinstance(split, str) else [split["images"], split["masks"]])
        if path and not Path(path).is_absolute()
    ]
    if under_root and not root.is_dir():
        relative = "" if Path(given).is_absolute() else " (relative to the current directory)"
        raise FileNotFoundError(
            f"data.root {given!r}{relative} is {root}, which is not a folder. Run from the "
            "folder it is relative to, or set it: --set data.root=/path/to/data."
        )
    config["data"]["root"] = str(root)
    keras.utils.set_random_seed(config["seed"])
    check_inference_config(config)
    train_data, valid_data, valid_pairs = _datasets(config, root)
    if config["eval"]["split"]:  # fail now, not after training, if it is missing or bad
        split = config["eval"]["split"]
        check_pairs(load_pairs(split_source(root, split)), f"eval.split ({split_label(split)})")
    steps = train_cfg["steps_per_epoch"] or len(train_data)

    run_dir = Path(resume) if resume else new_run_dir(runs_dir, config["name"])
    initial_epoch, best_value = 0, -math.inf
    if resume:
        state = read_json(run_dir / RESUME_STATE_FILE)
        initial_epoch, best_value = int(state["epoch"]), float(state["best"])
    train_data.epoch = initial_epoch  # the crop stream goes on where the run stopped
    write_config(config, run_dir / CONFIG_FILE)
    dataset_info = {
        **config["dataset"],
        "train_split": split_label(config["data"]["train"]),
        "valid_split": split_label(config["data"]["valid"]),
    }
    write_json(run_dir / DATASET_FILE, dataset_info)

    previous_policy = keras.config.dtype_policy()
    policy = train_cfg["mixed_precision"]
    keras.config.set_dtype_policy("float32" if policy == "off" else policy)
    try:
        scope, replicas = _distribution(distribute)
        if train_cfg["batch_size"] % replicas:
            raise ValueError(
                f"`train.batch_size` ({train_cfg['batch_size']}) must be a multiple of the "
                f"number of devices ({replicas})."
            )
        with scope:
            if resume:
                import training.losses  # noqa: F401  registers the loss and metrics

                model = keras.saving.load_model(run_dir / RESUME_MODEL_FILE, safe_mode=True)
                if not _recompiles(model, config, _phases(config, initial_epoch)):
                    _note_fixed_schedule(model, train_cfg["epochs"], steps)
            else:
                model_cfg = config["model"]
                if model_cfg["init_weights"]:
                    # The encoder's ImageNet weights would be overwritten at once: not read.
                    model = _model_from_config({**model_cfg, "encoder_weights": "none"})
                    _load_init_weights(model, model_cfg["init_weights"])
                else:
                    model = _model_from_config(model_cfg)
                _compile(model, config, steps)
        factor = downsampling_factor(model)
        if config["data"]["crop_size"] % factor:
            raise ValueError(
                f"`data.crop_size` ({config['data']['crop_size']}) must be a multiple of the "
                f"model's downsampling factor ({factor})."
            )
        print(
            f"Run directory: {run_dir}\nModel {model.name}: {model.count_params():,} "
            f"parameters, downsampling {factor}, {len(train_data)} batches per epoch, "
            f"{replicas} device(s)"
        )
        started = time.perf_counter()
        for phase_start, phase_end, encoder_trainable in _phases(config, initial_epoch):
            _set_encoder_trainable(model, config, steps, phase_start, encoder_trainable)
            callback_list = _callback_list(run_dir, config, phase_start, best_value, valid_pairs)
            history = model.fit(
                train_data,
                validation_data=valid_data,
                epochs=phase_end,
                initial_epoch=phase_start,
                callbacks=callback_list,
                verbose=train_cfg["verbose"],
            )
            best_value = next(
                item.best for item in callback_list if isinstance(item, callbacks.BestCheckpoint)
            )
            if model.stop_training or len(history.epoch) < phase_end - phase_start:
                break  # early stopping or the time limit ended the run
        print(f"Training took {time.perf_counter() - started:.1f} s")
    finally:
        keras.config.set_dtype_policy(previous_policy)
    if not (run_dir / MODEL_FILE).is_file():
        raise RuntimeError(f"No checkpoint was saved in {run_dir}: no epoch finished.")
    report = _finish(run_dir, config, root, valid_pairs)
    summary = ", ".join(f"{k} {report['mean'][k]:.4f}" for k in ("dice", "jaccard"))
    print(f"Full-resolution {report['split']}: {summary}\nRun directory: {run_dir}")
    return run_dir


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m training.train", description="Train a tiledseg segmentation model."
    )
    parser.add_argument("config", nargs="?", help="experiment TOML file")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config value, e.g. --set train.epochs=5 (repeatable)",
    )
    parser.add_argument(
        "--from-seed-config", metavar="INI", help="read a seeds' train_eval_infer.config INI file"
    )
    parser.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run")
    parser.add_argument("--runs-dir", default="runs", help="where run directories go")
    parser.add_argument(
        "--distribute", action="store_true", help="data-parallel over all local devices"
    )
    args = parser.parse_args(argv)
    try:
        if args.resume:
            if args.config or args.from_seed_config:
                parser.error("--resume takes its config from the run directory")
            config = load_config(Path(args.resume) / CONFIG_FILE, overrides=args.set)
        elif args.config or args.from_seed_config:
            config = load_config(args.config, overrides=args.set, seed_config=args.from_seed_config)
        else:
            parser.error("give a CONFIG file, --from-seed-config INI, or --resume RUN_DIR")
        train(config, runs_dir=args.runs_dir, resume=args.resume, distribute=args.distribute)
    except (TiledsegError, OSError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
