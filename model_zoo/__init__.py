"""The tiledseg model zoo: Hugging Face Hub repositories, bundled models, export and Spaces.

Every zoo model is a folder in Keras' Hub layout plus ``tiledseg.json`` (inference metadata)
and a model card, so ``keras.saving.load_model("hf://org/name")`` loads it without tiledseg and
:func:`load` adds the metadata the tiled engine needs.

Example:
    >>> import model_zoo
    >>> zoo_model = model_zoo.load("unet-isic2017")  # doctest: +SKIP
    >>> zoo_model.meta.tile, zoo_model.revision  # doctest: +SKIP
    (512, None)
"""

from model_zoo.catalog import CatalogEntry, list_models
from model_zoo.errors import (
    HubUnreachableError,
    MetadataError,
    MetadataVersionError,
    ModelLoadError,
    ModelNotFoundError,
    ModelTooLargeError,
    NotCachedError,
    StagingError,
    UnsafeModelError,
)
from model_zoo.loader import ZooModel, clear_cache, load, load_folder, load_keras_model
from model_zoo.metadata import FORMAT_VERSION, ModelMeta, load_meta
from model_zoo.publishing import PublishResult, bundle, publish
from model_zoo.registry import RegistryEntry, bundled_dir, load_registry
from model_zoo.resolve import ACCEPTED_FORMS, ResolvedRef, pull, resolve
from model_zoo.staging import meta_from_run, stage_run, validate_staged


def export_savedmodel(*args, **kwargs):
    """Export a zoo model for TF Serving; see :func:`model_zoo.export.export_savedmodel`."""
    # Imported on use: the export module is the zoo's only TensorFlow import.
    from model_zoo.export import export_savedmodel as _export

    return _export(*args, **kwargs)


__all__ = [
    "ACCEPTED_FORMS",
    "FORMAT_VERSION",
    "CatalogEntry",
    "HubUnreachableError",
    "MetadataError",
    "MetadataVersionError",
    "ModelLoadError",
    "ModelMeta",
    "ModelNotFoundError",
    "ModelTooLargeError",
    "NotCachedError",
    "PublishResult",
    "RegistryEntry",
    "ResolvedRef",
    "StagingError",
    "UnsafeModelError",
    "ZooModel",
    "bundle",
    "bundled_dir",
    "clear_cache",
    "export_savedmodel",
    "list_models",
    "load",
    "load_folder",
    "load_keras_model",
    "load_meta",
    "load_registry",
    "meta_from_run",
    "publish",
    "pull",
    "resolve",
    "stage_run",
    "validate_staged",
]
