"""Reference and generated sets for scoring one metric in a test."""

import numpy as np

from metrics.base import Metric
from metrics.inputs import GeneratedSet, ReferenceSet


def scores(metric: Metric, reference: np.ndarray, generated: np.ndarray,
           train: np.ndarray | None = None, voxel_size_mm: float = 4.0, seed: int = 0,
           **options) -> dict[str, float]:
    """``metric`` of ``generated`` against ``reference`` (training split ``train``, by default
    the reference itself), as name -> value."""
    reference_set = ReferenceSet(reference, reference if train is None else train, voxel_size_mm,
                                 **options)
    values = metric.evaluate(reference_set, GeneratedSet(reference_set, generated, seed))
    return {value.name: value.value for value in values}
