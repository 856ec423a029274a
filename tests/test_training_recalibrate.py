"""Batch-norm recalibration: statistics become exact averages over the given batches."""

from __future__ import annotations

import keras
import numpy as np

from training.recalibrate import recalibrate_batch_norm


def test_statistics_become_the_average_of_the_batches():
    inputs = keras.Input((8, 8, 3))
    features = keras.layers.Conv2D(4, 3, padding="same", name="conv")(inputs)
    outputs = keras.layers.BatchNormalization(name="bn")(features)
    model = keras.Model(inputs, outputs)
    frozen = model.get_layer("bn")
    frozen.trainable = False  # a frozen encoder's norms are recalibrated too
    rng = np.random.default_rng(0)
    batches = [rng.normal(loc=index, size=(4, 8, 8, 3)).astype("float32") for index in range(5)]
    kernel_before = model.get_layer("conv").get_weights()
    conv = keras.Model(inputs, features)
    expected_means = np.mean([np.asarray(conv(b)).mean(axis=(0, 1, 2)) for b in batches], axis=0)
    expected_vars = np.mean([np.asarray(conv(b)).var(axis=(0, 1, 2)) for b in batches], axis=0)

    assert recalibrate_batch_norm(model, iter(batches)) == 5

    gamma, beta, moving_mean, moving_var = frozen.get_weights()
    np.testing.assert_allclose(moving_mean, expected_means, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(moving_var, expected_vars, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(gamma, np.ones(4))  # nothing but the statistics moves
    np.testing.assert_array_equal(beta, np.zeros(4))
    for before, after in zip(kernel_before, model.get_layer("conv").get_weights(), strict=True):
        np.testing.assert_array_equal(before, after)
    assert frozen.momentum == 0.99 and not frozen.trainable  # settings restored
