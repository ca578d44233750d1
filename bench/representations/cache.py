"""Fitted representations cached beside the datasets, so that a representation is fitted
once per (dataset, representation configuration, code) and every cell and later run
shares it.

Layout, under the cache root of :mod:`bench.data.cache`::

    representations/NAME-KEY/
        checkpoints/         training checkpoints of a representation that trains (resume)
        fit.json             the fit report: wall time, losses, parameters, and the
                             test-split reconstruction Dice (mean, minimum)
        representation.pt    the fitted representation, written last: its presence means done

KEY hashes the name, the hyperparameters, the dataset's content hash and the
source of the code a fit runs on one process (``bench/representations``, the
training loop, the thread budget, the volume checks: :data:`CODE`), so a change
of any of them fits anew instead of reusing a representation that the current
code would not produce. Writes are atomic.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import bench
from bench.core.io import source_fingerprint, write_json_atomic
from bench.data.cache import cache_root
from bench.data.dataset import SkullDataset
from bench.representations.base import Representation, get_representation, reconstruction_dice

FIT_FILE = "fit.json"
REPRESENTATION_FILE = "representation.pt"
CODE = ("bench/representations", "bench/core/training.py", "bench/core/threads.py",
        "bench/core/volumes.py")


@dataclass(frozen=True)
class CachedRepresentation:
    """A fitted representation, where it is cached, and its fit report."""

    representation: Representation
    path: Path
    key: str
    report: dict[str, Any]


def cache_key(name: str, params: dict[str, Any], dataset_hash: str) -> str:
    """What determines a fitted representation: name, every parameter (defaults resolved),
    data, code (12 hex)."""
    root = Path(bench.__file__).resolve().parent.parent
    text = json.dumps([name, params, dataset_hash, source_fingerprint(root, CODE)],
                      sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def representation_folder(name: str, key: str, root: Path | None = None) -> Path:
    """The cache folder of one fitted representation."""
    return (root or cache_root()) / "representations" / f"{name}-{key}"


def cached_representation(name: str, params: dict[str, Any], dataset: SkullDataset, *,
                          progress: bool = False, device: torch.device | str = "cpu",
                          root: Path | None = None) -> CachedRepresentation:
    """The representation ``name`` with ``params`` fitted on the dataset's training split:
    loaded from the cache, or fitted (resuming an interrupted fit), reported and cached.

    Raises:
        BenchError: an unknown name or parameter, a failed fit (a non-finite loss),
            or an unreadable cached file.
    """
    representation = get_representation(name, **params)
    key = cache_key(name, representation.get_params(), dataset.manifest.get("data_sha256", ""))
    folder = representation_folder(name, key, root)
    path = folder / REPRESENTATION_FILE
    if path.is_file():
        report = json.loads((folder / FIT_FILE).read_text())
        return CachedRepresentation(Representation.load(path), path, key, report)
    print(f"bench: fitting representation {name!r} on the {len(dataset.subset('train'))} "
          f"training skulls of {dataset.name!r}, once; cached in {folder}", file=sys.stderr)
    start = time.perf_counter()
    representation.fit(dataset.subset("train").volumes, checkpoint_dir=folder / "checkpoints",
                       progress=progress, device=device)
    report = fit_report(representation, dataset, time.perf_counter() - start)
    write_json_atomic(folder / FIT_FILE, report)
    representation.save(path)
    return CachedRepresentation(representation, path, key, report)


def fit_report(representation: Representation, dataset: SkullDataset,
               seconds: float) -> dict[str, Any]:
    """The fit's own report (for a network: steps, losses, parameters), its wall time in
    this call, and the test-split reconstruction Dice, the floor of every method in it."""
    test = dataset.subset("test").volumes
    dice = reconstruction_dice(representation, test) if len(test) else np.array([])
    return {"representation": representation.name, "params": representation.get_params(),
            **getattr(representation, "fit_report_", {}), "wall_time_s": seconds,
            "reconstruction_dice_mean": float(dice.mean()) if len(dice) else None,
            "reconstruction_dice_min": float(dice.min()) if len(dice) else None}
