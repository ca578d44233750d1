"""Kernel MMD, PRDC, the feature maps and class balance against brute force and known cases."""

import itertools
import math

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.data.synthskull import make_dataset
from bench.evaluation import pca_feature_map
from metrics.features import (ClassBalanceMetric, DescriptorFeatureDistribution,
                              PCAFeatureDistribution, class_balance, gaussian_kernel, kernel_mmd,
                              knn_radii, median_bandwidth, nearest_neighbour_labels, prdc)
from metrics.inputs import DESCRIPTORS, UNDEFINED_DESCRIPTOR, standardised_descriptors
from metrics.measures import MEASURES, AnatomyMeasures, measure_volumes
from sets import scores


def normal(seed, n, d=8, shift=0.0):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(n, d))
    points[:, 0] += shift
    return points


# ------------------------------------------------------------------------ kernel MMD

def brute_force_mmd(x, y, sigma):
    def k(a, b):
        return math.exp(-sum((p - q) ** 2 for p, q in zip(a, b)) / (2 * sigma ** 2))
    m, n = len(x), len(y)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    xy = sum(k(a, b) for a in x for b in y) / (m * n)
    return xx + yy - 2 * xy


def test_unbiased_mmd_equals_double_sum():
    x, y = normal(0, 7, 3), normal(1, 5, 3, shift=0.7)
    for sigma in (0.5, 2.0):
        assert kernel_mmd(x, y, bandwidth=sigma) == pytest.approx(brute_force_mmd(x, y, sigma),
                                                                  rel=1e-12)
    pooled = np.concatenate([x, y])
    pairs = [np.linalg.norm(pooled[i] - pooled[j])
             for i, j in itertools.combinations(range(12), 2)]
    assert median_bandwidth(pooled) == pytest.approx(np.median(pairs))
    assert kernel_mmd(x, y) == pytest.approx(brute_force_mmd(x, y, np.median(pairs)), rel=1e-12)


def test_mmd_near_zero_for_one_distribution_and_large_for_shifted():
    reference = normal(1, 200)
    same = kernel_mmd(reference, normal(2, 200))
    shifted = kernel_mmd(reference, normal(3, 200, shift=1.0))
    wider = kernel_mmd(reference, 1.5 * normal(4, 200))
    assert abs(same) < 0.005
    assert shifted > 0.02 and wider > 0.01
    assert kernel_mmd(reference, normal(5, 200, shift=3.0)) > shifted


def test_gaussian_kernel_and_degenerate_bandwidth():
    x = np.array([[0.0, 0.0], [3.0, 4.0]])
    np.testing.assert_allclose(gaussian_kernel(x, x, 5.0), [[1, math.exp(-0.5)],
                                                            [math.exp(-0.5), 1]])
    assert median_bandwidth(np.zeros((4, 2))) == 1.0
    assert kernel_mmd(np.zeros((4, 2)), np.zeros((3, 2))) == pytest.approx(0.0)
    # Mostly duplicates: the median of the non-zero distances.
    assert median_bandwidth(np.array([[0.0], [0.0], [0.0], [0.0], [2.0]])) == 2.0


# ------------------------------------------------------------------------------ PRDC

def brute_force_prdc(x, y, k):
    def radius(points, i):
        return sorted(np.linalg.norm(points[i] - points[j])
                      for j in range(len(points)) if j != i)[k - 1]
    r = [radius(x, i) for i in range(len(x))]
    s = [radius(y, j) for j in range(len(y))]
    d = [[np.linalg.norm(a - b) for b in y] for a in x]
    n, m = len(x), len(y)
    precision = sum(any(d[i][j] < r[i] for i in range(n)) for j in range(m)) / m
    recall = sum(any(d[i][j] < s[j] for j in range(m)) for i in range(n)) / n
    density = sum(d[i][j] < r[i] for i in range(n) for j in range(m)) / (k * m)
    coverage = sum(min(d[i]) < r[i] for i in range(n)) / n
    return precision, recall, density, coverage


def test_prdc_equals_brute_force():
    x, y = normal(6, 40, 3), normal(7, 30, 3, shift=2.0)
    for k in (1, 3, 5):
        scores = prdc(x, y, k)
        expected = brute_force_prdc(x, y, k)
        assert (scores.precision, scores.recall, scores.density, scores.coverage) == \
            pytest.approx(expected)
        assert 0 < scores.precision < 1 and 0 < scores.recall < 1 and 0 < scores.coverage < 1


def test_prdc_identical_and_disjoint_sets():
    x = normal(8, 60, 4)
    same = prdc(x, x.copy())
    assert (same.precision, same.recall, same.coverage) == (1.0, 1.0, 1.0)
    assert same.density == pytest.approx(1.0)  # each ball holds itself and k - 1 others
    far = prdc(x, normal(9, 50, 4) + 100.0)
    assert (far.precision, far.recall, far.density, far.coverage) == (0.0, 0.0, 0.0, 0.0)


def test_prdc_separates_fidelity_from_diversity():
    reference = normal(10, 300, 2)
    collapsed = 0.05 * normal(11, 300, 2)  # all samples near the mode
    scores = prdc(reference, collapsed)
    assert scores.precision == 1.0  # every sample is realistic
    assert scores.coverage < 0.2 and scores.recall < 0.2  # few reference points covered


def test_knn_radii_by_sorting():
    x = normal(12, 15, 2)
    d = np.linalg.norm(x[:, None] - x[None], axis=-1)
    np.testing.assert_allclose(knn_radii(x, 3), np.sort(d, axis=1)[:, 3])


def test_feature_metrics_outputs_and_errors():
    specs = PCAFeatureDistribution.outputs
    assert [s.name for s in specs] == ["KMMD-pca", "PRDC-precision-pca", "PRDC-recall-pca",
                                       "PRDC-density-pca", "PRDC-coverage-pca"]
    assert not specs[0].higher_is_better and all(s.higher_is_better for s in specs[1:])
    assert [s.name for s in DescriptorFeatureDistribution.outputs][0] == "KMMD-descriptors"
    assert PCAFeatureDistribution.group == "distribution"
    with pytest.raises(BenchError, match="dimensions"):
        kernel_mmd(normal(0, 5, 2), normal(0, 5, 3))
    with pytest.raises(BenchError, match="N >= 6"):
        prdc(normal(0, 5), normal(1, 10))
    with pytest.raises(BenchError, match="NaN"):
        kernel_mmd(np.full((3, 2), np.nan), normal(0, 3, 2))


# ---------------------------------------------------------------------- class balance

def clusters(counts, seed, spread=0.3):
    """Points around (10 c, 0) for class c, counts[c] of each; returns features and labels."""
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(counts)), counts)
    features = np.stack([10.0 * labels, np.zeros(len(labels))], axis=1)
    return features + spread * rng.normal(size=features.shape), labels


def test_nearest_neighbour_labels_votes_and_ties():
    train = np.array([[0.0], [1.0], [1.1], [5.0]])
    labels = np.array([0, 1, 1, 2])
    query = np.array([[0.2], [4.0]])
    assert nearest_neighbour_labels(train, labels, query, k=1).tolist() == [0, 2]
    assert nearest_neighbour_labels(train, labels, query, k=3).tolist() == [1, 1]
    # k = 2 at 0.2: one vote each for 0 (nearest) and 1: the nearest wins the tie.
    assert nearest_neighbour_labels(train, labels, query[:1], k=2).tolist() == [0]


def test_class_balance_mode_dropping_and_matching():
    names = ("common", "middle", "rare")
    features, labels = clusters([70, 20, 10], seed=0)
    dropped = class_balance(features, labels, clusters([50, 0, 0], seed=1)[0], names, "pca")
    assert dropped.generated_frequency.tolist() == [1.0, 0.0, 0.0]
    assert dropped.reference_frequency.tolist() == pytest.approx([0.7, 0.2, 0.1])
    assert dropped.total_variation == pytest.approx(0.3)
    assert dropped.rare.tolist() == [False, True, True]  # below the uniform 1/3
    rows = dropped.values()
    assert rows["class-TV-pca"] == pytest.approx(30.0)
    assert rows["class-freq-rare-pca"] == 0.0
    assert "class-freq-common-pca" not in rows
    assert ClassBalanceMetric.group == "anatomy"
    assert not ClassBalanceMetric.spec_of("class-TV-pca").higher_is_better
    matched = class_balance(features, labels, clusters([35, 10, 5], seed=2)[0], names, "pca")
    assert matched.total_variation == pytest.approx(0.0, abs=1e-12)
    skewed = class_balance(features, labels, clusters([20, 20, 10], seed=3)[0], names, "pca")
    assert skewed.generated_frequency.tolist() == pytest.approx([0.4, 0.4, 0.2])
    assert skewed.total_variation == pytest.approx(0.3)


def test_unclassified_samples_count_in_no_class():
    names = ("common", "rare")
    features, labels = clusters([80, 20], seed=6)
    generated = clusters([30, 10], seed=7)[0]
    keep = np.arange(40) >= 20  # half the samples (the first 20) are not classified
    balance = class_balance(features, labels, generated, names, "pca", classifiable=keep)
    assert balance.predicted[:20].tolist() == [-1] * 20
    assert balance.generated_frequency.tolist() == pytest.approx([10 / 40, 10 / 40])
    # 1/2 (|0.25 - 0.8| + |0.25 - 0.2| + 0.5 unclassified)
    assert balance.total_variation == pytest.approx(0.55)
    nothing = class_balance(features, labels, generated, names, "pca",
                            classifiable=np.zeros(40, dtype=bool))
    assert nothing.total_variation == pytest.approx(1.0)


def test_class_balance_ignores_unknown_labels():
    features, labels = clusters([10, 10], seed=4)
    labels[:10] = -1  # class 0 unknown: its points must not vote
    balance = class_balance(features, labels, features[:5], ("a", "b"), "pca")
    assert balance.reference_frequency.tolist() == [0.0, 1.0]
    assert balance.predicted.tolist() == [1] * 5
    with pytest.raises(BenchError, match="class names"):
        class_balance(features, np.full(20, 3), features, ("a", "b"), "pca")


# ---------------------------------------------------------------------- feature maps

def test_descriptor_features_are_standardised_by_the_reference():
    rng = np.random.default_rng(5)
    values = {m.attribute: rng.normal(100, 10, 30) for m in MEASURES}
    values["symmetry_error_mm"][0] = np.nan
    reference = AnatomyMeasures(**values)
    generated = AnatomyMeasures(**{k: v[:4] + 10.0 for k, v in values.items()})
    ref = standardised_descriptors(reference, reference)
    gen = standardised_descriptors(reference, generated)
    assert ref.shape == (30, len(DESCRIPTORS)) and gen.shape == (4, len(DESCRIPTORS))
    column = DESCRIPTORS.index("symmetry_error_mm")
    # Undefined: far outside the reference, not at its mean.
    assert ref[0, column] == gen[0, column] == UNDEFINED_DESCRIPTOR
    np.testing.assert_allclose(np.delete(ref, 0, 0).mean(0)[:column], 0, atol=0.5)
    np.testing.assert_allclose(ref[:, 0].std(), 1.0)
    std = values["bone_volume_ml"].std()
    np.testing.assert_allclose(gen[1:, 0] - ref[1:4, 0], 10.0 / std)


@pytest.fixture(scope="module")
def skulls():
    return make_dataset(60, 32, seed=2)


def test_a_sample_with_one_undefined_descriptor_is_far_from_the_skulls(skulls):
    # A copy of a training skull whose cephalic index alone is undefined: filling in the
    # reference mean would put it among the skulls (precision 1); it must fall outside.
    reference = measure_volumes(skulls.volumes[:45], skulls.voxel_size_mm)
    broken = {m.attribute: getattr(reference, m.attribute)[:6].copy() for m in MEASURES}
    broken["cephalic_index"][:] = np.nan
    ref = standardised_descriptors(reference, reference)
    gen = standardised_descriptors(reference, AnatomyMeasures(**broken))
    assert prdc(ref, ref[:6]).precision == 1.0
    assert prdc(ref, gen).precision == 0.0


def test_descriptor_and_pca_features_of_skulls(skulls):
    train, query = skulls.volumes[:45], skulls.volumes[45:]
    measures = measure_volumes(skulls.volumes, skulls.voxel_size_mm)
    np.testing.assert_allclose(standardised_descriptors(measures, measures).mean(0), 0,
                               atol=1e-9)
    # Held-out skulls of the same generator are close in distribution to the training ones,
    # and a training-copy set scores perfect precision.
    same = scores(PCAFeatureDistribution(), train, query, voxel_size_mm=skulls.voxel_size_mm,
                  feature_maps={"pca": pca_feature_map(train, 8)})
    assert same["KMMD-pca"] < 0.1
    features = pca_feature_map(train, 8)(train)
    assert prdc(features, features[:20]).precision == 1.0


def test_class_balance_of_skull_copies(skulls):
    train = skulls.volumes[:45]
    labels = skulls.labels[:45]
    features = pca_feature_map(train, 8)(train)
    copies = class_balance(features, labels, features, skulls.class_names, "pca")
    np.testing.assert_array_equal(copies.predicted, labels)
    assert copies.total_variation == pytest.approx(0.0, abs=1e-12)
    normal_only = features[labels == 0]
    dropped = class_balance(features, labels, normal_only, skulls.class_names, "pca")
    assert dropped.generated_frequency[0] == 1.0
    assert dropped.total_variation == pytest.approx(1.0 - np.mean(labels == 0))
    rare = {k: v for k, v in dropped.values().items() if k.startswith("class-freq")}
    assert rare and all(value == 0.0 for value in rare.values())
