"""Turn a model reference into something :func:`tiledseg.predict_tiled` accepts.

Every reference form (local ``.keras`` file or directory, bundled id, registry id, ``org/name``,
``hf://org/name[@revision]``) is resolved by :func:`model_zoo.load`; this module only keeps the
CLI independent of how that is done, and gives a local-only fallback where the zoo is absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tiledseg.errors import ModelLoadError

__all__ = ["load_model"]


def load_model(ref: str, revision: str | None = None) -> Any:
    """Load a model by reference, under Keras ``safe_mode=True``.

    Args:
        ref: str, a local ``.keras`` file or model directory, a bundled or registry id,
            ``org/name`` or ``hf://org/name[@revision]``.
        revision: str or None, a Hub revision (branch, tag or commit) to pin.

    Returns:
        A zoo model (``.model`` and ``.meta``), or a bare ``keras.Model`` where the zoo is not
        installed.

    Raises:
        ModelLoadError: the reference cannot be resolved or the checkpoint cannot be loaded;
            the message says what to do.
    """
    try:
        from model_zoo import load as zoo_load
    except ImportError:
        return _load_local(ref)
    return zoo_load(ref, revision=revision)


def _load_local(ref: str) -> Any:
    import keras

    path = Path(ref)
    if not path.exists():
        raise ModelLoadError(
            f"Model {ref!r} is not a local file or directory, and the model zoo (which resolves "
            "hub and bundled ids) is not installed. Install it with `pip install -e .` from the "
            "tiledseg checkout, or pass a path to a .keras file."
        )
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as error:  # Keras raises many types for a bad checkpoint
        raise ModelLoadError(f"Cannot load the Keras model at {path}: {error}") from error
