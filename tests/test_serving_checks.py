"""The TF Serving client's checks: the served model against ``--meta``, and TLS (``grpcs://``).

Against the gRPC protocol peer (tests/serving_peer.py) serving two exports made by
``model_zoo.export``: small real UNets carrying the real metadata of the bundled ISIC and
blood-cell models. TLS uses a certificate authority and a server certificate made here with
``cryptography``.
"""

from __future__ import annotations

import datetime
import ipaddress
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import build_tiny_unet
from serving_peer import ProtocolPeer

from model_zoo import ZooModel, bundled_dir, load_meta
from model_zoo.export import export_savedmodel
from model_zoo.registry import bundled_ids
from tiledseg import predict_tiled
from tiledseg.cli import main
from tiledseg.io import write_image
from tiledseg.serving import (
    ServedModelMismatchError,
    ServingModel,
    ServingUnreachableError,
    meta_fingerprint,
)


def _bundled_meta(dataset: str):
    for model_id in bundled_ids():
        meta = load_meta(bundled_dir() / model_id)
        if str(meta.dataset.get("id", "")).startswith(dataset):
            return model_id, meta
    pytest.skip(f"no bundled {dataset} model to take metadata from")


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    base = tmp_path_factory.mktemp("exports")
    made = {}
    for key, dataset, seed in (("isic", "isic2017", 1), ("blood", "bloodcell", 2)):
        model_id, meta = _bundled_meta(dataset)
        # A 2-level UNet takes any multiple of 4 px, so the real tile sizes work unchanged.
        zoo = ZooModel(model=build_tiny_unet(seed=seed), meta=meta, card="", path=base, id=model_id)
        made[key] = zoo
        made[f"{key}_dir"] = export_savedmodel(zoo, base / key / "1")
    gray = base / "plain" / "1"  # a plain Keras export: no metadata signature
    build_tiny_unet(seed=3).export(str(gray), format="tf_saved_model", verbose=False)
    return SimpleNamespace(base=base, plain_dir=gray, **made)


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    """A certificate authority and a server certificate for 127.0.0.1 and localhost."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    folder = tmp_path_factory.mktemp("tls")
    now = datetime.datetime.now(datetime.UTC)

    def certificate(subject, issuer, public_key, signing_key, *, ca: bool, names=()):
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(list(names)), False)
        return builder.sign(signing_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = certificate("tiledseg test CA", "tiledseg test CA", ca_key.public_key(), ca_key, ca=True)
    server_key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
    server = certificate(
        "localhost", "tiledseg test CA", server_key.public_key(), ca_key, ca=False, names=names
    )
    ca_file = folder / "ca.pem"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SimpleNamespace(
        ca_file=ca_file, server=(key_pem, server.public_bytes(serialization.Encoding.PEM))
    )


@pytest.fixture
def start_peer(exports):
    peers = []

    def start(**options) -> ProtocolPeer:
        models = {
            "isic": {1: exports.isic_dir},
            "bloodcell": {1: exports.blood_dir},
            "plain": {1: exports.plain_dir},
        }
        peer = ProtocolPeer(models, **options).start()
        peers.append(peer)
        return peer

    yield start
    for peer in peers:
        peer.stop()


def _image(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (300, 400, 3), dtype=np.uint8)


# --- the served model against --meta ----------------------------------------------------------


def test_the_served_models_own_metadata_passes_its_fingerprint(exports, start_peer):
    peer = start_peer()
    expected = meta_fingerprint(exports.isic.meta)
    for meta in (exports.isic_dir, exports.isic_dir / "assets.extra" / "tiledseg.json"):
        served = ServingModel(peer.url("isic"), meta=meta).check()
        assert served.served_fingerprint == expected
    assert peer.stats.metadata_calls == 2 and peer.stats.predict_calls == 0
    np.testing.assert_allclose(
        predict_tiled(_image(), served), predict_tiled(_image(), exports.isic), atol=1e-4
    )


def test_blood_cell_metadata_on_the_isic_server_is_refused(exports, start_peer):
    peer = start_peer()
    served = ServingModel(peer.url("isic"), meta=exports.blood_dir)
    with pytest.raises(ServedModelMismatchError) as raised:
        served.check()
    message = str(raised.value)
    assert f"exported from the metadata of {exports.isic.meta.name!r}" in message
    assert f"the metadata given is {exports.blood.meta.name!r}" in message
    assert "nothing was run" in message and "--meta" in message
    assert raised.value.served == meta_fingerprint(exports.isic.meta)
    with pytest.raises(ServedModelMismatchError):
        predict_tiled(_image(), served)  # the check runs before any tile is sent
    assert peer.stats.predict_calls == 0


def test_cli_refuses_mismatched_metadata_before_any_image(exports, start_peer, tmp_path, capsys):
    peer = start_peer()
    image = tmp_path / "in.png"
    write_image(image, _image())
    out = tmp_path / "out"
    argv = ["predict", "--serving", peer.url("isic"), "--meta", str(exports.blood_dir)]
    assert main([*argv, "--out", str(out), str(image)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err
    assert f"exported from the metadata of {exports.isic.meta.name!r}" in err
    assert not out.exists() or list(out.iterdir()) == []
    assert peer.stats.predict_calls == 0


def test_an_export_without_a_fingerprint_runs_with_a_warning(exports, start_peer):
    peer = start_peer()
    served = ServingModel(peer.url("plain"), meta=exports.isic.meta)
    with pytest.warns(UserWarning, match="serves no metadata fingerprint"):
        served.check()
    assert served.served_fingerprint is None


# --- TLS ---------------------------------------------------------------------------------------


def test_grpcs_with_the_ca_file_gives_the_same_results(exports, start_peer, certificates):
    peer = start_peer(tls=certificates.server)
    assert peer.url("isic").startswith("grpcs://")
    served = ServingModel(peer.url("isic"), meta=exports.isic_dir, ca_file=certificates.ca_file)
    np.testing.assert_allclose(
        predict_tiled(_image(1), served), predict_tiled(_image(1), exports.isic), atol=1e-4
    )
    assert peer.stats.predict_calls > 0


def test_cli_ca_file_flag(exports, start_peer, certificates, tmp_path):
    peer = start_peer(tls=certificates.server)
    image = tmp_path / "in.png"
    write_image(image, _image(2))
    out = tmp_path / "out"
    argv = ["predict", "--serving", peer.url("isic"), "--meta", str(exports.isic_dir)]
    argv += ["--ca-file", str(certificates.ca_file), "--out", str(out), str(image)]
    assert main(argv) == 0
    assert (out / "in.png").is_file()


def test_tls_failures_say_what_to_change(exports, start_peer, certificates):
    secure, plain = start_peer(tls=certificates.server), start_peer()
    quick = {"meta": exports.isic_dir, "retries": 0, "deadline_s": 10}
    with pytest.raises(ServingUnreachableError) as untrusted:  # the system roots do not know it
        ServingModel(secure.url("isic"), **quick).check()
    assert "TLS handshake failed" in str(untrusted.value) and "--ca-file" in str(untrusted.value)
    with pytest.raises(ServingUnreachableError) as plaintext:  # grpc:// to a TLS port
        ServingModel(f"grpc://{secure.target}/isic", **quick).check()
    assert "write grpcs:// instead of grpc://" in str(plaintext.value)
    with pytest.raises(ServingUnreachableError) as no_tls:  # grpcs:// to a plaintext port
        ServingModel(f"grpcs://{plain.target}/isic", ca_file=certificates.ca_file, **quick).check()
    assert "does not speak TLS" in str(no_tls.value)


def test_ca_file_arguments_are_checked(exports, tmp_path):
    with pytest.raises(ValueError, match="`ca_file` is for TLS: write the URL as grpcs://"):
        ServingModel("grpc://h/isic", meta=exports.isic_dir, ca_file=tmp_path / "ca.pem")
    with pytest.raises(ValueError, match="Cannot read the CA file"):
        ServingModel("grpcs://h/isic", meta=exports.isic_dir, ca_file=tmp_path / "missing.pem")
    (tmp_path / "not.pem").write_text("hello")
    with pytest.raises(ValueError, match="holds no PEM certificate"):
        ServingModel("grpcs://h/isic", meta=exports.isic_dir, ca_file=tmp_path / "not.pem")
