"""Seconds per training step of a training config's network, float32 against mixed bfloat16.

    python -m benchmarks.bench_train_step training/configs/effunet-isic2017.toml \
        --json benchmarks/results/train_step_cpu.json

Each precision runs in its own process (Keras' dtype policy is global): the network the config
builds, compiled as ``training.train`` compiles it, ``train_on_batch`` on random crops of the
config's size and batch, a warm-up of two steps, then the median of ``--steps``. Run it on a
quiet machine: on a CPU the answer depends on whether the CPU and TensorFlow's kernels compute
in bfloat16 (AMX / AVX512-BF16), and on the layers (depthwise convolutions are slow there).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

POLICIES = ("float32", "mixed_bfloat16")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", type=Path, help="a training TOML file")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per precision")
    parser.add_argument("--frozen", action="store_true", help="encoder frozen (the first phase)")
    parser.add_argument("--json", type=Path, help="write machine and rows here")
    parser.add_argument("--policy", choices=POLICIES, help=argparse.SUPPRESS)  # one child
    return parser.parse_args(argv)


def one_policy(config_path: Path, policy: str, steps: int, frozen: bool) -> dict[str, Any]:
    import keras
    import numpy as np

    from training.config import load_config
    from training.train import _compile, _model_from_config, _set_encoder_trainable

    config = load_config(config_path)
    keras.config.set_dtype_policy(policy)
    model = _model_from_config(config["model"])
    batch, size = config["train"]["batch_size"], config["data"]["crop_size"]
    steps_per_epoch = config["train"].get("steps_per_epoch") or 100
    _compile(model, config, steps_per_epoch)
    if frozen:
        _set_encoder_trainable(model, config, steps_per_epoch, 0, False)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (batch, size, size, 3)).astype("float32")
    masks = (rng.uniform(size=(batch, size, size, 1)) > 0.5).astype("float32")
    times = []
    for step in range(steps + 2):
        start = time.perf_counter()
        model.train_on_batch(images, masks)
        if step >= 2:
            times.append(time.perf_counter() - start)
    return {
        "policy": policy,
        "encoder_frozen": frozen,
        "batch": batch,
        "crop": size,
        "parameters": int(model.count_params()),
        "step_s": statistics.median(times),
        "all_s": times,
        "load": os.getloadavg(),
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.policy:
        print(json.dumps(one_policy(args.config, args.policy, args.steps, args.frozen)))
        return 0
    from training.config import load_config

    try:  # a bad config fails here, once, rather than in each child
        load_config(args.config)
    except (OSError, ValueError, TypeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    rows = []
    for policy in POLICIES:
        command = [sys.executable, "-m", "benchmarks.bench_train_step", str(args.config)]
        command += ["--policy", policy, "--steps", str(args.steps)]
        command += ["--frozen"] if args.frozen else []
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "KERAS_BACKEND": "tensorflow"}
        done = subprocess.run(command, capture_output=True, text=True, env=env)
        if done.returncode != 0:  # the child's own error, not a bare CalledProcessError
            print(done.stderr[-3000:], file=sys.stderr)
            print(f"error: the {policy} step failed (exit {done.returncode})", file=sys.stderr)
            return 1
        row = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
        print(f"{policy}: {row['step_s']:.2f} s a step (batch {row['batch']}, {row['crop']} px)")
    ratio = rows[0]["step_s"] / rows[1]["step_s"]
    print(f"mixed_bfloat16 is {ratio:.2f}x the speed of float32")
    if args.json:
        from benchmarks.measure import cpu_report

        document = {"config": str(args.config), "machine": cpu_report(), "rows": rows}
        args.json.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
