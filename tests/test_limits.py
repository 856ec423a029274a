"""Work bounded at the model's scale (issue 14, section 2), and what arrays the engine takes.

A 3x50000 PNG of a few hundred bytes, brought to an ISIC model's short side of 256 px, would be
256x4266667 px: the engine refuses it from the shapes, before allocating, in the library, the
CLI and the app alike.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import REPO_ROOT, build_tiny_unet

from tiledseg import TiledPredictor, predict_tiled, predict_whole
from tiledseg.contract import ModelMeta
from tiledseg.engine import describe_grid
from tiledseg.errors import BitDepthWarning, WorkLimitError
from tiledseg.tiling import make_grid, tile_count


class _Zoo:
    """A network with metadata, as the zoo hands them to the engine."""

    def __init__(self, model, **meta):
        self.model = model
        self.meta = ModelMeta(name="t", **meta)


@pytest.fixture(scope="module")
def net():
    return build_tiny_unet()


def _strip_png(path: Path, height: int = 3, width: int = 50000) -> Path:
    cv2.imwrite(str(path), np.zeros((height, width, 3), np.uint8))
    return path


def test_enlargement_beyond_the_limit_is_refused_before_allocating(net):
    isic = _Zoo(net, scale={"mode": "short_side", "value": 256}, downsampling=4)
    strip = np.zeros((3, 50000, 3), np.uint8)
    for call in (
        lambda: predict_tiled(strip, isic),
        lambda: TiledPredictor(isic)(strip),
        lambda: predict_whole(strip, isic),
        lambda: describe_grid(strip.shape, isic),
    ):
        with pytest.raises(WorkLimitError) as refused:
            call()
        message = str(refused.value)
        assert "3x50000" in message and "256x4266667" in message
        assert "80,000,000" in message and "TILEDSEG_MAX_SCALED_PIXELS" in message


@pytest.mark.parametrize("scale", [1e9, {"mode": "long_side", "value": 1e7}])
def test_a_huge_scale_argument_or_metadata_scale_is_refused(net, scale):
    image = np.zeros((20, 30, 3), np.uint8)
    with pytest.raises(WorkLimitError, match="at the model's scale"):
        predict_tiled(image, net, scale=scale)
    with pytest.raises(WorkLimitError, match="20x30"):
        predict_tiled(
            image,
            _Zoo(
                net, scale=scale if isinstance(scale, dict) else {"mode": "factor", "value": scale}
            ),
        )


def test_too_many_tiles_is_refused_with_the_count_and_what_to_change(net, monkeypatch):
    image = np.zeros((2000, 2000, 3), np.uint8)
    with pytest.raises(WorkLimitError) as refused:
        predict_tiled(image, net, tile=8, overlap=0.5)
    message = str(refused.value)
    assert "249,001 tiles" in message and "50,000" in message and "larger tile" in message
    monkeypatch.setenv("TILEDSEG_MAX_TILES", "10")
    with pytest.raises(WorkLimitError, match="above the limit of 10 tiles"):
        predict_tiled(np.zeros((300, 300, 3), np.uint8), net, tile=64)
    monkeypatch.setenv("TILEDSEG_MAX_TILES", "lots")
    with pytest.raises(ValueError, match="TILEDSEG_MAX_TILES"):
        predict_tiled(np.zeros((30, 30, 3), np.uint8), net, tile=64)


def test_the_scaled_pixel_limit_can_be_raised_or_lowered(net, monkeypatch):
    image = np.zeros((100, 100, 3), np.uint8)
    monkeypatch.setenv("TILEDSEG_MAX_SCALED_PIXELS", "5000")
    with pytest.raises(WorkLimitError, match="10,000 pixels"):
        predict_tiled(image, net, tile=64)
    assert predict_tiled(image, net, tile=64, scale=0.5).shape == (100, 100)


@pytest.mark.parametrize(
    ("shape", "tile", "overlap", "factor"),
    [((1000, 1400), 512, 0.25, 32), ((97, 3001), 128, 0.5, 16), ((5, 5), 64, 0.0, 4),
     ((4096, 4096), 256, 0.75, 8), ((511, 513), 1, 0.9, 1)],
)  # fmt: skip
def test_tile_count_matches_the_grid(shape, tile, overlap, factor):
    assert (
        tile_count(*shape, tile, overlap, factor) == make_grid(*shape, tile, overlap, factor).count
    )


def test_cli_refuses_the_strip_under_the_isic_model_in_bounded_memory(tmp_path):
    strip = _strip_png(tmp_path / "strip.png")
    assert strip.stat().st_size < 2000
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    command = [sys.executable, "-m", "tiledseg", "predict", "--model", "unet-isic2017"]
    # RUSAGE_CHILDREN is the largest child so far: measure the CLI as the only child of a
    # fresh process, so earlier children of this test session do not count.
    wrapper = (
        "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr); "
        "sys.exit(code)"
    )
    result = subprocess.run(
        [sys.executable, "-c", wrapper, *command, "--out", str(tmp_path / "out"), str(strip)],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    peak_mib = int(result.stderr.strip().splitlines()[-1]) / 1024
    assert result.returncode == 2, result.stderr
    assert "256x4266667" in result.stderr and "Traceback" not in result.stderr
    assert peak_mib < 2500, f"{peak_mib:.0f} MiB"  # it reached 6 GB before the bound
    assert not list((tmp_path / "out").glob("*.png"))


def test_cli_scale_1e9_is_refused_per_image(tmp_path):
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((20, 30, 3), np.uint8))
    model = tmp_path / "m.keras"
    build_tiny_unet().save(model)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run(
        [sys.executable, "-m", "tiledseg", "predict", "--model", str(model), "--scale", "1e9",
         "--out", str(tmp_path / "out"), str(image)],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO_ROOT,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "factor 1e+09" in result.stderr and "20x30" in result.stderr
    assert "Traceback" not in result.stderr


# --- library arrays: converted as documented or refused -----------------------------------------


def test_uint16_is_converted_as_read_image_does(net):
    rng = np.random.default_rng(3)
    eight = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    sixteen = eight.astype(np.uint16) * 257
    np.testing.assert_array_equal(
        predict_tiled(sixteen, net, tile=64), predict_tiled(eight, net, tile=64)
    )
    # 12-bit values in a uint16 array are read the same way, with the warning read_image gives.
    with pytest.warns(BitDepthWarning, match=r"the uint16 `image` array is a 16-bit image"):
        predict_tiled(eight.astype(np.uint16) * 16, net, tile=64)


@pytest.mark.parametrize("dtype", [np.float32, np.float64, bool, np.int32])
def test_other_dtypes_are_refused_with_the_conversion_to_use(net, dtype):
    with pytest.raises(TypeError, match=r"uint8 \(0-255\) or uint16") as refused:
        predict_tiled(np.zeros((32, 32, 3), dtype), net)
    assert "np.uint8" in str(refused.value)


def test_grey_and_rgba_arrays_fit_a_three_channel_model(net):
    rgb = np.random.default_rng(4).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    grey = rgb[..., 0]
    expected = predict_tiled(np.dstack([grey] * 3), net, tile=64)
    np.testing.assert_array_equal(predict_tiled(grey, net, tile=64), expected)
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])
    np.testing.assert_array_equal(
        predict_tiled(rgba, net, tile=64), predict_tiled(rgb, net, tile=64)
    )
    with pytest.raises(ValueError, match="2 channels but the model takes 3"):
        predict_tiled(np.zeros((8, 8, 2), np.uint8), net)
