"""``import_folder``: a folder of scans -> a cached :class:`SkullDataset`."""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.data.cache import dataset_folder
from bench.data.dataset import SkullDataset, assign_split
from bench.data.grid import FIELD_OF_VIEW_MM, MAX_RESOLUTION, MIN_RESOLUTION
from bench.data.importing.readers import EXTENSIONS, READERS, BadFile, Options, apply_affine
from bench.data.importing.sidefiles import file_reference, read_labels, read_landmarks
from bench.data.importing.standardise import FRANKFORT_LANDMARKS, describe_steps, standardise
from bench.data.sources import SYNTHSKULL
from bench.core.errors import BenchError
from bench.core.io import sha256_file

ON_ERROR = ("fail", "skip")
ALIGNMENTS = ("none", "principal", "landmarks")


@dataclass
class _Subject:
    subject_id: str
    volume: np.ndarray
    landmarks: dict[str, np.ndarray]
    record: dict[str, Any]


@dataclass
class ImportResult:
    """What :func:`import_folder` did.

    Attributes:
        dataset: the imported dataset, as saved.
        folder: where it was saved.
        skipped: (file name, reason) of every file left out (``on_error="skip"``).
    """

    dataset: SkullDataset
    folder: Path
    skipped: list[tuple[str, str]]

    def summary(self) -> str:
        """A few lines for people: what was imported, where, and what was skipped."""
        data = self.dataset
        counts = ", ".join(f"{s} {int(np.sum(data.split == s))}" for s in ("train", "val", "test"))
        lines = [f"imported {len(data)} subjects into {self.folder}",
                 f"grid {data.resolution}^3 of {data.voxel_size_mm:g} mm voxels; split {counts}"]
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} files:")
            lines += [f"  {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


def import_folder(path: str | os.PathLike, *, file_format: str, resolution: int, name: str,
                  on_error: str = "fail", threshold_hu: float = 300.0,
                  min_component_fraction: float = 0.01, align: str = "none",
                  landmarks_file: str | os.PathLike | None = None,
                  labels_file: str | os.PathLike | None = None, split_seed: int = 0,
                  overwrite: bool = False, cache_root: Path | None = None) -> ImportResult:
    """Import every scan of one format in a folder and cache it as dataset ``name``.

    Args:
        path: folder of scans, or a single scan.
        file_format: one of ``EXTENSIONS`` (nrrd, nifti, stl, ply, obj, npy).
        resolution: grid size R (16 to 256); voxels are FIELD_OF_VIEW_MM / R mm.
        name: dataset name; the folder is ``dataset_folder(name, cache_root)``.
        on_error: ``"fail"`` writes nothing if any file is bad; ``"skip"``
            imports the others and lists the bad ones. Either way every bad file
            is named with its reason, and a folder with no good file is an error.
        threshold_hu: bone threshold for CT intensities, Hounsfield units.
        min_component_fraction: components with fewer voxels than this share of
            the bone are dropped, in [0, 1).
        align: ``"none"`` keeps the file's RAS orientation. ``"principal"``
            rotates the principal axes of the bone (occupancy-weighted voxel
            centres) onto the grid: largest variance -> y, middle -> z,
            smallest -> x; +y is where the third moment along the axis is
            negative, +z where it is positive, and x = y cross z keeps the
            frame right-handed (never mirrored). This suits crania; with a
            mandible the two sagittal axes have similar variance and are
            tilted, so poses can differ between subjects and the tilted skull
            may not fit the field of view. ``"landmarks"`` builds the
            Frankfort frame from ``landmarks_file``: x from porion_left to
            porion_right, y anterior in the plane of both porions and
            orbitale_left (that plane is horizontal), z up, and the
            midsagittal plane x = 0 through the nasion.
        landmarks_file: JSON ``{subject id: {landmark: [x, y, z]}}`` in mm in
            each file's frame (see the module docstring); names from
            ``LANDMARK_NAMES``. They are stored in the canonical frame, NaN
            where missing. Required for ``align="landmarks"``.
        labels_file: CSV with a header ``subject_id,label``; classes are the
            sorted label names, subjects without a row get -1.
        split_seed: seed of :func:`bench.data.dataset.assign_split`.
        overwrite: replace an existing dataset of the same name.
        cache_root: cache folder (default: :func:`bench.data.cache.cache_root`).

    Returns:
        The dataset, its folder and the skipped files.

    Raises:
        BenchError: bad arguments, an existing dataset, or bad files (one
            message naming each file and its reason).
    """
    options = _check_arguments(file_format, resolution, on_error, threshold_hu,
                               min_component_fraction, align, landmarks_file)
    if name.startswith(SYNTHSKULL):
        raise BenchError(f"dataset name {name!r} is reserved for the generated {SYNTHSKULL!r} "
                         f"datasets; choose a name that does not start with {SYNTHSKULL!r}")
    folder = dataset_folder(name, cache_root)
    if folder.exists() and not overwrite:
        raise BenchError(f"dataset {name!r} already exists at {folder}; pass overwrite=True "
                         f"(--overwrite) to replace it, or choose another name")
    path = Path(path)
    files = _list_files(path, file_format)
    landmark_table = read_landmarks(Path(landmarks_file)) if landmarks_file else {}
    label_table = read_labels(Path(labels_file)) if labels_file else None
    subjects, bad = _import_files(files, file_format, options, landmark_table)
    if bad and (on_error == "fail" or not subjects):
        raise BenchError(_bad_files_message(path, bad, len(files), can_skip=bool(subjects)))
    source = {"path": str(path.resolve()), "format": file_format,
              "landmarks_file": file_reference(landmarks_file),
              "labels_file": file_reference(labels_file)}
    manifest = {"source": source, "files": [s.record for s in subjects],
                "preprocessing": describe_steps(options, file_format),
                "skipped": [{"file": f, "reason": r} for f, r in bad]}
    dataset = _build_dataset(name, subjects, label_table, landmark_table, split_seed, manifest)
    _save_atomically(dataset, folder)
    return ImportResult(dataset=dataset, folder=folder, skipped=bad)


def _check_arguments(file_format: str, resolution: int, on_error: str, threshold_hu: float,
                     fraction: float, align: str, landmarks_file: object) -> Options:
    if file_format not in EXTENSIONS:
        raise BenchError(f"file_format must be one of {', '.join(EXTENSIONS)}; got {file_format!r}")
    if (isinstance(resolution, bool) or not isinstance(resolution, (int, np.integer))
            or not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION):
        raise BenchError(f"resolution must be an integer from {MIN_RESOLUTION} to "
                         f"{MAX_RESOLUTION}; got {resolution!r}")
    if on_error not in ON_ERROR:
        raise BenchError(f"on_error must be 'fail' or 'skip'; got {on_error!r}")
    if not _is_real(threshold_hu) or not math.isfinite(threshold_hu):
        raise BenchError(f"threshold_hu must be a finite number (HU); got {threshold_hu!r}")
    if not _is_real(fraction) or not 0 <= fraction < 1:
        raise BenchError(f"min_component_fraction must be in [0, 1); got {fraction!r}")
    if align not in ALIGNMENTS:
        raise BenchError(f"align must be one of {', '.join(ALIGNMENTS)}; got {align!r}")
    if align == "landmarks" and not landmarks_file:
        raise BenchError("align='landmarks' needs landmarks_file (--landmarks): a JSON file "
                         "of subject id -> {landmark: [x, y, z] mm}")
    return Options(int(resolution), float(threshold_hu), float(fraction), align)


def _is_real(value: object) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def _subject_id(file: Path, file_format: str) -> str | None:
    """The file name less the format's extension; None if it has another extension."""
    lower = file.name.lower()
    for extension in EXTENSIONS[file_format]:
        if lower.endswith(extension) and len(lower) > len(extension):
            return file.name[:-len(extension)]
    return None


def _listed_subject_id(file: Path, file_format: str) -> str:
    """The subject id of a file that :func:`_list_files` kept."""
    subject_id = _subject_id(file, file_format)
    if subject_id is None:
        raise BenchError(f"{file}: not a {file_format} file "
                         f"({', '.join(EXTENSIONS[file_format])})")
    return subject_id


def _list_files(path: Path, file_format: str) -> list[Path]:
    """The scans to import, sorted by name."""
    if not path.exists():
        raise BenchError(f"{path}: no such file or folder; give the folder of scans to import")
    candidates = [path] if path.is_file() else sorted(path.iterdir())
    files = [p for p in candidates if p.is_file() and not p.name.startswith(".")
             and _subject_id(p, file_format) is not None]
    if not files:
        raise BenchError(f"{path}: no {file_format} files ({', '.join(EXTENSIONS[file_format])}) "
                         f"found; check the path and the format (--format)")
    return files


def _import_files(files: list[Path], file_format: str, options: Options,
                  landmark_table: dict[str, dict[str, np.ndarray]]
                  ) -> tuple[list[_Subject], list[tuple[str, str]]]:
    """Import the files one at a time; returns the subjects and (file, reason) of the bad."""
    shared = _shared_ids(files, file_format)
    subjects, bad = [], []
    for file in files:
        try:
            if file in shared:
                raise BadFile(shared[file])
            subjects.append(_import_file(file, file_format, options, landmark_table))
        except BadFile as error:
            bad.append((file.name, str(error)))
    return subjects, bad


def _shared_ids(files: list[Path], file_format: str) -> dict[Path, str]:
    """Files whose subject id another file also has, with the reason."""
    groups: dict[str, list[Path]] = defaultdict(list)
    for file in files:
        groups[_listed_subject_id(file, file_format)].append(file)
    return {file: f"duplicate subject id {subject!r} (also "
                  f"{', '.join(o.name for o in group if o != file)}); rename or remove one"
            for subject, group in groups.items() if len(group) > 1 for file in group}


def _import_file(file: Path, file_format: str, options: Options,
                 landmark_table: dict[str, dict[str, np.ndarray]]) -> _Subject:
    subject_id = _listed_subject_id(file, file_format)
    points = landmark_table.get(subject_id, {})
    missing = [k for k in FRANKFORT_LANDMARKS if k not in points]
    if options.align == "landmarks" and missing:
        raise BadFile(f"align='landmarks' needs {', '.join(missing)} for subject "
                      f"{subject_id!r} in the landmarks file")
    scan = READERS[file_format](file, options)
    points_ras = {k: apply_affine(scan.frame, p) for k, p in points.items()}
    volume, to_canonical, record = standardise(scan, options, points_ras)
    record = {"file": file.name, "subject_id": subject_id, "sha256": sha256_file(file),
              **scan.info, **record,
              "to_canonical": (to_canonical @ scan.frame).round(6).tolist()}
    landmarks = {k: apply_affine(to_canonical, p) for k, p in points_ras.items()}
    return _Subject(subject_id, volume, landmarks, record)


def _bad_files_message(path: Path, bad: list[tuple[str, str]], n_files: int,
                       can_skip: bool) -> str:
    lines = [f"{len(bad)} of {n_files} files in {path} cannot be imported:"]
    lines += [f"  {name}: {reason}" for name, reason in bad]
    lines.append("Fix or remove them" + (", or pass on_error='skip' (--on-error skip) to "
                                         "import the others" if can_skip else "") + ".")
    return "\n".join(lines)


def _build_dataset(name: str, subjects: list[_Subject], label_table: dict[str, str] | None,
                   landmark_table: dict[str, dict[str, np.ndarray]], split_seed: int,
                   manifest: dict[str, Any]) -> SkullDataset:
    ids = [s.subject_id for s in subjects]
    labels: np.ndarray | None = None
    class_names: tuple[str, ...] = ()
    if label_table is not None:
        class_names = tuple(sorted(set(label_table.values())))
        labels = np.array([class_names.index(label_table[i]) if i in label_table else -1
                           for i in ids], dtype=np.int64)
    names = sorted({k for points in landmark_table.values() for k in points})
    landmarks = {k: np.array([s.landmarks.get(k, np.full(3, np.nan)) for s in subjects])
                 for k in names}
    return SkullDataset(name=name, volumes=np.stack([s.volume for s in subjects]),
                        subject_ids=ids, split=assign_split(ids, labels, seed=split_seed),
                        labels=labels, class_names=class_names, landmarks=landmarks,
                        field_of_view_mm=FIELD_OF_VIEW_MM, manifest=manifest)


def _save_atomically(dataset: SkullDataset, folder: Path) -> None:
    """Save into a hidden sibling folder, then rename it into place.

    An existing dataset is renamed aside only once the new one is complete and
    removed after the swap, so an interrupted import leaves the old dataset (or
    none) at ``folder``, never a partial one.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".tmp", dir=folder.parent))
    try:
        dataset.save(staging)
        if not folder.exists():
            os.rename(staging, folder)
            return
        retired = staging.with_name(staging.name + ".old")
        os.rename(folder, retired)
        try:
            os.rename(staging, folder)
        except BaseException:
            os.rename(retired, folder)
            raise
        shutil.rmtree(retired)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
