"""The static HTML page of a run: verdict and headline table first, then every
leaderboard, what is known of the real side, metric-versus-NFE plots, DCR
histograms with the closest training/sample pairs, and a gallery.

Every table has metrics as rows and methods as columns, so the page fits a
1400 px window however many metrics a group has (a test opens it in headless
Chromium at that width and checks that nothing overflows).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen before pyplot loads)
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.core.io import atomic_path  # noqa: E402
from bench.data.grid import FIELD_OF_VIEW_MM  # noqa: E402
from bench.data.preview import OBLIQUE, extract_surface, render  # noqa: E402
from bench.core.volumes import load_volumes  # noqa: E402
from bench.store import DCR_FILE, RunFolder  # noqa: E402
from bench.tables import render_table, shown_methods, text_table  # noqa: E402
from metrics.robustness import seed_summary  # noqa: E402

CLOSEST_PAIRS = 10
GAP_TITLE = ("share of the gap from the gaussian floor to the oracle-rep ceiling that each "
             "method closes (per seed, then mean ± 95 % CI)")
CASES_TITLE = ("downstream, tasks trained on the samples: mean over test cases and seeds ± "
               "the 95 % bootstrap interval over test cases (its upper half)")
STYLE = ("body{font-family:sans-serif;margin:2em;max-width:1300px}"
         "table{border-collapse:collapse;margin-bottom:1em}"
         "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
         "th:first-child,td:first-child{text-align:left}"
         "img{max-width:100%}p.verdict{font-size:1.05em;line-height:1.5;max-width:75em}")


@dataclass(frozen=True)
class TrainingCurve:
    """What the page shows of quality along the training budget.

    Attributes:
        rows: result rows of the training curve at the report's sampling budget, the
            final training budget included (``train_steps`` column).
        seconds: training wall time up to each budget: method, seed, train_steps, seconds.
        ranks: mean ranks per training budget (:func:`bench.tables.ranks_by_training_budget`).
        references: the references' rows at the report's sampling budget, drawn as
            horizontal lines.
    """

    rows: pd.DataFrame
    seconds: pd.DataFrame
    ranks: pd.DataFrame
    references: pd.DataFrame


def write_html(run: RunFolder, out_dir: Path, rows: pd.DataFrame,
               tables: list[tuple[str, pd.DataFrame]], methods: list[str], ranked: list[str],
               verdict: str, steps: int, nfe_metrics: list[str],
               unranked: dict[str, str], training: TrainingCurve | None = None) -> Path:
    """Write ``index.html`` with its PNGs into ``out_dir``; returns the page's path.

    Args:
        run: the run folder (reference facts, DCRs, samples).
        out_dir: where the page and its images go.
        rows: every result row, robustness rows included.
        tables: (section, statistics) pairs, the headline first.
        methods: the table columns, ranked methods then references.
        ranked: the methods that compete (the others are references).
        verdict: the generated verdict paragraph.
        steps: the step budget of the tables.
        nfe_metrics: the metrics plotted against NFE.
        unranked: metrics shown but ranking nobody, with why.
        training: the training curve, if the run evaluated earlier training budgets.
    """
    references = [method for method in methods if method not in ranked]
    parts = [f"<h1>skull-bench: {html.escape(run.name)}</h1>",
             f"<p>Mean ± 95 % CI over seeds at {steps} sampling steps; bold is best among "
             f"the ranked methods ({html.escape(', '.join(ranked))}), † differs from the best "
             f"(paired t-test across seeds, p &lt; 0.05); ↑ higher is better, ↓ lower is better."
             + (f" References, never ranked: {html.escape(', '.join(references))}."
                if references else "") + "</p>",
             f'<p class="verdict">{html.escape(verdict)}</p>']
    for section, table in tables:
        title = {"gap": GAP_TITLE, "downstream-cases": CASES_TITLE}.get(section, section)
        parts.append(f"<h2>{html.escape(title)}</h2>")
        shown = shown_methods(table, methods, ranked)
        ranked_section = section not in ("headline", "gap", "downstream-cases")
        parts.append(render_table(text_table(table, "html", shown, ranked=ranked_section),
                                  "html"))
        if section == "headline":
            parts.append(_reference_facts(run.reference_facts()))
        if section == "downstream" and unranked:
            parts.append("<p>Not ranked, since the samples-only rows do not separate the "
                         "oracle-rep ceiling from the gaussian and mean-skull floors by more "
                         "than 3 times the larger seed CI:</p><ul>" + "".join(
                             f"<li>{html.escape(metric)}: {html.escape(reason)}</li>"
                             for metric, reason in sorted(unranked.items())) + "</ul>")
    if training is not None:
        parts += _training_section(training, out_dir)
    for name in _nfe_plots(rows[rows["seed"] >= 0], nfe_metrics, out_dir):
        parts.append(f'<h2>{html.escape(name[4:-4])} against NFE</h2><img src="{name}" '
                     f'alt="{html.escape(name[4:-4])} against NFE">')
    strips = _seed_strips(rows[(rows["seed"] >= 0) & (rows["steps"] == steps)], nfe_metrics,
                          out_dir)
    for name in strips:
        parts.append(f'<h2>per-seed values</h2><img src="{name}" alt="per-seed values">')
    parts += _privacy_section(run, out_dir, steps)
    gallery = _gallery(run, out_dir, steps)
    if gallery:
        parts.append(f'<h2>samples at {steps} steps beside real skulls</h2>'
                     f'<img src="{gallery}" alt="gallery of samples">')
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>skull-bench report</title>"
            f"<style>{STYLE}</style></head><body>" + "\n".join(parts) + "</body></html>\n")
    target = out_dir / "index.html"
    with atomic_path(target) as tmp:
        tmp.write_text(page)
    return target


def _reference_facts(facts: dict[str, Any]) -> str:
    """A short list of what the run knows of the real side, or nothing."""
    if not facts:
        return ""
    items = [f"{facts['n_train']} training skulls, {facts['n_reference']} reference skulls "
             f"of {html.escape(str(facts['dataset']))} at {facts['voxel_size_mm']:g} mm"]
    if facts.get("reconstruction_dice_mean") is not None:
        items.append(f"representation {html.escape(str(facts['representation']))}: test-split "
                     f"reconstruction Dice {facts['reconstruction_dice_mean']:.3f} (min "
                     f"{facts['reconstruction_dice_min']:.3f}), the overlap no method in it "
                     f"can beat")
    fit = facts.get("representation_fit") or {}
    if fit.get("steps"):
        items.append(f"the representation was fitted once on the training split: "
                     f"{fit['steps']} steps, {fit['parameter_count']:,} parameters, "
                     f"{fit['wall_time_s']:.0f} s (reference.md)")
    if "fd_ae_real" in facts:
        items.append(f"FD-ae of real skulls against real skulls (reference against "
                     f"validation split): {facts['fd_ae_real']:.4g}, the bias of the "
                     f"estimator at about this set size; compare FD-ae only at one set size")
    if "reference_ms_ssim_diversity" in facts:
        items.append(f"MS-SSIM diversity of the real skulls: "
                     f"{facts['reference_ms_ssim_diversity']:.4g} (a method should come close)")
    items.append(f"median DCR of held-out real skulls: {facts['reference_dcr_median']:.4g} "
                 f"(samples far below it copy training skulls)")
    if "set_size" in facts:
        drawn = (" (the larger set drawn down to that size, averaged over draws)"
                 if facts["set_sizes_differ"] else "")
        size = int(facts["set_size"])
        items.append(f"MMD, COV and 1-NNA compare {size} generated with {size} reference "
                     f"skulls{drawn}: the chance level of 1-NNA, for two indistinguishable "
                     f"sets, is 100 (n - 1) / (2n - 1) = {100 * (size - 1) / (2 * size - 1):.1f} "
                     f"% at this size (each skull's nearest neighbour is any other with equal "
                     f"probability); the oracle column shows what a perfect generator scores")
    if "warning" in facts:
        items.append(f"<b>warning</b>: {html.escape(str(facts['warning']))}")
    return "<ul>" + "".join(f"<li>{item}</li>" for item in items) + "</ul>"


def _nfe_plots(rows: pd.DataFrame, metrics: list[str], out_dir: Path) -> list[str]:
    """One PNG per metric: seed mean against NFE with its 95 % CI band."""
    summary = seed_summary(rows)
    names = []
    for metric in metrics:
        curve = summary[summary["metric"] == metric]
        if curve["steps"].nunique() < 2:
            continue
        figure, axis = plt.subplots(figsize=(6, 4))
        for method, frame in curve.groupby("method", sort=True):
            frame = frame.sort_values("nfe")
            axis.plot(frame["nfe"].clip(lower=1), frame["mean"], marker="o", label=method)
            axis.fill_between(frame["nfe"].clip(lower=1), frame["ci_low"], frame["ci_high"],
                              alpha=0.2)
        axis.set_xscale("log")
        axis.set_xlabel("network evaluations (NFE)")
        unit = curve["unit"].iloc[0]
        axis.set_ylabel(metric + (f" [{unit}]" if isinstance(unit, str) and unit else ""))
        axis.legend()
        names.append(_save(figure, out_dir / f"nfe-{metric}.png"))
    return names


def _training_section(training: TrainingCurve, out_dir: Path) -> list[str]:
    """The mean ranks per training budget, then per metric its value against training
    steps and against training time."""
    ranks = training.ranks.map(lambda rank: f"{rank:.2f}").rename_axis(
        index="training steps")
    parts = ["<h2>ranking along the training budget</h2><p>Mean rank (lower is better) of "
             "the ranked methods on the metrics scored at every training budget; each "
             "earlier budget samples the EMA weights the training held at that step.</p>",
             ranks.to_html()]
    for metric, curve in training.rows.groupby("metric", sort=True):
        name = _save(_training_figure(metric, curve, training), out_dir /
                     f"training-{metric}.png")
        parts.append(f'<h3>{html.escape(metric)} along the training budget</h3>'
                     f'<img src="{name}" alt="{html.escape(metric)} against training">')
    return parts


def _training_figure(metric: str, curve: pd.DataFrame, training: TrainingCurve) -> plt.Figure:
    """Seed mean and 95 % CI band of one metric against training steps (left) and
    training wall time (right), with the references as horizontal lines."""
    summary = seed_summary(curve, ("method", "train_steps", "group", "metric"))
    seconds = training.seconds.groupby(["method", "train_steps"])["seconds"].mean()
    figure, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for method, frame in summary.groupby("method", sort=True):
        frame = frame.sort_values("train_steps")
        for axis, x in zip(axes, (frame["train_steps"], [
                seconds.get((method, budget), float("nan")) for budget in frame["train_steps"]])):
            axis.plot(x, frame["mean"], marker="o", label=method)
            axis.fill_between(x, frame["ci_low"], frame["ci_high"], alpha=0.2)
    references = training.references[training.references["metric"] == metric]
    for index, (method, value) in enumerate(references.groupby("method")["value"].mean()
                                            .items()):
        for axis in axes:
            axis.axhline(value, color=f"C{index + 3}", linestyle="--", linewidth=1,
                         label=method if axis is axes[0] else None)
    unit = curve["unit"].iloc[0]
    axes[0].set_ylabel(metric + (f" [{unit}]" if isinstance(unit, str) and unit else ""))
    axes[0].set_xlabel("training steps")
    axes[1].set_xlabel("training wall time [s]")
    axes[0].legend(fontsize=8)
    return figure


def _seed_strips(rows: pd.DataFrame, metrics: list[str], out_dir: Path) -> list[str]:
    """Per-seed values of the plotted metrics at the report's step budget, as swarms: a strip
    plot's jitter draws from numpy's global random state, so the figure would change from
    one report to the next."""
    picked = rows[rows["metric"].isin(metrics)]
    if picked.empty:
        return []
    grid = sns.catplot(data=picked, x="method", y="value", col="metric", kind="swarm",
                       sharey=False, height=3, aspect=0.9, col_wrap=4)
    grid.tick_params(axis="x", labelrotation=60)
    grid.set_xlabels("")
    grid.figure.tight_layout()
    return [_save(grid.figure, out_dir / "seeds.png")]


def _privacy_section(run: RunFolder, out_dir: Path, steps: int) -> list[str]:
    """DCR histograms per method beside the held-out skulls', and the closest pairs."""
    files = run.planned_files(DCR_FILE)
    if not files:
        return []
    rows = pd.concat([pd.read_csv(path, keep_default_na=False) for path in files],
                     ignore_index=True)
    rows = rows[rows["steps"] == steps]
    generated = rows[rows["set"] == "generated"].assign(label=lambda r: r["method"])
    held_out = rows[rows["set"] == "held-out"]
    if len(held_out):  # the same in every cell of a run: keep one cell's
        first = held_out.iloc[0]
        held_out = held_out[(held_out["method"] == first["method"])
                            & (held_out["seed"] == first["seed"])]
    shown = pd.concat([generated, held_out.assign(label="real (held-out)")], ignore_index=True)
    if shown.empty:
        return []
    figure, axis = plt.subplots(figsize=(7, 4))
    sns.histplot(data=shown.sort_values("label", kind="stable"), x="dcr", hue="label",
                 stat="density", common_norm=False, element="step", bins=30, ax=axis)
    axis.set_xlabel("DCR: 1 - Dice to the nearest training skull")
    legend = axis.get_legend()
    if legend is not None:
        legend.set_title("")
    histogram = _save(figure, out_dir / "dcr.png")
    closest = generated.sort_values(["dcr", "method", "seed", "sample"]).head(CLOSEST_PAIRS)
    pairs = pd.DataFrame({"method": closest["method"], "seed": closest["seed"],
                          "sample": closest["sample"],
                          "nearest training skull": closest["nearest_train"],
                          "Dice": (1.0 - closest["dcr"]).map(lambda d: f"{d:.3f}")})
    return [f"<h2>distance to the closest training record at {steps} steps</h2>"
            f"<p>DCR = 1 - Dice to the nearest training skull, pooled over seeds. Mass near 0 "
            f"beyond the held-out skulls' own DCRs means copies of training skulls "
            f"(memorisation).</p><img src=\"{histogram}\" alt=\"DCR histograms\">",
            f"<h3>the {len(pairs)} samples closest to a training skull</h3>",
            pairs.to_html(index=False, escape=True)]


def _gallery(run: RunFolder, out_dir: Path, steps: int) -> str | None:
    """Rendered samples of each method (its first cell) beside real reference skulls."""
    sets: dict[str, Any] = {}
    for folder in run.planned():
        path = folder.samples_path(steps)
        if path.is_file():
            sets.setdefault(folder.info()["method"], load_volumes(path)[0][:4])
    if run.reference_examples.is_file():
        sets["real (test)"] = load_volumes(run.reference_examples)[0][:4]
    if not sets:
        return None
    figure, axes = plt.subplots(len(sets), 4, figsize=(10, 2.6 * len(sets)), squeeze=False)
    for row, (name, volumes) in zip(axes, sets.items()):
        for axis, volume in zip(row, volumes):
            axis.axis("off")
            axis.set_title(name, fontsize=8)
            if volume.any():
                mesh = extract_surface(volume, FIELD_OF_VIEW_MM / volume.shape[0],
                                       FIELD_OF_VIEW_MM)
                axis.imshow(render(mesh, OBLIQUE, mesh.center(), 130.0, 200))
    return _save(figure, out_dir / "gallery.png")


def _save(figure: plt.Figure, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90, bbox_inches="tight",
                       metadata={"Software": None})
    plt.close(figure)
    return path.name
