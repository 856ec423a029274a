"""Errors of the TF Serving client; each message says what the user can do about it.

All are :class:`tiledseg.errors.TiledsegError`, so the CLI and the app print the message without
a traceback.
"""

from __future__ import annotations

from tiledseg.errors import TiledsegError

__all__ = [
    "BatchTooLargeError",
    "ServedModelMismatchError",
    "ServedModelNotFoundError",
    "ServingError",
    "ServingRequestError",
    "ServingTimeoutError",
    "ServingUnreachableError",
    "SignatureMismatchError",
]


class ServingError(TiledsegError):
    """A call to TensorFlow Serving failed."""


class ServingUnreachableError(ServingError, ConnectionError):
    """No answer from the server at ``host:port`` (gRPC UNAVAILABLE after every retry)."""

    def __init__(self, message: str, *, host: str, port: int):
        self.host = host
        self.port = port
        super().__init__(message)


class ServingTimeoutError(ServingError, TimeoutError):
    """The server did not answer within the deadline, on every attempt."""


class ServedModelNotFoundError(ServingError, LookupError):
    """The server has no such model, version or version label.

    Attributes:
        model_name: str, the name asked for.
        available: list of ``(version, state)`` the server reported for that name (empty when
            it has no model by that name).
    """

    def __init__(self, message: str, *, model_name: str, available: list[tuple[int, str]]):
        self.model_name = model_name
        self.available = available
        super().__init__(message)


class ServedModelMismatchError(ServingError, ValueError):
    """The served model was exported from other metadata than the one given (``--meta``)."""

    def __init__(self, message: str, *, served: str, expected: str):
        self.served = served
        self.expected = expected
        super().__init__(message)


class SignatureMismatchError(ServingError, ValueError):
    """The served signature is not what tiledseg sends or expects (names, dtype, shape)."""


class BatchTooLargeError(ServingError, ValueError):
    """A batch of tiles is over the server's batch limit or the gRPC message size limit."""


class ServingRequestError(ServingError):
    """Any other error the server answered with; the message carries its gRPC code and text."""

    def __init__(self, message: str, *, code: str):
        self.code = code
        super().__init__(message)
