"""Datasets by name: the embedded ``synthskull`` generator or an imported, cached dataset."""

from __future__ import annotations

import os
from pathlib import Path

from bench.data.cache import cache_root, dataset_folder
from bench.data.dataset import MANIFEST_FILE, SkullDataset
from bench.data.synthskull.generator import GENERATOR_VERSION, make_dataset
from bench.core.errors import BenchError

SYNTHSKULL = "synthskull"


def synthskull_name(resolution: int, n: int, seed: int, mandible: bool) -> str:
    """Cache name of one synthskull configuration (changes with the generator version)."""
    part = "" if mandible else "-cranium"
    return f"{SYNTHSKULL}-v{GENERATOR_VERSION}-r{resolution}-n{n}-s{seed}{part}"


def load_dataset(name: str, resolution: int = 64, n: int = 1000, seed: int = 0,
                 mandible: bool = True, root: Path | None = None,
                 workers: int | None = None) -> SkullDataset:
    """Load a dataset by name, generating and caching synthskull on first use.

    Args:
        name: ``"synthskull"`` or the name given to ``bench data import``.
        resolution, n, seed, mandible: the synthskull configuration; ignored
            for imported datasets, which keep the grid they were imported at.
        root: cache root (default :func:`bench.data.cache.cache_root`).
        workers: processes for generation (default: all cores).
    """
    if name == SYNTHSKULL:
        folder = dataset_folder(synthskull_name(resolution, n, seed, mandible), root)
        if (folder / MANIFEST_FILE).is_file():
            return SkullDataset.load(folder)
        dataset = make_dataset(n, resolution, seed=seed, mandible=mandible,
                               workers=workers or os.cpu_count() or 1)
        dataset.save(folder)
        return dataset
    folder = dataset_folder(name, root)
    if not (folder / MANIFEST_FILE).is_file():
        known = sorted(p.name for p in (folder.parent.iterdir() if folder.parent.is_dir() else [])
                       if (p / MANIFEST_FILE).is_file() and not p.name.startswith(SYNTHSKULL))
        raise BenchError(f"unknown dataset {name!r}: it is not {SYNTHSKULL!r} and no imported "
                         f"dataset is cached at {folder} (cache root {root or cache_root()}). "
                         f"Imported datasets: {known or 'none'}. Import one with "
                         f"`bench data import PATH --format nrrd --resolution 64 --name {name}`.")
    return SkullDataset.load(folder)
