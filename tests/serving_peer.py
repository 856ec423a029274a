"""A gRPC protocol peer for testing the TF Serving client. It is NOT a TF Serving replacement.

The real ``tensorflow_model_server`` cannot be installed here (it is on neither PyPI nor Debian),
so the client is tested against this in-process server. It implements, with the messages of
``tensorflow_serving.apis``:

- ``PredictionService.Predict`` and ``PredictionService.GetModelMetadata``;
- ``ModelService.GetModelStatus``;

over SavedModels loaded with ``tf.saved_model.load`` (the signature map returned by
GetModelMetadata is read from ``saved_model.pb``, as TF Serving returns it). Where the client's
behaviour depends on the server's wording, the status codes and messages copy TF Serving's
(sources named beside each). Everything else TF Serving does (batching, version policies, model
config reloading, REST, monitoring) is absent.

Test knobs: random per-request delays (responses come back out of order), failing the first N
Predict calls with UNAVAILABLE, sleeping past a deadline, a maximum batch size, stopping the whole
server after N Predict calls, and a small gRPC receive limit. The knobs and the Predict counts
are about the tiles: calls to the export's metadata signature (``tiledseg_metadata``, one per
client check) are answered at once and counted apart. With ``tls=(key, certificate)`` the port
is TLS (``grpcs://``), as TF Serving's ``--ssl_config_file`` makes it.
"""

from __future__ import annotations

import functools
import random
import threading
import time
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

_DEFAULT_SIGNATURE = "serving_default"  # tensorflow/cc/saved_model/signature_constants.h
_META_SIGNATURE = "tiledseg_metadata"  # model_zoo.export's metadata signature


@dataclass
class PeerStats:
    """What the peer saw, for the tests' assertions."""

    predict_calls: int = 0
    metadata_calls: int = 0
    failed_on_purpose: int = 0
    batch_sizes: list[int] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)
    arrivals: list[int] = field(default_factory=list)
    completions: list[int] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0


@functools.cache
def _load(path: Path) -> _Servable:
    # Loading a SavedModel takes a while; peers of one test run share them (calls are thread-safe).
    return _Servable(path)


class _Servable:
    def __init__(self, path: Path):
        self.path = Path(path)
        self.loaded = tf.saved_model.load(str(self.path))
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((self.path / "saved_model.pb").read_bytes())
        self.signature_defs = proto.meta_graphs[0].signature_def


class ProtocolPeer(
    prediction_service_pb2_grpc.PredictionServiceServicer,
    model_service_pb2_grpc.ModelServiceServicer,
):
    """An in-process gRPC server speaking TF Serving's Predict/metadata/status protocol.

    Args:
        models: ``{name: {version: saved_model_dir}}``.
        labels: ``{name: {label: version}}``, as ``version_labels`` in a ``models.config``.
        delay_s: ``(low, high)``: each Predict sleeps a random time in this range.
        sleep_s: every Predict sleeps this long (to pass a client's deadline).
        fail_first: the first N Predict calls fail with UNAVAILABLE.
        max_batch_size: Predict refuses larger batches as TF Serving's batcher does.
        stop_after: after this many Predict calls, the server stops (connections close).
        max_receive_mb: the server's gRPC receive limit (TF Serving uses INT_MAX).
        seed: for the delays.
        tls: ``(private_key_pem, certificate_chain_pem)`` to serve TLS, or None (plaintext).
    """

    def __init__(
        self,
        models: dict[str, dict[int, Path]],
        *,
        labels: dict[str, dict[str, int]] | None = None,
        delay_s: tuple[float, float] = (0.0, 0.0),
        sleep_s: float = 0.0,
        fail_first: int = 0,
        max_batch_size: int | None = None,
        stop_after: int | None = None,
        max_receive_mb: int | None = None,
        seed: int = 0,
        tls: tuple[bytes, bytes] | None = None,
    ):
        self.models = {
            name: {int(v): _load(Path(path).resolve()) for v, path in versions.items()}
            for name, versions in models.items()
        }
        self.labels = labels or {}
        self.delay_s = delay_s
        self.sleep_s = sleep_s
        self.fail_first = fail_first
        self.max_batch_size = max_batch_size
        self.stop_after = stop_after
        self.stats = PeerStats()
        self._random = random.Random(seed)
        self._lock = threading.Lock()
        limit = (max_receive_mb or 2047) * 1024 * 1024
        self._server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16),
            options=[
                ("grpc.max_receive_message_length", limit),
                ("grpc.max_send_message_length", 2047 * 1024 * 1024),
            ],
        )
        prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(self, self._server)
        model_service_pb2_grpc.add_ModelServiceServicer_to_server(self, self._server)
        self.tls = tls is not None
        if tls is None:
            self.port = self._server.add_insecure_port("127.0.0.1:0")
        else:
            credentials = grpc.ssl_server_credentials([tls])
            self.port = self._server.add_secure_port("127.0.0.1:0", credentials)
        self.stopped = threading.Event()

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url(self, model: str, query: str = "") -> str:
        scheme = "grpcs" if self.tls else "grpc"
        return f"{scheme}://{self.target}/{model}" + (f"?{query}" if query else "")

    def start(self) -> ProtocolPeer:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop(grace=0).wait(5)
        self.stopped.set()

    # --- PredictionService -------------------------------------------------------------------

    def Predict(self, request, context):
        if request.model_spec.signature_name == _META_SIGNATURE:
            with self._lock:
                self.stats.metadata_calls += 1
            version, servable = self._servable(request.model_spec, context)
            return self._run(request, context, version, servable, _META_SIGNATURE)
        with self._lock:
            self.stats.predict_calls += 1
            number = self.stats.predict_calls
            self.stats.arrivals.append(number)
            self.stats.in_flight += 1
            self.stats.max_in_flight = max(self.stats.max_in_flight, self.stats.in_flight)
            failing = number <= self.fail_first
            if failing:
                self.stats.failed_on_purpose += 1
            delay = self._random.uniform(*self.delay_s) + self.sleep_s
        try:
            if self.stop_after is not None and number > self.stop_after:
                threading.Thread(target=self.stop, daemon=True).start()
                context.abort(grpc.StatusCode.UNAVAILABLE, "peer: shutting down")
            if failing:
                context.abort(grpc.StatusCode.UNAVAILABLE, "peer: failing on purpose")
            version, servable = self._servable(request.model_spec, context)
            name = request.model_spec.signature_name or _DEFAULT_SIGNATURE
            if name not in servable.signature_defs:
                # tensorflow_serving/servables/tensorflow/predict_util.cc
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f'Serving signature name: "{name}" not found in signature def',
                )
            signature_def = servable.signature_defs[name]
            inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
            if set(inputs) != set(signature_def.inputs):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"input tensor alias(es) {sorted(inputs)} do not match the signature's "
                    f"{sorted(signature_def.inputs)}",
                )
            batch = next(iter(inputs.values())).shape[0]
            with self._lock:
                self.stats.batch_sizes.append(int(batch))
                self.stats.versions.append(version)
            if self.max_batch_size is not None and batch > self.max_batch_size:
                # tensorflow/core/kernels/batching_util/batch_scheduler_utils / shared queue
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Task size {batch} is larger than maximum input batch size "
                    f"{self.max_batch_size}",
                )
            time.sleep(delay)
            response = self._run(request, context, version, servable, name)
            with self._lock:
                self.stats.completions.append(number)
            return response
        finally:
            with self._lock:
                self.stats.in_flight -= 1

    def _run(self, request, context, version: int, servable: _Servable, name: str):
        if name not in servable.signature_defs:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f'Serving signature name: "{name}" not found in signature def',
            )
        inputs = {alias: tf.make_ndarray(proto) for alias, proto in request.inputs.items()}
        function = servable.loaded.signatures[name]
        try:
            outputs = function(**{k: tf.constant(v) for k, v in inputs.items()})
        except (tf.errors.InvalidArgumentError, TypeError, ValueError) as error:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(error).splitlines()[0])
        wanted = list(request.output_filter) or list(outputs)
        response = predict_pb2.PredictResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        response.model_spec.signature_name = name
        for alias in wanted:
            if alias not in outputs:
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"output tensor alias not found in signature: {alias}",
                )
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(outputs[alias].numpy()))
        return response

    def GetModelMetadata(self, request, context):
        # tensorflow_serving/servables/tensorflow/get_model_metadata_impl.cc
        if list(request.metadata_field) != ["signature_def"]:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "Metadata field signature_def must be the only field requested",
            )
        version, servable = self._servable(request.model_spec, context)
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = request.model_spec.name
        response.model_spec.version.value = version
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, value in servable.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(value)
        response.metadata["signature_def"].Pack(signature_map)
        return response

    # --- ModelService --------------------------------------------------------------------------

    def GetModelStatus(self, request, context):
        # tensorflow_serving/model_servers/get_model_status_impl.cc
        name = request.model_spec.name
        versions = self.models.get(name, {})
        if request.model_spec.HasField("version"):
            wanted = request.model_spec.version.value
            if wanted not in versions:
                context.abort(
                    grpc.StatusCode.NOT_FOUND, f"Could not find version {wanted} of model {name}"
                )
            versions = {wanted: versions[wanted]}
        if not versions:
            context.abort(grpc.StatusCode.NOT_FOUND, f"Could not find any versions of model {name}")
        response = get_model_status_pb2.GetModelStatusResponse()
        for version in sorted(versions):
            status = response.model_version_status.add()
            status.version = version
            status.state = get_model_status_pb2.ModelVersionStatus.State.AVAILABLE
        return response

    # --- lookups as in tensorflow_serving/model_servers/server_core.cc --------------------------

    def _servable(self, spec, context) -> tuple[int, _Servable]:
        versions = self.models.get(spec.name, {})
        if spec.version_label:
            label = spec.version_label
            if label not in self.labels.get(spec.name, {}):
                context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"Unrecognized servable version label: {label}",
                )
            version = self.labels[spec.name][label]
            request_text = f"Specific({spec.name}, {version})"
        elif spec.HasField("version"):
            version = spec.version.value
            request_text = f"Specific({spec.name}, {version})"
        else:
            version = max(versions) if versions else None
            request_text = f"Latest({spec.name})"
        if version not in versions:
            # tensorflow_serving/core/aspired_versions_manager.cc / basic_manager.cc
            context.abort(
                grpc.StatusCode.NOT_FOUND, f"Servable not found for request: {request_text}"
            )
        return version, versions[version]
