"""The one API from generated volumes to every metric, on synthskull."""

from fnmatch import fnmatch

import numpy as np
import pytest

from bench.config import MetricsConfig
from bench.data.synthskull import make_dataset
from bench.evaluation import METRIC_CATALOGUE, build_reference, evaluate, in_catalogue
from metrics.base import GROUPS


@pytest.fixture(scope="module")
def reference():
    dataset = make_dataset(60, 32, seed=3)
    config = MetricsConfig(points=256, emd=True, emd_points=32, diversity_pairs=4)
    return dataset, build_reference(dataset, config)


def test_every_group_is_reported_once_per_metric(reference):
    dataset, ref = reference
    values = evaluate(ref, dataset.subset("val").volumes, seed=0)
    names = [v.name for v in values]
    assert len(names) == len(set(names))
    assert {v.group for v in values} == {"distribution", "volumetric", "privacy", "anatomy"}
    assert all(v.group in GROUPS for v in values)
    for required in ("MMD-CD", "COV-CD", "1-NNA-CD", "MMD-EMD", "KMMD-pca",
                     "PRDC-precision-pca", "MS-SSIM-diversity", "Dice-nearest-train",
                     "DCR-ratio-Dice", "failure-rate", "W1-cephalic-index"):
        assert required in names


def test_the_catalogue_that_bench_list_shows_names_every_metric(reference):
    dataset, ref = reference
    values = evaluate(ref, dataset.subset("val").volumes, seed=0)
    assert [v.name for v in values if not in_catalogue(v.group, v.name)] == []
    assert not in_catalogue("distribution", "W1-bone-volume")
    for group in ("distribution", "volumetric", "privacy", "anatomy"):
        names = [v.name for v in values if v.group == group]
        unused = [p for p in METRIC_CATALOGUE[group] if not any(fnmatch(n, p) for n in names)]
        assert unused == [], group


def test_copies_of_training_skulls_look_memorised_and_fresh_skulls_do_not(reference):
    dataset, ref = reference
    copies = {v.name: v.value for v in evaluate(ref, dataset.subset("train").volumes[:12], 0)}
    fresh = {v.name: v.value for v in evaluate(ref, dataset.subset("val").volumes, 0)}
    assert copies["DCR-ratio-Dice"] == 0.0
    assert copies["memorised-share-Dice"] == 100.0
    assert copies["Dice-nearest-train"] == 1.0
    assert fresh["DCR-ratio-Dice"] > 0.5
    assert fresh["memorised-share-Dice"] < 50.0


def test_empty_samples_fail_instead_of_scoring_well(reference):
    dataset, ref = reference
    generated = dataset.subset("val").volumes.copy()
    generated[:3] = False
    values = {v.name: v.value for v in evaluate(ref, generated, 0)}
    assert values["failure-rate"] >= 100.0 * 3 / len(generated)
    assert np.isfinite(values["1-NNA-CD"])
