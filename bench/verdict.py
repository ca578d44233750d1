"""The verdict: one paragraph, generated from the headline numbers, on top of every report.

For each headline metric it names the best method, the runner-up, the margin
(absolute and relative) and whether a paired t-test across seeds separates
them (p < 0.05), and where the run has a floor and a ceiling, the share of
the gap between them that each method closes; then it counts how often each
method is best. It never calls a method better on a metric where the method
beats the oracle, a perfect generator, by more than the oracle's confidence
interval: no generator can truly do that, so the metric is rewarding
something other than fidelity (a blind spot the audit names), and the
verdict says so instead. It only states what the statistics of
:mod:`bench.tables` show.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from bench.tables import SIGNIFICANCE, paired_pvalue

ORACLE = "oracle"


def verdict(table: pd.DataFrame, rows: pd.DataFrame, methods: list[str], steps: int,
            gaps: pd.DataFrame | None = None, floor: str = "", ceiling: str = "",
            unranked: dict[str, str] | None = None) -> str:
    """The verdict paragraph over the headline metrics of ``table``.

    Args:
        table: statistics (:func:`bench.tables.leaderboard`) of the headline metrics,
            references included.
        rows: the result rows behind them (for the paired tests).
        methods: the ranked methods (references excluded).
        steps: the step budget of the table, for the wording.
        gaps: :func:`bench.tables.gap_closed` of the headline metrics, or None.
        floor, ceiling: the references the gaps run between, for the wording.
        unranked: metrics that rank no method (they failed the discrimination
            rule), with why.
    """
    picked = table[table["method"].isin(methods)].dropna(subset=["mean"])
    if picked.empty:
        return "No ranked method has headline values; the table shows the references alone."
    alone = picked["method"].nunique() == 1
    oracle = table[table["method"] == ORACLE].set_index("metric")
    sentences, wins = [], {method: 0 for method in methods}
    unranked = unranked or {}
    for metric, frame in picked.groupby("metric", sort=True):
        if metric in unranked:
            sentences.append(f"{metric} ranks no method: it does not separate a perfect "
                             f"generator's samples from the floors ({unranked[metric]}).")
            continue
        higher = bool(frame["higher_is_better"].iloc[0])
        ordered = frame.sort_values("mean", ascending=not higher)
        best = ordered.iloc[0]
        if metric in oracle.index and _beats_the_oracle(best, oracle.loc[metric], higher):
            sentences.append(_blind_spot(metric, best, oracle.loc[metric]))
            continue
        wins[best["method"]] += 1
        if alone:
            sentences.append(f"On {metric}, {best['method']} scores {best['mean']:.4g}"
                             f"{_unit(best)}.")
        else:
            runner = ordered.iloc[1]
            sentences.append(_comparison(metric, best, runner, higher,
                                         paired_pvalue(rows[rows["steps"] == steps], metric,
                                                       best["method"], runner["method"])))
        if gaps is not None:
            sentences.append(_gap_sentence(metric, gaps, methods, floor, ceiling))
    counted = sum(wins.values())
    if alone:
        opening = (f"At {steps} sampling steps, {picked['method'].iloc[0]} is the only ranked "
                   f"method; the references place it.")
    else:
        tally = ", ".join(f"{method} on {count}" for method, count in
                          sorted(wins.items(), key=lambda item: (-item[1], item[0])))
        opening = (f"At {steps} sampling steps, over the {counted} headline metrics that rank "
                   f"methods, the best method is {tally}.")
    return " ".join([opening] + [s for s in sentences if s])


def _beats_the_oracle(best: pd.Series, oracle: pd.Series, higher: bool) -> bool:
    """Whether ``best`` is better than the oracle by more than the oracle's CI half-width."""
    half = oracle["ci_high"] - oracle["mean"]
    if not np.isfinite(half):
        half = 0.0
    return bool(best["mean"] > oracle["mean"] + half if higher
                else best["mean"] < oracle["mean"] - half)


def _blind_spot(metric: str, best: pd.Series, oracle: pd.Series) -> str:
    unit = _unit(best)
    return (f"On {metric}, {best['method']} ({best['mean']:.4g}{unit}) scores better than the "
            f"oracle, a perfect generator ({oracle['mean']:.4g}{unit}, CI "
            f"{oracle['ci_low']:.4g} to {oracle['ci_high']:.4g}); no generator can truly do "
            f"that, so {metric} rewards something other than fidelity here (see the audit's "
            f"blind spots), and no method is called better on it.")


def _comparison(metric: str, best: pd.Series, runner: pd.Series, higher: bool,
                pvalue: float | None) -> str:
    """One sentence: best against runner-up on one metric, with the test's outcome."""
    unit = _unit(best)
    gap = abs(best["mean"] - runner["mean"])
    relative = f" ({100 * gap / abs(runner['mean']):.1f} %)" if runner["mean"] else ""
    direction = "higher" if higher else "lower"
    text = (f"On {metric}, {best['method']} ({best['mean']:.4g}{unit}) is {gap:.3g}{unit}"
            f"{relative} {direction} than {runner['method']} ({runner['mean']:.4g}{unit})")
    if pvalue is None:
        return text + "; no paired test (fewer than 3 common seeds, or equal values)."
    if pvalue < SIGNIFICANCE:
        return text + f", a significant difference (paired t-test, p = {pvalue:.2g})."
    return text + f", but the difference is not significant (p = {pvalue:.2g})."


def _gap_sentence(metric: str, gaps: pd.DataFrame, methods: list[str], floor: str,
                  ceiling: str) -> str:
    shares = gaps[gaps["metric"] == metric].set_index("method")
    parts = [f"{method} {shares.loc[method, 'mean']:.0f} % (CI "
             f"{shares.loc[method, 'ci_low']:.0f} to {shares.loc[method, 'ci_high']:.0f} %)"
             for method in methods if method in shares.index]
    if not parts:
        return ""
    return (f"Of the gap from {floor} to {ceiling} on {metric}, "
            f"{', '.join(parts)} {'is' if len(parts) == 1 else 'are'} closed.")


def _unit(row: pd.Series) -> str:
    return f" {row['unit']}" if isinstance(row["unit"], str) and row["unit"] else ""


def budget_sentence(ranks: pd.DataFrame) -> str:
    """A sentence on whether the leader changes over the training budgets evaluated.

    Args:
        ranks: mean ranks per training budget (:func:`bench.tables.ranks_by_training_budget`).
    """
    if len(ranks) < 2 or ranks.shape[1] < 2:  # a method without a curve has no column
        return ""
    leaders = {int(budget): _leaders(row) for budget, row in ranks.iterrows()}
    span = f"{min(leaders)} to {max(leaders)} training steps"
    if len(set(leaders.values())) == 1:
        return (f"Over the training budgets evaluated ({span}), the ranking on the metrics "
                f"scored at every budget keeps {next(iter(leaders.values()))} first.")
    shifts = "; ".join(f"{leader} at {budget}" for budget, leader in leaders.items())
    return (f"The ranking changes with the training budget ({span}; first by mean rank on "
            f"the metrics scored at every budget: {shifts}), so this verdict holds at the "
            f"final budget only.")


def _leaders(row: pd.Series) -> str:
    """The method(s) with the lowest mean rank of one budget, joined by " and "."""
    best = row.min()
    return " and ".join(sorted(str(method) for method, rank in row.items() if rank == best))
