"""Segmentation losses and metrics in ``keras.ops`` (any Keras backend).

Targets are masks with values 0/1: ``(batch, H, W, 1)`` for a sigmoid model, or, for a softmax
model with C channels, either a class-index map ``(batch, H, W, 1)`` (one-hot encoded here) or
one-hot ``(batch, H, W, C)``. Overlap scores are computed per image and averaged over the batch.

Every class is registered with ``keras.saving.register_keras_serializable(package="tiledseg")``
so a compiled model (the resumable checkpoint) reloads; the published best checkpoint is saved
uncompiled and needs none of them.
"""

from __future__ import annotations

from typing import Any

import keras
from keras import ops

from tiledseg._validation import validate_choice, validate_range

__all__ = [
    "LOSSES",
    "BceDiceLoss",
    "DiceLoss",
    "DiceScore",
    "FocalLoss",
    "IoUScore",
    "JaccardLoss",
    "LovaszLoss",
    "TverskyLoss",
    "bce_dice_loss",
    "dice_coefficient",
    "focal_loss",
    "gap_pixels",
    "get_loss",
    "jaccard_coefficient",
    "lovasz_loss",
    "tversky_index",
]

_EPSILON = 1e-7


def _align(y_true, y_pred):
    """Cast to float32 and one-hot encode a class-index target for a softmax prediction."""
    y_pred = ops.cast(y_pred, "float32")
    y_true = ops.cast(y_true, "float32")
    channels = y_pred.shape[-1]
    if channels is not None and channels > 1 and y_true.shape[-1] == 1:
        y_true = ops.one_hot(ops.cast(ops.squeeze(y_true, -1), "int32"), channels)
    return y_true, y_pred


def _per_image_sums(y_true, y_pred):
    """True positives, false positives and false negatives summed over H, W per image/channel."""
    axes = (1, 2)
    true_pos = ops.sum(y_true * y_pred, axis=axes)
    false_pos = ops.sum((1.0 - y_true) * y_pred, axis=axes)
    false_neg = ops.sum(y_true * (1.0 - y_pred), axis=axes)
    return true_pos, false_pos, false_neg


def tversky_index(y_true, y_pred, alpha: float = 0.5, beta: float = 0.5, smooth: float = 1.0):
    """Soft Tversky index per image, averaged over channels: TP / (TP + a*FP + b*FN).

    ``alpha = beta = 0.5`` is the Dice coefficient, ``alpha = beta = 1`` the Jaccard index.
    """
    y_true, y_pred = _align(y_true, y_pred)
    true_pos, false_pos, false_neg = _per_image_sums(y_true, y_pred)
    index = (true_pos + smooth) / (true_pos + alpha * false_pos + beta * false_neg + smooth)
    return ops.mean(index, axis=-1)


def dice_coefficient(y_true, y_pred, smooth: float = 1.0):
    """Soft Dice coefficient per image: 2TP / (2TP + FP + FN), smoothed."""
    return tversky_index(y_true, y_pred, 0.5, 0.5, smooth)


def jaccard_coefficient(y_true, y_pred, smooth: float = 1.0):
    """Soft Jaccard index (IoU) per image: TP / (TP + FP + FN), smoothed."""
    return tversky_index(y_true, y_pred, 1.0, 1.0, smooth)


def _crossentropy(y_true, y_pred, weight=None):
    """Mean pixel cross-entropy per image: binary for one channel, categorical for several;
    with ``weight`` (shaped like the per-pixel loss), the weighted mean."""
    y_pred = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
    if y_pred.shape[-1] == 1:
        pixel = -(y_true * ops.log(y_pred) + (1.0 - y_true) * ops.log(1.0 - y_pred))
    else:
        pixel = -ops.sum(y_true * ops.log(y_pred), axis=-1, keepdims=True)
    if weight is None:
        return ops.mean(pixel, axis=(1, 2, 3))
    return ops.sum(weight * pixel, axis=(1, 2, 3)) / ops.sum(weight, axis=(1, 2, 3))


def gap_pixels(y_true, gap_px: int):
    """Background pixels inside the mask's morphological closing by a ``gap_px`` square: the
    thin background between objects that nearly touch (the lines that separate touching cells
    in a blood-smear mask). 1.0 there, else 0.0; (batch, H, W, C) like ``y_true``."""
    dilated = ops.max_pool(y_true, pool_size=gap_px, strides=1, padding="same")
    # Erode with the outside as background, so a strip along the crop's edge is not a "gap".
    r = gap_px // 2
    padded = ops.pad(dilated, [[0, 0], [r, r], [r, r], [0, 0]])
    closed = -ops.max_pool(-padded, pool_size=gap_px, strides=1, padding="valid")
    return ops.maximum(closed - y_true, 0.0)


def bce_dice_loss(y_true, y_pred, gap_weight: float = 0.0, gap_px: int = 7):
    """The seeds' ``bce_dice_loss``: cross-entropy plus (1 - soft Dice), per image.

    With ``gap_weight`` > 0 the cross-entropy of :func:`gap_pixels` counts ``1 + gap_weight``
    times, as in Ronneberger et al.'s UNet weight map: the narrow gaps between touching objects
    are few pixels, so an unweighted loss lets the objects merge.
    """
    y_true, y_pred = _align(y_true, y_pred)
    weight = None
    if gap_weight > 0 and y_pred.shape[-1] == 1:
        weight = 1.0 + gap_weight * ops.stop_gradient(gap_pixels(y_true, gap_px))
    return _crossentropy(y_true, y_pred, weight) + 1.0 - dice_coefficient(y_true, y_pred)


def focal_loss(y_true, y_pred, gamma: float = 2.0, alpha: float = 0.25):
    """Focal loss (Lin et al. 2017) per image; ``alpha`` weights the foreground (binary only)."""
    y_true, y_pred = _align(y_true, y_pred)
    y_pred = ops.clip(y_pred, _EPSILON, 1.0 - _EPSILON)
    if y_pred.shape[-1] == 1:
        p_true = y_true * y_pred + (1.0 - y_true) * (1.0 - y_pred)
        weight = y_true * alpha + (1.0 - y_true) * (1.0 - alpha)
        pixel = -weight * ops.power(1.0 - p_true, gamma) * ops.log(p_true)
    else:
        pixel = -y_true * ops.power(1.0 - y_pred, gamma) * ops.log(y_pred)
        pixel = ops.sum(pixel, axis=-1, keepdims=True)
    return ops.mean(pixel, axis=(1, 2, 3))


def lovasz_loss(y_true, y_pred, bce_weight: float = 0.0):
    """The Lovász-Softmax loss (Berman et al. 2018) on probabilities, per image and channel.

    A convex surrogate of 1 - Jaccard whose gradient is the Jaccard's own change as pixels are
    taken in order of their error, so it works on the whole image's overlap (boundaries of every
    object) rather than on pixels one by one. Channels are averaged; ``bce_weight`` > 0 adds
    that many times the cross-entropy, as :func:`bce_dice_loss` adds its Dice term.
    """
    y_true, y_pred = _align(y_true, y_pred)
    crossentropy = _crossentropy(y_true, y_pred) if bce_weight else 0.0
    # (batch, channels, pixels), pixels in order of falling error.
    shape = (ops.shape(y_pred)[0], y_pred.shape[-1], -1)
    truth = ops.reshape(ops.transpose(y_true, (0, 3, 1, 2)), shape)
    prob = ops.reshape(ops.transpose(y_pred, (0, 3, 1, 2)), shape)
    errors = ops.abs(truth - prob)
    order = ops.argsort(-ops.stop_gradient(errors), axis=-1)
    errors = ops.take_along_axis(errors, order, axis=-1)
    truth = ops.take_along_axis(truth, order, axis=-1)
    total = ops.sum(truth, axis=-1, keepdims=True)
    intersection = total - ops.cumsum(truth, axis=-1)
    union = total + ops.cumsum(1.0 - truth, axis=-1)
    jaccard = 1.0 - intersection / union  # union >= 1 from the first pixel on
    shifted = ops.concatenate([ops.zeros_like(jaccard[..., :1]), jaccard[..., :-1]], axis=-1)
    weights = ops.stop_gradient(jaccard - shifted)
    return ops.mean(ops.sum(errors * weights, axis=-1), axis=-1) + bce_weight * crossentropy


class _ConfiguredLoss(keras.losses.Loss):
    """A loss whose keyword settings round-trip through ``get_config``."""

    def __init__(self, name: str, reduction: str = "sum_over_batch_size", **settings: Any):
        super().__init__(name=name, reduction=reduction)
        self.settings = settings

    def get_config(self) -> dict[str, Any]:
        return {"name": self.name, "reduction": self.reduction, **self.settings}


@keras.saving.register_keras_serializable(package="tiledseg")
class BceDiceLoss(_ConfiguredLoss):
    """Binary (or categorical) cross-entropy plus Dice loss: the seeds' default.

    ``gap_weight``/``gap_px`` weight the gaps between touching objects (:func:`bce_dice_loss`).

    Example:
        >>> model.compile(optimizer="adam", loss=BceDiceLoss())
    """

    def __init__(
        self,
        name: str = "bce_dice",
        reduction: str = "sum_over_batch_size",
        gap_weight: float = 0.0,
        gap_px: int = 7,
    ):
        validate_range(gap_weight, "gap_weight", low=0.0)
        if not (isinstance(gap_px, int) and gap_px >= 3 and gap_px % 2):
            raise ValueError(f"`gap_px` must be an odd integer >= 3. Received: gap_px={gap_px!r}")
        super().__init__(name, reduction, gap_weight=float(gap_weight), gap_px=gap_px)

    def call(self, y_true, y_pred):
        return bce_dice_loss(y_true, y_pred, self.settings["gap_weight"], self.settings["gap_px"])


@keras.saving.register_keras_serializable(package="tiledseg")
class DiceLoss(_ConfiguredLoss):
    """1 - soft Dice coefficient, per image."""

    def __init__(self, smooth: float = 1.0, name: str = "dice_loss", **kwargs: Any):
        super().__init__(name, smooth=smooth, **kwargs)

    def call(self, y_true, y_pred):
        return 1.0 - dice_coefficient(y_true, y_pred, self.settings["smooth"])


@keras.saving.register_keras_serializable(package="tiledseg")
class JaccardLoss(_ConfiguredLoss):
    """1 - soft Jaccard index (IoU loss), per image."""

    def __init__(self, smooth: float = 1.0, name: str = "jaccard_loss", **kwargs: Any):
        super().__init__(name, smooth=smooth, **kwargs)

    def call(self, y_true, y_pred):
        return 1.0 - jaccard_coefficient(y_true, y_pred, self.settings["smooth"])


@keras.saving.register_keras_serializable(package="tiledseg")
class FocalLoss(_ConfiguredLoss):
    """Focal loss with focusing ``gamma`` and foreground weight ``alpha``."""

    def __init__(
        self, gamma: float = 2.0, alpha: float = 0.25, name: str = "focal_loss", **kwargs: Any
    ):
        validate_range(gamma, "gamma", low=0.0)
        validate_range(alpha, "alpha", low=0.0, high=1.0)
        super().__init__(name, gamma=gamma, alpha=alpha, **kwargs)

    def call(self, y_true, y_pred):
        return focal_loss(y_true, y_pred, self.settings["gamma"], self.settings["alpha"])


@keras.saving.register_keras_serializable(package="tiledseg")
class TverskyLoss(_ConfiguredLoss):
    """1 - Tversky index; ``beta > alpha`` penalises missed foreground more (recall)."""

    def __init__(
        self,
        alpha: float = 0.3,
        beta: float = 0.7,
        smooth: float = 1.0,
        name: str = "tversky_loss",
        **kwargs: Any,
    ):
        validate_range(alpha, "alpha", low=0.0)
        validate_range(beta, "beta", low=0.0)
        super().__init__(name, alpha=alpha, beta=beta, smooth=smooth, **kwargs)

    def call(self, y_true, y_pred):
        s = self.settings
        return 1.0 - tversky_index(y_true, y_pred, s["alpha"], s["beta"], s["smooth"])


@keras.saving.register_keras_serializable(package="tiledseg")
class LovaszLoss(_ConfiguredLoss):
    """Lovász-Softmax loss (:func:`lovasz_loss`), plus ``bce_weight`` x cross-entropy.

    Berman et al. fine-tune with it after a cross-entropy stage; a little cross-entropy keeps
    the probabilities calibrated, which the threshold chosen on validation data relies on.
    """

    def __init__(self, bce_weight: float = 0.0, name: str = "lovasz", **kwargs: Any):
        validate_range(bce_weight, "bce_weight", low=0.0)
        super().__init__(name, bce_weight=float(bce_weight), **kwargs)

    def call(self, y_true, y_pred):
        return lovasz_loss(y_true, y_pred, self.settings["bce_weight"])


LOSSES = {
    "bce": keras.losses.BinaryCrossentropy,
    "bce_dice": BceDiceLoss,
    "dice": DiceLoss,
    "jaccard": JaccardLoss,
    "focal": FocalLoss,
    "lovasz": LovaszLoss,
    "tversky": TverskyLoss,
}


def get_loss(name: str, **settings: Any) -> keras.losses.Loss:
    """Return a loss by name: "bce_dice", "bce", "dice", "jaccard", "focal", "lovasz" or
    "tversky".

    Args:
        name: str. The loss name (the seeds' ``"bce_dice_loss"`` is accepted too).
        **settings: the loss's keyword arguments (e.g. ``alpha``, ``beta`` for Tversky).

    Returns:
        A registered ``keras.losses.Loss`` instance.

    Raises:
        ValueError: unknown name.

    Example:
        >>> get_loss("tversky", alpha=0.3, beta=0.7)
    """
    aliases = {
        "bce_dice_loss": "bce_dice",
        "binary_crossentropy": "bce",
        "dice_loss": "dice",
        "iou_loss": "jaccard",
    }
    name = aliases.get(name, name)
    validate_choice(name, LOSSES, "loss")
    return LOSSES[name](**settings)


class _OverlapScore(keras.metrics.Metric):
    """Mean over images of a thresholded overlap score; an image with nothing to find and
    nothing found scores 1."""

    _jaccard = False

    def __init__(self, threshold: float = 0.5, name: str | None = None, **kwargs: Any):
        super().__init__(name=name, **kwargs)
        validate_range(threshold, "threshold", low=0.0, high=1.0)
        self.threshold = threshold
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def _hard_masks(self, y_true, y_pred):
        y_true, y_pred = _align(y_true, y_pred)
        if y_pred.shape[-1] == 1:
            return ops.cast(y_true >= 0.5, "float32"), ops.cast(y_pred >= self.threshold, "float32")
        classes = y_pred.shape[-1]
        predicted = ops.one_hot(ops.argmax(y_pred, axis=-1), classes)
        # Background (class 0) is left out: it would inflate the score.
        return y_true[..., 1:], predicted[..., 1:]

    def update_state(self, y_true, y_pred, sample_weight=None):
        truth, predicted = self._hard_masks(y_true, y_pred)
        true_pos, false_pos, false_neg = _per_image_sums(truth, predicted)
        overlap = true_pos if self._jaccard else 2.0 * true_pos
        denominator = overlap + false_pos + false_neg
        score = ops.where(denominator > 0, overlap / ops.maximum(denominator, 1.0), 1.0)
        score = ops.mean(score, axis=-1)
        self.total.assign_add(ops.sum(score))
        self.count.assign_add(ops.cast(ops.shape(score)[0], "float32"))

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)

    def reset_state(self):
        self.total.assign(0.0)
        self.count.assign(0.0)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "threshold": self.threshold}


@keras.saving.register_keras_serializable(package="tiledseg")
class DiceScore(_OverlapScore):
    """Dice coefficient of the thresholded prediction, averaged over images (logged as "dice").

    Example:
        >>> model.compile(optimizer="adam", loss=BceDiceLoss(), metrics=[DiceScore(), IoUScore()])
    """

    def __init__(self, threshold: float = 0.5, name: str = "dice", **kwargs: Any):
        super().__init__(threshold=threshold, name=name, **kwargs)


@keras.saving.register_keras_serializable(package="tiledseg")
class IoUScore(_OverlapScore):
    """Jaccard index (IoU) of the thresholded prediction, averaged over images ("iou")."""

    _jaccard = True

    def __init__(self, threshold: float = 0.5, name: str = "iou", **kwargs: Any):
        super().__init__(threshold=threshold, name=name, **kwargs)
