"""Every registered metric keeps the metric contract; the checks catch metrics that do not."""

from typing import Any

import numpy as np
import pytest

import metrics  # noqa: F401  (registers the built-in metrics)
from bench.conformance import (ContractError, check_metric_empty_input,
                               check_metric_on_real_skulls, parametrize_with_checks)
from bench.core.errors import BenchError
from bench.core.values import ValueSpec
from metrics.base import METRICS, Metric, register_metric

SMALL = {"pointflow-emd": {"points": 16}}  # the exact EMD is slow at its default 512 points


@parametrize_with_checks([METRICS.create(name, **SMALL.get(name, {})) for name in METRICS.names()])
def test_the_metric_contract(item, check):
    check(item)


class BoneShare(Metric):
    """Share of empty samples, with the wrong direction: empty sets score best."""

    description = "broken on purpose"
    group = "anatomy"
    inputs = ("volumes",)
    outputs = (ValueSpec("empty-share", True, "%"),)

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        return {"empty-share": 100.0 * float(generated.empty.mean())}


class Peeking(BoneShare):
    """Reads the Chamfer matrices without declaring them."""

    def compute(self, reference: Any, generated: Any) -> dict[str, float]:
        return {"empty-share": float(generated.chamfer.cd_ref_gen.min())}


def test_a_perfect_score_on_an_empty_set_is_caught():
    with pytest.raises(ContractError, match="all-empty set, better than"):
        check_metric_empty_input(BoneShare())


def test_reading_an_undeclared_input_is_refused():
    with pytest.raises(BenchError, match="reads 'chamfer', which needs the input 'chamfer'"):
        check_metric_on_real_skulls(Peeking())


@pytest.mark.parametrize("change, message", [
    ({"group": "shape"}, "group 'shape' is not one of"),
    ({"inputs": ("latents",)}, "unknown inputs"),
    ({"outputs": ()}, "outputs must be a non-empty tuple"),
    ({"compute": lambda self, generated, reference: {}}, "compute must take"),
])
def test_registration_checks_the_declaration(change, message):
    with pytest.raises(BenchError, match=message):
        register_metric("bad-metric")(type("Bad", (BoneShare,), change))
    assert "bad-metric" not in METRICS.classes


def test_values_outside_the_declaration_are_refused():
    assert BoneShare.metric_values({"empty-share": 1.0})[0].group == "anatomy"
    with pytest.raises(BenchError, match="none of its outputs"):
        BoneShare.metric_values({"empty-share": 1.0, "other": 2.0})
    with pytest.raises(BenchError, match="did not return"):
        BoneShare.metric_values({})
    with pytest.raises(BenchError, match="must be a number"):
        BoneShare.metric_values({"empty-share": np.array([1.0, 2.0])})
