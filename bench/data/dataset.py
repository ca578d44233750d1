"""The dataset every part of the benchmark reads: binary skull volumes in one grid.

A :class:`SkullDataset` holds N binary volumes of shape (R, R, R) in the common
field of view (see :mod:`bench.data.grid`), canonical pose, with per-subject
id, split, optional class label and optional landmarks in millimetres. On disk
it is one versioned ``dataset.npz`` plus a ``manifest.json`` that records the
sources, their hashes, the preprocessing, the split and the hash of the npz.
The manifest is written last, so a folder without one is an unfinished write.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.grid import FIELD_OF_VIEW_MM
from bench.core.errors import BenchError
from bench.core.io import atomic_path, sha256_file, write_json_atomic

FORMAT_VERSION = 1
SPLITS = ("train", "val", "test")
DATA_FILE = "dataset.npz"
MANIFEST_FILE = "manifest.json"


@dataclass
class SkullDataset:
    """Binary skull volumes with their subject metadata.

    Attributes:
        name: dataset name, e.g. ``"synthskull"`` or the name given at import.
        volumes: bool array (N, R, R, R), axes (x, y, z) as in :mod:`bench.data.grid`.
        subject_ids: N unique subject identifiers.
        split: N entries from ``SPLITS``.
        labels: int array (N,) indexing ``class_names``; -1 where unknown. None
            when the dataset has no classes.
        class_names: names of the classes that ``labels`` index.
        landmarks: landmark name -> float array (N, 3) in mm; NaN where missing.
        field_of_view_mm: edge length of the cubic field of view.
        manifest: provenance (sources, hashes, preprocessing, parameters).
    """

    name: str
    volumes: np.ndarray
    subject_ids: list[str]
    split: np.ndarray
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    landmarks: dict[str, np.ndarray] = field(default_factory=dict)
    field_of_view_mm: float = FIELD_OF_VIEW_MM
    manifest: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.volumes = np.asarray(self.volumes, dtype=bool)
        self.split = np.asarray(self.split, dtype="<U5")
        n = len(self.volumes)
        if self.volumes.ndim != 4 or len(set(self.volumes.shape[1:])) != 1:
            raise BenchError(f"dataset {self.name!r}: volumes must have shape (N, R, R, R), "
                             f"got {self.volumes.shape}")
        if len(self.subject_ids) != n or len(self.split) != n:
            raise BenchError(f"dataset {self.name!r}: {n} volumes but {len(self.subject_ids)} "
                             f"subject ids and {len(self.split)} split entries")
        if len(set(self.subject_ids)) != n:
            raise BenchError(f"dataset {self.name!r}: subject ids are not unique")
        unknown = set(self.split.tolist()) - set(SPLITS)
        if unknown:
            raise BenchError(f"dataset {self.name!r}: unknown split names {sorted(unknown)}; "
                             f"allowed: {SPLITS}")
        if self.labels is not None:
            self.labels = np.asarray(self.labels, dtype=np.int64)
        for key, points in self.landmarks.items():
            if np.shape(points) != (n, 3):
                raise BenchError(f"dataset {self.name!r}: landmark {key!r} must have shape "
                                 f"({n}, 3), got {np.shape(points)}")

    @property
    def resolution(self) -> int:
        """Grid size R."""
        return int(self.volumes.shape[1])

    @property
    def voxel_size_mm(self) -> float:
        """Edge length of one voxel in millimetres."""
        return self.field_of_view_mm / self.resolution

    def __len__(self) -> int:
        return len(self.volumes)

    def subset(self, split: str) -> "SkullDataset":
        """The subjects of one split (``"train"``, ``"val"`` or ``"test"``)."""
        if split not in SPLITS:
            raise BenchError(f"unknown split {split!r}; allowed: {SPLITS}")
        return self.select(np.flatnonzero(self.split == split))

    def select(self, indices: np.ndarray) -> "SkullDataset":
        """The subjects at ``indices``, in that order."""
        indices = np.asarray(indices, dtype=np.int64)
        return SkullDataset(
            name=self.name,
            volumes=self.volumes[indices],
            subject_ids=[self.subject_ids[i] for i in indices],
            split=self.split[indices],
            labels=None if self.labels is None else self.labels[indices],
            class_names=self.class_names,
            landmarks={k: v[indices] for k, v in self.landmarks.items()},
            field_of_view_mm=self.field_of_view_mm,
            manifest=self.manifest,
        )

    def save(self, folder: str | Path) -> Path:
        """Write ``dataset.npz`` then ``manifest.json`` into ``folder``, each atomically.

        Returns the folder; ``self.manifest`` becomes the written manifest.
        Volumes are bit-packed, so 1,000 skulls at 64^3 take about 33 MB before
        compression.
        """
        folder = Path(folder)
        arrays = {
            "format_version": np.array(FORMAT_VERSION),
            "volumes_packed": np.packbits(self.volumes.reshape(len(self), -1), axis=1),
            "shape": np.array(self.volumes.shape),
            "subject_ids": np.array(self.subject_ids, dtype=str),
            "split": self.split,
            "field_of_view_mm": np.array(self.field_of_view_mm),
        }
        if self.labels is not None:
            arrays["labels"] = self.labels
            arrays["class_names"] = np.array(self.class_names, dtype=str)
        for key, points in self.landmarks.items():
            arrays[f"landmark:{key}"] = np.asarray(points, dtype=np.float64)
        with atomic_path(folder / DATA_FILE) as tmp:
            with open(tmp, "wb") as handle:
                # Plain arrays only: load reads the file with allow_pickle=False.
                np.savez_compressed(handle, allow_pickle=False, **arrays)
        manifest = dict(self.manifest)
        manifest.update(
            name=self.name,
            format_version=FORMAT_VERSION,
            data_file=DATA_FILE,
            data_sha256=sha256_file(folder / DATA_FILE),
            n_subjects=len(self),
            resolution=self.resolution,
            field_of_view_mm=self.field_of_view_mm,
            voxel_size_mm=self.voxel_size_mm,
            class_names=list(self.class_names),
            landmark_names=sorted(self.landmarks),
            split={s: [i for i, t in zip(self.subject_ids, self.split) if t == s] for s in SPLITS},
        )
        write_json_atomic(folder / MANIFEST_FILE, manifest)
        # The written manifest (with the data hash) is what a later load sees;
        # keep this object identical to it.
        self.manifest = manifest
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> "SkullDataset":
        """Read a dataset written by :meth:`save`, checking version and hash."""
        folder = Path(folder)
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.is_file():
            raise BenchError(f"{folder}: no {MANIFEST_FILE}; this is not a finished dataset "
                             f"(an interrupted write?). Import or generate it again.")
        manifest = json.loads(manifest_path.read_text())
        data_path = folder / manifest.get("data_file", DATA_FILE)
        if not data_path.is_file() or sha256_file(data_path) != manifest.get("data_sha256"):
            raise BenchError(f"{data_path}: missing or does not match the hash in "
                             f"{manifest_path}; import or generate the dataset again.")
        with np.load(data_path, allow_pickle=False) as data:
            version = int(data["format_version"])
            if version != FORMAT_VERSION:
                raise BenchError(f"{data_path}: format version {version}, this code reads "
                                 f"{FORMAT_VERSION}; regenerate the dataset.")
            shape = tuple(int(s) for s in data["shape"])
            flat = np.unpackbits(data["volumes_packed"], axis=1, count=int(np.prod(shape[1:])))
            has_labels = "labels" in data.files
            return cls(
                name=manifest["name"],
                volumes=flat.reshape(shape).astype(bool),
                subject_ids=data["subject_ids"].tolist(),
                split=data["split"],
                labels=data["labels"] if has_labels else None,
                class_names=tuple(data["class_names"].tolist()) if has_labels else (),
                landmarks={k.split(":", 1)[1]: data[k] for k in data.files
                           if k.startswith("landmark:")},
                field_of_view_mm=float(data["field_of_view_mm"]),
                manifest=manifest,
            )


def assign_split(subject_ids: list[str], labels: np.ndarray | None = None,
                 fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
                 seed: int = 0) -> np.ndarray:
    """Deterministic train/val/test split by subject, stratified by class.

    Each subject gets a key from a hash of (seed, subject id), so its split does
    not depend on the order of the files. Within each class the subjects are
    ordered by key and cut at the cumulative fractions (rounded), so every class
    with at least a handful of subjects appears in every split.

    Args:
        subject_ids: N unique subject ids.
        labels: (N,) class labels, or None to treat all subjects as one class.
        fractions: train, val and test shares; they must sum to 1.
        seed: changes the assignment while keeping it deterministic.

    Returns:
        (N,) array of split names.
    """
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1.0) > 1e-6:
        raise BenchError(f"split fractions must be three non-negative numbers summing to 1, "
                         f"got {fractions}")
    n = len(subject_ids)
    labels = np.zeros(n, dtype=np.int64) if labels is None else np.asarray(labels)
    keys = np.array([_hash_key(seed, s) for s in subject_ids], dtype=np.uint64)
    split = np.empty(n, dtype="<U5")
    bounds = np.cumsum(fractions)
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[np.argsort(keys[members], kind="stable")]
        cuts = np.round(bounds * len(members)).astype(int)
        split[members[:cuts[0]]] = "train"
        split[members[cuts[0]:cuts[1]]] = "val"
        split[members[cuts[1]:]] = "test"
    return split


def _hash_key(seed: int, subject_id: str) -> int:
    digest = hashlib.sha256(f"{seed}:{subject_id}".encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "little")
