"""Writing skulls in formats that 3D Slicer opens, in physical units (mm, RAS).

A volume on the common grid (see :mod:`bench.data.grid`) is written with the
grid's geometry: voxel (i, j, k) has its centre at ``(index + 0.5) * voxel -
field_of_view / 2`` mm on the RAS axes. NIfTI stores it as a scanner-space
affine, NRRD as ``space directions`` and ``space origin`` in
right-anterior-superior space, STL as the bone's surface (marching cubes) with
vertices in mm. ``bench data import`` reads all three back onto the same grid.
"""

from __future__ import annotations

import gzip
import io
import re
from pathlib import Path

import nibabel
import nrrd
import numpy as np
import trimesh
from skimage.measure import marching_cubes

from bench.data.grid import index_to_mm, voxel_size_mm
from bench.core.errors import BenchError
from bench.core.io import atomic_path

EXPORT_FORMATS = {"nifti": ".nii.gz", "nrrd": ".nrrd", "stl": ".stl"}


def grid_affine(resolution: int) -> np.ndarray:
    """(4, 4) voxel index -> RAS mm of the voxel centre, for the common grid."""
    affine = np.eye(4)
    affine[:3, :3] *= voxel_size_mm(resolution)
    affine[:3, 3] = index_to_mm(np.zeros(3), resolution)
    return affine


def write_volume(volume: np.ndarray, path: Path, file_format: str) -> Path:
    """Write one (R, R, R) bool skull as ``file_format``, atomically; returns the path."""
    if file_format not in EXPORT_FORMATS:
        raise BenchError(f"unknown export format {file_format!r}; choose one of "
                         f"{', '.join(EXPORT_FORMATS)}")
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise BenchError(f"{path}: expected a cubic (R, R, R) volume, got shape {volume.shape}")
    writer = {"nifti": _write_nifti, "nrrd": _write_nrrd, "stl": _write_stl}[file_format]
    with atomic_path(path) as tmp:
        writer(volume.astype(bool), tmp)
    return path


def _write_nifti(volume: np.ndarray, path: Path) -> None:
    image = nibabel.Nifti1Image(volume.astype(np.uint8), grid_affine(len(volume)))
    image.header.set_xyzt_units("mm")
    image.set_qform(image.affine, code=1)  # 1: scanner-anatomical (RAS) coordinates
    image.set_sform(image.affine, code=1)
    # nibabel picks the compression from the name, and the temporary name lacks ".gz".
    path.write_bytes(gzip.compress(image.to_bytes(), compresslevel=6, mtime=0))


def _write_nrrd(volume: np.ndarray, path: Path) -> None:
    affine = grid_affine(len(volume))
    header = {"space": "right-anterior-superior", "space directions": affine[:3, :3],
              "space origin": affine[:3, 3], "encoding": "gzip",
              "kinds": ["domain", "domain", "domain"]}
    buffer = io.BytesIO()
    nrrd.write(buffer, volume.astype(np.uint8), header, index_order="F")
    # pynrrd stamps the wall-clock time in a comment line; without it the same skull
    # always gives the same bytes, as the NIfTI writer's mtime=0 does.
    path.write_bytes(re.sub(rb"# on [^\n]*\(GMT\)\.\n", b"", buffer.getvalue(), count=1))


def _write_stl(volume: np.ndarray, path: Path) -> None:
    if not volume.any():
        raise BenchError(f"{path}: the volume has no bone, so it has no surface to write")
    # One empty voxel of padding closes the surface where bone touches the grid's edge.
    # Lorensen's cases keep the surface of a binary volume closed (skimage's default,
    # Lewiner's, left open edges on synthskull); "ascent" turns the faces outwards.
    padded = np.pad(volume, 1).astype(np.float32)
    vertices, faces, _, _ = marching_cubes(padded, level=0.5, method="lorensen",
                                           gradient_direction="ascent")
    vertices_mm = index_to_mm(vertices - 1.0, len(volume))
    mesh = trimesh.Trimesh(vertices_mm, faces, process=False)
    mesh.export(path, file_type="stl")
