"""`bench audit`: what each metric detects, on the oracle under corruptions of known severity.

synthskull's true distribution is known and can be sampled without limit, so
each failure a generator can have is simulated exactly, at a severity s in
[0, 1], on fresh oracle subjects (:mod:`bench.data.oracle`); s = 0 is the
oracle itself (for the one corruption in representation space, latent noise,
the oracle through the representation: oracle-rep). Every registered metric
(the selected ones of the configuration) and every downstream task scores
each corrupted set, at several severities and seeds, exactly as a run scores
a method's samples (same reference skulls, same sample size). From the rows:

- the *effect* of a corruption on a metric at severity s: the change of the
  seed mean from the oracle's, in units of the oracle's seed-to-seed standard
  deviation, signed so that positive is worse by the metric's declared
  direction (where the oracle's values do not vary at all, as a failure rate
  of 0 % on every seed, the unit is the pooled sd of oracle and corrupted
  sets; where neither varies, a change is infinite);
- it *detects* the corruption from the smallest severity whose effect exceeds
  +3, and *rewards* it from the smallest whose effect is below -3 (the metric
  calls the corrupted set better than the truth: a blind spot).

Outputs in OUT: ``audit.csv`` (long rows: corruption, severity, seed, group,
metric, value, higher_is_better, unit), ``sensitivity.csv`` / ``.md``, a
heatmap ``heatmap.png`` and ``index.html``. Sets are scored in ``jobs``
worker processes; each (corruption, severity, seed) is written as soon as it
is scored, under a folder named by a hash of the configuration and the code,
so an interrupted audit resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import hashlib
import html
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend is chosen before pyplot loads)
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402

from bench.config import RunConfig, to_dict  # noqa: E402
from bench.core.errors import BenchError  # noqa: E402
from bench.core.io import atomic_path, write_json_atomic  # noqa: E402
from bench.data.corruptions import fragment, memorise, rescale  # noqa: E402
from bench.data.dataset import SkullDataset  # noqa: E402
from bench.data.oracle import is_synthetic, oracle_subjects  # noqa: E402
from bench.data.sources import load_dataset  # noqa: E402
from bench.data.synthskull import CLASS_PRIOR, SynthskullPrior  # noqa: E402
from bench.evaluation import build_reference, evaluate  # noqa: E402
from bench.representations import Representation  # noqa: E402
from bench.run import check_run, fitted_representation  # noqa: E402
from bench.store import RunFolder, code_fingerprint, environment, write_table  # noqa: E402
from bench.workers import run_in_workers, thread_budget  # noqa: E402
from downstream.protocol import SYNTHETIC, DownstreamConfig, train_and_evaluate  # noqa: E402
from metrics.base import Metric  # noqa: E402
from metrics.inputs import ReferenceSet  # noqa: E402
from metrics.robustness import seed_summary  # noqa: E402

SEVERITIES = (0.25, 0.5, 1.0)
DETECTION_SD = 3.0
ORACLE = "oracle"
COLUMNS = ["corruption", "severity", "seed", "group", "metric", "value", "higher_is_better",
           "unit"]
MAX_SPREAD_GAIN = 1.0
MAX_ASYMMETRY_SHIFT = 0.06
_NOISE_STREAM = 0x401_5E


@dataclass
class AuditContext:
    """What every corrupted set of one audit is built from and scored against."""

    config: RunConfig
    dataset: SkullDataset
    representation: Representation
    reference: ReferenceSet
    metrics: list[Metric]
    latent_sd: np.ndarray

    @property
    def n(self) -> int:
        return self.config.sampling.n_samples

    def oracle(self, seed: int, prior: SynthskullPrior | None = None) -> np.ndarray:
        return oracle_subjects(self.dataset, self.n, seed, prior)


@dataclass(frozen=True)
class Corruption:
    """A failure of known severity, built on the oracle.

    Attributes:
        name: as in the tables.
        at_one: what severity 1 means.
        make: (context, severity, seed) -> bool volumes (n, R, R, R); severity 0
            gives the oracle's set of that seed (oracle-rep's for latent noise).
    """

    name: str
    at_one: str
    make: Callable[[AuditContext, float, int], np.ndarray]


def _mode_dropping(context: AuditContext, severity: float, seed: int) -> np.ndarray:
    """The rarest round(s (C - 1)) classes removed from the prior, the rest renormalised."""
    prior = np.array(CLASS_PRIOR)
    dropped = np.argsort(prior, kind="stable")[:round(severity * (len(prior) - 1))]
    prior[dropped] = 0.0
    return context.oracle(seed, SynthskullPrior(class_prior=tuple(prior / prior.sum())))


def _spread(gain: float) -> Callable[[AuditContext, float, int], np.ndarray]:
    def make(context: AuditContext, severity: float, seed: int) -> np.ndarray:
        return context.oracle(seed, SynthskullPrior(spread=1.0 + gain * severity))

    return make


def _asymmetry(context: AuditContext, severity: float, seed: int) -> np.ndarray:
    return context.oracle(seed, SynthskullPrior(asymmetry_shift=MAX_ASYMMETRY_SHIFT * severity))


def _latent_noise(context: AuditContext, severity: float, seed: int) -> np.ndarray:
    """Noise of sd ``severity`` times the training latents' own sd, per latent entry."""
    latents = context.representation.encode(context.oracle(seed)).numpy()
    noise = np.stack([np.random.default_rng([_NOISE_STREAM, seed, i]).standard_normal(
        latents.shape[1:]) for i in range(len(latents))])
    noisy = latents + severity * context.latent_sd * noise
    return context.representation.decode(torch.from_numpy(noisy.astype(np.float32)))


CORRUPTIONS: tuple[Corruption, ...] = (
    Corruption("mode-dropping", "only normocephaly: the four rarer classes removed, rarest "
                                "first (round(4 s) of them)", _mode_dropping),
    Corruption("spread-shrink", "every continuous parameter at its mean (deviations times "
                                "1 - s)", _spread(-MAX_SPREAD_GAIN)),
    Corruption("spread-inflation", "every continuous parameter's deviation doubled (times "
                                   "1 + s)", _spread(MAX_SPREAD_GAIN)),
    Corruption("memorisation", "every sample a training skull (a share s of them)",
               lambda context, severity, seed: memorise(
                   context.oracle(seed), context.dataset.subset("train").volumes, severity,
                   seed)),
    Corruption("fragmentation", "12 holes of 12 mm carved out of each skull and 20 islands of "
                                "4 mm added (s times as many)",
               lambda context, severity, seed: fragment(
                   context.oracle(seed), severity, seed, context.dataset.voxel_size_mm)),
    Corruption("size-bias", "every length 10 % longer (1 + 0.1 s)",
               lambda context, severity, seed: rescale(context.oracle(seed), severity)),
    Corruption("asymmetry", "the vault's asymmetry shifted by 0.06, five of its standard "
                            "deviations (about 5 mm of one-sided bulge)", _asymmetry),
    Corruption("latent-noise", "the representation's latents plus noise of their own spread "
                               "(sd s times the training latents' sd), decoded: blur",
               _latent_noise),
)
"""Every corruption of the audit, in table order."""


@dataclass(frozen=True, order=True)
class AuditItem:
    """One scored set: a corruption (or the oracle) at one severity and seed."""

    corruption: str
    severity: float
    seed: int

    @property
    def label(self) -> str:
        return f"{self.corruption}-{self.severity:g}-s{self.seed}"


def plan_items(seeds: int) -> list[AuditItem]:
    """The oracle at every seed, then every corruption at every severity and seed."""
    items = [AuditItem(ORACLE, 0.0, seed) for seed in range(seeds)]
    return items + [AuditItem(c.name, s, seed) for c in CORRUPTIONS for s in SEVERITIES
                    for seed in range(seeds)]


def run_audit(config: RunConfig, out_dir: Path, seeds: int, quiet: bool = False) -> pd.DataFrame:
    """Score every corruption, write the outputs into ``out_dir``, return the long rows."""
    if seeds < 2:
        raise BenchError(f"--seeds {seeds}: the audit measures effects in units of the "
                         f"oracle's seed-to-seed standard deviation, which needs 2 seeds or "
                         f"more (3 by default)")
    chosen = check_run(config)
    with thread_budget(config.threads):
        context = prepare_audit(config, RunFolder(out_dir), chosen, seeds)
        folder = out_dir / f"items-{_audit_hash(config)}"
        items = plan_items(seeds)
        pending = [item for item in items if not (folder / f"{item.label}.csv").is_file()]
        task = _scorer(context, folder)
        done = (map(task, pending) if config.jobs == 1
                else run_in_workers(task, pending, config.jobs))
        for label in done:
            if not quiet:
                print(f"{label}: scored", flush=True)
    rows = pd.concat([pd.read_csv(folder / f"{item.label}.csv") for item in items],
                     ignore_index=True)
    write_outputs(rows, out_dir, config)
    return rows


def prepare_audit(config: RunConfig, run: RunFolder, chosen: list[Metric], seeds: int
                  ) -> AuditContext:
    """Load the dataset, fit (or reuse) the representation, build the reference side and
    generate the oracle sets of every seed."""
    data = config.dataset
    dataset = load_dataset(data.name, resolution=data.resolution, n=data.n, seed=data.seed,
                           mandible=data.mandible)
    if not is_synthetic(dataset):
        raise BenchError(f"bench audit needs a synthskull dataset, got {dataset.name!r}: its "
                         f"corruptions change the generator's known distribution, which an "
                         f"imported dataset does not have")
    run.write_config(config, environment(config.device))
    representation, _, _ = fitted_representation(config, run, dataset)
    train_latents = representation.encode(dataset.subset("train").volumes).numpy()
    for seed in range(seeds):  # the oracle sets most corruptions start from, on every core
        oracle_subjects(dataset, config.sampling.n_samples, seed, workers=os.cpu_count() or 1)
    return AuditContext(config, dataset, representation,
                        build_reference(dataset, config.metrics, config.threads), chosen,
                        train_latents.std(axis=0))


def _scorer(context: AuditContext, folder: Path) -> Callable[[AuditItem], str]:
    by_name = {corruption.name: corruption for corruption in CORRUPTIONS}
    settings = context.config.downstream
    downstream = DownstreamConfig(tasks=settings.tasks, params=settings.params,
                                  n_test=settings.n_test, few_real=settings.few_real,
                                  device=context.config.device)

    def score(item: AuditItem) -> str:
        if item.corruption == ORACLE:
            volumes = context.oracle(item.seed)
        else:
            volumes = by_name[item.corruption].make(context, item.severity, item.seed)
        values = evaluate(context.reference, volumes, item.seed, context.metrics).values
        if context.config.downstream.enabled:
            scored = train_and_evaluate(SYNTHETIC, volumes, context.dataset.subset("test"),
                                        item.seed, downstream)
            values += [dataclasses.replace(value, name=f"{SYNTHETIC}:{value.name}")
                       for _, value in scored.rows]
        frame = pd.DataFrame([[item.corruption, item.severity, item.seed, v.group, v.name,
                               v.value, v.higher_is_better, v.unit] for v in values],
                             columns=COLUMNS)
        write_table(folder / f"{item.label}.csv", frame)
        return item.label

    return score


def _audit_hash(config: RunConfig) -> str:
    settings = {key: value for key, value in to_dict(config).items()
                if key not in ("methods", "references", "method_params", "seeds", "jobs")}
    text = json.dumps({"config": settings, "code": code_fingerprint(),
                       "severities": SEVERITIES}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:10]


# ------------------------------------------------------------------------------ analysis

def sensitivity(rows: pd.DataFrame) -> pd.DataFrame:
    """One row per (metric, corruption): the effect at each severity and the verdict.

    Columns: group, metric, corruption, ``effect@s`` for each severity (seed
    means' change from the oracle in oracle seed-to-seed sds, positive = worse by
    the metric's direction; see the module notes where that sd is 0),
    detected_at, rewarded_at (smallest severity beyond +3 / below -3, NaN if
    none) and verdict.
    """
    summary = seed_summary(rows.assign(method=rows["corruption"], steps=rows["severity"],
                                       nfe=0.0))
    oracle = summary[summary["method"] == ORACLE].set_index("metric")
    records = []
    for (metric, corruption), frame in summary[summary["method"] != ORACLE].groupby(
            ["metric", "method"], sort=False):
        if metric not in oracle.index:
            continue
        base = oracle.loc[metric]
        sign = -1.0 if bool(base["higher_is_better"]) else 1.0
        record = {"group": base["group"], "metric": metric, "corruption": corruption}
        for severity, mean, sd in zip(frame["steps"], frame["mean"], frame["sd"]):
            scale = base["sd"] if base["sd"] > 0 else np.sqrt((base["sd"] ** 2 + sd ** 2) / 2)
            record[f"effect@{severity:g}"] = sign * _in_sds(mean - base["mean"], scale)
        effects = [(s, record[f"effect@{s:g}"]) for s in SEVERITIES
                   if f"effect@{s:g}" in record]
        record["detected_at"] = next((s for s, e in effects if e > DETECTION_SD), np.nan)
        record["rewarded_at"] = next((s for s, e in effects if e < -DETECTION_SD), np.nan)
        record["verdict"] = _verdict(record["detected_at"], record["rewarded_at"])
        records.append(record)
    order = {c.name: i for i, c in enumerate(CORRUPTIONS)}
    table = pd.DataFrame(records)
    return table.sort_values(["group", "metric", "corruption"],
                             key=lambda col: col.map(order) if col.name == "corruption" else col,
                             kind="stable").reset_index(drop=True)


def _in_sds(change: float, sd: float) -> float:
    if np.isnan(change):
        return np.nan
    if not sd > 0:
        return 0.0 if change == 0 else float(np.sign(change) * np.inf)
    return float(change / sd)


def _verdict(detected: float, rewarded: float) -> str:
    if np.isfinite(detected):
        return f"detects from s = {detected:g}"
    if np.isfinite(rewarded):
        return f"rewards it from s = {rewarded:g}"
    return "blind"


def write_outputs(rows: pd.DataFrame, out_dir: Path, config: RunConfig) -> list[Path]:
    """``audit.csv``, the sensitivity table (csv, md), the heatmap and ``index.html``."""
    table = sensitivity(rows)
    write_table(out_dir / "audit.csv", rows)
    write_table(out_dir / "sensitivity.csv", table)
    with atomic_path(out_dir / "sensitivity.md") as tmp:
        tmp.write_text(sensitivity_markdown(table) + "\n")
    heatmap = _heatmap(table, out_dir / "heatmap.png")
    page = _page(table, rows, config, heatmap)
    with atomic_path(out_dir / "index.html") as tmp:
        tmp.write_text(page)
    write_json_atomic(out_dir / "corruptions.json",
                      {c.name: c.at_one for c in CORRUPTIONS} | {"severities": list(SEVERITIES)})
    return [out_dir / name for name in ("audit.csv", "sensitivity.csv", "sensitivity.md",
                                        "heatmap.png", "index.html")]


def sensitivity_markdown(table: pd.DataFrame) -> str:
    """The verdicts as a metric x corruption table (cells: the verdict, shortened)."""
    short = table.assign(cell=table["verdict"].str.replace("detects from s = ", "✓ s=")
                         .str.replace("rewards it from s = ", "✗ rewards s=")
                         .str.replace("blind", "–"))
    wide = short.pivot(index="metric", columns="corruption", values="cell")
    return wide[[c.name for c in CORRUPTIONS if c.name in wide]].to_markdown()


def _heatmap(table: pd.DataFrame, path: Path) -> str:
    """Effects at s = 1 (clipped to +-10 sd), metrics by corruption, with the verdicts."""
    column = f"effect@{max(SEVERITIES):g}"
    wide = table.pivot(index="metric", columns="corruption", values=column)
    wide = wide[[c.name for c in CORRUPTIONS if c.name in wide]]
    values = wide.to_numpy(dtype=float).clip(-10, 10)
    figure, axis = plt.subplots(figsize=(1.1 * wide.shape[1] + 4, 0.28 * len(wide) + 1.5))
    image = axis.imshow(np.nan_to_num(values), cmap="RdBu_r", vmin=-10, vmax=10, aspect="auto")
    axis.set_xticks(range(wide.shape[1]), wide.columns, rotation=40, ha="right")
    axis.set_yticks(range(len(wide)), wide.index, fontsize=7)
    for (i, j), value in np.ndenumerate(values):
        if abs(value) > DETECTION_SD:
            axis.text(j, i, "+" if value > 0 else "-", ha="center", va="center", fontsize=7)
    figure.colorbar(image, label="effect at s = 1 [oracle sd], + worse, - better (clipped)")
    axis.set_title("which metric detects which failure (+: detected, -: rewarded)")
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=90, bbox_inches="tight",
                       metadata={"Software": None})
    plt.close(figure)
    return path.name


def _page(table: pd.DataFrame, rows: pd.DataFrame, config: RunConfig, heatmap: str) -> str:
    seeds = rows["seed"].nunique()
    definitions = "".join(f"<li><b>{html.escape(c.name)}</b>: at s = 1, "
                          f"{html.escape(c.at_one)}</li>" for c in CORRUPTIONS)
    blind = table[table["verdict"] == "blind"].groupby("corruption")["metric"].apply(list)
    rewards = table[table["verdict"].str.startswith("rewards")]
    notes = "".join(f"<li>{html.escape(r.metric)} rewards {html.escape(r.corruption)} "
                    f"(from s = {r.rewarded_at:g})</li>" for r in rewards.itertuples())
    wide = sensitivity_markdown(table)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>skull-bench audit</title>"
        "<style>body{font-family:sans-serif;margin:2em;max-width:1300px}"
        "pre{font-size:11px;overflow-x:auto}img{max-width:100%}</style></head><body>"
        f"<h1>metric audit: {html.escape(config.dataset.name)} at "
        f"{config.dataset.resolution}^3, {config.sampling.n_samples} samples, {seeds} seeds"
        f"</h1><p>Each corruption of the oracle at severities {', '.join(map(str, SEVERITIES))}"
        f"; an effect is the change of the seed mean from the oracle's in units of the "
        f"oracle's seed-to-seed sd, positive when worse by the metric's direction. A metric "
        f"detects a corruption from the first severity whose effect exceeds "
        f"{DETECTION_SD:g}, and rewards it when the effect is below -{DETECTION_SD:g}.</p>"
        f"<h2>corruptions</h2><ul>{definitions}</ul>"
        f'<h2>effects at s = 1</h2><img src="{heatmap}" alt="audit heatmap">'
        f"<h2>verdicts (✓ detected from, ✗ rewarded from, – blind)</h2>"
        f"<pre>{html.escape(wide)}</pre>"
        f"<h2>blind spots</h2><ul>{notes}</ul>"
        + "".join(f"<p>Blind to {html.escape(corruption)}: "
                  f"{html.escape(', '.join(metrics))}.</p>"
                  for corruption, metrics in blind.items())
        + "</body></html>\n")
