"""`bench report`: leaderboards built only from the saved files of a run.

The ``results.csv`` of every cell in the run's plan (:mod:`bench.store`) is
merged into ``RUN/results.csv``; the tables are derived from it and nothing
else, so the same rows give the same files byte for byte. Per metric group,
at one step budget (the largest by default), each method gets mean ± 95 %
CI over seeds; the best ranked method per metric is bold, a dagger marks a
method that a paired t-test separates from the best (:mod:`bench.tables`).
The references (oracle, oracle-rep, gaussian, mean-skull, train-copy) and the
downstream pseudo-rows (few-real, the tasks' baselines) are shown beside the
methods but never ranked; a downstream metric that does not separate the
oracle-rep ceiling from the floors is unranked too. What a metric is for comes
from the run's catalogue (``metrics.json``): the metrics tagged ``headline``
make the headline table and the verdict (:mod:`bench.verdict`), those tagged
``robustness`` the robustness table. Wall-clock figures go to
``timings.csv``, never into the leaderboards.

Every table shows the final training budget. A run with ``train.evaluate_at``
also has rows at earlier budgets (its training curve): the report plots them
against training steps and training time, adds each method's
train-steps-to-5 % to the robustness table, ranks the methods at every budget
(``training.*``) and says in the verdict whether that ranking changes.
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.core.errors import BenchError
from bench.core.io import atomic_path
from bench.core.values import GROUPS
from bench.report_html import TrainingCurve, write_html
from bench.store import (CASES_FILE, PLAN_FILE, RESULT_COLUMNS, TIMINGS_FILE, RunFolder,
                         write_table)
from downstream.protocol import AUGMENTED, SYNTHETIC
from bench.tables import (STATISTICS, case_bootstrap, discrimination, gap_closed, leaderboard,
                          numeric_table, ranks_by_training_budget, render_table, shown_methods,
                          text_table)
from bench.verdict import budget_sentence, verdict
from metrics.robustness import (robustness_values, step_robustness, training_robustness,
                                training_robustness_values)

FORMATS = ("md", "csv", "tex", "html")
HEADLINE = "headline"
# The floor and the ceiling whose gap the headline places each method in, and the floors
# a downstream metric must separate from the ceiling to rank methods.
FLOOR, CEILING = "gaussian", "oracle-rep"
DISCRIMINATION_FLOORS = ("gaussian", "mean-skull")
GAP_SECTION = "gap"
CASES_SECTION = "downstream-cases"
TRAINING_SECTION = "training"
TRAINING_TIME_STAGE = "train-to-step"


class Catalogue:
    """What the run said of each scalar it reports: group, direction, unit and tags."""

    def __init__(self, entries: list[dict[str, Any]]) -> None:
        self.entries = entries

    def tags(self, metric: str) -> set[str]:
        """The tags of ``metric`` (a result row's name); empty when it is not catalogued."""
        for entry in self.entries:
            if fnmatchcase(metric, entry["name"]):
                return set(entry["tags"])
        return set()

    def tagged(self, tag: str, metrics: list[str] | pd.Series) -> list[str]:
        """The names among ``metrics`` that carry ``tag``, sorted and unique."""
        return sorted({metric for metric in metrics if tag in self.tags(metric)})


def collect_results(run: RunFolder) -> pd.DataFrame:
    """Merge the rows of every finished cell of the run's plan (all shards), and the points
    of its training curve, into one sorted table; cells of an earlier configuration or
    code version are left out."""
    files = run.planned_files("results.csv")
    if not files:
        raise BenchError(f"{run.path}: none of the {len(run.planned())} cells in {PLAN_FILE} "
                         f"has finished (cells/*/results.csv); run `bench run --out "
                         f"{run.path}` first")
    rows = pd.concat([pd.read_csv(f) for f in files + run.planned_curve_files()],
                     ignore_index=True)
    missing = set(RESULT_COLUMNS) - set(rows.columns)
    if missing:
        raise BenchError(f"{run.path}: results lack columns {sorted(missing)}; the run "
                         f"predates them: rerun `bench run --out {run.path}`")
    return rows.sort_values(["method", "seed", "train_steps", "steps", "group", "metric"],
                            kind="stable").reset_index(drop=True)


def final_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """The rows of the final training budget, which every table shows."""
    return rows[rows["train_steps"] == rows["train_steps"].max()]


def training_curve_rows(rows: pd.DataFrame, steps: int) -> pd.DataFrame:
    """The training curve at sampling budget ``steps``: of the methods and metrics scored
    at an earlier training budget, their rows at every budget, the final one included."""
    at_steps = rows[rows["steps"] == steps]
    earlier = at_steps[at_steps["train_steps"] < rows["train_steps"].max()]
    return at_steps[at_steps["method"].isin(set(earlier["method"]))
                    & at_steps["metric"].isin(set(earlier["metric"]))]


def cell_timings(run: RunFolder) -> pd.DataFrame:
    """Wall-clock seconds per stage of every planned cell that has timings: columns cell
    (its folder), method, seed, stage, seconds."""
    records = []
    for folder in run.planned():
        path = folder.file(TIMINGS_FILE)
        if path.is_file():
            info = folder.info()
            records += [{"cell": folder.name, "method": info["method"], "seed": info["seed"],
                         "stage": stage, "seconds": seconds}
                        for stage, seconds in json.loads(path.read_text()).items()]
    return pd.DataFrame(records, columns=["cell", "method", "seed", "stage", "seconds"])


def training_seconds(timings: pd.DataFrame) -> pd.DataFrame:
    """Training wall time up to each kept budget, per cell: columns method, seed,
    train_steps, seconds (the ``train-to-stepB`` stages of :func:`cell_timings`)."""
    picked = timings[timings["stage"].str.startswith(TRAINING_TIME_STAGE)]
    return picked.assign(train_steps=picked["stage"].str.removeprefix(TRAINING_TIME_STAGE)
                         .astype(int))[["method", "seed", "train_steps", "seconds"]]


def with_robustness(rows: pd.DataFrame, steps: int, catalogue: Catalogue,
                    curve: pd.DataFrame | None = None) -> pd.DataFrame:
    """The rows (of the final training budget) plus robustness rows per method (group
    "robustness").

    The step-robustness figures, of the metrics tagged ``robustness``, summarise
    all step budgets, and train-steps-to-5 % the training ``curve``
    (:func:`training_curve_rows`); they are filed under the report's step
    budget ``steps`` so that they share its table.
    """
    picked = rows[rows["metric"].isin(catalogue.tagged("robustness", rows["metric"]))]
    table = step_robustness(picked)
    budgets = training_robustness(curve if curve is not None else rows.iloc[:0])
    extra = []
    for method in sorted(rows["method"].unique()):
        values = robustness_values(table, method) + training_robustness_values(budgets, method)
        for value in values:
            extra.append({"run": rows["run"].iloc[0], "method": method, "seed": -1,
                          "steps": steps, "nfe": np.nan,
                          "train_steps": rows["train_steps"].max(), "group": value.group,
                          "metric": value.name, "value": value.value,
                          "higher_is_better": value.higher_is_better, "unit": value.unit})
    if not extra:
        return rows
    return pd.concat([rows, pd.DataFrame(extra, columns=RESULT_COLUMNS)], ignore_index=True)


def write_report(run_dir: Path, out_dir: Path | None = None, formats: tuple[str, ...] = FORMATS,
                 steps: int | None = None) -> list[Path]:
    """Build every leaderboard of a run into ``out_dir`` (default RUN/report)."""
    unknown = set(formats) - set(FORMATS)
    if unknown:
        raise BenchError(f"--format: unknown {sorted(unknown)}; allowed: {', '.join(FORMATS)}")
    run = RunFolder(run_dir)
    out_dir = out_dir or run.path / "report"
    rows = collect_results(run)
    for target in (run.results_path, out_dir / "results.csv"):
        target.parent.mkdir(parents=True, exist_ok=True)
        write_table(target, rows)
    final = final_rows(rows)
    steps = steps or int(final["steps"].max())
    if steps not in set(final["steps"]):
        raise BenchError(f"--steps {steps}: the run has step budgets "
                         f"{sorted(set(final['steps']))}")
    catalogue = Catalogue(run.catalogue())
    curve = training_curve_rows(rows, steps)
    everything = with_robustness(final, steps, catalogue, curve)
    methods, ranked = columns(run, everything)
    unranked = undiscriminating(everything, steps)
    headline = headline_rows(everything, catalogue)
    gaps = gap_closed(headline, steps, ranked, FLOOR, CEILING)
    tables = ([("headline", leaderboard(headline, steps, ranked, frozenset(unranked)))]
              if len(headline) else [])
    if len(gaps):
        tables.append((GAP_SECTION, gaps))
    tables += [(group, leaderboard(everything[everything["group"] == group], steps, ranked,
                                   frozenset(unranked)))
               for group in GROUPS if (everything["group"] == group).any()]
    bootstrap = case_table(run, everything)
    if len(bootstrap):
        tables.append((CASES_SECTION, bootstrap))
    unranked_sections = ("headline", GAP_SECTION, CASES_SECTION)
    written = [_write_format(out_dir / f"{name}.{style}", table,
                             shown_methods(table, methods, ranked), style,
                             ranked=name not in unranked_sections)
               for name, table in tables for style in formats]
    if "md" in formats and run.reference_facts():
        written.append(_write_reference(out_dir / "reference.md", run.reference_facts()))
    timings = cell_timings(run)
    written.append(_write_timings(timings, out_dir))
    training = None
    if len(curve):
        ranks = ranks_by_training_budget(curve[curve["method"].isin(ranked)], steps, ranked)
        written += [_write_ranks(out_dir / f"{TRAINING_SECTION}.{style}", ranks, style)
                    for style in formats if style != "html"]
        training = TrainingCurve(curve, training_seconds(timings), ranks,
                                 everything[(everything["steps"] == steps)
                                            & ~everything["method"].isin(ranked)])
    if "html" in formats:
        text = (verdict(tables[0][1], everything, ranked, steps, gaps, FLOOR, CEILING,
                        unranked) if headline.size else "")
        if training is not None:
            text = " ".join(part for part in (text, budget_sentence(training.ranks)) if part)
        written.append(write_html(run, out_dir, everything, tables, methods, ranked, text,
                                  steps, catalogue.tagged("nfe", everything["metric"]),
                                  unranked, training))
    return written


def reference_facts_table(facts: dict[str, Any]) -> list[tuple[str, str]]:
    """(fact, value) pairs of what the run knows of the real side and its representation:
    the reconstruction Dice every method in the representation inherits as a ceiling, the
    representation's fit, and FD-ae's value for real skulls against real skulls."""
    rows = [("dataset", f"{facts['dataset']}: {facts['n_train']} training, "
                        f"{facts['n_reference']} reference skulls at {facts['voxel_size_mm']:g} "
                        f"mm"),
            ("representation", str(facts["representation"]))]
    if facts.get("reconstruction_dice_mean") is not None:
        rows.append(("reconstruction Dice, test split (mean / min)",
                     f"{facts['reconstruction_dice_mean']:.4f} / "
                     f"{facts['reconstruction_dice_min']:.4f}"))
    fit = facts.get("representation_fit") or {}
    if fit.get("steps"):
        rows.append(("representation fit", f"{fit['steps']} steps, "
                     f"{fit['parameter_count']:,} parameters, loss {fit['first_loss']:.4g} -> "
                     f"{fit['final_loss']:.4g}, {fit['wall_time_s']:.0f} s when it was fitted"))
    if "fd_ae_real" in facts:
        test, validation = facts["fd_ae_real_sizes"]
        rows.append(("FD-ae of real skulls (reference against validation split)",
                     f"{facts['fd_ae_real']:.4g} at {test} and {validation} skulls: the "
                     f"estimator's bias at about this set size"))
    rows.append(("median DCR of held-out real skulls", f"{facts['reference_dcr_median']:.4g}"))
    return rows


def _write_reference(path: Path, facts: dict[str, Any]) -> Path:
    table = pd.DataFrame(reference_facts_table(facts), columns=["fact", "value"])
    with atomic_path(path) as tmp:
        tmp.write_text(table.to_markdown(index=False) + "\n")
    return path


def undiscriminating(rows: pd.DataFrame, steps: int) -> dict[str, str]:
    """The downstream metrics left out of the ranking, with why: those whose samples-only
    row does not separate the oracle-rep ceiling from the gaussian and mean-skull floors
    by more than 3 times the larger seed CI (:func:`bench.tables.discrimination`); an
    augmented row shares the verdict of its samples-only row."""
    downstream = rows[(rows["group"] == "downstream") & (rows["seed"] >= 0)]
    failing = discrimination(leaderboard(downstream, steps), CEILING, DISCRIMINATION_FLOORS)
    unranked = {metric: reason for metric, reason in failing.items()
                if metric.startswith(f"{SYNTHETIC}:")}
    for metric in set(downstream["metric"]):
        training, _, name = metric.partition(":")
        if training == AUGMENTED and f"{SYNTHETIC}:{name}" in unranked:
            unranked[metric] = f"as {SYNTHETIC}:{name}"
    return unranked


def case_table(run: RunFolder, rows: pd.DataFrame) -> pd.DataFrame:
    """The bootstrap over test cases of the tasks trained on samples alone, as statistics
    (:func:`bench.tables.case_bootstrap`; ``n_seeds`` holds the number of cases)."""
    files = run.planned_files(CASES_FILE)
    if not files:
        return pd.DataFrame()
    cases = pd.concat([pd.read_csv(path) for path in files], ignore_index=True)
    cases = cases[cases["training_set"] == SYNTHETIC].assign(
        metric=lambda frame: SYNTHETIC + ":" + frame["metric"])
    if cases.empty:
        return pd.DataFrame()
    boot = case_bootstrap(cases)
    info = rows.drop_duplicates("metric").set_index("metric")
    boot = boot[boot["metric"].isin(info.index)]
    return boot.assign(n_seeds=boot.pop("n_cases"),
                       higher_is_better=boot["metric"].map(info["higher_is_better"]),
                       unit=boot["metric"].map(info["unit"]), rank=np.nan, best=False,
                       differs=False)[STATISTICS]


def headline_rows(rows: pd.DataFrame, catalogue: Catalogue) -> pd.DataFrame:
    """The rows of the metrics tagged ``headline``."""
    return rows[rows["metric"].isin(catalogue.tagged(HEADLINE, rows["metric"]))]


def columns(run: RunFolder, rows: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(every method of the rows, methods first and references last; the ranked ones)."""
    references = run.references()
    ranked = sorted(set(rows["method"]) - set(references))
    return ranked + [name for name in references if name in set(rows["method"])], ranked


def summary_table(run_dir: Path, steps: int | None = None) -> str:
    """The headline metrics per method at ``steps`` (default: the largest), as text."""
    run = RunFolder(run_dir)
    rows = final_rows(collect_results(run))
    picked = headline_rows(rows, Catalogue(run.catalogue()))
    methods, ranked = columns(run, picked)
    table = leaderboard(picked, steps or int(rows["steps"].max()), ranked)
    return text_table(table, "text", methods, ranked=False).to_markdown()


def _write_format(path: Path, table: pd.DataFrame, methods: list[str], style: str,
                  ranked: bool) -> Path:
    if style == "csv":
        write_table(path, numeric_table(table))
        return path
    text = render_table(text_table(table, style, methods, ranked), style)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def _write_ranks(path: Path, ranks: pd.DataFrame, style: str) -> Path:
    """The mean ranks per training budget as csv, md or tex."""
    if style == "csv":
        write_table(path, ranks.reset_index())
        return path
    shown = ranks.map(lambda rank: f"{rank:.2f}").rename_axis(
        index="mean rank ↓ at training steps")
    text = shown.to_markdown() if style == "md" else shown.to_latex()
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return path


def _write_timings(timings: pd.DataFrame, out_dir: Path) -> Path:
    target = out_dir / "timings.csv"
    with atomic_path(target) as tmp:
        timings[["cell", "stage", "seconds"]].to_csv(tmp, index=False)
    return target
