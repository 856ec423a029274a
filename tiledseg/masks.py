"""What counts as foreground in a ground-truth mask: one rule, and a refusal where it cannot tell.

A binary mask is read from its decoded values (:func:`tiledseg.io.read_mask` decodes them):

1. Two levels, one of them 0: foreground is every pixel that is not 0. This covers 0/1,
   0/255, 0/65535, 16-bit 0/255, label masks with one label (0/2), 1-bit masks, and palette
   or colour masks with one colour on black (VOC's dark red, green on black).
2. One level: 0 is an empty mask (a valid ground truth); any other value is all foreground.
3. Colour masks (lossless) must hold black and at most one other colour; grey colour pixels
   (R = G = B) are read as grey.
4. JPEG and WebP masks (lossy: edges come back noisy) with more than two levels: foreground is
   a brightest channel above 127. Refused when no pixel is above 127 while some are above 0
   (a 0/1 mask saved as JPEG cannot be told from its noise), or when more than 2% of the
   pixels lie between 64 and 191 (not a two-level image).
5. Transparency: a mask whose alpha channel leaves some pixels fully transparent is read from
   its colour values only where those agree with it (foreground exactly where not transparent,
   as annotation tools export opaque labels on a transparent background). A shape drawn in
   the alpha channel alone (a white or black image with a transparent background) is refused:
   its colour values would read as all foreground or all background.

Refused, with the reason and the levels found: two levels neither of which is 0 (1/2,
100/200), more than two levels in a lossless file (a label map with several classes, or a mask
resized with interpolation), and colour masks with several colours. Save such masks as 0 and
255 (for example ``(labels > 0) * 255``, or resize with nearest-neighbour interpolation).
"""

from __future__ import annotations

__all__ = ["LOSSY_FORMATS", "MID_FRACTION_LIMIT", "check_alpha", "foreground"]

import numpy as np

from tiledseg.errors import MaskValueError

LOSSY_FORMATS = ("JPEG", "MPO", "WEBP")
MID_FRACTION_LIMIT = 0.02
_ADVICE = "save the mask with background 0 and foreground 255 (e.g. (labels > 0) * 255)"


def _levels(values: np.ndarray) -> np.ndarray:
    counts = np.bincount(values.ravel(), minlength=2)
    return np.flatnonzero(counts)


def _shown(levels: np.ndarray) -> str:
    listed = ", ".join(str(int(v)) for v in levels[:6])
    return f"{listed}, ..." if len(levels) > 6 else listed


def _grey(values: np.ndarray, label: str, lossy: bool) -> np.ndarray:
    levels = _levels(values)
    if len(levels) == 1:
        return np.full(values.shape, bool(levels[0]), bool)
    if len(levels) == 2:
        if levels[0] == 0:
            return values != 0
        raise MaskValueError(
            label,
            f"it holds two levels ({_shown(levels)}) and neither is 0, so which one is "
            f"foreground is ambiguous; {_ADVICE}",
        )
    if not lossy or values.dtype != np.uint8:
        raise MaskValueError(
            label,
            f"it holds {len(levels)} levels ({_shown(levels)}): a label map with several "
            "classes, or a mask resized with interpolation, is not a binary mask; "
            f"{_ADVICE}, or resize it with nearest-neighbour interpolation",
        )
    highest = int(levels[-1])
    if highest <= 127:
        raise MaskValueError(
            label,
            f"it is a JPEG/WebP mask whose values only reach {highest}: foreground cannot be "
            "told from compression noise (a 0/1 mask saved as JPEG?); save masks as PNG",
        )
    middle = float(np.count_nonzero((values > 64) & (values < 191))) / values.size
    if middle > MID_FRACTION_LIMIT:
        raise MaskValueError(
            label,
            f"{100 * middle:.1f}% of its pixels are between 64 and 191 (at most "
            f"{100 * MID_FRACTION_LIMIT:g}% in a noisy two-level mask): it is not a binary "
            "mask; save masks as PNG with values 0 and 255",
        )
    return values > 127


def _colour(values: np.ndarray, label: str) -> np.ndarray:
    lit = values.any(axis=2)
    if not lit.any():
        return lit
    first = values[lit][0]
    same = (values == first).all(axis=2)
    if np.array_equal(same, lit):
        return lit
    other = values[lit & ~same][0]
    raise MaskValueError(
        label,
        f"it holds more than one colour besides black (e.g. {tuple(int(c) for c in first)} and "
        f"{tuple(int(c) for c in other)}): a colour mask with several classes is not a "
        f"binary mask; {_ADVICE}",
    )


def foreground(values: np.ndarray, label: str, *, lossy: bool) -> np.ndarray:
    """The foreground of a decoded mask, by the module's rule.

    Args:
        values: np.ndarray, (H, W) or (H, W, 3), uint8 or uint16, as decoded.
        label: str, the file's name for messages.
        lossy: bool, the file is JPEG or WebP (noisy edges are expected).

    Returns:
        np.ndarray (H, W) bool.

    Raises:
        MaskValueError: the values cannot be read as one foreground; the message says why.

    Example:
        >>> foreground(np.array([[0, 2], [2, 0]], np.uint8), "m.png", lossy=False).tolist()
        [[False, True], [True, False]]
    """
    if values.ndim == 3:
        grey = (values[..., 0] == values[..., 1]).all() and (values[..., 1] == values[..., 2]).all()
        if grey:
            values = values[..., 0]
        elif lossy:
            values = values.max(axis=2)
        else:
            return _colour(values, label)
    return _grey(values, label, lossy)


def check_alpha(mask: np.ndarray, alpha: np.ndarray | None, label: str) -> None:
    """Refuse a mask whose transparency disagrees with its colour values (rule 5).

    Args:
        mask: np.ndarray (H, W) bool, the foreground read from the colour values.
        alpha: np.ndarray (H, W) or None, the file's alpha channel (None: it has none).
        label: str, the file's name for messages.

    Raises:
        MaskValueError: some pixels are fully transparent and the foreground is not exactly
            the pixels that are not.
    """
    if alpha is None or alpha.min() > 0:
        return  # nothing is transparent: the alpha carries no shape
    visible = alpha > 0
    if np.array_equal(mask, visible):
        return
    raise MaskValueError(
        label,
        f"its alpha channel makes {100 * (1 - visible.mean()):.1f}% of it transparent, while "
        f"its colour values make {100 * mask.mean():.1f}% foreground, and the two disagree: "
        "a shape drawn in transparency is not read from it. Save the mask without an alpha "
        "channel, with background 0 and foreground 255 (e.g. (alpha > 0) * 255)",
    )
