"""Leaderboard tables: statistics per (method, metric) from result rows, and their layouts.

:func:`leaderboard` reduces one group's rows at one step budget to a table of
statistics with one row per (method, metric): mean and 95 % t-interval over
seeds (:mod:`metrics.robustness`), the number of seeds, the rank among the
methods, whether the method is the best, and whether a paired t-test across
seeds (pairs matched by seed number; two-sided, p < 0.05; at least 3 common
seeds) separates it from the best. The layouts read that table only:

- :func:`numeric_table`, the CSV: one numeric row per (method, metric);
- :func:`text_table`, for md, tex, html and the terminal: metrics as rows
  and methods as columns (``mean ± ci``, bold for the best, a dagger where the
  method differs from the best), so that a table stays as narrow as the
  number of methods, whatever the number of metrics.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats

from metrics.robustness import seed_summary

SIGNIFICANCE = 0.05
STATISTICS = ["method", "metric", "mean", "ci_low", "ci_high", "n_seeds", "higher_is_better",
              "unit", "rank", "best", "differs"]
MEAN_RANK = "mean rank"


def leaderboard(rows: pd.DataFrame, steps: int, ranked: list[str] | None = None,
                unranked_metrics: frozenset[str] = frozenset()) -> pd.DataFrame:
    """Statistics of every (method, metric) of ``rows`` at step budget ``steps``.

    Args:
        rows: long result rows (one group, or any selection of metrics).
        steps: the step budget whose rows are summarised.
        ranked: the methods that compete (rank, best, paired test); the others
            (references) keep NaN ranks. None ranks every method.
        unranked_metrics: metrics shown but ranking nobody (they failed a check
            such as :func:`discrimination`).

    Returns:
        One row per (method, metric) with the columns of :data:`STATISTICS`,
        sorted by metric then method.
    """
    selected = rows[rows["steps"] == steps]
    summary = seed_summary(selected)
    records = []
    for metric, frame in summary.groupby("metric", sort=True):
        higher = bool(frame["higher_is_better"].iloc[0])
        means = frame.set_index("method")["mean"]
        if ranked is not None:
            means = means[means.index.isin(ranked)]
        if metric in unranked_metrics:
            means = means.iloc[:0]
        finite = means.dropna()
        best = (finite.idxmax() if higher else finite.idxmin()) if len(finite) else None
        ranks = means.rank(ascending=not higher, method="min")
        for record in frame.itertuples():
            competes = record.method in ranks.index
            records.append({
                "method": record.method, "metric": metric, "mean": record.mean,
                "ci_low": record.ci_low, "ci_high": record.ci_high, "n_seeds": int(record.n),
                "higher_is_better": higher, "unit": record.unit,
                "rank": ranks[record.method] if competes else np.nan,
                "best": record.method == best,
                "differs": competes and differs_from_best(selected, metric, record.method,
                                                          best)})
    table = pd.DataFrame(records, columns=STATISTICS)
    return table.sort_values(["metric", "method"], kind="stable").reset_index(drop=True)


def differs_from_best(rows: pd.DataFrame, metric: str, method: str, best: str | None) -> bool:
    """Whether a paired t-test across seeds separates ``method`` from ``best`` (p < 0.05)."""
    pvalue = paired_pvalue(rows, metric, method, best)
    return bool(pvalue is not None and pvalue < SIGNIFICANCE)


def paired_pvalue(rows: pd.DataFrame, metric: str, method: str, other: str | None
                  ) -> float | None:
    """Two-sided p of a paired t-test of two methods' values across common seeds.

    None when the test does not apply: the same method, fewer than 3 common
    seeds, or identical values on every seed.
    """
    if other is None or method == other:
        return None
    pick = rows[rows["metric"] == metric].pivot_table(index="seed", columns="method",
                                                      values="value")
    if method not in pick or other not in pick:
        return None
    paired = pick[[method, other]].dropna()
    if len(paired) < 3 or np.allclose(paired[method], paired[other]):
        return None
    return float(stats.ttest_rel(paired[method], paired[other]).pvalue)


def mean_ranks(table: pd.DataFrame) -> pd.Series:
    """Each method's mean rank over the metrics of ``table``."""
    return table.groupby("method")["rank"].mean()


def ranks_by_training_budget(curve: pd.DataFrame, steps: int, ranked: list[str]
                             ) -> pd.DataFrame:
    """Each ranked method's mean rank at every training budget of its training curve.

    Args:
        curve: result rows of the training curve (the final budget's included) with a
            ``train_steps`` column; only the metrics scored at every budget count, so
            that every budget is ranked on the same metrics.
        steps: the sampling budget ranked.
        ranked: the methods that compete.

    Returns:
        Mean ranks, one row per training budget (index ``train_steps``, ascending) and
        one column per ranked method that has a curve.
    """
    budgets = sorted(int(budget) for budget in curve["train_steps"].unique())
    scored_at = curve.groupby("metric")["train_steps"].nunique()
    picked = curve[curve["metric"].isin(scored_at[scored_at == len(budgets)].index)]
    ranks = {budget: mean_ranks(leaderboard(picked[picked["train_steps"] == budget], steps,
                                            ranked))
             for budget in budgets}
    frame = pd.DataFrame(ranks).T.reindex(columns=ranked).dropna(axis="columns", how="all")
    frame.index.name = "train_steps"
    return frame


def numeric_table(table: pd.DataFrame) -> pd.DataFrame:
    """The CSV layout: the statistics as they are, one row per (method, metric)."""
    return table[STATISTICS]


def metric_label(metric: str, higher_is_better: bool, unit: str) -> str:
    """``MMD-CD ↓ [mm^2]``: name, direction arrow and unit."""
    arrow = "↑" if higher_is_better else "↓"
    return f"{metric} {arrow}" + (f" [{unit}]" if isinstance(unit, str) and unit else "")


def format_cell(mean: float, half_width: float, best: bool, differs: bool, style: str) -> str:
    """``mean ± ci`` with the best in bold and a dagger where significantly worse; "–" if
    the method has no value."""
    if mean is None or np.isnan(mean):
        return "–"
    text = f"{mean:.4g}" if np.isnan(half_width) else f"{mean:.4g} ± {half_width:.2g}"
    if differs:
        text += "†"
    if best:
        text = {"md": f"**{text}**", "tex": f"\\textbf{{{text}}}",
                "html": f"<b>{text}</b>"}.get(style, text)
    return text.replace("±", "$\\pm$").replace("†", "$^\\dagger$") if style == "tex" else text


def shown_methods(table: pd.DataFrame, methods: list[str], ranked: list[str]) -> list[str]:
    """The columns of one table, in the order of ``methods``: every ranked method (a
    missing one shows as "–", which is news), and only the references with a row in it
    (the task baselines have none in the distribution table)."""
    present = set(table["method"])
    return [method for method in methods if method in ranked or method in present]


def text_table(table: pd.DataFrame, style: str, methods: list[str] | None = None,
               ranked: bool = True) -> pd.DataFrame:
    """Metrics as rows and methods as columns, cells formatted for ``style``.

    Args:
        table: statistics from :func:`leaderboard`.
        style: "md", "tex", "html" or "text".
        methods: the columns, in order (default: every method of ``table``, sorted).
        ranked: end with a row of each method's mean rank.
    """
    methods = methods if methods is not None else sorted(table["method"].unique())
    out = {}
    for metric, frame in table.groupby("metric", sort=True):
        first = frame.iloc[0]
        by_method = frame.set_index("method")
        cells = []
        for method in methods:
            if method not in by_method.index:
                cells.append("–")
                continue
            row = by_method.loc[method]
            cells.append(format_cell(row["mean"], row["ci_high"] - row["mean"],
                                     bool(row["best"]), bool(row["differs"]), style))
        out[metric_label(metric, bool(first["higher_is_better"]), first["unit"])] = cells
    frame = pd.DataFrame.from_dict(out, orient="index", columns=methods)
    if ranked and len(frame):
        ranks = mean_ranks(table)
        frame.loc[f"{MEAN_RANK} ↓"] = [
            f"{ranks[m]:.2f}" if np.isfinite(ranks.get(m, np.nan)) else "–" for m in methods]
    frame.index.name = "metric"
    return frame


def render_table(frame: pd.DataFrame, style: str) -> str:
    """A text table in md, csv, tex or html (cells already formatted)."""
    if style == "md":
        return frame.to_markdown()
    if style == "csv":
        return frame.to_csv(index=False)
    if style == "tex":
        return frame.to_latex(escape=False)
    # The index's name in the header's corner, not on a row of its own.
    return frame.rename_axis(index=None, columns=frame.index.name).to_html(escape=False)


def gap_closed(rows: pd.DataFrame, steps: int, methods: list[str], floor: str,
               ceiling: str) -> pd.DataFrame:
    """The share (%) of the gap from ``floor`` to ``ceiling`` that each method closes.

    Per seed s, paired by seed number: 100 (m_s - f_s) / (c_s - f_s), with m,
    f, c the values of the method, the floor and the ceiling; then the mean
    and t-interval over seeds (:func:`metrics.robustness.seed_summary`). 0 %
    is the floor, 100 % the ceiling, and the formula is the same for either
    direction of the metric. A metric whose ceiling is not better than its
    floor (on the seed means) has no gap to close and is left out.

    Returns:
        The columns of :data:`STATISTICS`, unit "%", higher is better, not ranked.
    """
    selected = rows[(rows["steps"] == steps) & (rows["seed"] >= 0)]
    table = selected.pivot_table(index=["metric", "seed"], columns="method", values="value")
    if floor not in table or ceiling not in table:
        return pd.DataFrame(columns=STATISTICS)
    higher = selected.drop_duplicates("metric").set_index("metric")["higher_is_better"]
    records = []
    for metric, frame in table.groupby(level="metric"):
        gap = frame[ceiling] - frame[floor]
        if not (gap.mean() > 0 if higher[metric] else gap.mean() < 0):
            continue
        for method in methods:
            if method not in frame:
                continue
            share = (100.0 * (frame[method] - frame[floor]) / gap).dropna()
            records += [{"method": method, "seed": seed, "metric": metric, "steps": steps,
                         "group": "gap", "value": value, "nfe": np.nan,
                         "higher_is_better": True, "unit": "%"}
                        for (_, seed), value in share.items()]
    if not records:
        return pd.DataFrame(columns=STATISTICS)
    summary = seed_summary(pd.DataFrame(records))
    out = summary.rename(columns={"n": "n_seeds"}).assign(rank=np.nan, best=False,
                                                          differs=False)
    return out[STATISTICS].sort_values(["metric", "method"]).reset_index(drop=True)


def discrimination(table: pd.DataFrame, ceiling: str, floors: tuple[str, ...],
                   factor: float = 3.0) -> dict[str, str]:
    """Metrics of ``table`` that do not separate the ceiling from every floor, with why.

    A metric discriminates when, for each floor, the ceiling's mean is better
    than the floor's (in the metric's direction) by more than ``factor`` times
    the larger of the two 95 % CI half-widths over seeds.

    Args:
        table: statistics (:func:`leaderboard`) that hold the ceiling and floor rows.
        ceiling: e.g. ``"oracle-rep"``.
        floors: e.g. ``("gaussian", "mean-skull")``.

    Returns:
        metric -> the reason it fails, for the metrics that fail (missing
        references make no failure: nothing is known).
    """
    failing = {}
    for metric, frame in table.groupby("metric", sort=True):
        rows = frame.set_index("method")
        if ceiling not in rows.index:
            continue
        top = rows.loc[ceiling]
        sign = 1.0 if bool(top["higher_is_better"]) else -1.0
        for floor in floors:
            if floor not in rows.index:
                continue
            bottom = rows.loc[floor]
            half = np.nanmax([top["ci_high"] - top["mean"], bottom["ci_high"] - bottom["mean"],
                              0.0])
            gap = sign * (top["mean"] - bottom["mean"])
            if not gap > factor * half:
                failing[metric] = (f"{ceiling} {top['mean']:.4g} against {floor} "
                                   f"{bottom['mean']:.4g}: a gap of {gap:.3g}, not more than "
                                   f"{factor:g} x the larger CI ({half:.3g})")
                break
    return failing


def case_bootstrap(cases: pd.DataFrame, resamples: int = 1000, seed: int = 0) -> pd.DataFrame:
    """Mean and 95 % bootstrap interval over test cases of per-case scores.

    For each (method, metric), the per-case scores of every seed form a
    (cases x seeds) table; a resample draws the test cases with replacement
    (the same draw for every seed, as the seeds meet the same cases) and takes
    the mean over cases and seeds; the interval is the 2.5th to 97.5th
    percentile of ``resamples`` such means, drawn with a generator seeded by
    ``seed``.

    Args:
        cases: columns method, seed, metric, case, value (the cells' cases files).

    Returns:
        Columns method, metric, mean, ci_low, ci_high, n_cases.
    """
    records = []
    for (method, metric), frame in cases.groupby(["method", "metric"], sort=True):
        grid = frame.pivot_table(index="case", columns="seed", values="value").to_numpy()
        rng = np.random.default_rng(seed)
        draws = rng.integers(0, len(grid), size=(resamples, len(grid)))
        means = np.array([np.nanmean(grid[draw]) for draw in draws])
        records.append({"method": method, "metric": metric, "mean": float(np.nanmean(grid)),
                        "ci_low": float(np.percentile(means, 2.5)),
                        "ci_high": float(np.percentile(means, 97.5)), "n_cases": len(grid)})
    return pd.DataFrame(records, columns=["method", "metric", "mean", "ci_low", "ci_high",
                                          "n_cases"])
