"""Errors the zoo raises; each is a tiledseg error, so the CLI and the app show its message."""

from __future__ import annotations

# The contract's errors live in the core (tiledseg.errors) and are re-exported here.
from tiledseg.errors import (
    MetadataError,
    MetadataVersionError,
    ModelLoadError,
    ModelNotFoundError,
    TiledsegError,
    UnsafeModelError,
)

__all__ = [
    "HubUnreachableError",
    "MetadataError",
    "MetadataVersionError",
    "ModelLoadError",
    "ModelNotFoundError",
    "ModelTooLargeError",
    "NotCachedError",
    "StagingError",
    "UnsafeModelError",
]


class NotCachedError(ModelLoadError, FileNotFoundError):
    """Offline (``HF_HUB_OFFLINE=1``) and the requested Hub revision is not in the local cache."""


class HubUnreachableError(ModelLoadError, ConnectionError):
    """The Hub endpoint could not be reached and the model is not in the local cache."""


class ModelTooLargeError(ModelLoadError):
    """A Hub download would pass its byte limit (declared by the Hub, or counted while reading)."""


class StagingError(TiledsegError, ValueError):
    """A training run directory or a staged repository folder is incomplete or invalid."""
