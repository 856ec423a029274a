"""Tests for training.losses: values against NumPy on known masks, and compiled round trips."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from training.losses import (
    BceDiceLoss,
    DiceLoss,
    DiceScore,
    FocalLoss,
    IoUScore,
    JaccardLoss,
    LovaszLoss,
    TverskyLoss,
    bce_dice_loss,
    dice_coefficient,
    gap_pixels,
    get_loss,
    jaccard_coefficient,
    lovasz_loss,
    tversky_index,
)


def _masks():
    truth = np.zeros((2, 16, 16, 1), "float32")
    truth[0, :8] = 1.0  # half the image
    truth[1, 4:12, 4:12] = 1.0
    pred = np.zeros_like(truth)
    pred[0, :4] = 0.9  # a quarter, confidently
    pred[1, 4:12, 4:12] = 0.8
    pred[1, 0, 0] = 0.7
    return truth, pred


def _numpy_tversky(truth, pred, alpha, beta, smooth=1.0):
    tp = (truth * pred).sum(axis=(1, 2, 3))
    fp = ((1 - truth) * pred).sum(axis=(1, 2, 3))
    fn = (truth * (1 - pred)).sum(axis=(1, 2, 3))
    return (tp + smooth) / (tp + alpha * fp + beta * fn + smooth)


def test_overlap_coefficients_match_numpy():
    truth, pred = _masks()
    np.testing.assert_allclose(
        np.asarray(dice_coefficient(truth, pred)), _numpy_tversky(truth, pred, 0.5, 0.5), 1e-5
    )
    np.testing.assert_allclose(
        np.asarray(jaccard_coefficient(truth, pred)), _numpy_tversky(truth, pred, 1, 1), 1e-5
    )
    np.testing.assert_allclose(
        np.asarray(tversky_index(truth, pred, 0.3, 0.7)),
        _numpy_tversky(truth, pred, 0.3, 0.7),
        1e-5,
    )
    assert np.asarray(dice_coefficient(truth, truth)) == pytest.approx([1.0, 1.0])


def test_bce_dice_is_crossentropy_plus_dice_loss():
    truth, pred = _masks()
    clipped = np.clip(pred, 1e-7, 1 - 1e-7)
    bce = -(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped)).mean(axis=(1, 2, 3))
    expected = bce + 1 - _numpy_tversky(truth, pred, 0.5, 0.5)
    np.testing.assert_allclose(np.asarray(bce_dice_loss(truth, pred)), expected, rtol=1e-5)
    assert float(BceDiceLoss()(truth, pred)) == pytest.approx(expected.mean(), rel=1e-5)


@pytest.mark.parametrize(
    "loss",
    [BceDiceLoss(), DiceLoss(), JaccardLoss(), FocalLoss(), TverskyLoss(), LovaszLoss()],
)
def test_losses_are_lower_for_better_predictions(loss):
    truth, pred = _masks()
    better = 0.9 * truth + 0.05
    worse = 1.0 - better
    assert float(loss(truth, better)) < float(loss(truth, pred)) < float(loss(truth, worse))


def test_tversky_with_heavier_beta_punishes_missed_foreground_more():
    truth, pred = _masks()  # pred misses half of image 0's foreground
    recall_heavy = float(TverskyLoss(alpha=0.2, beta=0.8)(truth[:1], pred[:1]))
    precision_heavy = float(TverskyLoss(alpha=0.8, beta=0.2)(truth[:1], pred[:1]))
    assert recall_heavy > precision_heavy


def test_scores_threshold_and_average_over_images():
    truth, pred = _masks()
    dice, iou = DiceScore(), IoUScore()
    dice.update_state(truth, pred)
    iou.update_state(truth, pred)
    hard = (pred >= 0.5).astype("float32")
    tp = (hard * truth).sum(axis=(1, 2, 3))
    sums = hard.sum(axis=(1, 2, 3)) + truth.sum(axis=(1, 2, 3))
    assert float(dice.result()) == pytest.approx(np.mean(2 * tp / sums), rel=1e-5)
    assert float(iou.result()) == pytest.approx(np.mean(tp / (sums - tp)), rel=1e-5)


def test_an_empty_mask_predicted_empty_scores_one():
    empty = np.zeros((1, 8, 8, 1), "float32")
    score = DiceScore()
    score.update_state(empty, empty + 0.1)
    assert float(score.result()) == 1.0
    score.update_state(empty, empty + 0.9)  # everything wrongly predicted: 0
    assert float(score.result()) == pytest.approx(0.5)


def test_softmax_targets_are_one_hot_encoded_and_background_is_left_out():
    labels = np.zeros((1, 8, 8, 1), "float32")
    labels[0, :4, :4] = 1
    labels[0, 4:, 4:] = 2
    perfect = keras.ops.convert_to_numpy(keras.ops.one_hot(labels[..., 0].astype("int32"), 3))
    score = DiceScore()
    score.update_state(labels, perfect)
    assert float(score.result()) == pytest.approx(1.0)
    assert float(DiceLoss()(labels, perfect)) == pytest.approx(0.0, abs=1e-6)
    swapped = perfect[..., [0, 2, 1]]
    score.reset_state()
    score.update_state(labels, swapped)
    assert float(score.result()) == pytest.approx(0.0)


def test_get_loss_knows_the_names_and_the_seeds_spelling():
    assert isinstance(get_loss("bce_dice_loss"), BceDiceLoss)
    assert isinstance(get_loss("iou_loss"), JaccardLoss)
    assert get_loss("tversky", alpha=0.4, beta=0.6).get_config()["beta"] == 0.6
    with pytest.raises(ValueError, match="Did you mean 'focal'"):
        get_loss("focall")


def test_a_compiled_model_with_these_losses_and_metrics_reloads(tmp_path):
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(
        optimizer="adam", loss=TverskyLoss(alpha=0.4, beta=0.6), metrics=[DiceScore(), IoUScore()]
    )
    images = np.random.default_rng(0).uniform(size=(4, 16, 16, 3)).astype("float32")
    masks = (images[..., :1] > 0.5).astype("float32")
    model.fit(images, masks, epochs=1, verbose=0)
    path = tmp_path / "compiled.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.loss.get_config()["alpha"] == 0.4
    np.testing.assert_allclose(
        loaded.evaluate(images, masks, verbose=0),
        model.evaluate(images, masks, verbose=0),
        rtol=1e-5,
    )


def _two_cells(gap: int):
    """Two 10 px squares side by side with a ``gap`` px background column between them."""
    mask = np.zeros((1, 20, 32, 1), "float32")
    mask[0, 5:15, 5:15] = 1
    mask[0, 5:15, 15 + gap : 25 + gap] = 1
    return mask


def test_gap_pixels_are_the_thin_background_between_objects():
    mask = _two_cells(gap=2)
    gaps = np.asarray(gap_pixels(mask, 5))[0, ..., 0]
    expected = np.zeros_like(gaps)
    expected[5:15, 15:17] = 1  # the two columns between the squares, nothing else
    np.testing.assert_array_equal(gaps, expected)
    # A gap wider than the kernel is not a gap; a lone object has none.
    assert np.asarray(gap_pixels(_two_cells(gap=6), 5)).sum() == 0
    single = np.zeros((1, 20, 20, 1), "float32")
    single[0, 5:15, 5:15] = 1
    assert np.asarray(gap_pixels(single, 7)).sum() == 0


def test_gap_weight_punishes_merging_touching_objects_more():
    truth = _two_cells(gap=2)
    merged = np.clip(truth, 0.05, 0.95).copy()
    merged[0, 5:15, 15:17] = 0.95  # the prediction fills the gap: the cells merge
    plain = float(BceDiceLoss()(truth, merged))
    weighted = float(BceDiceLoss(gap_weight=10.0, gap_px=5)(truth, merged))
    assert weighted > plain * 1.5
    # Elsewhere the weighting changes nothing: a prediction right in the gap scores as before.
    apart = np.clip(truth, 0.05, 0.95)
    unweighted_ce = float(BceDiceLoss()(truth, apart))
    assert float(BceDiceLoss(gap_weight=10.0, gap_px=5)(truth, apart)) == pytest.approx(
        unweighted_ce, rel=1e-5
    )
    loss = get_loss("bce_dice", gap_weight=3.0, gap_px=7)
    assert loss.get_config()["gap_weight"] == 3.0
    assert BceDiceLoss.from_config(loss.get_config()).settings == loss.settings
    with pytest.raises(ValueError, match="gap_px"):
        BceDiceLoss(gap_weight=1.0, gap_px=4)
    with pytest.raises(ValueError, match="gap_weight"):
        BceDiceLoss(gap_weight=-1.0)


def _numpy_lovasz(truth, pred):
    """Berman et al.'s binary Lovász-Softmax on probabilities, one image, in NumPy."""
    errors = np.abs(truth - pred).ravel()
    order = np.argsort(-errors, kind="stable")
    errors, ordered = errors[order], truth.ravel()[order]
    total = ordered.sum()
    jaccard = 1 - (total - np.cumsum(ordered)) / (total + np.cumsum(1 - ordered))
    jaccard[1:] = jaccard[1:] - jaccard[:-1]
    return float(errors @ jaccard)


def test_lovasz_matches_numpy_and_is_one_minus_jaccard_on_hard_masks():
    truth, pred = _masks()
    rng = np.random.default_rng(0)
    noisy = np.clip(pred + rng.uniform(0, 0.2, pred.shape), 0, 1).astype("float32")
    np.testing.assert_allclose(
        np.asarray(lovasz_loss(truth, noisy)),
        [_numpy_lovasz(truth[i], noisy[i]) for i in range(2)],
        rtol=1e-5,
    )
    # The surrogate is exact where the prediction is a mask: 1 - Jaccard, per image.
    hard = (noisy > 0.5).astype("float32")
    inter = (hard * truth).sum(axis=(1, 2, 3))
    union = np.maximum(hard, truth).sum(axis=(1, 2, 3))
    np.testing.assert_allclose(np.asarray(lovasz_loss(truth, hard)), 1 - inter / union, 1e-6)
    # Nothing to find: the largest error (the surrogate of 1 - 0/|prediction|).
    empty = np.zeros_like(truth[:1])
    assert float(lovasz_loss(empty, noisy[:1])[0]) == pytest.approx(float(noisy[0].max()))


def test_lovasz_averages_softmax_channels_and_adds_weighted_crossentropy():
    truth, pred = _masks()
    classes = truth[..., 0].astype("int32")[..., None]  # a class-index map, 2 classes
    two = np.concatenate([1 - pred, pred], axis=-1)
    per_channel = [lovasz_loss(1 - truth, 1 - pred), lovasz_loss(truth, pred)]
    np.testing.assert_allclose(
        np.asarray(lovasz_loss(classes, two)), np.mean(per_channel, axis=0), rtol=1e-5
    )
    clipped = np.clip(pred, 1e-7, 1 - 1e-7)
    bce = -(truth * np.log(clipped) + (1 - truth) * np.log(1 - clipped)).mean(axis=(1, 2, 3))
    expected = np.asarray(lovasz_loss(truth, pred)) + 0.5 * bce
    assert float(get_loss("lovasz", bce_weight=0.5)(truth, pred)) == pytest.approx(
        expected.mean(), rel=1e-5
    )
    with pytest.raises(ValueError, match="bce_weight"):
        LovaszLoss(bce_weight=-1.0)


def test_lovasz_trains_a_model_and_reloads(tmp_path):
    """Its gradient reaches the weights (the sort is not differentiated, the errors are)."""
    keras.utils.set_random_seed(0)
    inputs = keras.Input((None, None, 3))
    outputs = keras.layers.Conv2D(1, 3, padding="same", activation="sigmoid")(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(optimizer=keras.optimizers.Adam(0.1), loss=LovaszLoss(bce_weight=0.5))
    images = np.random.default_rng(0).uniform(size=(8, 16, 16, 3)).astype("float32")
    masks = (images[..., :1] > 0.5).astype("float32")
    history = model.fit(images, masks, epochs=30, batch_size=8, verbose=0).history["loss"]
    assert history[-1] < 0.75 * history[0], history  # measured: 0.877 -> 0.617
    path = tmp_path / "lovasz.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    assert loaded.loss.get_config()["bce_weight"] == 0.5
