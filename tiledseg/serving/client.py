"""A model served by TensorFlow Serving, as a tile backend for the engine.

:class:`ServingModel` sends batches of tiles as ``PredictRequest``s through
``PredictionServiceStub`` and reads the served signature with ``GetModelMetadata`` (and the
available versions with ``ModelService.GetModelStatus`` when something is missing). Tiling,
blending and post-processing stay in tiledseg (:func:`tiledseg.predict_tiled`), so the result is
the same as local inference.

This module imports TensorFlow (for ``tf.make_tensor_proto`` / ``tf.make_ndarray``, the
TensorProto conversions the serving API is defined with) and gRPC.
"""

from __future__ import annotations

import os
import random
import re
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import tensorflow as tf
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tiledseg._validation import validate_range
from tiledseg.serving.address import ServingAddress
from tiledseg.serving.errors import (
    BatchTooLargeError,
    ServedModelMismatchError,
    ServedModelNotFoundError,
    ServingRequestError,
    ServingTimeoutError,
    ServingUnreachableError,
    SignatureMismatchError,
)
from tiledseg.serving.meta import (
    FINGERPRINT_OUTPUT,
    META_NAME_OUTPUT,
    META_SIGNATURE,
    meta_fingerprint,
    read_serving_meta,
)
from tiledseg.serving.signature import check_signature

__all__ = ["ServingModel"]

_RETRYABLE = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
# Room for the request's other fields beside the tensor bytes.
_MESSAGE_OVERHEAD = 64 * 1024
# TF Serving's own wording (tensorflow/core/kernels/batching_util/shared_batch_scheduler.h).
_BATCH_LIMIT = re.compile(r"larger than maximum input batch size (\d+)")
# gRPC's words for a failed TLS handshake (BoringSSL's, through grpc core).
_TLS_FAILURE = re.compile(r"ssl|tls|handshake|certificate", re.IGNORECASE)


class ServingModel:
    """A segmentation model served by TensorFlow Serving; pass it to :func:`predict_tiled`.

    Args:
        target: str, ``grpc://HOST:PORT[,HOST:PORT...]/MODEL_NAME[?version=N|label=L&
            signature=S]`` (``grpcs://`` for TLS), or ``HOST:PORT`` together with
            ``model_name``. With several endpoints the batches go round-robin over them (and a
            retry goes to the next one).
        meta: the model's zoo metadata (scale, tile, threshold, downsampling...): a path to
            ``tiledseg.json`` or to the exported version folder, a zoo id, a ``ModelMeta`` or a
            dict (see :func:`tiledseg.serving.read_serving_meta`). Required: TF Serving does
            not serve it.
        model_name: str or None, overrides nothing: required when ``target`` is ``HOST:PORT``.
        version: int or None, a fixed model version (default: the latest the server has).
        version_label: str or None, a version label from the server's ``models.config``.
        signature: str or None, the SignatureDef (default ``"serving_default"``).
        max_in_flight: int >= 1, default 4: batches sent at once.
        batch_size: int >= 1, default 4: tiles per request (keep it at or under the server's
            ``max_batch_size`` when it batches).
        deadline_s: float > 0, default 60: the deadline of each call, in seconds.
        retries: int >= 0, default 3: retries after UNAVAILABLE or DEADLINE_EXCEEDED, waiting
            ``backoff_s`` x 2^attempt (jittered) between attempts.
        backoff_s: float >= 0, default 0.2.
        max_message_mb: int in [1, 2047], default 512: gRPC send/receive limit in MiB (gRPC's
            own default, 4 MiB, is one 512² tile).
        ca_file: str, PathLike or None: for a ``grpcs://`` URL, the PEM file of the
            certificate authority that signed the server's certificate; None trusts the
            system's roots.

    The served model is checked against ``meta``: an export by ``python -m model_zoo export``
    serves the fingerprint of the metadata it was made from (signature ``tiledseg_metadata``),
    and :meth:`check` refuses a different one (:class:`ServedModelMismatchError`). A SavedModel
    without it (a plain ``keras.Model.export``) is used with a warning.
    Attributes:
        meta: the ``ModelMeta``.
        address: the :class:`ServingAddress`.
        served_version: int or None, the version the server answered with (after :meth:`check`);
            every later request asks for it, so all tiles of all images come from one version
            (make a new ServingModel to pick up a newer one).
        served_fingerprint: str or None, the fingerprint the served model answered with (after
            :meth:`check`; None when it serves none).

    Raises:
        ValueError, TypeError: an argument is invalid.
        ModelLoadError: the metadata cannot be found or read.

    Example:
        >>> from tiledseg import predict_tiled
        >>> served = ServingModel(  # doctest: +SKIP
        ...     "grpc://localhost:8500/unet-isic2017", meta="unet-isic2017", max_in_flight=8)
        >>> probabilities = predict_tiled(image, served)  # doctest: +SKIP
    """

    # Every request carries batch_size tiles (the last padded): a server that batches or
    # compiles per shape sees one shape.
    fixed_batch = True

    def __init__(
        self,
        target: str,
        *,
        meta: Any = None,
        model_name: str | None = None,
        version: int | None = None,
        version_label: str | None = None,
        signature: str | None = None,
        max_in_flight: int = 4,
        batch_size: int = 4,
        deadline_s: float = 60.0,
        retries: int = 3,
        backoff_s: float = 0.2,
        max_message_mb: int = 512,
        ca_file: str | os.PathLike | None = None,
    ):
        self.address = ServingAddress.from_target(
            target,
            model_name=model_name,
            version=version,
            version_label=version_label,
            signature=signature,
        )
        validate_range(max_in_flight, "max_in_flight", low=1, integer=True)
        validate_range(batch_size, "batch_size", low=1, integer=True)
        validate_range(deadline_s, "deadline_s", low=0, low_inclusive=False)
        validate_range(retries, "retries", low=0, integer=True)
        validate_range(backoff_s, "backoff_s", low=0)
        validate_range(max_message_mb, "max_message_mb", low=1, high=2047, integer=True)
        if meta is None:
            raise ValueError(
                "`meta` is required: TF Serving does not serve tiledseg.json. Pass the exported "
                "version folder (BASE/NAME/VERSION), a tiledseg.json path or the zoo id "
                "(--meta on the command line)."
            )
        self.meta = read_serving_meta(meta, self.address.version)
        self.max_in_flight = max_in_flight
        self.batch_size = batch_size
        self.deadline_s = float(deadline_s)
        self.retries = retries
        self.backoff_s = float(backoff_s)
        self.max_message_bytes = max_message_mb * 1024 * 1024
        self.served_version: int | None = None
        self.served_fingerprint: str | None = None
        credentials = _channel_credentials(self.address.tls, ca_file)
        options = [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
            # Spread calls over every address a name resolves to (scaled-out replicas).
            ("grpc.lb_policy_name", "round_robin"),
        ]
        targets = self.address.targets
        if credentials is None:
            self._channels = [grpc.insecure_channel(t, options=options) for t in targets]
        else:
            self._channels = [grpc.secure_channel(t, credentials, options) for t in targets]
        self._predict = [
            prediction_service_pb2_grpc.PredictionServiceStub(c) for c in self._channels
        ]
        self._status = [model_service_pb2_grpc.ModelServiceStub(c) for c in self._channels]
        self._turn = 0
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()  # one GetModelMetadata, however many threads start
        self._input_name: str | None = None
        self._output_name: str | None = None

    # --- the tile backend interface ------------------------------------------------------------

    @property
    def name(self) -> str:
        return f"{self.address.model_name}@{','.join(self.address.targets)}"

    @property
    def downsampling_factor(self) -> int:
        return int(self.meta.downsampling)

    def predict_tiles(self, batch: np.ndarray) -> np.ndarray:
        """Send one batch of tiles in one ``PredictRequest``; thread-safe.

        Args:
            batch: float32-convertible ``(N, h, w, C)`` pixel values 0-255, ``h`` and ``w``
                multiples of ``meta.downsampling``.

        Returns:
            float32 ``(N, h, w, K)`` probabilities.

        Raises:
            ServingUnreachableError, ServingTimeoutError, ServedModelNotFoundError,
            SignatureMismatchError, BatchTooLargeError, ServingRequestError: see their docs.
        """
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        channels = self.meta.input_channels
        if batch.ndim != 4 or batch.shape[-1] != channels:
            raise ValueError(
                f"`batch` must be (N, height, width, {channels}). Received: shape={batch.shape}"
            )
        self._check_size(batch)  # before any call: a batch too large for gRPC never leaves
        self.check()
        request = predict_pb2.PredictRequest()
        request.model_spec.CopyFrom(self._spec())
        request.inputs[self._input_name].CopyFrom(tf.make_tensor_proto(batch))
        request.output_filter.append(self._output_name)
        response = self._call("Predict", request, tiles=batch.shape[0])
        if self._output_name not in response.outputs:
            raise ServingRequestError(
                f"The server's answer has no output {self._output_name!r} "
                f"(it has {sorted(response.outputs)}).",
                code="OK",
            )
        output = tf.make_ndarray(response.outputs[self._output_name])
        return np.asarray(output, dtype=np.float32)

    # --- checks ---------------------------------------------------------------------------------

    def check(self) -> ServingModel:
        """Ask the server for the model's signature and check it against the metadata.

        Runs once (later calls return at once); :meth:`predict_tiles` calls it first.

        Returns:
            self.

        Raises:
            ServingUnreachableError: no answer from the server.
            ServedModelNotFoundError: no such model, version or label (lists what exists).
            SignatureMismatchError: no such signature, or its input/output don't fit.
            ServedModelMismatchError: the served model was exported from other metadata.
        """
        with self._check_lock:
            if self._input_name is not None:
                return self
            request = get_model_metadata_pb2.GetModelMetadataRequest()
            request.model_spec.CopyFrom(self._spec())
            request.metadata_field.append("signature_def")
            response = self._call("GetModelMetadata", request)
            signatures = get_model_metadata_pb2.SignatureDefMap()
            response.metadata["signature_def"].Unpack(signatures)
            input_name, output_name = check_signature(
                signatures.signature_def,
                self.address.signature,
                input_channels=self.meta.input_channels,
                classes=len(self.meta.classes),
                where=self._described(),
            )
            if response.model_spec.HasField("version"):
                self.served_version = int(response.model_spec.version.value)
            if META_SIGNATURE in signatures.signature_def:
                self._check_fingerprint(signatures.signature_def[META_SIGNATURE])
            else:
                warnings.warn(
                    f"{self._described()} serves no metadata fingerprint (signature "
                    f"{META_SIGNATURE!r}): it was not exported by `python -m model_zoo export`, "
                    "so the metadata given cannot be checked against it.",
                    stacklevel=2,
                )
            self._input_name, self._output_name = input_name, output_name
        return self

    def _check_fingerprint(self, signature: Any) -> None:
        """Ask the export's metadata signature for its fingerprint; refuse a different one."""
        request = predict_pb2.PredictRequest()
        spec = self._spec()
        spec.signature_name = META_SIGNATURE
        request.model_spec.CopyFrom(spec)
        probe = np.zeros((1, 1, 1, self.meta.input_channels), np.float32)
        for alias in signature.inputs:  # the export's one input, "images"
            request.inputs[alias].CopyFrom(tf.make_tensor_proto(probe))
        request.output_filter.extend([FINGERPRINT_OUTPUT, META_NAME_OUTPUT])
        response = self._call("Predict", request)
        served = _first_text(response.outputs.get(FINGERPRINT_OUTPUT))
        name = _first_text(response.outputs.get(META_NAME_OUTPUT))
        expected = meta_fingerprint(self.meta)
        self.served_fingerprint = served
        if served != expected:
            raise ServedModelMismatchError(
                f"{self._described()} was exported from the metadata of "
                f"{name or 'another model'!r} (fingerprint {str(served)[:12]}), but the metadata "
                "given is "
                f"{self.meta.name or 'unnamed'!r} (fingerprint {expected[:12]}): its scale, "
                "tiles and threshold are not this network's, so nothing was run. Pass the served "
                "model's own metadata with --meta: its export folder (BASE/NAME/VERSION, which "
                "holds assets.extra/tiledseg.json) or the zoo id it was exported from.",
                served=str(served),
                expected=expected,
            )

    def _check_size(self, batch: np.ndarray) -> None:
        outputs = batch.nbytes // batch.shape[-1] * max(1, len(self.meta.classes))
        needed = max(batch.nbytes, outputs) + _MESSAGE_OVERHEAD
        if needed > self.max_message_bytes:
            raise BatchTooLargeError(
                f"A batch of {batch.shape[0]} tile(s) of {batch.shape[1]}x{batch.shape[2]} px "
                f"needs {needed / 2**20:.0f} MiB per message, over max_message_mb="
                f"{self.max_message_bytes // 2**20}. Lower --batch-size or --tile, or raise "
                "--max-message-mb (at most 2047)."
            )

    # --- calls, retries and errors ----------------------------------------------------------------

    def _spec(self) -> model_pb2.ModelSpec:
        spec = model_pb2.ModelSpec(
            name=self.address.model_name, signature_name=self.address.signature
        )
        # Once the server has said which version "latest" or a label means, ask for that one:
        # a new version loaded mid-run must not serve half the tiles of an image.
        if self.served_version is not None:
            spec.version.value = self.served_version
        elif self.address.version is not None:
            spec.version.value = self.address.version
        elif self.address.version_label is not None:
            spec.version_label = self.address.version_label
        return spec

    def _next_endpoint(self) -> int:
        with self._lock:
            index = self._turn % len(self._channels)
            self._turn += 1
        return index

    def _call(self, method: str, request: Any, tiles: int = 0) -> Any:
        attempt = 0
        while True:
            index = self._next_endpoint()
            stub = self._predict[index]
            try:
                return getattr(stub, method)(request, timeout=self.deadline_s)
            except grpc.RpcError as error:
                if error.code() in _RETRYABLE and attempt < self.retries:
                    # Exponential backoff with jitter, so parallel calls don't retry in step.
                    time.sleep(self.backoff_s * 2**attempt * random.uniform(0.5, 1.0))
                    attempt += 1
                    continue
                raise self._translate(error, index, attempt + 1, tiles) from None

    def _translate(self, error: grpc.RpcError, index: int, attempts: int, tiles: int) -> Exception:
        code, details = error.code(), error.details() or ""
        host, port = self.address.endpoints[index]
        target = self.address.targets[index]
        tries = f"{attempts} attempt(s)"
        if code == grpc.StatusCode.UNAVAILABLE:
            return ServingUnreachableError(
                f"Cannot reach TF Serving at {target} after {tries} ({details}). "
                + self._unreachable_hint(details, port),
                host=host,
                port=port,
            )
        if code == grpc.StatusCode.DEADLINE_EXCEEDED:
            return ServingTimeoutError(
                f"TF Serving at {target} did not answer within deadline_s={self.deadline_s:g} "
                f"s, {tries}. Raise --deadline, lower --batch-size, or add serving replicas."
            )
        if code == grpc.StatusCode.NOT_FOUND or "version label" in details:
            return self._not_found(details, index)
        limit = _BATCH_LIMIT.search(details)
        if limit:
            return BatchTooLargeError(
                f"TF Serving at {target} accepts at most {limit.group(1)} tiles per request "
                f"(its max_batch_size); this client sent {tiles}. Use --batch-size "
                f"{limit.group(1)} or less."
            )
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            return BatchTooLargeError(
                f"TF Serving at {target} refused a batch of {tiles} tile(s) as too "
                f"large ({details}). Lower --batch-size (or --tile), or raise the server's "
                "message size or memory limits."
            )
        if "signature name" in details:
            return SignatureMismatchError(f"{self._described()}: {details}")
        return ServingRequestError(
            f"TF Serving at {target} answered {code.name}: {details}", code=code.name
        )

    def _unreachable_hint(self, details: str, port: int) -> str:
        if self.address.tls and _TLS_FAILURE.search(details):
            if "WRONG_VERSION_NUMBER" in details or "wrong version number" in details.lower():
                return (
                    "The server does not speak TLS on that port: use grpc:// for a plaintext "
                    "server, or enable TLS on it (--ssl_config_file)."
                )
            return (
                "The TLS handshake failed: the server's certificate is not trusted, or does "
                "not name this host. Give the certificate authority that signed it with "
                "--ca-file (ServingModel(ca_file=...)), or use the host name in its certificate."
            )
        if not self.address.tls:
            tls_hint = " If the server uses TLS, write grpcs:// instead of grpc://."
        else:
            tls_hint = ""
        return (
            f"Is the server running, and is {port} its gRPC port (--port, 8500 by default; "
            f"8501 is REST)?{tls_hint}"
        )

    def _not_found(self, details: str, index: int) -> ServedModelNotFoundError:
        """Ask the server which versions exist, to say what can be asked for instead."""
        name, target = self.address.model_name, self.address.targets[index]
        request = get_model_status_pb2.GetModelStatusRequest()
        request.model_spec.name = name
        try:
            response = self._status[index].GetModelStatus(request, timeout=self.deadline_s)
            available = [
                (int(s.version), get_model_status_pb2.ModelVersionStatus.State.Name(s.state))
                for s in response.model_version_status
            ]
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.NOT_FOUND:
                available = None
            else:
                return ServedModelNotFoundError(
                    f"TF Serving at {target} has no model named {name!r} (server: {details}). "
                    "Check the name in the URL against the server's --model_name or "
                    "models.config.",
                    model_name=name,
                    available=[],
                )
        wanted = (
            f"version label {self.address.version_label!r}"
            if self.address.version_label is not None
            else f"version {self.address.version}"
            if self.address.version is not None
            else "a loaded version"
        )
        listing = (
            ", ".join(f"{version} ({state})" for version, state in sorted(available))
            if available
            else "none listed"
        )
        return ServedModelNotFoundError(
            f"TF Serving at {target} has no {wanted} of model {name!r} (server: {details}). "
            f"Versions it has: {listing}. Pick one with ?version=N, or leave the version out "
            "for the latest; labels are set in models.config (version_labels).",
            model_name=name,
            available=available or [],
        )

    def _described(self) -> str:
        version = (
            f" version {self.address.version}"
            if self.address.version is not None
            else f" label {self.address.version_label!r}"
            if self.address.version_label is not None
            else ""
        )
        return f"Model {self.address.model_name!r}{version} at {','.join(self.address.targets)}"

    # --- lifetime -------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the gRPC channels."""
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> ServingModel:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ServingModel({self.address.url()!r}, batch_size={self.batch_size}, " + (
            f"max_in_flight={self.max_in_flight})"
        )


def _channel_credentials(tls: bool, ca_file: str | os.PathLike | None) -> Any:
    """gRPC channel credentials for a ``grpcs://`` address (None: plaintext)."""
    if ca_file is not None and not tls:
        raise ValueError(
            "`ca_file` is for TLS: write the URL as grpcs://HOST:PORT/MODEL_NAME. "
            f"Received: ca_file={os.fspath(ca_file)!r} with a grpc:// URL"
        )
    if not tls:
        return None
    roots = None
    if ca_file is not None:
        path = Path(ca_file).expanduser()
        try:
            roots = path.read_bytes()
        except OSError as error:
            raise ValueError(
                f"Cannot read the CA file {path} ({error.strerror or error}): give the PEM file "
                "of the authority that signed the server's certificate."
            ) from None
        if b"-----BEGIN CERTIFICATE-----" not in roots:
            raise ValueError(
                f"The CA file {path} holds no PEM certificate (-----BEGIN CERTIFICATE-----)."
            )
    return grpc.ssl_channel_credentials(root_certificates=roots)


def _first_text(proto: Any) -> str | None:
    if proto is None:
        return None
    values = tf.make_ndarray(proto).reshape(-1)
    if values.size == 0:
        return None
    value = values[0]
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
