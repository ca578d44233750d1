"""`bench check`: the CI gate on sample quality.

It runs the ``ci`` preset and compares the seed-mean of each method's metrics
at the largest step budget with ``leaderboards/ci-baseline.json``. Which
metrics it gates comes from the run's catalogue, that is from the metrics'
own tags:

- every metric tagged ``gate``, of each method and reference, no worse than
  the baseline beyond a tolerance: 5 percentage points for a metric in %, 25 %
  of the baseline value otherwise (:func:`allowed`), in the metric's direction;
- every metric tagged ``floor``: ``otfm`` still better than the ``gaussian``
  floor (a full-covariance Gaussian in a pca latent of synthskull is a strong
  floor: at the ci scale 1-NNA of 23 against 23 skulls cannot separate them,
  while MMD-CD and the failure rate do).

The gated metrics follow the audit of the ci configuration
(``leaderboards/audit/ci/``, `bench audit --config ci`): together they detect
the failures a gate must catch at s = 1 of the audit's corruptions. MMD-CD
detects spread shrink (from s = 1) and fragmentation (from s = 0.25); COV-CD
and 1-NNA-CD spread shrink; memorised-share-Dice memorisation (from s = 0.25);
the failure rate fragmentation (from s = 0.25). At the ci scale (24 samples,
drawn down to 23, against 23 reference skulls) no distribution or anatomy
metric detects mode dropping, the class balance included; only the pose
regressor trained on the samples (synthetic:align-rot-err-deg) does, at s = 1
and weakly (5 sd, from 3 seeds), so it is gated too. The tolerances absorb run-to-run noise of a
tiny configuration (two seeds) while catching a broken method, which lands
far outside them. What regressed is printed and the command exits non-zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.config import load_config
from bench.core.errors import BenchError
from bench.core.io import write_json_atomic
from bench.report import Catalogue, collect_results, final_rows
from bench.run import run_benchmark
from bench.store import RunFolder
from metrics.robustness import seed_summary

PERCENT_SLACK = 5.0
RELATIVE_SLACK = 0.25
FLOOR_METHOD = "gaussian"
FLOOR_CHALLENGERS = ("otfm",)


@dataclass(frozen=True)
class Regression:
    """One failed check, in words."""

    method: str
    metric: str
    value: float
    allowed: float
    reason: str

    def __str__(self) -> str:
        return (f"{self.method} {self.metric} = {self.value:.4g} ({self.reason}; allowed "
                f"{self.allowed:.4g})")


@dataclass(frozen=True)
class Gated:
    """A gated metric of one run: seed means per method, and what the gate asks of it."""

    higher_is_better: bool
    unit: str
    gate: bool
    floor: bool
    means: dict[str, float]


def headline(rows: pd.DataFrame, catalogue: Catalogue) -> dict[str, Gated]:
    """Metric -> :class:`Gated` at the largest step budget, for the metrics tagged gate
    or floor."""
    top = rows[rows["steps"] == rows["steps"].max()]
    gated = set(catalogue.tagged("gate", top["metric"]) + catalogue.tagged("floor", top["metric"]))
    summary = seed_summary(top[top["metric"].isin(gated)])
    table = {}
    for metric, frame in summary.groupby("metric", sort=True):
        tags = catalogue.tags(metric)
        table[metric] = Gated(bool(frame["higher_is_better"].iloc[0]), str(frame["unit"].iloc[0]),
                              "gate" in tags, "floor" in tags,
                              {r.method: float(r.mean) for r in frame.itertuples()})
    return table


def allowed(baseline: float, higher_is_better: bool, unit: str) -> float:
    """The worst value the gate accepts for a metric whose baseline is ``baseline``."""
    slack = PERCENT_SLACK if unit == "%" else RELATIVE_SLACK * abs(baseline)
    return baseline - slack if higher_is_better else baseline + slack


def compare(current: dict[str, Gated], baseline: dict[str, dict[str, float]]
            ) -> list[Regression]:
    """Every way ``current`` is worse than ``baseline`` (method -> metric -> value)."""
    regressions = []
    for method, values in sorted(baseline.items()):
        for metric, reference in sorted(values.items()):
            gated = current.get(metric)
            if gated is None or method not in gated.means:
                regressions.append(Regression(method, metric, float("nan"), reference,
                                              "missing from this run"))
                continue
            limit = allowed(reference, gated.higher_is_better, gated.unit)
            value = gated.means[method]
            ok = value >= limit if gated.higher_is_better else value <= limit
            if not ok:
                regressions.append(Regression(method, metric, value, limit,
                                              f"baseline {reference:.4g}"))
    for metric, gated in sorted(current.items()):
        floor = gated.means.get(FLOOR_METHOD)
        if not gated.floor or floor is None:
            continue
        for method in FLOOR_CHALLENGERS:
            value = gated.means.get(method, float("nan"))
            better = value > floor if gated.higher_is_better else value < floor
            if method in gated.means and not better:
                regressions.append(Regression(method, metric, value, floor,
                                              f"not better than the {FLOOR_METHOD} floor"))
    return regressions


def read_baseline(path: Path) -> dict[str, dict[str, float]]:
    if not path.is_file():
        raise BenchError(f"{path}: no CI baseline; create it with `bench check "
                         f"--update-baseline` on a known-good commit")
    try:
        methods = json.loads(path.read_text())["methods"]
    except (json.JSONDecodeError, KeyError) as error:
        raise BenchError(f"{path}: not a CI baseline ({error}); regenerate it with "
                         f"`bench check --update-baseline`") from error
    if not isinstance(methods, dict):
        raise BenchError(f"{path}: 'methods' must map methods to metrics; regenerate it with "
                         f"`bench check --update-baseline`")
    return methods


def write_baseline(path: Path, current: dict[str, Gated]) -> None:
    """The seed means per method of the metrics tagged gate."""
    methods: dict[str, dict[str, float]] = {}
    for metric, gated in current.items():
        if gated.gate:
            for method, mean in gated.means.items():
                methods.setdefault(method, {})[metric] = mean
    write_json_atomic(path, {"preset": "ci", "percent_slack": PERCENT_SLACK,
                             "relative_slack": RELATIVE_SLACK, "methods": methods})


def run_gate(baseline: Path, out: Path, overrides: list[str], update: bool) -> list[str]:
    """Run the ci preset and compare it with the baseline (or write the baseline).

    Returns the lines to print; raises BenchError when the gate fails.
    """
    config = load_config("ci", overrides)
    outcomes = run_benchmark(config, out, quiet=True)
    failed = [o for o in outcomes if o.status == "failed"]
    run = RunFolder(out)
    current = headline(final_rows(collect_results(run)), Catalogue(run.catalogue()))
    if update:
        if failed:
            raise BenchError("not writing a baseline from a run with failed cells")
        write_baseline(baseline, current)
        return [f"wrote {baseline}"]
    regressions = compare(current, read_baseline(baseline))
    lines = [f"FAILED CELL {o.cell.label}: {o.reason}" for o in failed]
    lines += [f"REGRESSION {regression}" for regression in regressions]
    if regressions or failed:
        raise BenchError("\n".join(lines) + f"\nsample-quality gate failed: {len(regressions)} "
                         f"regression(s), {len(failed)} failed cell(s)")
    methods = {method for gated in current.values() for method in gated.means}
    return [f"sample-quality gate passed ({len(methods)} methods within tolerance)"]
