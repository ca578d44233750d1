"""Anatomy metrics: distribution distances of the anatomical measures, and failure rates.

The measures themselves (bone volume, cranial length and width, skull height,
cephalic index, symmetry error, components) and their definitions are in
:mod:`metrics.measures`. Distribution distances use the finite values only;
the failure rate counts the empty samples.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from bench.core.errors import BenchError
from bench.core.values import ValueSpec
from metrics.base import Metric, Params, register_metric
from metrics.measures import MEASURES, AnatomyMeasures


# ------------------------------------------------------------- distribution distances

def wasserstein_distances(reference: AnatomyMeasures, generated: AnatomyMeasures
                          ) -> dict[str, float]:
    """Wasserstein-1 distance between the reference and generated values of each measure.

    W1 of two one-dimensional empirical distributions (``scipy.stats.
    wasserstein_distance``), in the unit of the measure, over the finite
    values of each side; NaN when a side has none. Names ``"W1-<measure>"``,
    e.g. ``"W1-cephalic-index"``; lower is better.
    """
    distances = {}
    for measure in MEASURES:
        ref = _finite(getattr(reference, measure.attribute))
        gen = _finite(getattr(generated, measure.attribute))
        value = float(stats.wasserstein_distance(ref, gen)) if len(ref) and len(gen) else np.nan
        distances[f"W1-{measure.tag}"] = value
    return distances


@register_metric("anatomy-w1")
class AnatomyWasserstein(Metric):
    """W1 between real and generated distributions of every anatomical measure."""

    description = ("Wasserstein-1 between reference and generated distributions of bone volume, "
                   "cranial length/width, skull height, cephalic index, symmetry error, "
                   "components and largest-component share")
    group = "anatomy"
    inputs = ("measures",)
    outputs = tuple(ValueSpec(f"W1-{measure.tag}", False, measure.unit) for measure in MEASURES)

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        return wasserstein_distances(reference.measures, generated.measures)


def _finite(values: np.ndarray) -> np.ndarray:
    values = np.asarray(values, dtype=np.float64)
    return values[np.isfinite(values)]


# ------------------------------------------------------------------------- failures

@dataclass(frozen=True)
class FailureCriteria(Params):
    """When a generated sample counts as a failure (see :func:`failure_report`).

    Attributes:
        max_extra_components: a sample is *fragmented* if it has more components
            than the most seen in any reference sample plus this many.
        largest_fraction_margin: ... or if its largest component's share of the
            bone is below the smallest reference share minus this (absolute).
        range_margin: a sample is *out of range* if its bone volume, cranial
            length, width or skull height lies outside the reference range
            [min, max] widened on each side by this fraction of (max - min).
    """

    max_extra_components: int = 2
    largest_fraction_margin: float = 0.1
    range_margin: float = 0.1


RANGE_MEASURES = ("bone_volume_ml", "cranial_length_mm", "cranial_width_mm", "skull_height_mm")
"""The measures whose reference range a sample must respect."""

FAILURE_REASONS = ("empty", "fragmented", "out-of-range")


@dataclass(frozen=True)
class FailureReport:
    """Which generated samples failed, and why.

    Attributes:
        reasons: reason -> bool (N,), the samples failing for that reason. An
            empty sample is only ``"empty"``; the other two may both hold.
        failed: bool (N,), any reason.
        thresholds: the limits applied, derived from the reference set
            (``"max_components"``, ``"min_largest_fraction"``, and
            ``"<measure>_low"`` / ``"<measure>_high"``).
    """

    reasons: dict[str, np.ndarray]
    failed: np.ndarray
    thresholds: dict[str, float] = field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        """Reason -> number of samples, and ``"total"`` -> number of failed samples."""
        counts = {reason: int(mask.sum()) for reason, mask in self.reasons.items()}
        counts["total"] = int(self.failed.sum())
        return counts

    def rates(self) -> dict[str, float]:
        """``"failure-rate"`` and ``"failure-<reason>"``, in % of samples."""
        n = max(len(self.failed), 1)
        rates = {"failure-rate": 100.0 * float(self.failed.sum()) / n}
        rates.update({f"failure-{reason}": 100.0 * float(mask.sum()) / n
                      for reason, mask in self.reasons.items()})
        return rates


def failure_report(reference: AnatomyMeasures, generated: AnatomyMeasures,
                   criteria: FailureCriteria = FailureCriteria()) -> FailureReport:
    """Flag generated samples that are empty, fragmented or out of the reference range.

    The limits come from the reference measures (real training skulls), so the
    same criteria fit datasets with and without a mandible (two components or
    one). With the defaults and synthskull, a sample fails if it has no bone;
    or more than 4 components (3 without the mandible); or a largest component
    below about 0.75 of the bone (0.9 without the mandible; the cranium holds
    0.85 to 0.92 of the bone with it); or a bone volume, length, width or
    height more than 10 % of the reference range beyond that range.

    Args:
        reference: measures of the reference (training) volumes; none empty.
        generated: measures of the generated volumes.
        criteria: the margins.
    """
    if not len(reference) or np.any(reference.n_components == 0):
        raise BenchError("failure_report: the reference measures must be non-empty and come "
                         "from volumes with bone")
    empty = generated.n_components == 0
    max_components = float(reference.n_components.max() + criteria.max_extra_components)
    min_fraction = float(reference.largest_component_fraction.min()
                         - criteria.largest_fraction_margin)
    fragmented = ~empty & ((generated.n_components > max_components)
                           | (generated.largest_component_fraction < min_fraction))
    thresholds = {"max_components": max_components, "min_largest_fraction": min_fraction}
    outside = np.zeros(len(generated), dtype=bool)
    for name in RANGE_MEASURES:
        ref = _finite(getattr(reference, name))
        margin = criteria.range_margin * (ref.max() - ref.min())
        low, high = float(ref.min() - margin), float(ref.max() + margin)
        thresholds[f"{name}_low"], thresholds[f"{name}_high"] = low, high
        values = getattr(generated, name)
        # NaN (e.g. no bone above the vault base) is out of range too.
        outside |= ~((values >= low) & (values <= high))
    reasons = {"empty": empty, "fragmented": fragmented, "out-of-range": outside & ~empty}
    failed = empty | fragmented | reasons["out-of-range"]
    return FailureReport(reasons=reasons, failed=failed, thresholds=thresholds)


@register_metric("failure-rate")
class FailureRate(Metric):
    """Share of samples that are empty, fragmented or out of the training skulls' range."""

    description = ("share (%) of samples that are empty, fragmented or outside the training "
                   "skulls' range of size (FailureCriteria)")
    group = "anatomy"
    inputs = ("measures", "train")
    outputs = (ValueSpec("failure-rate", False, "%",
                         {"headline", "robustness", "nfe", "gate", "floor"}),) + tuple(
        ValueSpec(f"failure-{reason}", False, "%") for reason in FAILURE_REASONS)
    Params = FailureCriteria
    params: FailureCriteria

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        return failure_report(reference.train_measures, generated.measures, self.params).rates()
