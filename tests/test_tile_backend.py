"""The engine's host path for tile backends (models that run elsewhere), without any network.

The backends here are plain Python objects with ``predict_tiles``; the TF Serving one is tested
in test_serving.py against a gRPC protocol peer.
"""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import keras
import numpy as np
import pytest
from conftest import KERAS_F32, build_tiny_unet

from tiledseg import TiledPredictor, predict_tiled, predict_whole
from tiledseg.errors import TiledsegError
from tiledseg.tile_backend import is_tile_backend


class _Backend:
    """Runs ``function`` on each batch, from several threads; records what it was sent."""

    def __init__(
        self,
        function,
        *,
        downsampling=1,
        batch_size=3,
        max_in_flight=3,
        delay=0.0,
        fixed_batch=None,
    ):
        self.function = function
        self.meta = SimpleNamespace(downsampling=downsampling)
        self.batch_size = batch_size
        if fixed_batch is not None:  # else absent, as on a backend that predates it
            self.fixed_batch = fixed_batch
        self.max_in_flight = max_in_flight
        self.delay = delay
        self.shapes: list[tuple[int, ...]] = []
        self.active = 0
        self.most_active = 0
        self._lock = threading.Lock()
        self._random = np.random.default_rng(0)

    def predict_tiles(self, batch):
        with self._lock:
            self.shapes.append(batch.shape)
            self.active += 1
            self.most_active = max(self.most_active, self.active)
            pause = self._random.uniform(0, self.delay)
        try:
            time.sleep(pause)  # later batches may finish first
            return self.function(batch)
        finally:
            with self._lock:
                self.active -= 1


def _channel_plus_one(batch):
    return batch[..., :1] + 1.0


def _image(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


CASES = [
    # (height, width), tile, overlap, factor
    ((1, 1), 64, 0.25, 16),
    ((37, 1), 16, 0.5, 1),
    ((97, 301), 64, 0.5, 16),
    ((257, 255), 128, 0.0, 8),
    ((211, 173), 32, 0.75, 4),
]


@pytest.mark.parametrize(("shape", "tile", "overlap", "factor"), CASES)
@pytest.mark.parametrize("blend", ["gaussian", "center"])
def test_known_output_backend_is_reproduced_exactly(shape, tile, overlap, factor, blend):
    image = _image(shape)
    backend = _Backend(_channel_plus_one, downsampling=factor, delay=0.002)
    expected = image[..., 0].astype(np.float32) + 1
    by_function = predict_tiled(image, backend, tile=tile, overlap=overlap, blend=blend)
    by_class = TiledPredictor(backend, tile=tile, overlap=overlap, blend=blend)(image)
    assert by_function.shape == shape and by_function.dtype == np.float32
    np.testing.assert_allclose(by_function, expected, rtol=0, atol=2e-4)
    np.testing.assert_array_equal(by_function, by_class)
    # Fixed-shape batches, tile-sized, multiples of the factor
    assert len({s for s in backend.shapes}) == 1
    assert backend.shapes[0][0] == 3 and backend.shapes[0][1] % factor == 0


@pytest.mark.parametrize("tta", [None, "flips"])
@pytest.mark.parametrize("classes", [1, 3])
def test_backend_path_equals_the_keras_path(tta, classes):
    network = build_tiny_unet(classes=classes, seed=5)
    backend = _Backend(
        lambda batch: np.asarray(network.predict_on_batch(batch)),
        downsampling=4,
        batch_size=5,
        max_in_flight=4,
        delay=0.01,
    )
    image = _image((150, 230), seed=1)
    local = predict_tiled(image, network, tile=64, overlap=0.25, tta=tta, **KERAS_F32)
    remote = predict_tiled(image, backend, tile=64, overlap=0.25, tta=tta)
    assert remote.shape == local.shape
    np.testing.assert_allclose(remote, local, rtol=0, atol=1e-5)
    assert backend.most_active > 1  # several batches were in flight at once


def test_explicit_batch_size_wins_and_progress_reports_every_band():
    backend = _Backend(_channel_plus_one, batch_size=3)
    calls = []
    predict_tiled(
        _image((100, 100)),
        backend,
        tile=32,
        overlap=0.5,
        batch_size=2,
        progress=lambda *a: calls.append(a),
    )
    assert {s[0] for s in backend.shapes} == {2}
    assert calls == [(6 * row, 36) for row in range(1, 7)]  # 6 row bands of 6 tiles


@pytest.mark.parametrize("tta", [None, "flips"])
def test_a_backend_without_a_fixed_batch_gets_only_the_tiles_left(tta):
    """A dynamic-batch backend (OpenVINO, ONNX Runtime) is not sent padding: 10 tiles at batch
    3 are calls of 3, 3, 3 and 1 (with flips, 40 views: 13 calls of 3 and one of 1); a backend
    that does not say is sent fixed-size calls, and both give the same probabilities."""
    image = _image((80, 190))  # 2 x 5 tiles
    settings = {"tile": 48, "overlap": 0.25, "tta": tta}
    dynamic = _Backend(_channel_plus_one, max_in_flight=2, delay=0.002, fixed_batch=False)
    fixed = _Backend(_channel_plus_one, max_in_flight=2, delay=0.002)
    got = predict_tiled(image, dynamic, **settings)
    np.testing.assert_array_equal(got, predict_tiled(image, fixed, **settings))
    views = 4 if tta else 1
    tiles = TiledPredictor(dynamic, tile=48, overlap=0.25).grid(image.shape).count * views
    assert tiles == 10 * views
    assert [shape[0] for shape in dynamic.shapes] == [3] * (tiles // 3) + [1]
    assert [shape[0] for shape in fixed.shapes] == [3] * (tiles // 3 + 1)


def test_wrong_output_shape_is_a_clear_error():
    backend = _Backend(lambda batch: batch[:, ::2, ::2, :1])
    with pytest.raises(TiledsegError, match=r"shape \(3, 16, 16, 1\) for tiles of shape"):
        predict_tiled(_image((64, 64)), backend, tile=32)


def test_a_failing_backend_stops_the_image_and_sends_nothing_more():
    def failing(batch):
        with lock:
            sent.append(batch.shape)
            if len(sent) >= 3:
                raise ConnectionError("server went away")
        time.sleep(0.01)
        return batch[..., :1]

    sent: list = []
    lock = threading.Lock()
    backend = _Backend(failing, batch_size=2, max_in_flight=2)
    with pytest.raises(ConnectionError, match="server went away"):
        predict_tiled(_image((256, 256)), backend, tile=32, overlap=0.5)
    total = len(sent)
    time.sleep(0.1)
    assert total == len(sent) <= 3 + backend.max_in_flight  # 225 tiles were never sent


def test_whole_image_through_a_backend():
    backend = _Backend(_channel_plus_one, downsampling=8)
    image = _image((45, 61))
    output = predict_whole(image, backend)
    np.testing.assert_allclose(output, image[..., 0] + 1.0, atol=1e-4)
    assert backend.shapes == [(1, 48, 64, 3)]


def test_a_keras_model_is_not_a_tile_backend():
    assert not is_tile_backend(keras.Sequential())
    assert is_tile_backend(_Backend(_channel_plus_one))
