"""The HTML report opened in headless Chromium at 1400 px: its tables and images must
render, and nothing may overflow the window sideways.

The set-up installs Debian's ``chromium`` where apt exists (scripts/
install-system-deps.sh); elsewhere the test is skipped. A copy of the page
gets a script that, once everything has loaded, writes what the browser laid
out (tables with rows and a size, their right edges, the page's scroll width,
images decoded and drawn) into the DOM, which ``--dump-dom`` prints.
"""

import json
import re
import shutil
import subprocess

import pytest

from bench.config import load_config
from bench.report import write_report
from bench.run import run_benchmark

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
WIDTH = 1400

PROBE = """
<script>
window.addEventListener("load", () => {
  const tables = [...document.querySelectorAll("table")];
  const images = [...document.querySelectorAll("img")];
  const report = {
    tables: tables.length,
    tables_drawn: tables.filter(t => t.rows.length > 1 && t.offsetHeight > 0).length,
    viewport: window.innerWidth,
    page_width: document.documentElement.scrollWidth,
    widest_table: Math.max(...tables.map(t => t.getBoundingClientRect().right)),
    images: images.length,
    images_drawn: images.filter(i => i.complete && i.naturalWidth > 0
                                     && i.getBoundingClientRect().width > 0).length,
    broken: images.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  };
  const out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify(report);
  document.body.appendChild(out);
});
</script>
"""


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("html")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SKULLBENCH_CACHE", str(folder / "cache"))
        config = load_config("ci", ["dataset.n=60", "dataset.resolution=32",
                                    "methods=[otfm]", "train.steps=30", "seeds=2",
                                    "sampling.steps=[1, 2]", "sampling.n_samples=8",
                                    "metrics.points=128", "metrics.exclude=[pointflow-emd]",
                                    "metrics.params.ms-ssim-diversity.pairs=2",
                                    "downstream.n_test=3"])
        run_benchmark(config, folder / "run", quiet=True)
    write_report(folder / "run")
    return folder / "run" / "report"


def rendered(page) -> dict:
    """What headless Chromium laid out for ``page`` (a copy carrying the probe)."""
    result = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--allow-file-access-from-files",
         f"--window-size={WIDTH},900",
         "--virtual-time-budget=20000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120)
    match = re.search(r'<pre id="render-check">(.*?)</pre>', result.stdout, re.S)
    assert match, f"no render report from Chromium; stderr: {result.stderr[-2000:]}"
    return json.loads(match.group(1).replace("&quot;", '"'))


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (needs apt)")
def test_tables_and_images_render_in_headless_chromium(report_dir):
    page = report_dir / "index.html"
    probe = report_dir / "render-check.html"
    probe.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    report = rendered(probe)
    sections = ["headline", "gap", "distribution", "volumetric", "privacy", "anatomy",
                "robustness", "downstream", "downstream-cases"]
    assert report["tables"] == len(sections) + 1  # and the closest training/sample pairs
    assert report["tables_drawn"] == report["tables"]
    assert report["viewport"] == WIDTH
    assert report["page_width"] <= WIDTH and report["widest_table"] <= WIDTH
    images = set(re.findall(r'<img src="([^"]+)"', page.read_text()))
    assert {"gallery.png", "dcr.png", "seeds.png"} <= images
    assert report["images"] == len(images) and report["broken"] == []
    assert report["images_drawn"] == report["images"]


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (needs apt)")
def test_the_probe_sees_a_broken_image_and_a_wide_table(report_dir):
    broken = report_dir / "broken-check.html"
    wide = "".join(f"<td>column {i} of a table too wide for the window</td>" for i in range(40))
    broken.write_text(f'<html><body><table><tr><td>a</td></tr><tr><td>b</td></tr></table>'
                      f'<table><tr>{wide}</tr><tr>{wide}</tr></table>'
                      f'<img src="missing.png">{PROBE}</body></html>')
    report = rendered(broken)
    assert report["tables_drawn"] == 2
    assert report["images"] == 1 and report["images_drawn"] == 0
    assert report["broken"][0].endswith("missing.png")
    assert report["page_width"] > WIDTH and report["widest_table"] > WIDTH


def test_the_page_opens_with_the_verdict_and_the_headline_table(report_dir):
    page = (report_dir / "index.html").read_text()
    verdict = page.index('<p class="verdict">')
    assert verdict < page.index("<h2>headline</h2>") < page.index("<h2>distribution</h2>")
    assert "otfm is the only ranked method" in page[verdict:page.index("</p>", verdict)]
    assert "reconstruction Dice" in page and "samples closest to a training skull" in page


def test_a_second_report_draws_every_figure_byte_identically(report_dir, tmp_path):
    again = tmp_path / "again"
    write_report(report_dir.parent, again)
    figures = sorted(path.name for path in report_dir.glob("*.png"))
    assert "seeds.png" in figures
    changed = [name for name in figures
               if (report_dir / name).read_bytes() != (again / name).read_bytes()]
    assert changed == []
