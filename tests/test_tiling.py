"""The grid and blend windows: placement rules and exact normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from tiledseg.tiling import BLEND_MODES, axis_grid, blend_weights, make_grid


@pytest.mark.parametrize(
    ("length", "tile", "overlap", "factor"),
    [
        (1, 512, 0.25, 16),
        (15, 8, 0.0, 1),
        (97, 512, 0.25, 16),
        (511, 512, 0.25, 16),
        (513, 512, 0.25, 16),
        (1001, 256, 0.5, 8),
        (3001, 512, 0.25, 32),
        (6000, 512, 0.25, 16),
        (7168, 1000, 0.1, 16),
    ],
)
def test_axis_grid_rules(length, tile, overlap, factor):
    grid = axis_grid(length, tile, overlap, factor)
    assert grid.padded == -(-length // factor) * factor
    assert grid.padded - length < factor  # only the remainder is padded
    assert grid.tile % factor == 0
    assert grid.tile <= max(grid.padded, 1)
    assert all(start % factor == 0 for start in grid.starts)
    assert grid.starts[0] == 0
    assert grid.starts[-1] + grid.tile == grid.padded  # last tile aligned to the edge
    assert list(grid.starts) == sorted(set(grid.starts))
    if grid.count > 1:
        strides = np.diff(grid.starts)
        expected = min(max(factor, round(grid.tile * (1 - overlap) / factor) * factor), grid.tile)
        assert all(stride == expected for stride in strides[:-1])
        assert 0 < strides[-1] <= expected  # the edge-aligned last tile may overlap more


def test_small_dimension_gets_a_smaller_tile_not_padding():
    grid = make_grid(97, 3001, 512, 0.25, 16)
    assert grid.tile_shape == (112, 512)
    assert grid.rows.count == 1
    assert grid.padded_shape == (112, 3008)


@pytest.mark.parametrize("blend", BLEND_MODES)
@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(1, 64, 0.25), (300, 64, 0.0), (1001, 128, 0.5), (513, 512, 0.25)],
)
def test_blend_weights_sum_to_one_everywhere(blend, length, tile, overlap):
    grid = axis_grid(length, tile, overlap, 8)
    weights = blend_weights(grid, blend)
    assert weights.shape == (grid.count, grid.tile)
    total = np.zeros(grid.padded)
    for i, start in enumerate(grid.starts):
        total[start : start + grid.tile] += weights[i]
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert weights.min() >= 0


def test_center_blend_keeps_each_tiles_central_part():
    grid = axis_grid(1000, 200, 0.5, 1)
    weights = blend_weights(grid, "center")
    assert set(np.unique(weights)) <= {0.0, 1.0}
    # an interior tile drops a margin of half the overlap (50 px) on both sides
    interior = weights[2]
    kept = np.flatnonzero(interior)
    assert kept[0] == 50 and kept[-1] == 149


def test_tapered_windows_do_not_starve_the_image_border():
    grid = axis_grid(1000, 256, 0.25, 1)
    for blend in ("gaussian", "hann"):
        weights = blend_weights(grid, blend)
        assert weights[0, 0] == pytest.approx(1.0)
        assert weights[-1, -1] == pytest.approx(1.0)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"overlap": 1.2}, "`overlap` must be in [0, 1). Received: overlap=1.2"),
        ({"overlap": -0.1}, "Received: overlap=-0.1"),
        ({"tile": 0}, "`tile` must be in [1, inf]. Received: tile=0"),
        ({"factor": 0}, "Received: factor=0"),
    ],
)
def test_axis_grid_rejects_bad_arguments(kwargs, message):
    arguments = {"length": 100, "tile": 64, "overlap": 0.25, "factor": 1, **kwargs}
    with pytest.raises(ValueError) as error:
        axis_grid(**arguments)
    assert message in str(error.value)


def test_blend_rejects_unknown_mode_and_suggests():
    with pytest.raises(ValueError, match="Did you mean 'gaussian'"):
        blend_weights(axis_grid(100, 64, 0.25), "gausian")


def _branchy_model():
    """Two residual stages whose shortcuts are strided too, as in ResNet."""
    import keras

    inputs = keras.Input((None, None, 3))
    x = inputs
    for filters in (4, 8):
        main = keras.layers.Conv2D(filters, 3, strides=2, padding="same")(x)
        shortcut = keras.layers.Conv2D(filters, 1, strides=2)(x)
        x = keras.layers.Add()([main, shortcut])
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2DTranspose(4, 2, strides=2)(x)
    return keras.Model(inputs, x)


def test_downsampling_factor_counts_parallel_branches_once():
    from tiledseg.tiling import downsampling_factor

    assert downsampling_factor(_branchy_model()) == 8


def test_downsampling_factor_of_unets_and_a_nested_encoder():
    import keras
    from conftest import build_tiny_unet

    from tiledseg.tiling import downsampling_factor

    assert downsampling_factor(build_tiny_unet(levels=3)) == 8
    encoder = keras.applications.MobileNetV2(
        weights=None, include_top=False, input_shape=(None, None, 3)
    )
    inputs = keras.Input((None, None, 3))
    features = encoder(inputs)
    outputs = keras.layers.UpSampling2D(32)(keras.layers.Conv2D(1, 1)(features))
    assert downsampling_factor(keras.Model(inputs, outputs)) == 32
