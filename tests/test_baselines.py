"""The seeds' algorithm, kept as a baseline: same grid as the engine, no blending."""

from __future__ import annotations

import numpy as np
from conftest import KERAS_F32, build_tiny_unet

from tiledseg import predict_tiled
from tiledseg.baselines import predict_seed_tiles


def test_seed_tiles_equal_center_blending_on_the_same_grid():
    # Cutting each tile's centre without blending is what blend="center" does in one pass.
    model = build_tiny_unet(seed=7)
    image = np.random.default_rng(0).integers(0, 256, (300, 420, 3), dtype=np.uint8)
    seeds = predict_seed_tiles(image, model, tile=128, overlap=0.25)
    # Keras in float32, as the seeds ran (auto would be OpenVINO bfloat16 on a CPU with AMX).
    center = predict_tiled(image, model, tile=128, overlap=0.25, blend="center", **KERAS_F32)
    assert seeds.shape == (300, 420)
    np.testing.assert_allclose(seeds, center, atol=1e-5)


def test_seed_tiles_with_a_fixed_input_size_resize_each_cell():
    model = build_tiny_unet(seed=7)
    image = np.random.default_rng(1).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    resized = predict_seed_tiles(image, model, tile=128, overlap=0.25, input_size=64)
    plain = predict_seed_tiles(image, model, tile=128, overlap=0.25)
    assert resized.shape == plain.shape == (200, 200)
    assert not np.allclose(resized, plain, atol=1e-3)  # the resize round trip changes the result
