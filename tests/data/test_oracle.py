"""Oracle subjects: fresh, deterministic, cached, disjoint from the dataset; the prior."""

import dataclasses

import numpy as np
import pytest

from bench.core.errors import BenchError
from bench.data.dataset import SkullDataset
from bench.data.oracle import oracle_indices, oracle_subjects
from bench.data.synthskull import (CLASS_NAMES, SynthskullPrior, generate_subject,
                                   make_dataset)
from bench.data.synthskull.anatomy import CONTINUOUS, sample_parameters


@pytest.fixture(scope="module")
def dataset():
    return make_dataset(20, 32, seed=3)


def test_oracle_subjects_are_fresh_deterministic_and_cached(dataset, tmp_path):
    first = oracle_subjects(dataset, 5, seed=1, root=tmp_path)
    assert first.shape == (5, 32, 32, 32) and first.dtype == bool
    assert [p.suffix for p in (tmp_path / "oracle").iterdir()] == [".npz"]
    np.testing.assert_array_equal(oracle_subjects(dataset, 5, seed=1, root=tmp_path), first)
    expected = generate_subject(3, int(oracle_indices(1, 5)[2]), 32).volume
    np.testing.assert_array_equal(first[2], expected)
    # Subject i depends on (seed, i) only; no oracle subject is a dataset subject.
    np.testing.assert_array_equal(oracle_subjects(dataset, 3, seed=1, root=tmp_path), first[:3])
    assert not np.array_equal(oracle_subjects(dataset, 5, seed=2, root=tmp_path), first)
    assert not any(np.array_equal(v, d) for v in first for d in dataset.volumes)


def test_a_changed_prior_is_cached_apart(dataset, tmp_path):
    plain = oracle_subjects(dataset, 4, 0, root=tmp_path)
    shrunk = oracle_subjects(dataset, 4, 0, SynthskullPrior(spread=0.0), root=tmp_path)
    assert len(list((tmp_path / "oracle").iterdir())) == 2
    assert not np.array_equal(plain, shrunk)


def test_an_imported_dataset_draws_its_validation_skulls(dataset):
    imported = dataclasses.replace(dataset, manifest={"source": {"importer": "folder"}})
    assert isinstance(imported, SkullDataset)
    drawn = oracle_subjects(imported, 6, seed=0)
    held_out = dataset.subset("val").volumes
    assert all(any(np.array_equal(v, h) for h in held_out) for v in drawn)
    with pytest.raises(BenchError, match="imported"):
        oracle_subjects(imported, 2, 0, SynthskullPrior(spread=0.0))


def test_the_default_prior_is_the_documented_distribution():
    for index in range(5):
        plain = sample_parameters(np.random.default_rng([0, index]))
        default = sample_parameters(np.random.default_rng([0, index]), SynthskullPrior())
        assert plain == default


def test_prior_changes_keep_the_random_draws_of_a_subject():
    rng = lambda: np.random.default_rng([4, 2])  # noqa: E731
    plain = sample_parameters(rng())
    shrunk = sample_parameters(rng(), SynthskullPrior(spread=0.0))
    doubled = sample_parameters(rng(), SynthskullPrior(spread=2.0))
    for name, (mean, _) in CONTINUOUS.items():
        assert getattr(shrunk, name) == pytest.approx(mean)
        assert getattr(doubled, name) - mean == pytest.approx(2 * (getattr(plain, name) - mean))
    assert (shrunk.side, shrunk.severity) == (plain.side, plain.severity)
    only_normal = (1.0,) + (0.0,) * (len(CLASS_NAMES) - 1)
    labels = {sample_parameters(np.random.default_rng([4, i]),
                                SynthskullPrior(class_prior=only_normal)).label
              for i in range(30)}
    assert labels == {"normocephaly"}
    with pytest.raises(ValueError, match="class_prior"):
        SynthskullPrior(class_prior=(0.5, 0.5))
