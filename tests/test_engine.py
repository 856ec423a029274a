"""The tiled engine against known-output predictors and whole-image inference."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from conftest import KERAS_F32, REPO_ROOT, build_tiny_unet

from tiledseg import PixelScale, TiledPredictor, predict_tiled, predict_whole


def _channel_plus_one(factor: int = 1) -> keras.Model:
    """Output = first input channel + 1: a known-output predictor (no Lambda layer needed)."""
    inputs = keras.Input((None, None, 3))
    picked = keras.layers.Conv2D(1, 1, use_bias=False, kernel_initializer="zeros")(inputs)
    outputs = keras.layers.Rescaling(1.0, offset=1.0)(picked)
    model = keras.Model(inputs, outputs)
    model.layers[1].set_weights([np.array([1.0, 0.0, 0.0], np.float32).reshape(1, 1, 3, 1)])
    model.downsampling_factor = factor  # exercise padding and cropping as for a real UNet
    return model


def _constant_model(value: float) -> keras.Model:
    inputs = keras.Input((None, None, 3))
    logit = float(np.log(value / (1 - value)))
    outputs = keras.layers.Conv2D(
        1,
        3,
        padding="same",
        activation="sigmoid",
        kernel_initializer="zeros",
        bias_initializer=keras.initializers.Constant(logit),
    )(inputs)
    return keras.Model(inputs, outputs)


def _image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


IDENTITY_CASES = [
    # (height, width), tile, overlap, factor
    ((1, 1), 64, 0.25, 16),
    ((37, 1), 16, 0.5, 1),
    ((64, 64), 64, 0.25, 8),
    ((97, 301), 64, 0.5, 16),
    ((300, 200), 512, 0.25, 32),
    ((257, 255), 128, 0.0, 8),
    ((511, 513), 128, 0.75, 16),
]


@pytest.mark.parametrize(("shape", "tile", "overlap", "factor"), IDENTITY_CASES)
@pytest.mark.parametrize("blend", ["gaussian", "hann", "constant", "center"])
def test_known_output_predictor_is_reproduced_exactly(shape, tile, overlap, factor, blend):
    image = _image(shape)
    model = _channel_plus_one(factor)
    expected = image[..., 0].astype(np.float32) + 1
    by_function = predict_tiled(image, model, tile=tile, overlap=overlap, blend=blend)
    by_class = TiledPredictor(model, tile=tile, overlap=overlap, blend=blend)(image)
    assert by_function.shape == shape and by_function.dtype == np.float32
    np.testing.assert_allclose(by_function, expected, rtol=0, atol=2e-4)
    np.testing.assert_array_equal(by_function, by_class)


@pytest.mark.parametrize("shape", [(1001, 777), (97, 3001), (511, 513), (1, 1)])
def test_center_blend_equals_whole_image_inference(shape, tiny_unet):
    # The tiny UNet's receptive-field radius (< 20 px) fits in half the overlap (32 px).
    image = _image(shape, seed=1)
    whole = predict_whole(image, tiny_unet)
    tiled = predict_tiled(image, tiny_unet, tile=128, overlap=0.5, blend="center", **KERAS_F32)
    assert tiled.shape == shape
    np.testing.assert_allclose(tiled, whole, rtol=0, atol=1e-5)


def test_gaussian_blend_is_close_to_whole_image(tiny_unet):
    image = _image((400, 600), seed=2)
    whole = predict_whole(image, tiny_unet)
    tiled = predict_tiled(image, tiny_unet, tile=128, overlap=0.5)
    assert np.abs(tiled - whole).mean() < 1e-3


def test_constant_model_gives_a_constant_map():
    probabilities = predict_tiled(_image((333, 517)), _constant_model(0.3), tile=64, overlap=0.3)
    np.testing.assert_allclose(probabilities, 0.3, atol=1e-6)


def test_float16_and_float32_agree():
    float32_model = build_tiny_unet(seed=3)
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        float16_model = build_tiny_unet(seed=3)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    float16_model.set_weights(float32_model.get_weights())
    image = _image((300, 260), seed=4)
    low = predict_tiled(image, float16_model, tile=128)
    high = predict_tiled(image, float32_model, tile=128)
    assert low.dtype == np.float32  # accumulated in float32 whatever the model computes in
    np.testing.assert_allclose(low, high, atol=1e-2)


def test_several_classes_come_back_as_channels():
    model = build_tiny_unet(classes=3)
    probabilities = predict_tiled(_image((150, 210)), model, tile=64)
    assert probabilities.shape == (150, 210, 3)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=1e-5)


def test_flip_tta_of_a_flip_equivariant_model_changes_nothing():
    model = _channel_plus_one()
    image = _image((130, 170))
    plain = predict_tiled(image, model, tile=64)
    flipped = predict_tiled(image, model, tile=64, tta="flips")
    np.testing.assert_allclose(flipped, plain, atol=2e-4)


def test_flip_tta_averages_the_four_flips(tiny_unet):
    image = _image((128, 128), seed=5)
    views = [
        predict_whole(image, tiny_unet),
        predict_whole(image[:, ::-1], tiny_unet)[:, ::-1],
        predict_whole(image[::-1], tiny_unet)[::-1],
        predict_whole(image[::-1, ::-1], tiny_unet)[::-1, ::-1],
    ]
    tta = predict_tiled(image, tiny_unet, tile=128, tta="flips", **KERAS_F32)
    np.testing.assert_allclose(tta, np.mean(views, axis=0), atol=1e-5)


def test_scale_brings_the_image_to_the_model_and_back():
    model = _channel_plus_one()
    image = np.zeros((400, 600, 3), np.uint8)
    image[:, 300:] = 200
    half = predict_tiled(image, model, tile=64, scale=0.5)
    short_side = predict_tiled(image, model, tile=64, scale=PixelScale("short_side", 200))
    assert half.shape == short_side.shape == (400, 600)
    np.testing.assert_allclose(half, short_side, atol=1e-4)
    assert half[:, :290].max() == pytest.approx(1.0, abs=1e-4)
    assert half[:, 310:].min() == pytest.approx(201.0, abs=1e-3)


def test_zoo_metadata_supplies_defaults_and_arguments_override_them():
    model = _channel_plus_one()
    meta = SimpleNamespace(
        tile=32, overlap=0.5, blend="hann", scale={"mode": "factor", "value": 0.5}, downsampling=16
    )
    zoo_model = SimpleNamespace(model=model, meta=meta)
    ticks = []
    predict_tiled(_image((128, 128)), zoo_model, progress=lambda done, total: ticks.append(total))
    # scale 0.5 -> 64x64, padded to 64, tile 32 rounded up to 32, stride 16 -> 3x3 tiles
    assert ticks[-1] == 9
    ticks.clear()
    predict_tiled(
        _image((128, 128)),
        zoo_model,
        tile=64,
        scale=1.0,
        progress=lambda done, total: ticks.append((done, total)),
    )
    assert ticks[-1] == (9, 9)  # 128 px with tile 64 and stride 32 -> 3 per axis


def test_progress_reports_every_band():
    # 3x3 tiles at batch 3: one row per band fills every batch, so three bands.
    calls = []
    predict_tiled(
        _image((300, 300)),
        _channel_plus_one(),
        tile=128,
        overlap=0.25,
        batch_size=3,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert calls == [(3, 9), (6, 9), (9, 9)]


@pytest.mark.parametrize("rows", [2, 3, 7])
@pytest.mark.parametrize("tta", ["none", "flips"])
def test_several_tile_rows_per_band_give_the_one_row_result(tiny_unet, rows, tta):
    # 700x900 at 128 px tiles, 25% overlap: 7 rows of 10 tiles. A batch above a row's tiles
    # makes each band call take several rows (as on a GPU); 2 and 3 rows leave an uneven last
    # group whose last row is the edge-aligned one, 7 takes the whole image in one call.
    from tiledseg.engine import describe_grid

    image = _image((700, 900), seed=8)
    grid = describe_grid(image.shape, tiny_unet, tile=128)
    assert (grid.rows.count, grid.cols.count) == (7, 10)
    one_row = predict_tiled(image, tiny_unet, tile=128, batch_size=2, tta=tta, runtime="keras")
    calls = []
    views = 4 if tta == "flips" else 1
    several = predict_tiled(
        image,
        tiny_unet,
        tile=128,
        batch_size=rows * 10 * views,
        tta=tta,
        runtime="keras",  # bands of several rows are the Keras path's
        progress=lambda done, total: calls.append((done, total)),
    )
    np.testing.assert_allclose(several, one_row, rtol=0, atol=1e-6)
    expected = [min(7, rows * (i + 1)) * 10 for i in range(-(-7 // rows))]
    assert calls == [(done, 70) for done in expected]


@pytest.mark.parametrize(
    ("batch", "on_gpu", "rows", "slots"),
    [
        # 4288x2848 at 512 px tiles: 8 rows of 11. A band of 6 rows (66 tiles) at batch 64
        # used to run 2 batches of 64: 150 slots for 88 tiles in all.
        (64, True, 4, 88),
        (None, True, 4, 88),  # the GPU default batch is 64 tiles of 512 px
        (None, False, 2, 88),  # the CPU default, 2 tiles: one row of 11 would pad one
        (4, False, 4, 88),
        (16, False, 1, 88),  # 11 tiles in one batch of 11, not 16
        (8, False, 3, 94),  # the least within 4 rows (8 rows would be 88)
    ],
)
def test_bands_run_few_padded_tiles(monkeypatch, batch, on_gpu, rows, slots):
    from tiledseg import band
    from tiledseg.tiling import make_grid

    monkeypatch.setattr(band, "on_gpu", lambda: on_gpu)
    grid = make_grid(2848, 4288, 512, 0.25, 16)
    assert (grid.rows.count, grid.cols.count) == (8, 11)
    asked = batch or band.default_batch(grid)
    chosen = band.rows_per_band(grid, asked, None)
    run = 0
    for _, _, offsets in band.row_groups(grid, chosen):
        tiles = len(offsets) * grid.cols.count
        size = band.band_batch(tiles, asked)
        assert size <= asked
        run += -(-tiles // size) * size
    assert (chosen, run) == (rows, slots)


@pytest.mark.parametrize("batch", [4, 8, 165])
def test_evened_batches_give_the_one_row_result(tiny_unet, batch):
    # 11 rows of 15 tiles: batch 4 takes bands of 4 rows in batches of 4, batch 8 one row in
    # 2 batches of 8 (one padded), 165 the whole grid in one call.
    image = _image((1000, 1400), seed=3)
    one_row = predict_tiled(image, tiny_unet, tile=128, batch_size=1)
    evened = predict_tiled(image, tiny_unet, tile=128, batch_size=batch)
    np.testing.assert_allclose(evened, one_row, rtol=0, atol=1e-6)


def test_several_rows_per_band_keep_center_blend_exact(tiny_unet):
    image = _image((1001, 777), seed=1)
    tiled = predict_tiled(
        image, tiny_unet, tile=128, overlap=0.5, blend="center", batch_size=40, **KERAS_F32
    )
    np.testing.assert_allclose(tiled, predict_whole(image, tiny_unet), rtol=0, atol=1e-5)


def test_auto_tile_uses_one_tile_when_the_image_fits(tiny_unet):
    image = _image((300, 500), seed=6)
    predictor = TiledPredictor(tiny_unet, tile="auto", **KERAS_F32)
    assert predictor.grid(image.shape).count == 1
    np.testing.assert_allclose(predictor(image), predict_whole(image, tiny_unet), atol=1e-5)


def test_predictor_reuses_compiled_band_functions(tiny_unet):
    predictor = TiledPredictor(tiny_unet, tile=64, runtime="keras")  # the Keras band functions
    predictor(_image((100, 100)))
    predictor(_image((100, 100), seed=1))
    assert len(predictor._cache) == 1
    predictor(_image((100, 200)))
    assert len(predictor._cache) == 2


def test_predict_whole_with_a_fixed_input_size(tiny_unet):
    image = _image((90, 170))
    probabilities = predict_whole(image, tiny_unet, input_size=(64, 64))
    assert probabilities.shape == (90, 170)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"overlap": 1.2}, ValueError, "`overlap` must be in [0, 1). Received: overlap=1.2"),
        ({"tile": 0}, ValueError, "Received: tile=0"),
        ({"tile": "big"}, TypeError, "Received: tile='big'"),
        ({"blend": "gausian"}, ValueError, "Did you mean 'gaussian'?"),
        ({"pad_mode": "mirror"}, ValueError, "Received: pad_mode='mirror'"),
        ({"tta": "rot90"}, ValueError, "Received: tta='rot90'"),
        ({"precision": "fp8"}, ValueError, "Received: precision='fp8'"),
        ({"batch_size": 0}, ValueError, "Received: batch_size=0"),
        ({"scale": -1.0}, ValueError, "Received: scale.value=-1.0"),
        ({"frame": -2}, ValueError, "Received: frame=-2"),
    ],
)
def test_bad_arguments_say_what_was_received(kwargs, error, message):
    with pytest.raises(error) as raised:
        predict_tiled(_image((32, 32)), _channel_plus_one(), **kwargs)
    assert message in str(raised.value)


def test_bad_image_and_model_types():
    with pytest.raises(TypeError, match="NumPy array"):
        predict_tiled([[1, 2]], _channel_plus_one())
    with pytest.raises(ValueError, match=r"Received: shape=\(0, 5, 3\)"):
        predict_tiled(np.zeros((0, 5, 3), np.uint8), _channel_plus_one())
    with pytest.raises(TypeError, match=r"keras\.Model"):
        predict_tiled(_image((8, 8)), object())
    with pytest.raises(TypeError, match="Unknown settings"):
        TiledPredictor(_channel_plus_one(), tiles=64)


@pytest.mark.slow
def test_a_7k_image_runs_in_bounded_memory(tmp_path):
    # A fresh process, so the numbers are this image's alone. The runtime's own footprint
    # (TensorFlow's thread pools and kernels, and under `auto` OpenVINO's compiled model; it
    # grows with the core count: the whole process peaked at 1.4 GB on 2 cores, 3.0 GB on CI's
    # machine) is paid by a small warm-up prediction at the same tile size and not counted:
    # the bound is on what the engine adds for a 7k image. tracemalloc sees NumPy's buffers
    # exactly (the padded copy, the float32 accumulator), whatever the machine; the RSS growth
    # covers the rest.
    script = f"""
import os, resource, sys, json, tracemalloc
os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
sys.path.insert(0, {str(REPO_ROOT / "tests")!r})
import numpy as np
from conftest import build_tiny_unet
from tiledseg import predict_tiled
def max_rss_gb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6
network = build_tiny_unet()
predict_tiled(np.zeros((600, 900, 3), np.uint8), network, tile=512, overlap=0.25)
image = np.random.default_rng(0).integers(0, 256, (4608, 7168, 3), dtype=np.uint8)
before = max_rss_gb()
tracemalloc.start()
out = predict_tiled(image, network, tile=512, overlap=0.25)
numpy_peak = tracemalloc.get_traced_memory()[1]
print(json.dumps({{"shape": out.shape, "image_gb": image.nbytes / 1e9, "rss_before_gb": before,
    "rss_growth_gb": max_rss_gb() - before, "numpy_peak_gb": numpy_peak / 1e9}}))
"""
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=600, check=True
    )
    report = json.loads(result.stdout.strip().splitlines()[-1])
    print(report)
    assert report["shape"] == [4608, 7168]
    # Measured on 2 cores: NumPy peak 0.20 GB (2x the 0.10 GB image), RSS growth 0.23 GB. A
    # float32 copy of the whole image alone would be 4x the image.
    assert report["numpy_peak_gb"] < 3 * report["image_gb"], report
    assert report["rss_growth_gb"] < 1.0, report


def test_auto_tile_feeds_the_network_fewer_pixels_than_512_px_tiles(tiny_unet):
    from tiledseg.engine import describe_grid

    def work(grid):
        return grid.count * grid.rows.tile * grid.cols.tile

    shape = (4000, 6000, 3)  # larger than the CPU budget: tiled, not one tile
    auto = describe_grid(shape, tiny_unet, tile="auto", overlap=0.25)
    fixed = describe_grid(shape, tiny_unet, tile=512, overlap=0.25)
    assert auto.count > 1
    assert max(auto.tile_shape) <= 2048
    assert work(auto) < work(fixed)


def test_tta_comes_from_the_metadata_unless_switched_off(tiny_unet):
    image = _image((64, 96), seed=8)
    zoo_model = SimpleNamespace(model=tiny_unet, meta=SimpleNamespace(tta="flips"))
    flips = predict_tiled(image, tiny_unet, tile=64, tta="flips")
    plain = predict_tiled(image, tiny_unet, tile=64)
    np.testing.assert_allclose(predict_tiled(image, zoo_model, tile=64), flips, atol=1e-6)
    np.testing.assert_allclose(
        predict_tiled(image, zoo_model, tile=64, tta="none"), plain, atol=1e-6
    )
    assert not np.allclose(flips, plain, atol=1e-4)


def _box_filter() -> keras.Model:
    """Mean of the first channel over a 9x9 window, zero-padded: it sees what lies past an edge."""
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(1, 9, padding="same", use_bias=False)(inputs)
    model = keras.Model(inputs, outputs)
    kernel = np.zeros((9, 9, 3, 1), np.float32)
    kernel[:, :, 0, 0] = 1.0 / 81
    model.layers[1].set_weights([kernel])
    return model


@pytest.mark.parametrize(("tile", "overlap"), [(64, 0.25), (512, 0.25)])
def test_a_frame_surrounds_the_image_with_black_and_is_cut_off_the_result(tile, overlap):
    model = _box_filter()
    image = np.full((150, 230, 3), 200, np.uint8)
    framed = np.pad(image, ((32, 32), (32, 32), (0, 0)))
    expected = predict_whole(framed, model)[32:-32, 32:-32]
    got = predict_tiled(
        image, model, tile=tile, overlap=overlap, blend="center", frame=32, **KERAS_F32
    )
    assert got.shape == (150, 230)
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # The black frame shows within 4 px of the edge (the filter's reach); without a frame the
    # same pixels see a mirrored image, all 200.
    assert got[0, 100] == pytest.approx(200 * 5 / 9, abs=1e-3)
    assert got[75, 4] == pytest.approx(200.0, abs=1e-3)
    plain = predict_tiled(
        image, model, tile=tile, overlap=overlap, blend="center", frame=0, **KERAS_F32
    )
    assert plain[75, 115] == pytest.approx(200.0, abs=1e-3)
    np.testing.assert_allclose(predict_whole(image, model, frame=32), expected, atol=1e-4)


def test_the_frame_comes_from_the_metadata_and_widens_the_grid():
    model = _box_filter()
    image = _image((100, 100))
    zoo_model = SimpleNamespace(model=model, meta=SimpleNamespace(tile=64, frame=16))
    np.testing.assert_allclose(
        predict_tiled(image, zoo_model, **KERAS_F32),
        predict_tiled(image, model, tile=64, frame=16, **KERAS_F32),
        atol=1e-5,
    )
    assert not np.allclose(
        predict_tiled(image, zoo_model, **KERAS_F32),
        predict_tiled(image, zoo_model, frame=0, **KERAS_F32),
        atol=1e-3,
    )
    predictor = TiledPredictor(zoo_model)
    assert predictor.resolved_settings()["frame"] == 16
    assert predictor.grid(image.shape).padded_shape == (132, 132)
    assert TiledPredictor(zoo_model, frame=0).grid(image.shape).padded_shape == (100, 100)
