"""The optional side files of an import: landmarks (JSON) and labels (CSV)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np

from bench.data.synthskull import LANDMARK_NAMES
from bench.core.errors import BenchError
from bench.core.io import sha256_file


def read_landmarks(path: Path) -> dict[str, dict[str, np.ndarray]]:
    """Landmarks file -> {subject id: {name: (3,) mm}}; null entries count as missing."""
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise BenchError(f"landmarks file {path}: cannot read it as JSON ({error})") from error
    if not isinstance(table, dict) or not all(isinstance(v, dict) for v in table.values()):
        raise BenchError(f"landmarks file {path}: expected {{subject id: {{landmark: "
                         f"[x, y, z]}}}}")
    result: dict[str, dict[str, np.ndarray]] = {}
    for subject, points in table.items():
        result[subject] = {}
        for key, xyz in points.items():
            if key not in LANDMARK_NAMES:
                raise BenchError(f"landmarks file {path}: unknown landmark {key!r} of subject "
                                 f"{subject!r}; known: {', '.join(LANDMARK_NAMES)}")
            if xyz is not None:
                result[subject][key] = _point(xyz, f"landmarks file {path}: {subject}/{key}")
    return result


def _point(xyz: object, where: str) -> np.ndarray:
    try:
        point = np.asarray(xyz, dtype=np.float64)
    except (TypeError, ValueError):
        point = np.empty(0)
    if point.shape != (3,) or not np.isfinite(point).all():
        raise BenchError(f"{where}: expected [x, y, z] in mm, got {xyz!r}")
    return point


def read_labels(path: Path) -> dict[str, str]:
    """Labels CSV -> {subject id: class name}."""
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            rows = list(reader)
            columns = reader.fieldnames or []
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise BenchError(f"labels file {path}: cannot read it as CSV ({error})") from error
    if "subject_id" not in columns or "label" not in columns:
        raise BenchError(f"labels file {path}: needs a header row with the columns "
                         f"subject_id,label; found {columns}")
    table: dict[str, str] = {}
    for line, row in enumerate(rows, start=2):
        subject, label = (row["subject_id"] or "").strip(), (row["label"] or "").strip()
        if not subject or not label:
            raise BenchError(f"labels file {path}, line {line}: empty subject_id or label")
        if table.setdefault(subject, label) != label:
            raise BenchError(f"labels file {path}, line {line}: subject {subject!r} has two "
                             f"labels, {table[subject]!r} and {label!r}")
    return table


def file_reference(path: str | os.PathLike | None) -> dict[str, str] | None:
    if not path:
        return None
    return {"path": str(Path(path).resolve()), "sha256": sha256_file(path)}
