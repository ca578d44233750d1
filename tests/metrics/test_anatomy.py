"""Anatomy metrics: W1 against scipy, and failure rates on shapes with known answers."""

import numpy as np
import pytest
from scipy import stats

from bench.core.errors import BenchError
from metrics.anatomy import (AnatomyWasserstein, FailureCriteria, FailureRate, failure_report,
                             wasserstein_distances)
from metrics.measures import MEASURES, AnatomyMeasures, measure_volumes
from shapes import skull_like

pytestmark = pytest.mark.filterwarnings("ignore:.*always_return_as_numpy:FutureWarning")


def _measures(**values):
    n = len(next(iter(values.values())))
    base = {m.attribute: np.ones(n) for m in MEASURES}
    base.update({k: np.asarray(v, dtype=np.float64) for k, v in values.items()})
    return AnatomyMeasures(**base)


def test_wasserstein_matches_scipy_and_sorted_differences():
    rng = np.random.default_rng(0)
    ref_index = rng.normal(75, 5, 50)
    gen_index = rng.normal(80, 3, 50)
    ref = _measures(cephalic_index=ref_index, cranial_length_mm=rng.normal(180, 8, 50))
    gen = _measures(cephalic_index=gen_index, cranial_length_mm=rng.normal(180, 8, 50))
    rows = wasserstein_distances(ref, gen)
    expected = stats.wasserstein_distance(ref_index, gen_index)
    assert rows["W1-cephalic-index"] == pytest.approx(expected)
    # Equal sample sizes: W1 is the mean gap between sorted samples.
    assert expected == pytest.approx(np.abs(np.sort(ref_index) - np.sort(gen_index)).mean())
    assert rows["W1-bone-volume"] == 0.0
    specs = {spec.name: spec for spec in AnatomyWasserstein.outputs}
    assert set(specs) == set(rows)
    assert specs["W1-cephalic-index"].unit == "" and specs["W1-cranial-length"].unit == "mm"
    assert AnatomyWasserstein.group == "anatomy"
    assert not any(spec.higher_is_better for spec in specs.values())


def test_wasserstein_ignores_nan_and_gives_nan_without_values():
    ref = _measures(symmetry_error_mm=[0.1, 0.2, 0.3])
    gen = _measures(symmetry_error_mm=[0.5, np.nan, 0.7])
    rows = wasserstein_distances(ref, gen)
    assert rows["W1-symmetry-error"] == pytest.approx(
        stats.wasserstein_distance([0.1, 0.2, 0.3], [0.5, 0.7]))
    gen_nan = _measures(symmetry_error_mm=[np.nan, np.nan, np.nan])
    assert np.isnan(wasserstein_distances(ref, gen_nan)["W1-symmetry-error"])


def test_failure_report_on_empty_fragmented_and_out_of_range():
    resolution, size = 64, 4.0
    reference = measure_volumes(np.stack([
        skull_like(resolution, (60.0 + d, 80.0 + d, 55.0 + d)) for d in (-6, -3, 0, 3, 6)]),
        size)
    assert set(reference.n_components) == {2.0}
    good = skull_like(resolution, (61.0, 81.0, 56.0))
    fragmented = good.copy()
    fragmented[:, 28, :] = fragmented[:, 36, :] = False  # slice the shell into pieces
    huge = skull_like(resolution, (90.0, 110.0, 80.0))
    generated = measure_volumes(
        np.stack([good, np.zeros_like(good), fragmented, huge]), size)
    report = failure_report(reference, generated)
    assert report.reasons["empty"].tolist() == [False, True, False, False]
    assert report.reasons["fragmented"].tolist() == [False, False, True, False]
    assert report.reasons["out-of-range"].tolist() == [False, False, False, True]
    assert report.counts == {"empty": 1, "fragmented": 1, "out-of-range": 1, "total": 3}
    rates = report.rates()
    assert rates["failure-rate"] == pytest.approx(75.0)
    assert rates["failure-empty"] == pytest.approx(25.0)
    spec = FailureRate.spec_of("failure-rate")
    assert spec.unit == "%" and not spec.higher_is_better and "gate" in spec.tags
    assert report.thresholds["max_components"] == 4.0
    # A range margin of five reference ranges lets the huge one pass.
    assert failure_report(reference, generated,
                          FailureCriteria(range_margin=5.0)).reasons["out-of-range"].sum() == 0


def test_failure_report_rejects_empty_reference():
    empty = measure_volumes(np.zeros((2, 16, 16, 16), dtype=bool), 16.0)
    with pytest.raises(BenchError, match="reference"):
        failure_report(empty, empty)
