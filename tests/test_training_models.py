"""Tests for training.models: every architecture is fully convolutional, saves to .keras and
loads back under safe_mode (also in a fresh interpreter that never imports `training`) with
identical outputs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from training._callbacks import float32_copy
from training.models import (
    build_attention_unet,
    build_backbone_unet,
    build_model,
    build_unet,
    downsampling_factor,
)
from training.models.unet.blocks import dilation_schedule, dropout_schedule, kernel_schedule

ARCHITECTURES = {
    "unet": (
        "unet",
        {"base_filters": 4, "num_levels": 4, "base_kernel": 5, "dilation": 2, "dropout": 0.1},
    ),
    "attention_unet": ("attention_unet", {"base_filters": 4, "num_levels": 3}),
    "mobilenet_v2": (
        "backbone_unet",
        {"encoder": "mobilenet_v2", "decoder_filters": [16, 16, 8, 8, 4]},
    ),
    "efficientnet_b0": (
        "backbone_unet",
        {"encoder": "efficientnet_b0", "decoder_filters": [16, 16, 8, 8, 4]},
    ),
}
EXPECTED_FACTOR = {"unet": 8, "attention_unet": 4, "mobilenet_v2": 32, "efficientnet_b0": 32}


@pytest.fixture(scope="module")
def saved_models(tmp_path_factory):
    """Each architecture built, run on one input, and saved; outputs kept for comparison."""
    folder = tmp_path_factory.mktemp("models")
    rng = np.random.default_rng(0)
    image = rng.uniform(0, 255, (2, 64, 96, 3)).astype("float32")
    np.save(folder / "input.npy", image)
    saved = {}
    for key, (architecture, kwargs) in ARCHITECTURES.items():
        keras.utils.set_random_seed(1)
        model = build_model(architecture, **kwargs)
        path = folder / f"{key}.keras"
        model.save(path)
        saved[key] = (model, path, np.asarray(model.predict(image, verbose=0)))
    return folder, image, saved


@pytest.mark.parametrize("key", list(ARCHITECTURES))
def test_architecture_round_trips_under_safe_mode(saved_models, key):
    _, image, saved = saved_models
    model, path, expected = saved[key]
    assert model.input_shape == (None, None, None, 3)
    assert expected.shape == (2, 64, 96, 1) and expected.dtype == np.float32
    assert np.all((expected >= 0) & (expected <= 1))
    loaded = keras.saving.load_model(path, safe_mode=True)
    np.testing.assert_array_equal(np.asarray(loaded.predict(image, verbose=0)), expected)
    assert downsampling_factor(loaded) == EXPECTED_FACTOR[key]


def test_plain_keras_loads_the_models_without_the_training_package(saved_models):
    folder, _, saved = saved_models
    # EfficientNet is left out only for time: it is keras.applications layers, as MobileNetV2.
    saved = {key: value for key, value in saved.items() if key != "efficientnet_b0"}
    script = textwrap.dedent(
        f"""
        import json, sys
        import numpy as np, keras
        image = np.load({str(folder / "input.npy")!r})
        out = {{}}
        for key in {list(saved)!r}:
            model = keras.saving.load_model({str(folder)!r} + f"/{{key}}.keras", safe_mode=True)
            np.save({str(folder)!r} + f"/{{key}}.out.npy", model.predict(image, verbose=0))
        print(json.dumps({{"training_imported": "training" in sys.modules}}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=folder, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"training_imported": False}
    for key, (_, _, expected) in saved.items():
        np.testing.assert_allclose(np.load(folder / f"{key}.out.npy"), expected, atol=1e-6)


def test_seed_rules_for_kernels_dilations_and_dropout():
    assert kernel_schedule(7, 5) == [7, 5, 3, 3, 3]
    assert kernel_schedule(3, 3) == [3, 3, 3]
    assert dilation_schedule(3, 5) == [3, 2, 1, 1, 1]
    assert dilation_schedule([1, 2, 4], 3) == [1, 2, 4]
    assert dropout_schedule(0.1, 4) == pytest.approx([0.0, 0.1, 0.2, 0.3])


def test_unet_layers_follow_the_schedules_mirrored_in_the_decoder():
    model = build_unet(base_filters=4, num_levels=4, base_kernel=7, dilation=2, dropout=0.1)
    conv = {layer.name: layer for layer in model.layers}
    for level, (kernel, rate, filters) in enumerate([(7, 2, 4), (5, 1, 8), (3, 1, 16)]):
        for side in ("enc", "dec"):
            layer = conv[f"{side}{level}_conv1"]
            assert layer.kernel_size == (kernel, kernel)
            assert layer.dilation_rate == (rate, rate)
            assert layer.filters == filters
    assert conv["enc3_conv1"].kernel_size == (3, 3)
    assert "enc0_dropout" not in conv and conv["enc2_dropout"].rate == pytest.approx(0.2)
    assert sum(isinstance(layer, keras.layers.MaxPooling2D) for layer in model.layers) == 3
    assert isinstance(conv["rescale"], keras.layers.Rescaling)


def test_unet_without_batch_norm_and_with_other_activation():
    model = build_unet(base_filters=4, num_levels=2, batch_norm=False, activation="gelu")
    assert not any(isinstance(layer, keras.layers.BatchNormalization) for layer in model.layers)
    assert model.get_layer("enc0_act1").get_config()["activation"] == "gelu"


def test_several_classes_give_a_softmax_over_classes():
    model = build_attention_unet(base_filters=4, num_levels=2, num_classes=3)
    out = np.asarray(model(np.zeros((1, 32, 32, 3), "float32")))
    assert out.shape == (1, 32, 32, 3)
    np.testing.assert_allclose(out.sum(axis=-1), 1.0, atol=1e-5)


def test_output_is_float32_under_mixed_precision_and_the_export_is_float32():
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = build_unet(base_filters=4, num_levels=3)
    finally:
        keras.config.set_dtype_policy(previous)
    assert model.get_layer("enc0_conv1").compute_dtype == "bfloat16"
    image = np.random.default_rng(0).uniform(0, 255, (1, 32, 32, 3)).astype("float32")
    assert keras.backend.standardize_dtype(model(image).dtype) == "float32"
    exported = float32_copy(model)
    assert {layer.compute_dtype for layer in exported.layers} == {"float32"}
    np.testing.assert_allclose(np.asarray(exported(image)), np.asarray(model(image)), atol=0.05)


def test_invalid_arguments_say_what_is_allowed():
    with pytest.raises(ValueError, match="odd integer"):
        build_unet(base_kernel=4)
    with pytest.raises(ValueError, match="must stay below 1"):
        build_unet(num_levels=5, dropout=0.3)
    with pytest.raises(ValueError, match=r"num_levels.*Received: num_levels=1"):
        build_unet(num_levels=1)
    with pytest.raises(ValueError, match="Did you mean 'relu'"):
        build_unet(activation="rellu")
    with pytest.raises(ValueError, match="Did you mean 'mobilenet_v2'"):
        build_backbone_unet(encoder="mobilenet")
    with pytest.raises(ValueError, match="3 input channels"):
        build_backbone_unet(weights="imagenet", input_channels=4)
    with pytest.raises(ValueError, match="Did you mean 'unet'"):
        build_model("unett")


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined")
def test_imagenet_download_failure_gives_a_clear_error(monkeypatch, tmp_path):
    # No network here: make keras' downloader fail as it does offline, with an empty cache.
    from keras.src.applications import mobilenet_v2

    def offline(*args, **kwargs):
        raise OSError("URL fetch failure: no network")

    monkeypatch.setattr(mobilenet_v2.file_utils, "get_file", offline)
    with pytest.raises(RuntimeError, match=r"network access.*weights=None"):
        build_backbone_unet(encoder="mobilenet_v2", weights="imagenet")
