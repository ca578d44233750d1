"""Nearest-skull Dice of generated volumes, against the Dice engine."""

import numpy as np
import pytest

from bench.core.dice import dice_matrix
from metrics.volumetric import NearestDice, nearest_dice
from sets import scores


def test_nearest_dice_and_metrics(blobs):
    train = blobs(6, 20, seed=5)
    test = blobs(4, 20, seed=6)
    generated = np.concatenate([train[[4, 1]], blobs(2, 20, seed=7)])
    train_dice = dice_matrix(train, generated)
    index, value = nearest_dice(train_dice)
    assert index[:2].tolist() == [4, 1] and value[:2].tolist() == [1.0, 1.0]
    np.testing.assert_array_equal(value, train_dice.max(0))
    rows = scores(NearestDice(), test, generated, train=train)
    assert rows["Dice-nearest-train"] == pytest.approx(value.mean())
    assert rows["Dice-nearest-test"] == pytest.approx(dice_matrix(test, generated).max(0).mean())
    assert all(spec.higher_is_better for spec in NearestDice.outputs)
    assert NearestDice.group == "volumetric"
