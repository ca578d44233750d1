"""Robustness: how a method's metrics vary over seeds and over sampling step budgets.

Both work on the long results table (one row per run, method, seed, steps,
metric) that every other part of the benchmark writes.

Over seeds, each metric gets its mean, sample standard deviation and a 95 %
confidence interval of the mean from Student's t distribution with n - 1
degrees of freedom: mean +- t(0.975, n - 1) * sd / sqrt(n). With one seed the
interval is undefined (NaN), never zero.

Over step budgets, per method and metric measured at two or more budgets (a
metric scored at one budget only, such as a downstream task, has no curve),
the curve of the seed-mean against the mean NFE, and from it:

- ``NFE-to-5%``: the smallest NFE whose value is within 5 % of the method's
  best value on the curve (|value - best| <= 0.05 |best|), in NFE;
- ``max-step-change``: the largest absolute change of the value between
  consecutive step budgets, in the metric's unit (NaN if any budget is NaN).

Over training budgets (rows with a ``train_steps`` column, two or more
budgets), ``train-steps-to-5%``: the fewest training steps whose seed-mean is
within 5 % of the method's best over the budgets evaluated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats

from bench.core.values import MetricValue

CONFIDENCE = 0.95
WITHIN = 0.05


def seed_summary(rows: pd.DataFrame, keys: Sequence[str] = ("method", "steps", "group", "metric")
                 ) -> pd.DataFrame:
    """Mean, sd, n and 95 % CI over seeds for each (method, steps, group, metric), or for
    each combination of other ``keys`` (e.g. with ``train_steps``).

    Args:
        rows: long results with columns method, seed, steps, nfe, group, metric,
            value, higher_is_better, unit.
        keys: the columns that make one summary row.

    Returns:
        One row per combination of ``keys`` with columns mean, sd, n, ci_low,
        ci_high, nfe (mean over seeds), higher_is_better, unit.
    """
    grouped = rows.groupby(list(keys), sort=True)
    summary = grouped.agg(mean=("value", "mean"), sd=("value", "std"), n=("value", "count"),
                          nfe=("nfe", "mean"), higher_is_better=("higher_is_better", "first"),
                          unit=("unit", "first")).reset_index()
    half_width = confidence_half_width(summary["sd"].to_numpy(), summary["n"].to_numpy())
    summary["ci_low"] = summary["mean"] - half_width
    summary["ci_high"] = summary["mean"] + half_width
    return summary


def confidence_half_width(sd: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Half-width of the t-interval of a mean: t(0.975, n - 1) sd / sqrt(n); NaN for n < 2."""
    sd, n = np.asarray(sd, dtype=float), np.asarray(n, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        t = stats.t.ppf(0.5 + CONFIDENCE / 2, n - 1)
        return np.where(n >= 2, t * sd / np.sqrt(n), np.nan)


def nfe_to_within(nfe: np.ndarray, values: np.ndarray, higher_is_better: bool,
                  within: float = WITHIN) -> float:
    """Smallest NFE (or any budget, such as training steps) whose value is within
    ``within`` (relative) of the best value."""
    nfe, values = np.asarray(nfe, dtype=float), np.asarray(values, dtype=float)
    order = np.argsort(nfe, kind="stable")
    nfe, values = nfe[order], values[order]
    finite = np.isfinite(values)
    if not finite.any():
        return float("nan")
    best = values[finite].max() if higher_is_better else values[finite].min()
    close = finite & (np.abs(values - best) <= within * abs(best))
    return float(nfe[np.flatnonzero(close)[0]])


def max_step_change(nfe: np.ndarray, values: np.ndarray) -> float:
    """Largest absolute change between consecutive step budgets (ordered by NFE).

    NaN when a budget's value is NaN: a broken budget makes the change unknown,
    it is not skipped as if the curve were smooth there.
    """
    order = np.argsort(np.asarray(nfe, dtype=float), kind="stable")
    ordered = np.asarray(values, dtype=float)[order]
    if len(ordered) < 2:
        return float("nan")
    return float(np.max(np.abs(np.diff(ordered))))


def step_robustness(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (method, metric): NFE-to-5 % and max-step-change from the seed-mean curve.

    Only curves of at least two step budgets count: at one budget both figures
    would be trivially perfect (the one NFE, no change), which no method earned.

    Returns a frame with columns method, metric, unit, nfe_to_within,
    max_step_change, ready to become robustness rows.
    """
    summary = seed_summary(rows)
    records = []
    for (method, metric), curve in summary.groupby(["method", "metric"], sort=True):
        if curve["steps"].nunique() < 2:
            continue
        higher = bool(curve["higher_is_better"].iloc[0])
        records.append({
            "method": method, "metric": metric, "unit": curve["unit"].iloc[0],
            "nfe_to_within": nfe_to_within(curve["nfe"], curve["mean"], higher),
            "max_step_change": max_step_change(curve["nfe"], curve["mean"])})
    return pd.DataFrame(records, columns=["method", "metric", "unit", "nfe_to_within",
                                          "max_step_change"])


def training_robustness(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (method, metric): train-steps-to-5 % from the seed-mean curve over training
    budgets, for curves of at least two budgets (one sampling budget's rows).

    Returns a frame with columns method, metric, train_steps_to_within.
    """
    summary = seed_summary(rows, ("method", "train_steps", "group", "metric"))
    records = []
    for (method, metric), curve in summary.groupby(["method", "metric"], sort=True):
        if curve["train_steps"].nunique() < 2:
            continue
        higher = bool(curve["higher_is_better"].iloc[0])
        records.append({"method": method, "metric": metric, "train_steps_to_within":
                        nfe_to_within(curve["train_steps"], curve["mean"], higher)})
    return pd.DataFrame(records, columns=["method", "metric", "train_steps_to_within"])


def robustness_values(table: pd.DataFrame, method: str) -> list[MetricValue]:
    """One method's step-robustness figures as metric values (group "robustness")."""
    values = []
    for record in table[table["method"] == method].itertuples():
        values.append(MetricValue(f"{record.metric}:NFE-to-5%", record.nfe_to_within,
                                  higher_is_better=False, unit="NFE", group="robustness"))
        values.append(MetricValue(f"{record.metric}:max-step-change", record.max_step_change,
                                  higher_is_better=False, unit=record.unit, group="robustness"))
    return values


def training_robustness_values(table: pd.DataFrame, method: str) -> list[MetricValue]:
    """One method's training-budget figures (:func:`training_robustness`) as metric values."""
    return [MetricValue(f"{record.metric}:train-steps-to-5%", record.train_steps_to_within,
                        higher_is_better=False, unit="steps", group="robustness")
            for record in table[table["method"] == method].itertuples()]
