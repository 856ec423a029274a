"""Errors the zoo raises; each is a tiledseg error, so the CLI and the app show its message."""

from __future__ import annotations

from tiledseg.errors import ModelLoadError, TiledsegError

__all__ = [
    "HubUnreachableError",
    "MetadataError",
    "MetadataVersionError",
    "ModelLoadError",
    "ModelNotFoundError",
    "NotCachedError",
    "StagingError",
    "UnsafeModelError",
]


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """A reference names no local path, bundled id, registry id or Hub repository/revision."""


class NotCachedError(ModelLoadError, FileNotFoundError):
    """Offline (``HF_HUB_OFFLINE=1``) and the requested Hub revision is not in the local cache."""


class HubUnreachableError(ModelLoadError, ConnectionError):
    """The Hub endpoint could not be reached and the model is not in the local cache."""


class MetadataError(ModelLoadError):
    """``tiledseg.json`` is missing a field, has a wrong type, or an invalid value."""


class MetadataVersionError(MetadataError):
    """``tiledseg.json`` has a ``format_version`` this tiledseg cannot read (too new or too old)."""


class UnsafeModelError(ModelLoadError):
    """Keras ``safe_mode`` refused the checkpoint (it contains code, e.g. a Lambda layer)."""


class StagingError(TiledsegError, ValueError):
    """A training run directory or a staged repository folder is incomplete or invalid."""
