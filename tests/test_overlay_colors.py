"""Overlay colours chosen for contrast, tiles told apart, and the entropy uncertainty map."""

from __future__ import annotations

import numpy as np
import pytest

from tiledseg import viz
from tiledseg.errors import MaskSizeError
from tiledseg.uncertainty import binary_entropy


def test_contrast_colour_stands_out_from_real_blood_cells(shared_data):
    from tiledseg.io import read_image, read_mask

    folder = shared_data / "bloodcell" / "test"
    image_path = sorted((folder / "images").iterdir())[0]
    image = read_image(image_path)
    mask = read_mask(folder / "masks" / f"{image_path.stem}.png")
    model_color = (64, 160, 255)  # unet-bloodcell's class colour, the invisible one
    chosen = viz.contrasting_color(image, mask, [model_color, *viz.OVERLAY_CANDIDATES])
    cells = viz._lab(image[mask][::31])

    def distance(color) -> float:
        return float(np.quantile(np.linalg.norm(cells - viz._lab(np.array([color])), axis=1), 0.1))

    assert chosen != model_color
    assert distance(chosen) > 2 * distance(model_color)
    # It also stands out from the background, where the outline runs.
    background = viz._lab(image[~mask][::97])
    assert np.quantile(np.linalg.norm(background - viz._lab(np.array([chosen])), axis=1), 0.1) > 40


def test_contrast_keeps_the_first_candidate_on_a_tie_and_validates():
    grey = np.full((10, 10), 128, np.uint8)
    assert viz.contrasting_color(grey, candidates=[(255, 0, 0), (255, 0, 0)]) == (255, 0, 0)
    with pytest.raises(ValueError, match="at least one colour"):
        viz.contrasting_color(grey, candidates=[])
    with pytest.raises(ValueError, match="3 integers"):
        viz.contrasting_color(grey, candidates=[(300, 0, 0)])
    with pytest.raises(MaskSizeError):
        viz.contrasting_color(grey, np.zeros((3, 3), bool))


def test_each_overlapping_tile_gets_its_own_colour_and_number():
    image = np.zeros((100, 160, 3), np.uint8)
    tiles = [(0, 0, 100, 64), (0, 48, 100, 64), (0, 96, 100, 64)]  # overlapping by 16 px
    out = viz.draw_tiles(image, tiles, numbers=False, fill=0.0)
    left_edge, middle_edge = out[50, 1], out[50, 48 + 3 + 1]  # outline, inset for odd tiles
    assert tuple(left_edge) == viz.TILE_COLORS[0]
    assert tuple(middle_edge) == viz.TILE_COLORS[1]
    filled = viz.draw_tiles(image, tiles, numbers=False)
    # inside tile 1 only, inside tiles 1 and 2: different tints, so the overlap shows
    assert tuple(filled[50, 30]) != tuple(filled[50, 56])
    numbered = viz.draw_tiles(image, tiles)
    assert (numbered != filled).any()  # the numbers are drawn
    assert viz.draw_tiles(np.zeros((4000, 6000, 3), np.uint8), tiles, max_side=800).shape == (
        533,
        800,
        3,
    )


def test_binary_entropy_is_zero_when_sure_and_one_bit_at_half():
    p = np.array([0.0, 0.01, 0.5, 0.99, 1.0], np.float32)
    h = binary_entropy(p)
    assert h.dtype == np.float32
    np.testing.assert_allclose(h, [0.0, 0.0808, 1.0, 0.0808, 0.0], atol=1e-4)
    assert binary_entropy(np.array([1.0000001], np.float32))[0] == 0.0  # blending round-off
    with pytest.raises(ValueError, match="float array"):
        binary_entropy(np.array([0, 1]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        binary_entropy(np.array([1.5]))
