"""bench audit: the sensitivity table on rows whose answer is known by construction, and the
whole audit on a tiny configuration."""

import numpy as np
import pandas as pd
import pytest

import methods  # noqa: F401  (registers the built-in methods)
from bench.audit import (CORRUPTIONS, ORACLE, SEVERITIES, plan_items, prepare_audit, run_audit,
                         sensitivity)
from bench.config import load_config
from bench.core.errors import BenchError
from bench.evaluation import selected_metrics
from bench.store import RunFolder

TINY = ["dataset.n=100", "sampling.n_samples=40", "downstream.enabled=false",
        "metrics.exclude=[pointflow-emd]", "metrics.points=256", "jobs=1"]


def rows(metric, values, higher=False):
    """values: corruption -> severity -> list of per-seed values."""
    return pd.DataFrame([
        {"corruption": corruption, "severity": severity, "seed": seed, "group": "anatomy",
         "metric": metric, "value": value, "higher_is_better": higher, "unit": ""}
        for corruption, by_severity in values.items()
        for severity, per_seed in by_severity.items() for seed, value in enumerate(per_seed)])


def test_effects_detection_and_rewards_by_construction():
    oracle = {0.0: [10.0, 12.0]}  # mean 11, sd sqrt(2)
    table = sensitivity(pd.concat([
        rows("loss", {ORACLE: oracle, "worse": {0.25: [11.5, 11.5], 0.5: [17.0, 17.0],
                                                1.0: [31.0, 31.0]},
                      "better": {0.25: [11.0, 11.0], 0.5: [11.0, 11.0], 1.0: [1.0, 1.0]},
                      "same": {0.25: [10.0, 12.0], 0.5: [10.0, 12.0], 1.0: [10.0, 12.0]}}),
        rows("score", {ORACLE: oracle, "worse": {0.25: [11.0, 11.0], 0.5: [11.0, 11.0],
                                                 1.0: [1.0, 1.0]}}, higher=True)]))
    by = table.set_index(["metric", "corruption"])
    sd = np.sqrt(2.0)
    assert by.loc[("loss", "worse"), "effect@0.5"] == pytest.approx(6.0 / sd)
    assert by.loc[("loss", "worse"), "detected_at"] == 0.5  # 0.5 / sd = 0.35 at s = 0.25
    assert by.loc[("loss", "worse"), "verdict"] == "detects from s = 0.5"
    assert by.loc[("loss", "better"), "verdict"] == "rewards it from s = 1"
    assert by.loc[("loss", "same"), "verdict"] == "blind"
    assert by.loc[("score", "worse"), "effect@1"] == pytest.approx(10.0 / sd)  # lower is worse
    assert by.loc[("score", "worse"), "detected_at"] == 1.0


def test_an_oracle_without_spread_is_measured_in_the_pooled_sd():
    table = sensitivity(rows("failure", {ORACLE: {0.0: [0.0, 0.0]},
                                         "worse": {0.25: [0.0, 0.0], 0.5: [10.0, 20.0],
                                                   1.0: [30.0, 30.0]}}))
    effects = table.iloc[0]
    assert effects["effect@0.25"] == 0.0
    assert effects["effect@0.5"] == pytest.approx(15.0 / np.sqrt(50.0 / 2))
    assert effects["effect@1"] == np.inf


def test_the_plan_holds_the_oracle_then_every_corruption():
    items = plan_items(2)
    assert [i.corruption for i in items[:2]] == [ORACLE, ORACLE]
    assert len(items) == 2 + 2 * len(SEVERITIES) * len(CORRUPTIONS)
    with pytest.raises(BenchError, match="needs 2 seeds or more"):
        run_audit(load_config("ci", TINY), RunFolder("/nonexistent").path, seeds=1)


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    folder = tmp_path_factory.mktemp("audit")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKULLBENCH_CACHE", str(folder / "cache"))
        config = load_config("ci", TINY)
        result = run_audit(config, folder / "out", seeds=2, quiet=True)
        context = prepare_audit(config, RunFolder(folder / "out"),
                                selected_metrics(config.metrics), 2)
        yield folder / "out", result, context


def test_every_corruption_at_severity_zero_is_the_oracle(audit):
    _, _, context = audit
    oracle = context.oracle(1)
    for corruption in CORRUPTIONS:
        # Latent noise works in the representation: its s = 0 is the round trip, oracle-rep.
        expected = (context.representation.decode(context.representation.encode(oracle))
                    if corruption.name == "latent-noise" else oracle)
        np.testing.assert_array_equal(corruption.make(context, 0.0, 1), expected,
                                      err_msg=corruption.name)


def test_the_audit_writes_its_tables_and_resumes(audit):
    out, result, _ = audit
    for name in ("audit.csv", "sensitivity.csv", "sensitivity.md", "heatmap.png",
                 "index.html"):
        assert (out / name).is_file(), name
    assert result.groupby(["corruption", "severity", "seed"]).ngroups == len(plan_items(2))
    table = pd.read_csv(out / "sensitivity.csv")
    assert set(table["corruption"]) == {c.name for c in CORRUPTIONS}
    items = next(out.glob("items-*"))
    stamps = {path.name: path.stat().st_mtime_ns for path in items.iterdir()}
    again = run_audit(load_config("ci", TINY), out, seeds=2, quiet=True)
    assert {path.name: path.stat().st_mtime_ns for path in items.iterdir()} == stamps
    pd.testing.assert_frame_equal(again, result)


def test_memorisation_is_detected_by_the_privacy_metrics(audit):
    _, result, _ = audit
    copies = result[(result["corruption"] == "memorisation") & (result["severity"] == 1.0)]
    values = copies.groupby("metric")["value"].mean()
    # By construction: every sample is a training skull, at distance 0 from it.
    assert values["memorised-share-Dice"] == 100.0 and values["DCR-ratio-Dice"] == 0.0
    table = pd.read_csv(audit[0] / "sensitivity.csv").set_index(["metric", "corruption"])
    assert table.loc[("memorised-share-Dice", "memorisation"), "verdict"].startswith("detects")


def test_mode_dropping_is_detected_by_the_class_balance(audit):
    _, result, _ = audit
    rare = result[result["metric"].str.startswith("class-freq-")]
    share = rare.groupby(["corruption", "severity", "seed"])["value"].sum()
    # At s = 1 every sample is normocephalic: only 1-NN mistakes land in a rare class.
    # Measured: 5.0 and 7.5 % against the oracle's 17.5 and 25 % (40 samples, 2 seeds).
    for seed in (0, 1):
        assert share[("mode-dropping", 1.0, seed)] < 0.5 * share[(ORACLE, 0.0, seed)]
