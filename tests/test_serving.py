"""The TF Serving client against a gRPC protocol peer (tests/serving_peer.py).

The peer is an in-process server speaking TF Serving's messages over SavedModels exported by
``model_zoo.export``; it is not TF Serving (whose binary cannot be installed here). What it does
not reproduce is listed in the README's "TensorFlow Serving" section.
"""

from __future__ import annotations

import socket
import time
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from conftest import KERAS_F32, build_tiny_unet
from serving_peer import ProtocolPeer

from model_zoo import ModelMeta, ZooModel
from model_zoo.export import export_savedmodel
from tiledseg import predict_tiled
from tiledseg.cli import main
from tiledseg.errors import ModelLoadError, TiledsegError
from tiledseg.io import read_image, read_mask, write_image
from tiledseg.postprocess import postprocess
from tiledseg.serving import (
    BatchTooLargeError,
    ServedModelNotFoundError,
    ServingModel,
    ServingTimeoutError,
    ServingUnreachableError,
    SignatureMismatchError,
    parse_serving_url,
    read_serving_meta,
)


def _channel0_model(channels: int = 3) -> keras.Model:
    """Output = first channel / 255: each tile's output shows which pixels it was cut from."""
    inputs = keras.Input((None, None, channels))
    picked = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="zeros")(inputs)
    model = keras.Model(inputs, keras.layers.Rescaling(1 / 255.0)(picked))
    kernel = np.zeros((1, 1, channels, 1), np.float32)
    kernel[0, 0, 0, 0] = 1.0
    model.layers[1].set_weights([kernel])
    return model


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    base = tmp_path_factory.mktemp("serving")
    unet = ZooModel(
        model=build_tiny_unet(seed=3),
        meta=ModelMeta(
            name="tiny-unet",
            scale={"mode": "factor", "value": 0.25},
            tile=64,
            overlap=0.25,
            downsampling=4,
            threshold=0.5,
        ),
        card="",
        path=base,
        id="tiny-unet",
    )
    channel0 = ZooModel(
        model=_channel0_model(),
        meta=ModelMeta(name="channel0", tile=32, overlap=0.5, blend="hann"),
        card="",
        path=base,
        id="channel0",
    )
    gray = base / "gray" / "1"  # exported by plain keras: 1 input channel, input alias not "images"
    _channel0_model(channels=1).export(str(gray), format="tf_saved_model", verbose=False)
    return SimpleNamespace(
        base=base,
        unet=unet,
        unet_dir=export_savedmodel(unet, base / "tiny-unet" / "1"),
        channel0=channel0,
        channel0_dir=export_savedmodel(channel0, base / "channel0" / "1"),
        gray_dir=gray,
    )


@pytest.fixture
def start_peer(exports):
    peers = []

    def start(models=None, **options) -> ProtocolPeer:
        models = models or {
            # The same export as two versions, so a missing version has others to list.
            "tiny-unet": {1: exports.unet_dir, 2: exports.unet_dir},
            "channel0": {1: exports.channel0_dir},
            "gray": {1: exports.gray_dir},
        }
        peer = ProtocolPeer(models, **options).start()
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.stop()


@pytest.fixture(scope="module")
def bloodcell_image(shared_data):
    return read_image(sorted((shared_data / "bloodcell" / "test" / "images").glob("*.jpg"))[0])


def _random_image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# --- results ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tta", [None, "flips"])
def test_served_probabilities_equal_local_inference(exports, start_peer, bloodcell_image, tta):
    peer = start_peer()
    served = ServingModel(peer.url("tiny-unet"), meta=exports.unet_dir)
    remote = predict_tiled(bloodcell_image, served, tta=tta)
    local = predict_tiled(bloodcell_image, exports.unet, tta=tta, **KERAS_F32)
    assert remote.shape == bloodcell_image.shape[:2]
    np.testing.assert_allclose(remote, local, rtol=0, atol=1e-4)
    assert served.served_version == 2  # the latest, as TF Serving picks
    assert set(peer.stats.batch_sizes) == {4}  # fixed-size batches, the last one padded


def test_concurrent_out_of_order_answers_go_back_to_their_own_tiles(exports, start_peer):
    peer = start_peer(delay_s=(0.0, 0.03), seed=1)
    served = ServingModel(
        peer.url("channel0"), meta=exports.channel0_dir, batch_size=3, max_in_flight=6
    )
    image = _random_image((190, 250), seed=2)
    result = predict_tiled(image, served)
    np.testing.assert_allclose(result, image[..., 0] / 255.0, rtol=0, atol=1e-6)
    assert peer.stats.max_in_flight > 1
    assert peer.stats.completions != sorted(peer.stats.completions)  # answers came out of order


def test_batches_are_spread_over_several_endpoints(exports, start_peer):
    first, second = start_peer(), start_peer()
    url = f"grpc://{first.target},{second.target}/channel0"
    image = _random_image((120, 140), seed=3)
    result = predict_tiled(image, ServingModel(url, meta=exports.channel0_dir))
    np.testing.assert_allclose(result, image[..., 0] / 255.0, rtol=0, atol=1e-6)
    assert first.stats.predict_calls > 0 and second.stats.predict_calls > 0


def test_the_version_found_first_serves_every_later_tile(exports, start_peer):
    peer = start_peer()
    served = ServingModel(peer.url("tiny-unet"), meta=exports.unet_dir).check()
    assert served.served_version == 2
    peer.models["tiny-unet"][3] = peer.models["tiny-unet"][1]  # a new version is loaded
    predict_tiled(_random_image((100, 100)), served)
    assert set(peer.stats.versions) == {2}
    assert ServingModel(peer.url("tiny-unet"), meta=exports.unet_dir).check().served_version == 3


def test_version_label_and_host_port_forms(exports, start_peer):
    peer = start_peer(labels={"tiny-unet": {"stable": 1}})
    by_label = ServingModel(peer.url("tiny-unet", "label=stable"), meta=exports.unet_dir).check()
    assert by_label.served_version == 1
    by_host = ServingModel(peer.target, model_name="tiny-unet", version=2, meta=exports.unet_dir)
    assert by_host.check().served_version == 2


# --- deadlines, retries, unreachable ----------------------------------------------------------


def test_a_call_past_its_deadline_is_retried_then_reported(exports, start_peer):
    peer = start_peer(sleep_s=1.5)
    served = ServingModel(
        peer.url("channel0"), meta=exports.channel0_dir, deadline_s=0.2, retries=1, backoff_s=0
    )
    started = time.perf_counter()
    with pytest.raises(ServingTimeoutError, match=r"deadline_s=0\.2 s, 2 attempt\(s\)"):
        served.predict_tiles(np.zeros((1, 32, 32, 3), np.float32))
    assert time.perf_counter() - started < 1.4
    assert peer.stats.predict_calls == 2


def test_unavailable_is_retried_with_backoff(exports, start_peer):
    peer = start_peer(fail_first=2)
    served = ServingModel(peer.url("channel0"), meta=exports.channel0_dir, backoff_s=0.01)
    image = _random_image((40, 40))
    result = predict_tiled(image, served, tile=64)
    np.testing.assert_allclose(result, image[..., 0] / 255.0, atol=1e-6)
    assert peer.stats.failed_on_purpose == 2 and peer.stats.predict_calls == 3

    peer = start_peer(fail_first=2)
    few = ServingModel(peer.url("channel0"), meta=exports.channel0_dir, retries=1, backoff_s=0)
    with pytest.raises(ServingUnreachableError, match="after 2 attempt"):
        predict_tiled(image, few, tile=64)


def test_unreachable_server_names_host_and_port(exports):
    port = _free_port()
    served = ServingModel(
        f"grpc://127.0.0.1:{port}/channel0", meta=exports.channel0_dir, retries=1, backoff_s=0
    )
    with pytest.raises(ServingUnreachableError) as raised:
        served.check()
    assert (raised.value.host, raised.value.port) == ("127.0.0.1", port)
    assert f"127.0.0.1:{port}" in str(raised.value) and "8501 is REST" in str(raised.value)


# --- what the server reports missing or different ---------------------------------------------


def test_missing_model_version_or_label_lists_what_the_server_has(exports, start_peer):
    peer = start_peer(labels={"tiny-unet": {"stable": 1}})
    with pytest.raises(ServedModelNotFoundError, match="no model named 'nosuch'") as raised:
        ServingModel(peer.url("nosuch"), meta=exports.unet_dir).check()
    assert raised.value.available == [] and "Latest(nosuch)" in str(raised.value)

    with pytest.raises(ServedModelNotFoundError) as raised:
        ServingModel(peer.url("tiny-unet", "version=7"), meta=exports.unet_dir).check()
    assert raised.value.available == [(1, "AVAILABLE"), (2, "AVAILABLE")]
    assert "no version 7" in str(raised.value) and "1 (AVAILABLE), 2 (AVAILABLE)" in str(
        raised.value
    )

    with pytest.raises(ServedModelNotFoundError, match="no version label 'canary'"):
        ServingModel(peer.url("tiny-unet", "label=canary"), meta=exports.unet_dir).check()


def test_signature_and_tensor_mismatches_say_expected_and_got(exports, start_peer):
    peer = start_peer()
    with pytest.raises(SignatureMismatchError, match=r"no signature 'other'; it has \['serving"):
        ServingModel(peer.url("channel0", "signature=other"), meta=exports.channel0_dir).check()
    with pytest.raises(SignatureMismatchError, match=r"1 channel\(s\).*metadata says 3"):
        ServingModel(peer.url("gray"), meta=exports.channel0_dir).check()
    two_classes = ModelMeta(
        name="two", classes=[{"name": "a", "color": [1, 2, 3]}, {"name": "b", "color": [4, 5, 6]}]
    )
    with pytest.raises(SignatureMismatchError, match=r"output 'probabilities' has 1 channel"):
        ServingModel(peer.url("channel0"), meta=two_classes).check()


def test_batches_over_the_servers_limits_say_to_lower_the_batch_size(exports, start_peer):
    peer = start_peer(max_batch_size=2)
    served = ServingModel(peer.url("channel0"), meta=exports.channel0_dir, batch_size=4)
    with pytest.raises(BatchTooLargeError, match=r"at most 2 tiles.*--batch-size 2 or less"):
        predict_tiled(_random_image((100, 100)), served)

    big = np.zeros((8, 128, 128, 3), np.float32)  # 1.5 MiB
    peer = start_peer(max_receive_mb=1)  # gRPC answers RESOURCE_EXHAUSTED
    served = ServingModel(peer.url("channel0"), meta=exports.channel0_dir, retries=0)
    with pytest.raises(BatchTooLargeError, match=r"refused a batch of 8 tile.*Lower --batch-size"):
        served.predict_tiles(big)

    peer = start_peer()
    small = ServingModel(peer.url("channel0"), meta=exports.channel0_dir, max_message_mb=1)
    with pytest.raises(BatchTooLargeError, match="over max_message_mb=1"):
        small.predict_tiles(big)
    assert peer.stats.predict_calls == 0  # refused before sending


# --- metadata, URLs, arguments ----------------------------------------------------------------


def test_metadata_comes_from_the_export_the_zoo_or_a_file(exports):
    assert read_serving_meta(exports.unet_dir) == exports.unet.meta
    assert read_serving_meta(exports.base / "tiny-unet") == exports.unet.meta  # highest version
    assert read_serving_meta(exports.unet_dir / "assets.extra" / "tiledseg.json").tile == 64
    assert read_serving_meta(exports.unet.meta.to_dict()) == exports.unet.meta
    with pytest.raises(ModelLoadError, match=r"versions \[1\] but not version 5"):
        read_serving_meta(exports.base / "tiny-unet", version=5)
    with pytest.raises(ModelLoadError, match="not exported by `python -m model_zoo export`"):
        read_serving_meta(exports.gray_dir)
    with pytest.raises(TiledsegError, match="Unknown model id 'no-such-zoo-model'"):
        read_serving_meta("no-such-zoo-model")
    with pytest.raises(ValueError, match="`meta` is required"):
        ServingModel("grpc://localhost:8500/unet")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("grpc://serving:8500/unet", ((("serving", 8500),), "unet", None, None, "serving_default")),
        ("grpc://h/unet?version=3", ((("h", 8500),), "unet", 3, None, "serving_default")),
        (
            "grpc://a:1,b:2/m?label=stable&signature=s",
            ((("a", 1), ("b", 2)), "m", None, "stable", "s"),
        ),
        ("grpc://[::1]:9000/m", ((("::1", 9000),), "m", None, None, "serving_default")),
    ],
)
def test_serving_urls_parse(url, expected):
    address = parse_serving_url(url)
    got = (address.endpoints, address.model_name, address.version)
    assert (*got, address.version_label, address.signature) == expected
    assert parse_serving_url(address.url()) == address


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://h:8501/unet", "not HTTP: write grpc://h:8500/unet (grpc:// is plaintext"),
        ("https://h/v1/models/unet:predict", "not HTTP: write grpcs://h:8500/unet"),
        ("http://h:9000/v1/models/unet/versions/2", "write grpc://h:9000/unet"),
        ("ftp://h/unet", "must start with grpc:// (or grpcs:// for TLS)"),
        ("grpc://h:8500", "needs one model name"),
        ("grpc://h:8500/a/b", "needs one model name"),
        ("grpc://h:99999/unet", "port must be a number"),
        ("grpc://h/unet?version=x", "`version` must be a whole number"),
        ("grpc://h/unet?version=1&label=a", "not both"),
        ("grpc://h/unet?versoin=1", "Unknown serving URL parameter(s) ['versoin']"),
    ],
)
def test_bad_serving_urls_say_what_was_received(url, message):
    with pytest.raises(ValueError) as raised:
        parse_serving_url(url)
    assert message in str(raised.value) and url in str(raised.value)


@pytest.mark.parametrize("model_name", [None, "unet"])
def test_an_http_target_is_never_turned_into_grpc_http(exports, model_name):
    with pytest.raises(ValueError) as raised:
        ServingModel("http://h:8501/unet", meta=exports.unet_dir, model_name=model_name)
    message = str(raised.value)
    assert "grpc://http" not in message and "write grpc://h:8500/unet" in message


def test_bad_arguments_say_what_was_received(exports):
    with pytest.raises(ValueError, match="`model_name` is required"):
        ServingModel("localhost:8500", meta=exports.unet_dir)
    with pytest.raises(ValueError, match=r"Received: max_in_flight=0"):
        ServingModel("grpc://h/unet", meta=exports.unet_dir, max_in_flight=0)
    with pytest.raises(ValueError, match="disagrees with the URL's 3"):
        ServingModel("grpc://h/unet?version=3", meta=exports.unet_dir, version=4)


# --- the command line -------------------------------------------------------------------------


def test_cli_predict_and_evaluate_through_serving(exports, start_peer, shared_data, tmp_path):
    peer = start_peer()
    source = shared_data / "bloodcell" / "test"
    image_path = sorted((source / "images").glob("*.jpg"))[0]
    out = tmp_path / "out"
    url = peer.url("tiny-unet", "version=1")
    code = main(
        ["predict", "--serving", url, "--meta", str(exports.unet_dir), "--out", str(out),
         "--max-in-flight", "3", str(image_path)]
    )  # fmt: skip
    assert code == 0
    image = read_image(image_path)
    expected = postprocess(predict_tiled(image, exports.unet), threshold=0.5)
    written = read_mask(out / f"{image_path.stem}.png")
    assert written.shape == expected.shape
    assert np.mean(written != expected) < 1e-4  # probabilities agree to 1e-4; a rare tie may flip

    report = tmp_path / "report.json"
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    (images / image_path.name).symlink_to(image_path)
    (masks / f"{image_path.stem}.png").symlink_to(source / "masks" / f"{image_path.stem}.png")
    code = main(
        ["evaluate", "--serving", url, "--meta", str(exports.unet_dir), "--images", str(images),
         "--masks", str(masks), "--json", str(report)]
    )  # fmt: skip
    assert code == 0
    assert f'"model": "{url}"' in report.read_text()


def test_cli_server_stopped_mid_image_leaves_nothing_half_written(
    exports, start_peer, shared_data, tmp_path, capsys
):
    peer = start_peer(stop_after=3)
    image_path = sorted((shared_data / "bloodcell" / "test" / "images").glob("*.jpg"))[0]
    out = tmp_path / "out"
    code = main(
        ["predict", "--serving", peer.url("tiny-unet"), "--meta", str(exports.unet_dir),
         "--out", str(out), "--overlay", "--probs", str(image_path)]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert code == 2
    assert f"error: Cannot reach TF Serving at {peer.target}" in err and "Traceback" not in err
    assert peer.stopped.is_set()
    assert list(out.iterdir()) == []  # no mask, overlay, probabilities or temporary file


def test_cli_serving_flags_are_checked(exports, tmp_path, capsys):
    image = tmp_path / "in.png"
    write_image(image, _random_image((20, 20)))
    out = tmp_path / "out"
    assert main(["predict", "--serving", "grpc://h/m", "--out", str(out), str(image)]) == 2
    assert "--serving needs --meta" in capsys.readouterr().err
    both = ["--model", "x", "--serving", "grpc://h/m"]
    assert main(["predict", *both, "--out", str(out), str(image)]) == 2
    assert "Give one of --model" in capsys.readouterr().err
    port = _free_port()
    url = f"grpc://127.0.0.1:{port}/channel0"
    meta = str(exports.channel0_dir)
    assert main(["predict", "--serving", url, "--meta", meta, "--out", str(out), str(image)]) == 2
    assert f"Cannot reach TF Serving at 127.0.0.1:{port}" in capsys.readouterr().err
    assert not out.exists() or list(out.iterdir()) == []
