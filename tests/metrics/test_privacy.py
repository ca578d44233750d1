"""DCR, its ratio and the memorised share on copies, fresh samples and skull volumes."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from bench.data.synthskull import make_dataset
from bench.core.errors import BenchError
from metrics.privacy import DistanceToClosestRecord, closest_records, privacy_report
from sets import scores


def gaussian_sets(seed):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(400, 4)), rng.normal(size=(300, 4)), rng.normal(size=(300, 4))


def test_closest_records_by_brute_force():
    rng = np.random.default_rng(0)
    distances = rng.uniform(1, 2, size=(6, 5))
    records = closest_records(distances)
    for q in range(5):
        assert records.index[q] == min(range(6), key=lambda r: distances[r, q])
        assert records.distance[q] == distances[:, q].min()


def test_train_copies_are_memorised():
    train, test, _ = gaussian_sets(1)
    copies = train[[5, 17, 17, 300]]
    report = privacy_report(cdist(train, test), cdist(train, copies), "L2", "mm")
    assert report.generated.distance.tolist() == [0.0] * 4
    assert report.generated.index.tolist() == [5, 17, 17, 300]
    assert report.ratio == 0.0
    assert report.memorised_share == 100.0
    assert report.values() == {"DCR-ratio-L2": 0.0, "memorised-share-L2": 100.0,
                               "DCR-median-generated-L2": 0.0}
    assert report.test_median == pytest.approx(np.median(cdist(train, test).min(0)))


def test_fresh_sample_sits_as_far_as_test_skulls():
    train, test, fresh = gaussian_sets(2)
    report = privacy_report(cdist(train, test), cdist(train, fresh), "L2", "mm")
    assert 0.85 < report.ratio < 1.15
    assert report.memorised_share < 12.0  # 5 % expected
    assert report.threshold == pytest.approx(np.quantile(report.test.distance, 0.05))
    # Half copies, half fresh: the share and the ratio move the right way.
    mixed = np.concatenate([fresh[:150], train[:150]])
    half = privacy_report(cdist(train, test), cdist(train, mixed), "L2", "mm")
    assert 50.0 <= half.memorised_share < 60.0
    assert half.ratio < report.ratio


def test_infinite_and_nan_distances():
    train, test, fresh = gaussian_sets(3)
    to_generated = cdist(train, fresh[:10])
    to_generated[:, 0] = np.inf  # an empty sample under the Chamfer engine
    report = privacy_report(cdist(train, test), to_generated, "CD", "mm^2")
    assert report.generated.distance[0] == np.inf
    assert 0.0 <= report.memorised_share < 100.0
    to_generated[3, 1] = np.nan
    broken = privacy_report(cdist(train, test), to_generated, "CD", "mm^2")
    assert broken.generated.index[1] == -1
    assert np.isnan(broken.memorised_share) and np.isnan(broken.ratio)


def test_bad_matrices_raise():
    train, test, fresh = gaussian_sets(4)
    with pytest.raises(BenchError, match="rows"):
        privacy_report(cdist(train[:10], test), cdist(train, fresh), "L2", "mm")
    with pytest.raises(BenchError, match="negative"):
        privacy_report(-cdist(train, test), cdist(train, fresh), "L2", "mm")
    with pytest.raises(BenchError, match="quantile"):
        privacy_report(cdist(train, test), cdist(train, fresh), "L2", "mm", quantile=1.5)


def test_the_registered_metric_on_skulls():
    data = make_dataset(30, 32, seed=4)
    train, test = data.volumes[:24], data.volumes[24:]
    metric = DistanceToClosestRecord()
    copies = scores(metric, test, train[[3, 10]], train=train)
    assert copies == {"DCR-ratio-Dice": 0.0, "memorised-share-Dice": 100.0,
                      "DCR-median-generated-Dice": 0.0}
    fresh = scores(metric, test[:3], test[3:], train=train)
    assert fresh["DCR-ratio-Dice"] > 0.5
    assert [s.name for s in metric.outputs][:2] == ["DCR-ratio-Dice", "memorised-share-Dice"]
    assert metric.group == "privacy" and metric.spec_of("memorised-share-Dice").unit == "%"


def test_empty_samples_are_no_record_of_anybody():
    data = make_dataset(30, 32, seed=4)
    train, test = data.volumes[:24], data.volumes[24:]
    metric = DistanceToClosestRecord()
    with_empty = np.concatenate([train[[3, 10]], np.zeros_like(train[:2])])
    assert scores(metric, test, with_empty, train=train) == scores(metric, test, train[[3, 10]],
                                                                   train=train)
    nothing = scores(metric, test, np.zeros_like(train[:4]), train=train)
    assert all(np.isnan(value) for value in nothing.values())
