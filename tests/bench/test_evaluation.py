"""Evaluation over the metric registry, on synthskull."""

from fnmatch import fnmatchcase

import numpy as np
import pytest

from bench.config import MetricsConfig, RunConfig
from bench.core.errors import BenchError
from bench.core.values import GROUPS
from bench.data.synthskull import make_dataset
from bench.evaluation import build_reference, evaluate, pca_feature_map, selected_metrics
from bench.run import catalogue

CONFIG = MetricsConfig(points=256, params={"pointflow-emd": {"points": 32},
                                           "ms-ssim-diversity": {"pairs": 4}})


@pytest.fixture(scope="module")
def reference():
    dataset = make_dataset(60, 32, seed=3)
    return dataset, build_reference(dataset, CONFIG), selected_metrics(CONFIG)


def values_of(reference, volumes, seed=0):
    _, ref, chosen = reference
    return {v.name: v.value for v in evaluate(ref, volumes, seed, chosen).values}


def test_every_group_is_reported_once_per_metric(reference):
    dataset, ref, chosen = reference
    values = evaluate(ref, dataset.subset("val").volumes, 0, chosen).values
    names = [v.name for v in values]
    assert len(names) == len(set(names))
    assert {v.group for v in values} == {"distribution", "volumetric", "privacy", "anatomy"}
    assert all(v.group in GROUPS for v in values)
    for required in ("MMD-CD", "COV-CD", "1-NNA-CD", "MMD-EMD", "KMMD-pca",
                     "PRDC-precision-pca", "MS-SSIM-diversity", "Dice-nearest-train",
                     "DCR-ratio-Dice", "failure-rate", "W1-cephalic-index", "class-TV-pca"):
        assert required in names


def test_the_catalogue_declares_every_value(reference):
    dataset, ref, chosen = reference
    values = evaluate(ref, dataset.subset("val").volumes, 0, chosen).values
    entries = catalogue(chosen, ref, RunConfig())
    for value in values:
        matching = [e for e in entries if fnmatchcase(value.name, e["name"])]
        assert len(matching) == 1, value.name
        assert matching[0]["group"] == value.group
        assert matching[0]["higher_is_better"] == value.higher_is_better
    assert any(e["name"] == "synthetic:implant-dice" and "headline" in e["tags"]
               for e in entries)


def test_copies_of_training_skulls_look_memorised_and_fresh_skulls_do_not(reference):
    dataset = reference[0]
    copies = values_of(reference, dataset.subset("train").volumes[:12])
    fresh = values_of(reference, dataset.subset("val").volumes)
    assert copies["DCR-ratio-Dice"] == 0.0
    assert copies["memorised-share-Dice"] == 100.0
    assert copies["Dice-nearest-train"] == 1.0
    assert fresh["DCR-ratio-Dice"] > 0.5
    assert fresh["memorised-share-Dice"] < 50.0


def test_empty_samples_fail_instead_of_scoring_well(reference):
    dataset = reference[0]
    generated = dataset.subset("val").volumes.copy()
    generated[:3] = False
    values = values_of(reference, generated)
    assert values["failure-rate"] >= 100.0 * 3 / len(generated)
    assert np.isfinite(values["1-NNA-CD"])


def test_only_the_inputs_that_a_selected_metric_reads_are_computed(reference):
    dataset, ref, _ = reference
    only = selected_metrics(MetricsConfig(exclude=tuple(
        name for name in ("pointflow-cd", "pointflow-emd", "feature-pca", "feature-ae",
                          "feature-descriptors",
                          "class-balance", "ms-ssim-diversity", "nearest-dice", "dcr",
                          "anatomy-w1"))))
    assert [metric.name for metric in only] == ["failure-rate"]
    evaluation = evaluate(ref, dataset.subset("val").volumes, 0, only)
    assert [v.name for v in evaluation.values][0] == "failure-rate"
    computed = vars(evaluation.generated)
    assert "measures" in computed and "chamfer" not in computed and "points" not in computed


def test_an_unknown_metric_in_the_config_names_the_key():
    with pytest.raises(BenchError, match="config metrics.exclude: unknown metric 'pointflow-emdd'"
                                         ".*did you mean 'pointflow-emd'"):
        selected_metrics(MetricsConfig(exclude=("pointflow-emdd",)))
    with pytest.raises(BenchError, match="config metrics.params: unknown metric"):
        selected_metrics(MetricsConfig(params={"dcrr": {}}))
    with pytest.raises(BenchError, match="metric 'ms-ssim-diversity' has no parameter 'pair'"):
        selected_metrics(MetricsConfig(params={"ms-ssim-diversity": {"pair": 3}}))


def test_a_small_dataset_gets_a_smaller_pca_feature_map():
    # 30 subjects: 24 training skulls, fewer than the 32 default components.
    dataset = make_dataset(30, 32, seed=5)
    ref = build_reference(dataset, CONFIG)
    assert ref.train_features("pca").shape == (24, 23)
    with pytest.raises(BenchError, match="at least 3 training skulls"):
        pca_feature_map(dataset.volumes[:2], 32)
    with pytest.raises(BenchError, match="reference_split='val'.*at least 2"):
        build_reference(dataset.select(np.flatnonzero(dataset.split != "val")),
                        MetricsConfig(reference_split="val"))
