"""How sure a model is, per pixel: the binary entropy of its probability map.

Entropy needs no extra inference (flip-TTA variance would run the network four times): it is 0
bits where the probability is 0 or 1 and 1 bit where it is 0.5, the decision boundary. High
entropy marks where the threshold decides, so where the mask's outline is least reliable.
"""

from __future__ import annotations

import numpy as np

__all__ = ["binary_entropy"]


def binary_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Per-pixel binary entropy ``-p log2 p - (1 - p) log2(1 - p)``, in bits.

    Args:
        probabilities: float array (any shape) of foreground probabilities in [0, 1].

    Returns:
        float32 array of the same shape, values in [0, 1].

    Raises:
        ValueError: not a float array, or values outside [0, 1] (beyond rounding).

    Example:
        >>> binary_entropy(np.array([0.0, 0.5, 1.0])).tolist()
        [0.0, 1.0, 0.0]
    """
    probs = np.asarray(probabilities)
    if not np.issubdtype(probs.dtype, np.floating) or probs.size == 0:
        raise ValueError(
            "`probabilities` must be a non-empty float array. "
            f"Received: dtype {probs.dtype}, shape {probs.shape}"
        )
    if not np.isfinite(probs).all() or probs.min() < -1e-3 or probs.max() > 1 + 1e-3:
        raise ValueError("`probabilities` must be finite values in [0, 1].")
    p = np.clip(probs.astype(np.float32), 1e-7, 1 - 1e-7)
    entropy = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.where((probs <= 0) | (probs >= 1), 0.0, entropy).astype(np.float32)
