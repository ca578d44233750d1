"""`bench check`: the CI gate on sample quality.

It runs the ``ci`` preset and compares the seed-mean of each method's metrics
at the largest step budget with ``leaderboards/ci-baseline.json``:

- ``1-NNA-CD`` and ``MMD-CD`` of each method no worse than the baseline plus
  a tolerance (``TOLERANCES``: 5 percentage points for 1-NNA, 25 % of the
  baseline value for MMD);
- ``failure-rate`` no higher than the baseline plus 5 percentage points;
- ``otfm`` still better than the ``gaussian`` floor on MMD-CD and on the
  failure rate (a full-covariance Gaussian in a pca latent of synthskull is a
  strong floor: at the ci scale 1-NNA of 24 against 24 skulls cannot separate
  them, while MMD-CD and the failure rate do).

The tolerances absorb run-to-run noise of a tiny configuration (two seeds)
while catching a broken method, which lands far outside them. What regressed
is printed and the command exits non-zero.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from bench.errors import BenchError
from bench.io import write_json_atomic
from metrics.robustness import seed_summary

BASELINE_METRICS = ("1-NNA-CD", "MMD-CD", "failure-rate")
# metric -> (absolute slack, relative slack): allowed = baseline + abs + rel * |baseline|.
TOLERANCES = {"1-NNA-CD": (5.0, 0.0), "MMD-CD": (0.0, 0.25), "failure-rate": (5.0, 0.0)}
FLOOR_METHOD = "gaussian"
FLOOR_CHALLENGERS = ("otfm",)
FLOOR_METRICS = ("MMD-CD", "failure-rate")


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


def headline(rows: pd.DataFrame) -> dict[str, dict[str, float]]:
    """method -> metric -> seed mean at the largest step budget, for the gated metrics."""
    top = rows[rows["steps"] == rows["steps"].max()]
    summary = seed_summary(top[top["metric"].isin(BASELINE_METRICS)])
    table: dict[str, dict[str, float]] = {}
    for record in summary.itertuples():
        table.setdefault(record.method, {})[record.metric] = float(record.mean)
    return table


def compare(current: dict[str, dict[str, float]],
            baseline: dict[str, dict[str, float]]) -> list[Regression]:
    """Every way ``current`` is worse than ``baseline`` beyond the tolerances."""
    regressions = []
    for method, metrics in sorted(baseline.items()):
        if method not in current:
            regressions.append(Regression(method, "-", float("nan"), float("nan"),
                                          "missing from this run"))
            continue
        for metric, reference in sorted(metrics.items()):
            absolute, relative = TOLERANCES[metric]
            allowed = reference + absolute + relative * abs(reference)
            value = current[method].get(metric, float("nan"))
            if not value <= allowed:
                regressions.append(Regression(method, metric, value, allowed,
                                              f"baseline {reference:.4g}"))
    floor = current.get(FLOOR_METHOD, {})
    for method in FLOOR_CHALLENGERS:
        for metric in FLOOR_METRICS:
            if method not in current or metric not in floor:
                continue
            value = current[method].get(metric, float("nan"))
            if not value < floor[metric]:
                regressions.append(Regression(method, metric, value, floor[metric],
                                              f"not better than the {FLOOR_METHOD} floor"))
    return regressions


def read_baseline(path: Path) -> dict[str, dict[str, float]]:
    if not path.is_file():
        raise BenchError(f"{path}: no CI baseline; create it with `bench check "
                         f"--update-baseline` on a known-good commit")
    try:
        return json.loads(path.read_text())["methods"]
    except (json.JSONDecodeError, KeyError) as error:
        raise BenchError(f"{path}: not a CI baseline ({error}); regenerate it with "
                         f"`bench check --update-baseline`") from error


def write_baseline(path: Path, current: dict[str, dict[str, float]]) -> None:
    write_json_atomic(path, {"preset": "ci", "tolerances": TOLERANCES, "methods": current})
