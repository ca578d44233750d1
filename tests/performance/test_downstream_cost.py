"""Cost of the downstream stage for one cell (run with `make bench`; skipped in plain test runs).

Target from the issue: both tasks for 2 methods x 5 seeds on the quick preset
add at most 4 minutes on 2 CPU cores, i.e. about 20 s per (method, seed) cell
(the `synthetic` and `real+synthetic` rows) plus the reference rows once per
seed. Set-up here: 64^3 synthskull, 100 real training skulls, 100 "synthetic"
skulls (synthskull subjects of another seed standing in for a method's
samples) and the default 30 test skulls.
"""

import numpy as np
import pytest

from bench.data.synthskull import make_dataset
from downstream.protocol import cell_rows, real_rows


@pytest.fixture(scope="module")
def cell_data():
    real = make_dataset(130, 64, seed=0, workers=2)
    synthetic = make_dataset(100, 64, seed=1, workers=2).volumes
    return real.volumes[:100], synthetic, real.select(np.arange(100, 130))


def test_one_cell_at_64(benchmark, cell_data):
    if benchmark.disabled:
        pytest.skip("a 20-second benchmark: run with --benchmark-enable (make bench)")
    real, synthetic, test = cell_data
    seeds = iter(range(100))
    rows = benchmark.pedantic(lambda: cell_rows(synthetic, real, test, next(seeds)),
                              rounds=2, iterations=1)
    assert len(rows) == 22
    values = {(name, value.name): value.value for name, value in rows}
    benchmark.extra_info["synthetic"] = {k[1]: round(v, 3) for k, v in values.items()
                                         if k[0] == "synthetic"}
    assert values[("synthetic", "completion-dice")] > 0.5


def test_reference_rows_of_one_seed_at_64(benchmark, cell_data):
    if benchmark.disabled:
        pytest.skip("a 10-second benchmark: run with --benchmark-enable (make bench)")
    real, _, test = cell_data
    seeds = iter(range(100))
    rows = benchmark.pedantic(lambda: real_rows(real, test, next(seeds)), rounds=2,
                              iterations=1)
    assert len(rows) == 11
