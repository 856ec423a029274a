"""Exception types a user can act on; the CLI and the app show their message, never a traceback."""

from __future__ import annotations


class TiledsegError(Exception):
    """Base class for errors caused by the input, not by a bug."""


class ImageReadError(TiledsegError, ValueError):
    """An image or mask could not be read: corrupt, empty, unsupported or too large.

    The message names the file and the reason.
    """

    def __init__(self, source: str, reason: str):
        self.source = source
        self.reason = reason
        super().__init__(f"Cannot read {source}: {reason}")


class PixelLimitError(ImageReadError):
    """An image has more pixels than the configured limit."""


class MaskSizeError(TiledsegError, ValueError):
    """A ground-truth mask does not have its image's height and width."""


class ModelLoadError(TiledsegError, ValueError):
    """A model reference could not be resolved or loaded."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """A reference names no local path, bundled id, registry id or Hub repository/revision."""


class MetadataError(ModelLoadError):
    """``tiledseg.json`` is missing a field, has a wrong type, or an invalid value."""


class MetadataVersionError(MetadataError):
    """``tiledseg.json`` has a ``format_version`` this tiledseg cannot read (too new or too old)."""


class UnsafeModelError(ModelLoadError):
    """Keras ``safe_mode`` refused the checkpoint (it contains code, e.g. a Lambda layer)."""


class RuntimeNotInstalledError(TiledsegError, ImportError):
    """An inference runtime (OpenVINO, ONNX Runtime) was asked for and is not installed.

    The message gives the ``pip install`` command.
    """


class WorkLimitError(TiledsegError, ValueError):
    """An image would be too large at the model's scale, or need too many tiles.

    Raised before anything is allocated; the message gives the input's size, the size at the
    model's scale (or the tile count), the limit, and what to change.
    """


class MaskValueError(ImageReadError):
    """A mask's values cannot be read as one foreground unambiguously (see tiledseg.masks)."""


class BitDepthWarning(UserWarning):
    """A 16-bit image whose values fit in 12 bits or fewer (a camera's 10-, 12-bit data).

    Read as value / 257 like any 16-bit image, it comes out nearly black, and a model trained
    on 8-bit photos sees almost nothing. The image is still read: the warning says so and how to
    save it with its full range.
    """


# The errors that concern one image or pair (unreadable, a mask of another size, too much work
# at the model's scale, missing): a batch skips that image and goes on; others stop the run.
IMAGE_ERRORS: tuple[type[Exception], ...] = (
    ImageReadError,
    MaskSizeError,
    WorkLimitError,
    FileNotFoundError,
)
