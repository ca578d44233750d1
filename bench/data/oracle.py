"""Oracle subjects: real skulls from the dataset's own source that no split holds.

They are the ground truth of the reference rows (``oracle``, ``oracle-rep``)
and of the metric audit: what a perfect generator would return.

- A synthskull dataset: fresh subjects of its own generator configuration
  (seed, resolution, mandible) at subject indices ``2^40 + 2^20 seed + i``,
  far beyond any dataset's 0..N-1, so that oracle subject i of a
  seed depends only on (seed, i) and is never a training or test skull. The
  audit may pass another :class:`~bench.data.synthskull.SynthskullPrior`:
  the same subjects with corrupted parameters.
- An imported dataset has no generator: the oracle draws the held-out
  validation skulls (a split of their own, never trained on nor used as the
  reference), drawing ``i`` uniformly with a generator seeded by (seed, i).

Sets are cached under ``$SKULLBENCH_CACHE/oracle`` by a hash of everything
that determines them, so they are generated once per configuration.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from bench.core.errors import BenchError
from bench.core.volumes import load_volumes, save_volumes
from bench.data.cache import cache_root
from bench.data.dataset import SkullDataset
from bench.data.synthskull import SynthskullPrior, generate_subjects

ORACLE_OFFSET = 2 ** 40
SEED_STRIDE = 2 ** 20
IMPORTED_SPLIT = "val"
_DRAW_STREAM = 0x0_7AC1E


def is_synthetic(dataset: SkullDataset) -> bool:
    """Whether the dataset comes from the synthskull generator (and has a true prior)."""
    return dataset.manifest.get("source", {}).get("generator") == "synthskull"


def oracle_indices(seed: int, n: int) -> np.ndarray:
    """Subject indices of the oracle's draws 0..n-1 for ``seed`` (synthskull)."""
    if seed < 0 or not 0 <= n <= SEED_STRIDE:
        raise BenchError(f"oracle: seed must be 0 or more and n at most {SEED_STRIDE}, got "
                         f"seed {seed}, n {n}")
    return ORACLE_OFFSET + seed * SEED_STRIDE + np.arange(n)


def oracle_subjects(dataset: SkullDataset, n: int, seed: int,
                    prior: SynthskullPrior | None = None, workers: int = 1,
                    root: Path | None = None) -> np.ndarray:
    """``n`` oracle skulls of ``dataset`` for ``seed``: bool (n, R, R, R), cached.

    Args:
        dataset: the run's dataset (synthskull or imported).
        n: number of skulls.
        seed: the cell's seed; skull i depends only on (seed, i).
        prior: synthskull's parameter distribution (None: the documented one);
            imported datasets have none.
        workers: processes for generating synthskull subjects.
        root: cache root (default :func:`bench.data.cache.cache_root`).
    """
    if not is_synthetic(dataset):
        if prior is not None:
            raise BenchError(f"dataset {dataset.name!r} is imported: it has no generator "
                             f"whose prior could be changed")
        return _held_out(dataset, n, seed)
    prior = prior or SynthskullPrior()
    path = _cache_path(dataset, n, seed, prior, root)
    if path.is_file():
        return load_volumes(path)[0]
    source = dataset.manifest["source"]
    subjects = generate_subjects(int(source["seed"]), oracle_indices(seed, n).tolist(),
                                 dataset.resolution, bool(source["mandible"]), prior,
                                 workers=workers)
    volumes = np.stack([subject.volume for subject in subjects])
    save_volumes(path, volumes)
    return volumes


def _held_out(dataset: SkullDataset, n: int, seed: int) -> np.ndarray:
    held_out = dataset.subset(IMPORTED_SPLIT)
    if len(held_out) == 0:
        raise BenchError(f"dataset {dataset.name!r} has no {IMPORTED_SPLIT!r} split, which "
                         f"the oracle draws from on imported data; import it again with a "
                         f"validation split")
    picks = [int(np.random.default_rng([_DRAW_STREAM, seed, i]).integers(len(held_out)))
             for i in range(n)]
    return held_out.volumes[picks]


def _cache_path(dataset: SkullDataset, n: int, seed: int, prior: SynthskullPrior,
                root: Path | None) -> Path:
    key = json.dumps({"source": dataset.manifest["source"], "resolution": dataset.resolution,
                      "prior": dataclasses.asdict(prior), "seed": seed, "n": n},
                     sort_keys=True)
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return (root or cache_root()) / "oracle" / f"oracle-{digest}.npz"
