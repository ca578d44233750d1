"""Privacy and memorisation: distance to the closest training record (DCR).

For every query skull, its DCR is the distance to the nearest training skull.
Two sets of queries are compared: the generated samples, and real held-out
(test) skulls, which show how close an unseen skull of the same population
comes to the training set by chance. From the two:

- ``DCR-ratio``: median DCR of the generated samples / median DCR of the test
  skulls. About 1 when samples sit as far from the training set as new real
  skulls do; below 1 when they sit closer (memorisation, copying); 0 for
  copies of training skulls. Higher is better for privacy; well above 1
  rather says the samples are far from every real skull (see the fidelity
  metrics).
- ``memorised-share``: the share (%) of generated samples whose DCR is at most
  the 5th percentile of the test skulls' DCRs, i.e. closer to a training skull
  than all but 5 % of real unseen skulls. About 5 % for a method that
  generalises; 100 % for copies. Lower is better.
- ``DCR-median-generated``, in the distance's unit; the held-out skulls' own
  median (the same for every method of a run) goes into the run's reference
  facts, not the leaderboard.

The registered metric ``dcr`` uses 1 - Dice as the distance. An empty sample
is no record of anybody: it is left out of the DCRs (it would otherwise count
as perfectly private), and a set without any bone scores NaN.

The functions take distance matrices with rows the training skulls and
columns the queries, so matrices that the distance engine already computed
(Chamfer, EMD) are reused. Without one, the distance is 1 - Dice from
:func:`metrics.volumetric.dice_matrix` (dimensionless, 0 for identical volumes).
Metric names end in the distance's tag, e.g. ``"DCR-ratio-Dice"``,
``"memorised-share-CD"``. An infinite distance (the engine's mark of an empty
generated shape) is allowed and makes that sample far from every record; a
NaN distance makes the affected numbers NaN, never a score.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from bench.core.errors import BenchError
from bench.core.values import ValueSpec
from metrics.base import Metric, register_metric

MEMORISED_QUANTILE = 0.05
"""Quantile of the test skulls' DCRs below which a sample counts as memorised."""


@dataclass(frozen=True)
class ClosestRecords:
    """Each query's nearest training record.

    Attributes:
        index: int64 (Q,), row of the nearest training skull for each query.
        distance: float64 (Q,), the DCR of each query.
    """

    index: np.ndarray
    distance: np.ndarray


def closest_records(distances: np.ndarray) -> ClosestRecords:
    """The nearest training skull of each query.

    Args:
        distances: (N_train, Q) distances, rows training skulls, columns queries.
            +inf is allowed (the distance engine's mark of an empty generated
            shape); a column holding NaN gets distance NaN and index -1.
    """
    distances = _check_matrix(distances, "distances")
    missing = np.isnan(distances)
    broken = missing.any(0)
    index = np.where(missing, np.inf, distances).argmin(0)
    distance = distances[index, np.arange(distances.shape[1])]
    return ClosestRecords(index=np.where(broken, -1, index),
                          distance=np.where(broken, np.nan, distance))


@dataclass(frozen=True)
class PrivacyReport:
    """DCRs of generated samples and of held-out skulls, and what follows from them.

    Attributes:
        generated: the nearest training skull of each generated sample.
        test: the nearest training skull of each held-out skull.
        threshold: the ``quantile`` of the test DCRs; generated samples at or
            below it count as memorised.
        quantile: that quantile (default 0.05).
        distance_tag: short name of the distance, used in metric names.
        unit: the distance's unit (``""`` for 1 - Dice, ``"mm"`` for Chamfer, ...).
    """

    generated: ClosestRecords
    test: ClosestRecords
    threshold: float
    quantile: float
    distance_tag: str
    unit: str

    @property
    def ratio(self) -> float:
        """Median generated DCR / median test DCR.

        NaN when a DCR is NaN, or when the test median is 0 or infinite.
        """
        test_median = _median(self.test.distance)
        if not 0 < test_median < np.inf:
            return float("nan")
        return _median(self.generated.distance) / test_median

    @property
    def memorised_share(self) -> float:
        """Share (%) of generated samples with a DCR at or below the threshold.

        NaN when any DCR is NaN. An infinite DCR (an empty sample under the
        Chamfer engine) is never memorised.
        """
        if np.isnan(self.threshold) or np.isnan(self.generated.distance).any():
            return float("nan")
        return 100.0 * float(np.mean(self.generated.distance <= self.threshold))

    @property
    def test_median(self) -> float:
        """Median DCR of the held-out skulls: how far an unseen real skull lies by chance."""
        return _median(self.test.distance)

    def values(self) -> dict[str, float]:
        """Ratio, memorised share and the generated median, named with the distance's tag."""
        tag = self.distance_tag
        return {f"DCR-ratio-{tag}": self.ratio,
                f"memorised-share-{tag}": self.memorised_share,
                f"DCR-median-generated-{tag}": _median(self.generated.distance)}


def privacy_report(train_to_test: np.ndarray, train_to_generated: np.ndarray,
                   distance_tag: str, unit: str,
                   quantile: float = MEMORISED_QUANTILE) -> PrivacyReport:
    """DCR statistics from two distance matrices that share their rows (training skulls).

    Args:
        train_to_test: (N_train, N_test) distances from training to held-out skulls.
        train_to_generated: (N_train, M) distances from training skulls to samples.
        distance_tag: short name for metric names, e.g. ``"Dice"`` (for 1 - Dice), ``"CD"``.
        unit: unit of the distances.
        quantile: quantile of the test DCRs that defines the memorisation threshold.
    """
    train_to_test = _check_matrix(train_to_test, "train_to_test")
    train_to_generated = _check_matrix(train_to_generated, "train_to_generated")
    if train_to_test.shape[0] != train_to_generated.shape[0]:
        raise BenchError(f"train_to_test has {train_to_test.shape[0]} rows and "
                         f"train_to_generated {train_to_generated.shape[0]}; both rows must be "
                         f"the same training skulls")
    if not 0.0 < quantile < 1.0:
        raise BenchError(f"quantile must lie strictly between 0 and 1, got {quantile}")
    test = closest_records(train_to_test)
    return PrivacyReport(generated=closest_records(train_to_generated), test=test,
                         threshold=float(np.quantile(test.distance, quantile)),
                         quantile=quantile, distance_tag=distance_tag, unit=unit)


def _median(values: np.ndarray) -> float:
    """Median; NaN if any value is NaN."""
    return float(np.median(values))


def _check_matrix(matrix: np.ndarray, name: str) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    if matrix.ndim != 2 or 0 in matrix.shape:
        raise BenchError(f"{name} must be a non-empty 2-D distance matrix (training rows, "
                         f"query columns), got shape {matrix.shape}")
    if np.any(matrix < 0):
        raise BenchError(f"{name} holds negative distances; pass distances, not similarities "
                         f"(for Dice use 1 - Dice)")
    return matrix


@register_metric("dcr")
class DistanceToClosestRecord(Metric):
    """DCR privacy with 1 - Dice: samples against held-out skulls (see the module notes)."""

    description = ("distance to the closest training record (1 - Dice) of samples against "
                   "held-out skulls: median ratio, memorised share, median")
    group = "privacy"
    inputs = ("dice", "volumes")
    outputs = (ValueSpec("DCR-ratio-Dice", True, ""),
               ValueSpec("memorised-share-Dice", False, "%", {"gate"}),
               ValueSpec("DCR-median-generated-Dice", True, ""))

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        bone = ~generated.empty
        if not bone.any():
            return {spec.name: float("nan") for spec in self.outputs}
        report = privacy_report(1.0 - reference.train_dice, 1.0 - generated.train_dice[:, bone],
                                distance_tag="Dice", unit="")
        return report.values()
