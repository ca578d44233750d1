"""Volumetric overlap: Dice of each sample to its nearest training and test skull.

Dice matrices come from the Dice engine (:mod:`bench.core.dice`), rows the
reference set and columns the generated set.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.core.errors import BenchError
from bench.core.values import ValueSpec
from metrics.base import Metric, register_metric


def nearest_dice(dice: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each generated volume (column), its nearest reference (row) by Dice.

    Args:
        dice: (N, M) from :func:`dice_matrix`, rows reference, columns generated.

    Returns:
        (index (M,) int64 of the reference with the highest Dice, that Dice (M,)).
    """
    dice = np.asarray(dice, dtype=np.float64)
    if dice.ndim != 2 or 0 in dice.shape:
        raise BenchError(f"a Dice matrix must be 2-D and non-empty, got shape {dice.shape}")
    index = dice.argmax(0)
    return index, dice[index, np.arange(dice.shape[1])]


@register_metric("nearest-dice")
class NearestDice(Metric):
    """Mean Dice of each sample to its nearest training skull and nearest test skull.

    ``Dice-nearest-train``: how close samples come to the data the method saw;
    ``Dice-nearest-test``: to real skulls it did not see. Both are fidelity
    scores (higher is better) and dimensionless; a sample that scores much
    higher against training than against test skulls hints at copying, which
    :mod:`metrics.privacy` measures.
    """

    description = "mean Dice of each sample to its nearest training and nearest test skull"
    group = "volumetric"
    inputs = ("dice",)
    outputs = (ValueSpec("Dice-nearest-train", True, ""),
               ValueSpec("Dice-nearest-test", True, "", {"robustness"}))

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        return {"Dice-nearest-train": float(nearest_dice(generated.train_dice)[1].mean()),
                "Dice-nearest-test": float(nearest_dice(generated.reference_dice)[1].mean())}
