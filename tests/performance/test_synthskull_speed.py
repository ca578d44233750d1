"""Benchmarks of the synthskull generator (run with `make bench`; skipped in plain test runs).

Targets from the issue: at least 20 volumes per second at 64^3 on one core,
and 1,000 subjects at 64^3 generated and cached in well under a minute.
"""

import pytest

from bench.data.sources import load_dataset
from bench.data.synthskull import generate_subject
from bench.data.synthskull.template import load_template


def test_generate_one_subject_at_64(benchmark):
    load_template()
    indices = iter(range(10**6))
    subject = benchmark(lambda: generate_subject(0, next(indices), 64))
    benchmark.extra_info["volumes_per_second"] = 1.0 / benchmark.stats.stats.mean \
        if benchmark.stats else None
    assert subject.volume.shape == (64, 64, 64)


def test_generate_and_cache_1000_subjects_at_64(benchmark, tmp_path):
    if benchmark.disabled:
        pytest.skip("a 40-second benchmark: run with --benchmark-enable (make bench)")
    counter = iter(range(100))
    dataset = benchmark.pedantic(
        lambda: load_dataset("synthskull", resolution=64, n=1000, seed=next(counter),
                             root=tmp_path),
        rounds=1, iterations=1)
    assert len(dataset) == 1000
    assert any((tmp_path / "datasets").iterdir())
