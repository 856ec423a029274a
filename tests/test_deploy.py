"""deploy/: the TF Serving config files parse with TF Serving's own protos and agree with each
other and with the client's defaults. (Running the containers is not possible here.)"""

from __future__ import annotations

import inspect
import re

import pytest
import yaml
from conftest import REPO_ROOT
from google.protobuf import text_format
from tensorflow_serving.config import model_server_config_pb2

from tiledseg.serving import ServingModel, parse_serving_url

DEPLOY = REPO_ROOT / "deploy"
# BatchingParameters (tensorflow_serving/servables/tensorflow/session_bundle_config.proto); the
# proto is not shipped with tensorflow-serving-api, so its field names are listed here.
_BATCHING_FIELDS = {
    "max_batch_size",
    "batch_timeout_micros",
    "max_enqueued_batches",
    "num_batch_threads",
    "thread_pool_name",
    "allowed_batch_sizes",
    "pad_variable_length_inputs",
    "enable_large_batch_splitting",
}


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def models_config():
    config = model_server_config_pb2.ModelServerConfig()
    text_format.Parse((DEPLOY / "models.config").read_text(), config)
    return config


def _batching():
    values: dict[str, list[int]] = {}
    for line in (DEPLOY / "batching.config").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"(\w+)\s*(?:\{\s*value:\s*(\d+)\s*\}|:\s*(\d+))", line)
        assert match, f"unparsable batching.config line: {line!r}"
        values.setdefault(match.group(1), []).append(int(match.group(2) or match.group(3)))
    return values


def test_models_config_serves_every_zoo_model_from_the_mounted_folder(models_config, compose):
    configs = models_config.model_config_list.config
    assert [c.name for c in configs] == ["unet-isic2017", "unet-bloodcell"]
    mounts = {v.split(":")[0]: v.split(":")[1] for v in compose["services"]["serving"]["volumes"]}
    assert mounts["./models"] == "/models"
    for config in configs:
        assert config.base_path == f"/models/{config.name}"
        assert config.model_platform == "tensorflow"


def test_batching_limits_fit_the_clients_defaults():
    batching = _batching()
    assert set(batching) <= _BATCHING_FIELDS
    max_batch = batching["max_batch_size"][0]
    sizes = batching.get("allowed_batch_sizes", [max_batch])
    assert sizes == sorted(sizes) and sizes[-1] == max_batch  # TF Serving requires both
    client_default = inspect.signature(ServingModel).parameters["batch_size"].default
    assert client_default <= max_batch


def test_compose_wires_config_files_and_the_apps_serving_url(compose, models_config):
    serving = compose["services"]["serving"]
    flags = dict(flag.lstrip("-").split("=", 1) for flag in serving["command"])
    mounted = {v.split(":")[1]: v.split(":")[0] for v in serving["volumes"]}
    for flag in ("model_config_file", "batching_parameters_file"):
        source = mounted[flags[flag]]
        assert (DEPLOY / source).is_file(), f"{flag} points at {source}, which is missing"
    assert flags["port"] == "8500" and flags["enable_batching"] == "true"
    app = compose["services"]["app"]
    assert (REPO_ROOT / app["build"]["dockerfile"]).is_file()
    address = parse_serving_url(app["environment"]["TILEDSEG_SERVING_URL"])
    assert address.endpoints == (("serving", 8500),)
    assert address.model_name in {c.name for c in models_config.model_config_list.config}
