"""`bench report`: leaderboards built only from the results rows of a run.

The ``results.csv`` of every cell in the run's plan (``RUN/plan.json``, see
:mod:`bench.run`) is merged into ``RUN/results.csv``; the tables
are derived from it and nothing else, so the same rows give the same files
byte for byte. Per metric group, at one step budget (the largest by
default), each method gets mean +- 95 % CI over seeds (Student's t, see
:mod:`metrics.robustness`); the best mean per column is bold, methods are
ranked per column and by mean rank, and a dagger marks a method whose values
differ from the best method's by a paired t-test across seeds (pairs matched
by seed number; two-sided, p < 0.05; needs at least 3 common seeds).
Wall-clock figures go to ``timings.csv``, never into the leaderboards.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import stats

from bench.errors import BenchError
from bench.io import atomic_path
from bench.run import PLAN_FILE, RESULT_COLUMNS, cell_files, planned_cell_folders
from metrics.base import GROUPS
from metrics.robustness import robustness_values, seed_summary, step_robustness

FORMATS = ("md", "csv", "tex", "html")
SIGNIFICANCE = 0.05
# What `bench run` prints at its end: a few headline metrics across the groups.
SUMMARY_METRICS = ("MMD-CD", "COV-CD", "1-NNA-CD", "failure-rate",
                   "synthetic:completion-dice", "synthetic:align-rot-err-deg")
# The metrics whose step robustness the robustness table shows: two figures for each
# of some forty metrics made a table of eighty columns that nobody reads. Any other
# metric's: metrics.robustness.step_robustness on RUN/results.csv.
ROBUSTNESS_METRICS = ("MMD-CD", "COV-CD", "1-NNA-CD", "KMMD-pca", "Dice-nearest-test",
                      "failure-rate")


def collect_results(run_dir: Path) -> pd.DataFrame:
    """Merge the rows of every finished cell of the run's plan (all shards) into one
    sorted table; cells of an earlier configuration or code version are left out."""
    files = cell_files(run_dir, "results.csv")
    if not files:
        raise BenchError(f"{run_dir}: none of the {len(planned_cell_folders(run_dir))} cells "
                         f"in {PLAN_FILE} has finished (cells/*/results.csv); run "
                         f"`bench run --out {run_dir}` first")
    rows = pd.concat([pd.read_csv(f) for f in files], ignore_index=True)
    missing = set(RESULT_COLUMNS) - set(rows.columns)
    if missing:
        raise BenchError(f"{run_dir}: results lack columns {sorted(missing)}")
    return rows.sort_values(["method", "seed", "steps", "group", "metric"],
                            kind="stable").reset_index(drop=True)


def with_robustness(rows: pd.DataFrame, steps: int) -> pd.DataFrame:
    """The rows plus step-robustness rows per method (group "robustness").

    The robustness figures, of :data:`ROBUSTNESS_METRICS`, summarise all step
    budgets; they are filed under the report's step budget ``steps`` so that
    they share its table.
    """
    table = step_robustness(rows[rows["metric"].isin(ROBUSTNESS_METRICS)])
    extra = []
    for method in sorted(rows["method"].unique()):
        for value in robustness_values(table, method):
            extra.append({"run": rows["run"].iloc[0], "method": method, "seed": -1,
                          "steps": steps,
                          "nfe": np.nan, "group": value.group, "metric": value.name,
                          "value": value.value, "higher_is_better": value.higher_is_better,
                          "unit": value.unit})
    return pd.concat([rows, pd.DataFrame(extra, columns=RESULT_COLUMNS)], ignore_index=True)


def leaderboard(rows: pd.DataFrame, group: str, steps: int) -> pd.DataFrame:
    """One group's table at one step budget: one row per method, one column per metric.

    Columns per metric: ``mean``, ``ci``, ``rank``, ``best`` and ``differs``
    (significantly worse than the best), in a column MultiIndex (metric, field).
    """
    selected = rows[(rows["group"] == group) & (rows["steps"] == steps)]
    summary = seed_summary(selected)
    table = {}
    for metric, frame in summary.groupby("metric", sort=True):
        higher = bool(frame["higher_is_better"].iloc[0])
        means = frame.set_index("method")["mean"]
        finite = means.dropna()
        best = (finite.idxmax() if higher else finite.idxmin()) if len(finite) else None
        ranks = means.rank(ascending=not higher, method="min")
        half = (frame.set_index("method")["ci_high"] - means)
        differs = {m: _differs(selected, metric, m, best) for m in means.index}
        for method in means.index:
            table.setdefault(method, {}).update({
                (metric, "mean"): means[method], (metric, "ci"): half[method],
                (metric, "rank"): ranks[method], (metric, "best"): method == best,
                (metric, "differs"): differs[method]})
    result = pd.DataFrame.from_dict(table, orient="index").sort_index()
    if not result.empty:
        rank_columns = [c for c in result.columns if c[1] == "rank"]
        result[("mean rank", "")] = result[rank_columns].mean(axis=1)
    return result


def _differs(rows: pd.DataFrame, metric: str, method: str, best: str | None) -> bool:
    if best is None or method == best:
        return False
    pick = rows[rows["metric"] == metric].pivot_table(index="seed", columns="method",
                                                      values="value")
    if method not in pick or best not in pick:
        return False
    paired = pick[[method, best]].dropna()
    if len(paired) < 3 or np.allclose(paired[method], paired[best]):
        return False
    return bool(stats.ttest_rel(paired[method], paired[best]).pvalue < SIGNIFICANCE)


def format_cell(mean: float, ci: float, best: bool, differs: bool, style: str) -> str:
    """``mean ± ci`` with the best in bold and a dagger where significantly worse; "–" if
    the method has no value."""
    if mean is None or np.isnan(mean):
        return "–"
    text = f"{mean:.4g}" if np.isnan(ci) else f"{mean:.4g} ± {ci:.2g}"
    if _flag(differs):
        text += "†"
    if _flag(best):
        text = {"md": f"**{text}**", "tex": f"\\textbf{{{text}}}",
                "html": f"<b>{text}</b>"}.get(style, text)
    return text.replace("±", "$\\pm$").replace("†", "$^\\dagger$") if style == "tex" else text


def _flag(value: object) -> bool:
    """True only for a real True (a missing entry of the table is NaN, not a flag)."""
    return isinstance(value, (bool, np.bool_)) and bool(value)


def render_table(table: pd.DataFrame, rows: pd.DataFrame, style: str) -> pd.DataFrame:
    """Text cells for one format, with direction arrows and units in the headers."""
    info = rows.drop_duplicates("metric").set_index("metric")
    metrics = sorted({c[0] for c in table.columns if c[0] != "mean rank"})
    out = pd.DataFrame(index=table.index)
    for metric in metrics:
        arrow = "↑" if info.loc[metric, "higher_is_better"] else "↓"
        unit = info.loc[metric, "unit"]
        header = f"{metric} {arrow}" + (f" [{unit}]" if isinstance(unit, str) and unit else "")
        out[header] = [format_cell(table.loc[m, (metric, "mean")], table.loc[m, (metric, "ci")],
                                   table.loc[m, (metric, "best")],
                                   table.loc[m, (metric, "differs")], style) for m in table.index]
    out["mean rank ↓"] = [f"{v:.2f}" for v in table[("mean rank", "")]]
    out.index.name = "method"
    return out


def write_report(run_dir: Path, out_dir: Path | None = None, formats: tuple[str, ...] = FORMATS,
                 steps: int | None = None) -> list[Path]:
    """Build every leaderboard of a run into ``out_dir`` (default RUN/report)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise BenchError(f"--format: unknown {sorted(unknown)}; allowed: {', '.join(FORMATS)}")
    out_dir = out_dir or run_dir / "report"
    rows = collect_results(run_dir)
    for target in (run_dir / "results.csv", out_dir / "results.csv"):
        target.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(target) as tmp:
            rows.to_csv(tmp, index=False, float_format="%.10g")
    steps = steps or int(rows["steps"].max())
    if steps not in set(rows["steps"]):
        raise BenchError(f"--steps {steps}: the run has step budgets "
                         f"{sorted(set(rows['steps']))}")
    everything = with_robustness(rows, steps)
    written = []
    sections = []
    for group in GROUPS:
        if not (everything["group"] == group).any():
            continue
        table = leaderboard(everything, group, steps)
        sections.append((group, table))
        for style in formats:
            written.append(_write_format(out_dir / f"{group}.{style}",
                                         render_table(table, everything, style), style))
    written.append(_write_timings(run_dir, out_dir))
    if "html" in formats:
        from bench.report_html import write_html

        written.append(write_html(run_dir, out_dir, everything, sections, steps))
    return written


def summary_table(rows: pd.DataFrame, steps: int | None = None) -> str:
    """The headline metrics per method at ``steps`` (default: the largest), as text."""
    picked = rows[rows["metric"].isin(SUMMARY_METRICS)].assign(group="summary")
    table = leaderboard(picked, "summary", steps or int(rows["steps"].max()))
    # No mean rank: the references have downstream values only, so it would mislead.
    return render_table(table, picked, "text").drop(columns="mean rank ↓").to_markdown()


def _write_format(path: Path, table: pd.DataFrame, style: str) -> Path:
    if style == "md":
        text = table.to_markdown()
    elif style == "csv":
        text = table.to_csv()
    elif style == "tex":
        text = table.to_latex(escape=False)
    else:
        text = table.to_html(escape=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def _write_timings(run_dir: Path, out_dir: Path) -> Path:
    records = []
    for path in cell_files(run_dir, "timings.json"):
        for stage, seconds in json.loads(path.read_text()).items():
            records.append({"cell": path.parent.name, "stage": stage, "seconds": seconds})
    target = out_dir / "timings.csv"
    with atomic_path(target) as tmp:
        pd.DataFrame(records, columns=["cell", "stage", "seconds"]).to_csv(tmp, index=False)
    return target
