"""DCR, its ratio and the memorised share on copies, fresh samples and skull volumes."""

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from bench.data.synthskull import make_dataset
from bench.errors import BenchError
from metrics.privacy import closest_records, dice_privacy_report, privacy_report


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
    assert report.closest_pairs(2) == [(0, 5, 0.0), (1, 17, 0.0)]
    rows = {r.name: r for r in report.metrics()}
    assert rows["DCR-ratio-L2"].value == 0.0
    assert rows["memorised-share-L2"].value == 100.0 and rows["memorised-share-L2"].unit == "%"
    assert rows["DCR-median-test-L2"].unit == "mm"
    assert all(r.group == "privacy" for r in rows.values())


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


def test_dice_distance_on_skulls():
    data = make_dataset(30, 32, seed=4)
    train, test = data.volumes[:24], data.volumes[24:]
    report = dice_privacy_report(train, train[[3, 10]], test)
    assert report.generated.index.tolist() == [3, 10]
    assert report.generated.distance.tolist() == [0.0, 0.0]
    assert report.ratio == 0.0 and report.memorised_share == 100.0
    assert np.all(report.test.distance > 0)
    assert [r.name for r in report.metrics()][:2] == ["DCR-ratio-Dice", "memorised-share-Dice"]
