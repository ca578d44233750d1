"""The static HTML page of a run: every leaderboard, metric-versus-NFE plots, DCR
histograms and a gallery."""

from __future__ import annotations

import html
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

from bench.data.grid import FIELD_OF_VIEW_MM  # noqa: E402
from bench.io import atomic_path  # noqa: E402
from metrics.robustness import seed_summary  # noqa: E402

NFE_METRICS = ("1-NNA-CD", "MMD-CD", "COV-CD", "failure-rate")


def write_html(run_dir: Path, out_dir: Path, rows: pd.DataFrame,
               sections: list[tuple[str, pd.DataFrame]], steps: int) -> Path:
    """Write ``index.html`` with its PNGs into ``out_dir``; returns the page's path."""
    from bench.report import render_table

    parts = [f"<h1>skull-bench: {html.escape(run_dir.name)}</h1>",
             f"<p>Mean ± 95 % CI over seeds at {steps} sampling steps; bold is best, † differs "
             f"from the best (paired t-test across seeds, p &lt; 0.05). ↑ higher is better, "
             f"↓ lower is better.</p>"]
    for group, table in sections:
        parts.append(f"<h2>{html.escape(group)}</h2>")
        parts.append(render_table(table, rows, "html").to_html(escape=False))
    for name in _nfe_plots(rows[rows["seed"] >= 0], out_dir):
        parts.append(f'<h2>{html.escape(name[:-4])} against NFE</h2><img src="{name}" '
                     f'alt="{html.escape(name[:-4])} against NFE">')
    for name in _seed_strips(rows[(rows["seed"] >= 0) & (rows["steps"] == steps)], out_dir):
        parts.append(f'<h2>per-seed values</h2><img src="{name}" alt="per-seed values">')
    histogram = _dcr_histogram(run_dir, out_dir, steps)
    if histogram:
        parts.append(f'<h2>distance to the closest training record at {steps} steps</h2>'
                     f'<p>DCR = 1 - Dice to the nearest training skull, pooled over seeds. '
                     f'Mass near 0 beyond the held-out skulls\' own DCRs means copies of '
                     f'training skulls (memorisation).</p>'
                     f'<img src="{histogram}" alt="DCR histograms">')
    gallery = _gallery(run_dir, out_dir, steps)
    if gallery:
        parts.append(f'<h2>samples at {steps} steps beside real skulls</h2>'
                     f'<img src="{gallery}" alt="gallery of samples">')
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>skull-bench report</title>"
            "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:4px 8px}img{max-width:100%}</style>"
            "</head><body>" + "\n".join(parts) + "</body></html>\n")
    target = out_dir / "index.html"
    with atomic_path(target) as tmp:
        tmp.write_text(page)
    return target


def _nfe_plots(rows: pd.DataFrame, out_dir: Path) -> list[str]:
    """One PNG per headline metric: seed mean against NFE with its 95 % CI band."""
    summary = seed_summary(rows)
    names = []
    for metric in NFE_METRICS:
        curve = summary[summary["metric"] == metric]
        if curve.empty:
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


def _seed_strips(rows: pd.DataFrame, out_dir: Path) -> list[str]:
    """Per-seed values of the headline metrics at the report's step budget."""
    picked = rows[rows["metric"].isin(NFE_METRICS)]
    if picked.empty:
        return []
    grid = sns.catplot(data=picked, x="method", y="value", col="metric", kind="strip",
                       sharey=False, height=3, aspect=0.9, col_wrap=4)
    return [_save(grid.figure, out_dir / "seeds.png")]


def _dcr_histogram(run_dir: Path, out_dir: Path, steps: int) -> str | None:
    """Density histograms of DCRs per method at ``steps``, beside the held-out skulls' DCRs."""
    from bench.run import DCR_FILE, cell_files

    files = cell_files(run_dir, DCR_FILE)
    if not files:
        return None
    rows = pd.concat([pd.read_csv(path) for path in files], ignore_index=True)
    rows = rows[rows["steps"] == steps]
    generated = rows[rows["set"] == "generated"].assign(label=lambda r: r["method"])
    held_out = rows[rows["set"] == "held-out"]
    if len(held_out):  # the same in every cell of a run: keep one cell's
        first = held_out.iloc[0]
        held_out = held_out[(held_out["method"] == first["method"])
                            & (held_out["seed"] == first["seed"])]
    shown = pd.concat([generated, held_out.assign(label="real (held-out)")], ignore_index=True)
    if shown.empty:
        return None
    figure, axis = plt.subplots(figsize=(7, 4))
    sns.histplot(data=shown.sort_values("label", kind="stable"), x="dcr", hue="label",
                 stat="density", common_norm=False, element="step", bins=30, ax=axis)
    axis.set_xlabel("DCR: 1 - Dice to the nearest training skull")
    axis.get_legend().set_title(None)
    return _save(figure, out_dir / "dcr.png")


def _gallery(run_dir: Path, out_dir: Path, steps: int) -> str | None:
    """Rendered samples of each method (its first cell) beside real reference skulls."""
    from bench.data.preview import OBLIQUE, extract_surface, render
    from bench.run import cell_files, load_samples

    sets = {}
    for path in cell_files(run_dir, f"samples-steps{steps}.npz"):
        method = path.parent.name.rsplit("-s", 1)[0]
        sets.setdefault(method, load_samples(path)[0][:4])
    real = run_dir / "shared" / "reference-examples.npz"
    if real.is_file():
        sets["real (test)"] = load_samples(real)[0][:4]
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
