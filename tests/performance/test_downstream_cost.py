"""Cost of the downstream stage for one cell (run with `make bench`; skipped in plain test runs).

Budget from the issue: about 30 s of cell time per (method, seed) cell for both
tasks, one thread. Set-up here, the quick preset's: 64^3 synthskull, 100
"samples" (synthskull subjects of another seed standing in for a method's),
all 100 test skulls with 2 defects each, the aligner at 300 steps. A
method cell trains both tasks twice (on the samples, and on 20 real skulls plus
the samples); a reference cell once.
"""

import numpy as np
import pytest

from bench.data.synthskull import make_dataset
from downstream.protocol import DownstreamConfig, sample_rows

QUICK = DownstreamConfig(params={"alignment": {"steps": 300}})


@pytest.fixture(scope="module")
def cell_data():
    real = make_dataset(200, 64, seed=0, workers=2)
    samples = make_dataset(100, 64, seed=1, workers=2).volumes
    return real.volumes[:100], samples, real.select(np.arange(100, 200))


@pytest.mark.parametrize("augmented", [False, True], ids=["reference cell", "method cell"])
def test_one_cell_at_64(benchmark, cell_data, augmented):
    if benchmark.disabled:
        pytest.skip("a 20-second benchmark: run with --benchmark-enable (make bench)")
    real, samples, test = cell_data
    seeds = iter(range(100))
    scored = benchmark.pedantic(lambda: sample_rows(samples, real, test, next(seeds), QUICK,
                                                    augmented), rounds=2, iterations=1)
    values = {(name, value.name): value.value for name, value in scored.rows}
    benchmark.extra_info["synthetic"] = {k[1]: round(v, 3) for k, v in values.items()
                                         if k[0] == "synthetic" and "-" not in k[1][8:]}
    assert values[("synthetic", "implant-dice")] > 0.5
