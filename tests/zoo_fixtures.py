"""Helpers and fixtures for the model_zoo tests: tiny real models, run directories, olah.

Imported by tests/test_zoo_*.py (not a conftest, so it stays out of other tests' way).

The Hub tests talk to ``olah`` (PyPI), a real Hugging Face-compatible server, installed in its
own virtual environment because its dependencies differ from the app's::

    python -m venv .venv-olah && .venv-olah/bin/pip install olah==0.5.4

``OLAH_BIN`` overrides the server command (default ``.venv-olah/bin/olah-cli``). Without it the
Hub tests skip, except under ``CI`` where they fail.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
OLAH_INSTALL = "python -m venv .venv-olah && .venv-olah/bin/pip install olah==0.5.4"
_SUBPROCESS_TIMEOUT = 240


def build_tiny_model(seed: int = 0, *, lambda_layer: bool = False):
    """A 2-level conv net with 4 filters from built-in layers (downsampling factor 4)."""
    import keras

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3), name="image")
    x = keras.layers.Rescaling(1 / 255.0)(inputs)
    if lambda_layer:  # code in the checkpoint: safe_mode must refuse it
        x = keras.layers.Lambda(lambda t: t * 1.0)(x)
    skip1 = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(skip1)
    skip2 = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(skip2)
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.Concatenate()([keras.layers.UpSampling2D()(x), skip2])
    x = keras.layers.Conv2D(4, 3, padding="same", activation="relu")(x)
    x = keras.layers.Concatenate()([keras.layers.UpSampling2D()(x), skip1])
    outputs = keras.layers.Conv2D(1, 1, activation="sigmoid", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="tiny_unet")


def make_run_dir(
    root: Path,
    *,
    seed: int = 0,
    threshold: float = 0.5,
    lambda_layer: bool = False,
    with_eval: bool = True,
    with_selection: bool = True,
) -> Path:
    """Write a training run directory as training does (CONTRACTS.md), with a tiny model."""
    import keras

    run = root / f"tiny-{seed}-20250101-000000"
    (run / "previews").mkdir(parents=True)
    model = build_tiny_model(seed, lambda_layer=lambda_layer)
    model.compile(optimizer="adam", loss="binary_crossentropy")
    keras.saving.save_model(model, run / "model.keras")
    (run / "config.toml").write_text(
        '[model]\narchitecture = "unet"\nlevels = 2\nfilters = 4\n\n'
        "[train]\nepochs = 2\nbatch_size = 4\nlearning_rate = 0.001\n"
    )
    (run / "history.csv").write_text(
        "epoch,loss,dice,iou,val_loss,val_dice,val_iou,lr\n"
        "1,0.61,0.41,0.29,0.58,0.44,0.31,0.001\n"
        "2,0.52,0.55,0.40,0.50,0.57,0.43,0.001\n"
    )
    inference = {
        "scale": {"mode": "short_side", "value": 256},
        "tile": 256,
        "overlap": 0.25,
        "blend": "gaussian",
        "threshold": threshold,
        "tta": None,
        "postprocess": {"fill_holes": True, "min_size": 64},
        "downsampling": 4,
        "input_channels": 3,
        "normalization": "rescale_0_1 inside the model",
        "classes": [{"name": "lesion", "color": [255, 64, 64]}],
    }
    (run / "inference.json").write_text(json.dumps(inference, indent=2))
    dataset = {
        "name": "ISIC 2017 Task 1",
        "id": "isic2017",
        "licence": "CC-0",
        "citation": "Codella N, et al. arXiv:1710.05006",
        "train_split": "isic2017/train",
        "valid_split": "isic2017/valid",
        "notes": "Images at short side 256 px.",
    }
    (run / "dataset.json").write_text(json.dumps(dataset, indent=2))
    if with_eval:
        evaluation = {
            "split": "isic2017/fullres",
            "settings": {"tile": 256, "overlap": 0.25, "blend": "gaussian", "threshold": threshold},
            "mean": {"dice": 0.71, "jaccard": 0.58},
            "images": [{"image": "ISIC_0000000", "dice": 0.71, "jaccard": 0.58}],
        }
        (run / "eval.json").write_text(json.dumps(evaluation, indent=2))
    if with_selection:
        candidate = {key: inference[key] for key in ("scale", "tile", "overlap", "blend", "tta")}
        selection = {
            "split": "isic2017/valid",
            "metric": "dice",
            "margin": 0.0,
            "candidates": [
                {**candidate, "threshold": value, "postprocess": {}, "dice": dice}
                for value, dice in ((0.4, 0.70), (threshold, 0.72), (0.6, 0.69))
            ],
        }
        (run / "selection.json").write_text(json.dumps(selection, indent=2))
    (run / "previews" / "epoch_001.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return run


def tree_checksum(root: Path) -> str:
    """A hash of every file's path, size, modification time and bytes under ``root``."""
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        stat = path.stat()
        digest.update(f"{path.relative_to(root)}|{stat.st_mode}|{stat.st_mtime_ns}".encode())
        if path.is_file():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def run_python(args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None):
    """Run ``python ARGS`` in a fresh process (the Hub settings are read at import time)."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", **(env or {})}
    for key, value in list(full_env.items()):
        if value is None:
            del full_env[key]
    return subprocess.run(
        [sys.executable, *args],
        env=full_env,
        cwd=cwd or REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=_SUBPROCESS_TIMEOUT,
        check=False,
    )


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def olah_command() -> list[str] | None:
    """The olah server command, or None if it is not installed."""
    configured = os.environ.get("OLAH_BIN")
    candidate = Path(configured) if configured else REPO_ROOT / ".venv-olah" / "bin" / "olah-cli"
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return [str(candidate)]
    found = shutil.which(configured) if configured else None
    return [found] if found else None


class OlahServer:
    """A local olah mirror serving git repositories as Hub model repositories.

    Each repository is a git repository on branch ``main`` at ``MIRROR/models/ORG/NAME``;
    olah serves its committed files through the Hub API (``HF_ENDPOINT=server.endpoint``).
    """

    def __init__(self, command: list[str], root: Path):
        self.command = command
        self.root = root
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.mirror = root / "mirror"
        self.process: subprocess.Popen | None = None
        self.log = root / "olah.log"

    def start(self, timeout: float = 60.0) -> None:
        (self.mirror / "models").mkdir(parents=True, exist_ok=True)
        (self.root / "repos").mkdir(exist_ok=True)
        config = self.root / "olah.toml"
        netloc = f"127.0.0.1:{self.port}"
        config.write_text(
            "[basic]\n"
            'host = "127.0.0.1"\n'
            f"port = {self.port}\n"
            f'repos-path = "{self.root / "repos"}"\n'
            f'mirrors-path = ["{self.mirror}"]\n'
            f'mirror-netloc = "{netloc}"\n'
            f'mirror-lfs-netloc = "{netloc}"\n'
            'mirror-scheme = "http"\n'
            "metadata-cache-ttl = 0\n\n"
            "[accessibility]\n"
            "offline = true\n"
        )
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [*self.command, "--config", str(config), "--log-path", str(self.root / "logs")],
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"olah exited early:\n{self.log.read_text()[-3000:]}")
            if self._answers():
                return
            time.sleep(0.3)
        self.stop()
        tail = self.log.read_text()[-3000:]
        raise RuntimeError(f"olah did not answer within {timeout} s:\n{tail}")

    def _answers(self) -> bool:
        try:
            urllib.request.urlopen(f"{self.endpoint}/api/models/none/none/revision/main", timeout=2)
        except urllib.error.HTTPError:
            return True  # any HTTP answer means the server is up
        except OSError:
            return False
        return True

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self.process = None

    def commit(self, repo_id: str, folder: Path, message: str) -> str:
        """Replace the repository's files with ``folder``'s, commit on ``main``; return the hash."""
        repo = self.mirror / "models" / repo_id
        if not (repo / ".git").is_dir():
            repo.mkdir(parents=True)
            self._git(repo, "init", "-q", "-b", "main")
        for child in repo.iterdir():
            if child.name != ".git":
                shutil.rmtree(child) if child.is_dir() else child.unlink()
        shutil.copytree(folder, repo, dirs_exist_ok=True)
        self._git(repo, "add", "-A")
        self._git(repo, "commit", "-q", "-m", message)
        return self._git(repo, "rev-parse", "HEAD").strip()

    @staticmethod
    def _git(repo: Path, *args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=zoo-test", "-c", "user.email=zoo@test", *args],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
        ).stdout


@pytest.fixture(scope="module")
def olah_server(tmp_path_factory):
    """A running olah server for the module; skipped (failed under CI) if olah is absent."""
    command = olah_command()
    if command is None:
        message = (
            "olah (a local Hugging Face-compatible server) is not installed; install it with "
            f"`{OLAH_INSTALL}` or set OLAH_BIN"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = OlahServer(command, tmp_path_factory.mktemp("olah"))
    server.start()
    yield server
    server.stop()
