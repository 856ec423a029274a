"""Run tiled inference against TensorFlow Serving over gRPC.

Tiling, blending and post-processing stay in tiledseg; only the network runs in the server.
``ServingModel`` is imported on first use, since it imports TensorFlow and gRPC; the URL parser
and the errors do not.

Example:
    >>> from tiledseg import predict_tiled  # doctest: +SKIP
    >>> from tiledseg.serving import ServingModel  # doctest: +SKIP
    >>> served = ServingModel("grpc://localhost:8500/unet-isic2017", meta="unet-isic2017")
    >>> probabilities = predict_tiled(image, served)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

from tiledseg.serving.address import (
    DEFAULT_PORT,
    DEFAULT_SIGNATURE,
    ServingAddress,
    parse_serving_url,
)
from tiledseg.serving.errors import (
    BatchTooLargeError,
    ServedModelMismatchError,
    ServedModelNotFoundError,
    ServingError,
    ServingRequestError,
    ServingTimeoutError,
    ServingUnreachableError,
    SignatureMismatchError,
)
from tiledseg.serving.meta import META_SIGNATURE, meta_fingerprint, read_serving_meta

__all__ = [
    "DEFAULT_PORT",
    "DEFAULT_SIGNATURE",
    "META_SIGNATURE",
    "BatchTooLargeError",
    "ServedModelMismatchError",
    "ServedModelNotFoundError",
    "ServingAddress",
    "ServingError",
    "ServingModel",
    "ServingRequestError",
    "ServingTimeoutError",
    "ServingUnreachableError",
    "SignatureMismatchError",
    "meta_fingerprint",
    "parse_serving_url",
    "read_serving_meta",
]


def __getattr__(name: str) -> Any:
    if name == "ServingModel":
        from tiledseg.serving.client import ServingModel

        return ServingModel
    raise AttributeError(f"module 'tiledseg.serving' has no attribute {name!r}")
