"""MONAI's sliding window on the same Keras model: the peer tiledseg is compared against.

:func:`predict_monai` runs ``monai.inferers.sliding_window_inference`` (the usual way to tile a
large image in PyTorch) with a Keras model under ``KERAS_BACKEND=torch``: the model is wrapped in
a callable that takes MONAI's NCHW patches, calls the model on NHWC and returns NCHW. The image
goes to the device as uint8 and becomes float32 there, as in tiledseg, and the probabilities come
back to the host, so both are timed from a host uint8 image to a host probability map.

Where MONAI and tiledseg differ, with the same tile, overlap and ``blend="gaussian"``:

- Grid. Both step by ``tile * (1 - overlap)`` and end the last tile at the image's edge, but
  tiledseg first pads the image at the bottom and right to a multiple of the model's
  downsampling factor (and rounds its step to that factor), so its last tile starts on the
  factor's grid, while MONAI's last tile starts at ``size - tile``, off it. Where the size is not
  a multiple of the factor the last tile row and column see different pixels and a different
  pooling alignment, and the probabilities differ there (by up to a few tenths with a random
  network). :func:`common_extent` gives, per axis, how far both grids use identical tiles.
- Window. Both use a Gaussian with sigma = tile / 8 centred at ``(tile - 1) / 2`` and divide by
  the summed weights, but MONAI floors its 2-D window (the product of two 1-D Gaussians) at 1e-3
  (its ``compute_importance_map``), and tiledseg's separable window has no floor. The floor
  covers a third of the tile: a band along its edges, 3.5 % of the tile wide across from the
  centre and widening toward the corners. Where tiles overlap, a tile whose weight is floored
  counts for more in MONAI than in tiledseg (at a tile's corner in a four-tile overlap 1e-3
  against about 1e-7).
- Image border. tiledseg flattens the first and last tile's window toward the image edge and
  MONAI does not, so within about a tenth of a tile of the image's border the MONAI weights of
  overlapping tiles all sit at the floor and MONAI averages them plainly, while tiledseg still
  blends them by the Gaussian.

With MONAI's own window the maps therefore differ by the gap between overlapping tiles'
predictions times the shifted weight share: up to 0.09 with a small random network on 128 px
tiles, largest at the image border. With ``weight_map=gaussian_window(tile)`` (no floor) the two
agree to 1.2e-7 wherever the grids agree, and MONAI's default equals that window floored at 1e-3
to 1.2e-7 (tests/test_benchmarks.py): grid, window and arithmetic are otherwise the same.

Example:
    >>> probabilities = predict_monai(image, network, tile=512, overlap=0.25,
    ...                               batch_size=16)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["common_extent", "gaussian_window", "monai_starts", "predict_monai"]


def gaussian_window(tile: int, sigma_scale: float = 0.125) -> np.ndarray:
    """The unclamped 2-D Gaussian window of both tilers, ``(tile, tile)`` float32, peak 1."""
    coords = np.arange(tile, dtype=np.float64) - (tile - 1) / 2.0
    line = np.exp(-0.5 * (coords / (tile * sigma_scale)) ** 2)
    return np.outer(line, line).astype(np.float32)


def predict_monai(
    image: np.ndarray,
    network: Any,
    *,
    tile: int,
    overlap: float,
    batch_size: int,
    device: Any = None,
    weight_map: np.ndarray | None = None,
) -> np.ndarray:
    """Probabilities of ``network`` over ``image`` by MONAI's Gaussian sliding window.

    Args:
        image: uint8 array ``(H, W, C)``, at the model's scale (no resizing here).
        network: a ``keras.Model`` (NHWC in, NHWC probabilities out) built under
            ``KERAS_BACKEND=torch``.
        tile: int, MONAI's ``roi_size`` (square); a multiple of the model's downsampling factor.
        overlap: float in [0, 1), MONAI's ``overlap``.
        batch_size: int >= 1, MONAI's ``sw_batch_size``.
        device: a torch device or name, or None (CUDA when available, else CPU).
        weight_map: ``(tile, tile)`` array or None. None uses MONAI's own window
            (``mode="gaussian"``, ``sigma_scale=0.125``, clamped at 1e-3); an array is passed as
            ``roi_weight_map``, e.g. :func:`gaussian_window` to reproduce tiledseg's weights.

    Returns:
        float32 ``(H, W)`` probabilities of the first output channel, on the host.

    Raises:
        RuntimeError: the Keras backend is not torch.
    """
    import keras
    import torch
    from monai.inferers import sliding_window_inference

    if keras.backend.backend() != "torch":
        raise RuntimeError(
            "predict_monai runs the Keras model on PyTorch tensors: set KERAS_BACKEND=torch. "
            f"Received: backend={keras.backend.backend()!r}"
        )
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    pixels = torch.from_numpy(np.ascontiguousarray(image)).to(device)
    inputs = pixels.permute(2, 0, 1)[None].to(torch.float32)  # (1, C, H, W)
    roi_weight_map = None
    if weight_map is not None:
        roi_weight_map = torch.as_tensor(np.asarray(weight_map, np.float32), device=device)

    def predictor(patches: torch.Tensor) -> torch.Tensor:
        outputs = network(patches.permute(0, 2, 3, 1), training=False)
        return outputs.permute(0, 3, 1, 2).to(torch.float32)

    with torch.no_grad():
        output = sliding_window_inference(
            inputs,
            roi_size=(tile, tile),
            sw_batch_size=batch_size,
            predictor=predictor,
            overlap=overlap,
            mode="gaussian",
            sigma_scale=0.125,
            roi_weight_map=roi_weight_map,
        )
    return output[0, 0].cpu().numpy().astype(np.float32, copy=False)


def monai_starts(length: int, tile: int, overlap: float) -> tuple[int, ...]:
    """Where MONAI's windows start along one axis (its ``dense_patch_slices``)."""
    from monai.data.utils import dense_patch_slices

    interval = tile if tile >= length else max(1, int(tile * (1 - overlap)))
    slices = dense_patch_slices((max(length, tile),), (tile,), (interval,))
    return tuple(int(window[0].start) for window in slices)


def common_extent(tiled_starts: tuple[int, ...], peer_starts: tuple[int, ...]) -> int:
    """How far along an axis both grids use identical tiles: pixels before it see the same ones.

    That is the start of the first tile where the grids part (the smaller of the two), or the
    image's end where they never do.
    """
    for ours, theirs in zip(tiled_starts, peer_starts, strict=False):
        if ours != theirs:
            return min(ours, theirs)
    if len(tiled_starts) != len(peer_starts):
        shorter = min(len(tiled_starts), len(peer_starts))
        longer = tiled_starts if len(tiled_starts) > shorter else peer_starts
        return longer[shorter]
    return 1 << 62
