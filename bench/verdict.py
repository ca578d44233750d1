"""The verdict: one paragraph, generated from the headline numbers, on top of every report.

For each headline metric it names the best method, the runner-up, the margin
(absolute and relative) and whether a paired t-test across seeds separates
them (p < 0.05), then counts how often each method is best. It only states
what the statistics of :func:`bench.tables.leaderboard` show.
"""

from __future__ import annotations

import pandas as pd

from bench.tables import SIGNIFICANCE, paired_pvalue


def verdict(table: pd.DataFrame, rows: pd.DataFrame, methods: list[str], steps: int) -> str:
    """The verdict paragraph over the headline metrics of ``table``.

    Args:
        table: statistics (:func:`bench.tables.leaderboard`) of the headline metrics.
        rows: the result rows behind them (for the paired tests).
        methods: the ranked methods (references excluded).
        steps: the step budget of the table, for the wording.
    """
    picked = table[table["method"].isin(methods)].dropna(subset=["mean"])
    if picked["method"].nunique() < 2:
        return (f"Only {', '.join(methods) or 'no method'} ran; a verdict compares two or more "
                f"methods.")
    sentences, wins = [], {method: 0 for method in methods}
    for metric, frame in picked.groupby("metric", sort=True):
        higher = bool(frame["higher_is_better"].iloc[0])
        ordered = frame.sort_values("mean", ascending=not higher)
        best, runner = ordered.iloc[0], ordered.iloc[1]
        wins[best["method"]] += 1
        sentences.append(_comparison(metric, best, runner, higher,
                                     paired_pvalue(rows[rows["steps"] == steps], metric,
                                                   best["method"], runner["method"])))
    tally = ", ".join(f"{method} on {count}" for method, count in
                      sorted(wins.items(), key=lambda item: (-item[1], item[0])))
    return (f"At {steps} sampling steps, over {picked['metric'].nunique()} headline metrics, the "
            f"best method is {tally}. " + " ".join(sentences))


def _comparison(metric: str, best: pd.Series, runner: pd.Series, higher: bool,
                pvalue: float | None) -> str:
    """One sentence: best against runner-up on one metric, with the test's outcome."""
    unit = f" {best['unit']}" if isinstance(best["unit"], str) and best["unit"] else ""
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
