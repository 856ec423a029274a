"""Export a zoo model as a TensorFlow SavedModel in TF Serving's layout.

TF Serving loads ``MODEL_BASE/NAME/VERSION`` (VERSION an integer). The export has one
signature, ``serving_default``, taking ``images``: float32 ``[batch, height, width, channels]``
pixel values 0..255 of any height and width (multiples of the model's downsampling factor),
and returning ``probabilities`` at the same height and width. ``tiledseg.json`` is copied to
``assets.extra/`` (which TF Serving ignores) so a client can read the inference settings.

A second signature, ``tiledseg_metadata`` (:data:`tiledseg.serving.meta.META_SIGNATURE`), takes
the same ``images`` and returns, per image, ``sha256``: the fingerprint of that tiledseg.json
(:func:`tiledseg.serving.meta.meta_fingerprint`), and ``name``: the model's name. The client
asks for it and refuses metadata that is not the served model's.

This is the only module of the zoo that imports TensorFlow: the export is TF's format.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from model_zoo.errors import ModelLoadError
from model_zoo.layout import (
    SAVEDMODEL_META_FILE,
    SERVING_INPUT_NAME,
    SERVING_OUTPUT_NAME,
    SERVING_SIGNATURE,
)
from model_zoo.loader import ZooModel, load
from tiledseg._validation import validate_choice
from tiledseg.serving.meta import (
    FINGERPRINT_OUTPUT,
    META_NAME_OUTPUT,
    META_SIGNATURE,
    meta_fingerprint,
)

__all__ = [
    "EXPORT_FORMATS",
    "EXPORT_TOLERANCE",
    "check_out_folder",
    "export_savedmodel",
    "staging_folder",
]

EXPORT_FORMATS = ("savedmodel",)
EXPORT_TOLERANCE = 1e-4
_CHECK_SIDE = 64


def export_savedmodel(
    ref: str | os.PathLike | ZooModel,
    out_dir: str | os.PathLike,
    *,
    revision: str | None = None,
    format: str = "savedmodel",
) -> Path:
    """Export a zoo model to ``out_dir`` (``BASE/NAME/VERSION``) for TF Serving.

    The export is written to a temporary folder beside ``out_dir``, reloaded with
    ``tf.saved_model.load`` and compared with the Keras model (max difference at most
    :data:`EXPORT_TOLERANCE`), then renamed into place.

    Args:
        ref: str, PathLike or ZooModel: any reference :func:`model_zoo.load` accepts.
        out_dir: str or PathLike, the version folder to create; its name must be an integer
            and it must not exist yet.
        revision: str or None, for Hub references.
        format: str, only ``"savedmodel"``.

    Returns:
        Path of the version folder.

    Raises:
        ValueError: ``out_dir`` is not ``.../NAME/VERSION`` or already exists.
        ModelLoadError: the model cannot be loaded, or the export does not reproduce it.

    Example:
        >>> export_savedmodel("unet-isic2017", "serving/unet/1")  # doctest: +SKIP
        PosixPath('serving/unet/1')
    """
    validate_choice(format, EXPORT_FORMATS, "format")
    out_dir = Path(out_dir)
    if not out_dir.name.isdigit():
        raise ValueError(
            "`out` must end in an integer version folder, as TF Serving expects "
            f"(BASE/NAME/VERSION, e.g. serving/unet/1). Received: out={out_dir}"
        )
    if out_dir.exists():
        raise ValueError(
            f"`out` already exists; TF Serving versions are immutable, pick a new VERSION. "
            f"Received: out={out_dir}"
        )
    check_out_folder(out_dir)
    zoo_model = ref if isinstance(ref, ZooModel) else load(ref, revision)
    import tensorflow as tf

    staging = staging_folder(out_dir)
    try:
        _write_savedmodel(tf, zoo_model, staging)
        _check_export(tf, zoo_model, staging)
        meta_file = staging / SAVEDMODEL_META_FILE
        meta_file.parent.mkdir(parents=True, exist_ok=True)
        zoo_model.meta.write(meta_file)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; the server may run as another user
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


def check_out_folder(out_dir: Path) -> None:
    """Refuse, before the model loads, an ``out`` that cannot be created where it is asked.

    Raises:
        ValueError: the nearest existing folder above ``out`` is a file or not writable.
    """
    ancestor = out_dir.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(
            f"`out` cannot be created: {ancestor} is a file, not a folder; choose another "
            f"path. Received: out={out_dir}"
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(
            f"`out` cannot be created: the folder {ancestor} is not writable; choose another "
            f"path. Received: out={out_dir}"
        )


def staging_folder(out_dir: Path) -> Path:
    """A new private folder beside ``out`` to write the export in, before it is moved there.

    Raises:
        ValueError: the folder above ``out`` cannot be created or written.
    """
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.export-"))
    except OSError as error:
        raise ValueError(
            f"`out` cannot be created in {out_dir.parent} ({error.strerror or error}); choose "
            f"another path. Received: out={out_dir}"
        ) from None


def _write_savedmodel(tf: Any, zoo_model: ZooModel, folder: Path) -> None:
    import keras

    model = zoo_model.model
    channels = zoo_model.meta.input_channels
    archive = keras.export.ExportArchive()
    archive.track(model)

    images_spec = tf.TensorSpec([None, None, None, channels], tf.float32, name=SERVING_INPUT_NAME)
    fingerprint = meta_fingerprint(zoo_model.meta)
    name = zoo_model.meta.name or zoo_model.id

    def serve(images):
        return {SERVING_OUTPUT_NAME: model(images, training=False)}

    def metadata(images):
        # One value per image, so a batching server can split the answer like any other.
        count = tf.shape(images)[:1]
        return {
            FINGERPRINT_OUTPUT: tf.fill(count, tf.constant(fingerprint)),
            META_NAME_OUTPUT: tf.fill(count, tf.constant(name)),
        }

    archive.add_endpoint(SERVING_SIGNATURE, serve, input_signature=[images_spec])
    archive.add_endpoint(META_SIGNATURE, metadata, input_signature=[images_spec])
    archive.write_out(str(folder), verbose=False)


def _check_export(tf: Any, zoo_model: ZooModel, folder: Path) -> None:
    side = -(-_CHECK_SIDE // zoo_model.meta.downsampling) * zoo_model.meta.downsampling
    rng = np.random.default_rng(0)
    width = side + zoo_model.meta.downsampling  # not square, to catch a transposed layout
    shape = (2, side, width, zoo_model.meta.input_channels)
    images = rng.uniform(0, 255, shape).astype("float32")
    expected = np.asarray(zoo_model.model(tf.constant(images), training=False))
    loaded = tf.saved_model.load(str(folder))
    served = loaded.signatures[SERVING_SIGNATURE]
    actual = served(**{SERVING_INPUT_NAME: tf.constant(images)})[SERVING_OUTPUT_NAME].numpy()
    difference = float(np.max(np.abs(actual - expected)))
    answer = loaded.signatures[META_SIGNATURE](**{SERVING_INPUT_NAME: tf.constant(images)})
    fingerprints = {value.decode() for value in answer[FINGERPRINT_OUTPUT].numpy()}
    if fingerprints != {meta_fingerprint(zoo_model.meta)}:
        raise ModelLoadError(
            f"The SavedModel export of {zoo_model.id} serves the fingerprint(s) "
            f"{sorted(fingerprints)}, not its metadata's; nothing was written."
        )
    if actual.shape != expected.shape or difference > EXPORT_TOLERANCE:
        raise ModelLoadError(
            f"The SavedModel export of {zoo_model.id} does not reproduce the Keras model "
            f"(shape {actual.shape} vs {expected.shape}, max difference {difference:.2e}); "
            "nothing was written."
        )
