"""The README's plugin metric, run as a user runs it: through --plugin and an entry point."""

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from bench.conformance import check_metric
from metrics.base import METRICS

REPO = Path(__file__).resolve().parents[2]
TINY = ["dataset.n=60", "dataset.resolution=32", "sampling.steps=[2]", "sampling.n_samples=8",
        "metrics.points=128", "metrics.exclude=[pointflow-emd]", "downstream.enabled=false",
        "train.steps=50"]


def readme_block(name: str) -> str:
    """The README's python block that starts with the comment ``# name``."""
    blocks = re.findall(r"```python\n(.*?)```", (REPO / "README.md").read_text(), re.S)
    return next(block for block in blocks if block.startswith(f"# {name}\n"))


@pytest.fixture
def plugin(tmp_path):
    """my_metrics.py, as the README gives it, in a folder of its own."""
    folder = tmp_path / "plugin"
    folder.mkdir()
    (folder / "my_metrics.py").write_text(readme_block("my_metrics.py"))
    return folder


def bench(args: list[str], path: Path, tmp_path: Path) -> str:
    env = dict(os.environ, PYTHONPATH=str(path), SKULLBENCH_CACHE=str(tmp_path / "cache"))
    done = subprocess.run([sys.executable, "-m", "bench.cli", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_readme_metric_keeps_the_contract(plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin))
    saved = dict(METRICS.classes)
    try:
        module = importlib.import_module("my_metrics")
        check_metric(module.BoneVolumeGap())
    finally:
        METRICS.classes.clear()
        METRICS.classes.update(saved)
        sys.modules.pop("my_metrics", None)


def test_the_readme_metric_through_plugin_is_listed_and_reported(plugin, tmp_path):
    listing = bench(["--plugin", "my_metrics", "list"], plugin, tmp_path)
    assert "bone-volume-gap" in listing and "quantile=0.5: float" in listing
    run = tmp_path / "run"
    bench(["--plugin", "my_metrics", "run", "--config", "ci", "--methods", "otfm,gaussian",
           "--seeds", "1", "--out", str(run), "--quiet"], plugin, tmp_path)
    rows = pd.read_csv(run / "results.csv")
    gap = rows[rows["metric"] == "bone-volume-gap"]
    assert set(gap["method"]) == {"otfm", "gaussian", "oracle", "oracle-rep"}
    assert (gap["group"] == "anatomy").all()
    assert (gap["unit"] == "mL").all() and not gap["higher_is_better"].any()
    for table in ("anatomy.md", "headline.md", "anatomy.csv"):
        assert "bone-volume-gap" in (run / "report" / table).read_text(), table
    page = (run / "report" / "index.html").read_text()
    verdict = page[page.index('<p class="verdict">'):]
    assert "On bone-volume-gap, otfm" in verdict[:verdict.index("</p>")]


def test_the_readme_metric_through_an_entry_point(plugin, tmp_path):
    site = tmp_path / "site"
    info = site / "my_metrics-0.1.dist-info"
    info.mkdir(parents=True)
    (site / "my_metrics.py").write_text((plugin / "my_metrics.py").read_text())
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-metrics\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[bench.metrics]\nbone-volume-gap = my_metrics:BoneVolumeGap\n")
    assert "bone-volume-gap" in bench(["list"], site, tmp_path)
    run = tmp_path / "run"
    overrides = [item for override in TINY for item in ("--set", override)]
    bench(["run", "--config", "ci", "--methods", "gaussian", "--seeds", "1", "--out", str(run),
           "--quiet", *overrides], site, tmp_path)
    rows = pd.read_csv(run / "results.csv")
    assert set(rows[rows["metric"] == "bone-volume-gap"]["method"]) == {
        "gaussian", "oracle", "oracle-rep"}
