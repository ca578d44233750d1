"""`bench sample`: draw skulls from a fitted method and write them as medical-image files.

A checkpoint is the ``method.pt`` of a cell of a run (or the cell's folder).
The cell's ``cell.json`` names the run's fitted representation, which decodes
the samples to volumes on the common grid; each volume is written in physical
units (mm, RAS) as NIfTI, NRRD or STL (:mod:`bench.data.export`), beside a
``samples.json`` that records where they came from.
"""

from __future__ import annotations

from pathlib import Path

import torch

from bench.core.errors import BenchError
from bench.core.io import sha256_file, write_json_atomic
from bench.data.export import EXPORT_FORMATS, write_volume
from bench.representations import Representation
from bench.store import METHOD_FILE, CellFolder
from methods.base import Method


def sample_to_files(checkpoint: Path, n: int, steps: int, out: Path, file_format: str,
                    seed: int = 0, device: str = "cpu", overwrite: bool = False) -> list[Path]:
    """Draw ``n`` samples with ``steps`` steps and write one file each into ``out``.

    Refuses, before sampling, to replace files already in ``out`` unless
    ``overwrite``; every file is written atomically.

    Returns:
        The written sample files, in order, then ``samples.json``.
    """
    if file_format not in EXPORT_FORMATS:
        raise BenchError(f"--format {file_format!r}: choose one of {', '.join(EXPORT_FORMATS)}")
    if n < 1 or steps < 1:
        raise BenchError(f"-n and --steps must be at least 1, got -n {n} --steps {steps}")
    method_path, representation_path = _locate(checkpoint)
    names = [out / f"sample-{index:04d}{EXPORT_FORMATS[file_format]}" for index in range(n)]
    clashes = [path.name for path in names + [out / "samples.json"] if path.exists()]
    if clashes and not overwrite:
        raise BenchError(f"{out} already holds {', '.join(clashes[:3])}"
                         f"{' ...' if len(clashes) > 3 else ''}; choose another --out or pass "
                         f"--overwrite")
    method = Method.load(method_path, device)
    representation = Representation.load(representation_path)
    result = method.sample(n, steps, seed, torch.device(device))
    volumes = representation.decode(result.samples.cpu())
    out.mkdir(parents=True, exist_ok=True)
    written = [write_volume(volume, path, file_format) for volume, path in zip(volumes, names)]
    record = out / "samples.json"
    write_json_atomic(record, {
        "checkpoint": str(method_path), "checkpoint_sha256": sha256_file(method_path),
        "method": method.name, "seed": seed, "steps": steps, "nfe": result.nfe,
        "format": file_format, "files": [path.name for path in written],
        "resolution": int(volumes.shape[-1]), "units": "mm, RAS"})
    return written + [record]


def _locate(checkpoint: Path) -> tuple[Path, Path]:
    """(method.pt, representation file) of a cell given its method.pt or its folder."""
    method_path = checkpoint / METHOD_FILE if checkpoint.is_dir() else checkpoint
    if not method_path.is_file():
        raise BenchError(f"{checkpoint}: no fitted method here; pass a cell's {METHOD_FILE} "
                         f"(RUN/cells/METHOD-sSEED-HASH/{METHOD_FILE}) or its folder")
    folder = CellFolder(method_path.parent)
    representation_path = folder.path.parent.parent / folder.info()["representation"]
    if not representation_path.is_file():
        raise BenchError(f"{representation_path}: the representation named by the cell's "
                         f"record in {folder.path} is missing; was the run's shared/ folder "
                         f"moved or deleted?")
    return method_path, representation_path
