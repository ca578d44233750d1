"""Readers: one function per file format, each turning a file into a binary :class:`Scan`.

Volumes whose values are all 0 or 1 are masks; any other volume is CT in
Hounsfield units with bone where ``value >= threshold_hu``. Meshes are filled
(:func:`bench.data.importing.meshfill.fill_mesh`). A file that cannot be
imported raises :class:`BadFile` with the reason.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

import nibabel
import nrrd
import numpy as np
import trimesh
from nibabel.spatialimages import SpatialImage

from bench.data.grid import FIELD_OF_VIEW_MM, voxel_size_mm
from bench.data.importing.meshfill import fill_mesh

EXTENSIONS = {
    "nrrd": (".nrrd", ".nhdr"),
    "nifti": (".nii.gz", ".nii"),
    "stl": (".stl",),
    "ply": (".ply",),
    "obj": (".obj",),
    "npy": (".npy",),
}
# Meshes are filled on a grid this many times finer than the target grid; the
# occupancy is then averaged back, which keeps bone thinner than a voxel.
MESH_SUPERSAMPLING = 2
# RAS signs of the NRRD spaces that name an anatomical orientation.
NRRD_SPACES = {
    "right-anterior-superior": (1, 1, 1), "ras": (1, 1, 1),
    "left-anterior-superior": (-1, 1, 1), "las": (-1, 1, 1),
    "left-posterior-superior": (-1, -1, 1), "lps": (-1, -1, 1),
}
_SLAB = 16  # z-planes binarised at a time, to bound memory on 512^3 CT


class BadFile(Exception):
    """A file that cannot be imported; the message is the reason."""


@dataclass(frozen=True)
class Options:
    """The per-file parameters of an import (see :func:`bench.data.importing.import_folder`)."""

    resolution: int
    threshold_hu: float
    min_component_fraction: float
    align: str

    @property
    def voxel_mm(self) -> float:
        """Target voxel edge, mm."""
        return voxel_size_mm(self.resolution)


@dataclass
class Scan:
    """One file read into a binary volume.

    Attributes:
        mask: bool (X, Y, Z), True on bone.
        affine: (4, 4) voxel index -> RAS position of the voxel centre, mm.
        frame: (4, 4) file frame -> RAS, mm (landmarks are given in the file frame).
        info: what the manifest records about the file (spacing, shape, ...).
    """

    mask: np.ndarray
    affine: np.ndarray
    frame: np.ndarray = field(default_factory=lambda: np.eye(4))
    info: dict[str, Any] = field(default_factory=dict)


def _read_nrrd(file: Path, options: Options) -> Scan:
    try:
        data, header = nrrd.read(str(file))
    except Exception as error:  # pynrrd raises several types on corrupt files
        raise BadFile(f"cannot read it as NRRD ({error})") from error
    data = _as_3d(data)
    to_ras = np.diag([*NRRD_SPACES.get(str(header.get("space", "")).lower(), (1, 1, 1)), 1.0])
    affine = to_ras @ _nrrd_affine(header)
    mask, info = _binarise(_slabs(data), options.threshold_hu)
    return Scan(mask, affine, to_ras, {**_geometry(affine, data.shape), **info})


def _nrrd_affine(header: dict) -> np.ndarray:
    """Voxel index -> file-frame mm from 'space directions' or 'spacings'."""
    if header.get("space directions") is not None:
        rows = np.asarray(header["space directions"], dtype=np.float64)[:3]
        if rows.shape != (3, 3) or not np.isfinite(rows).all():
            raise BadFile(f"'space directions' {rows.tolist()} do not give three spatial axes")
        directions = rows.T
    elif header.get("spacings") is not None:
        directions = np.diag(_positive_spacing(header["spacings"]))
    else:
        raise BadFile("no voxel spacing: the header has neither 'space directions' nor "
                      "'spacings'")
    _positive_spacing(np.linalg.norm(directions, axis=0))
    origin = np.asarray(header.get("space origin", np.zeros(3)), dtype=np.float64)
    if origin.shape != (3,) or not np.isfinite(origin).all():
        raise BadFile(f"'space origin' {origin.tolist()} is not a finite 3-D point")
    return make_affine(directions, origin)


def _read_nifti(file: Path, options: Options) -> Scan:
    try:
        image = nibabel.load(str(file))
        if not isinstance(image, SpatialImage):
            raise BadFile(f"cannot read it as NIfTI (nibabel reads a {type(image).__name__})")
        shape = _shape_3d(image.shape)
        _positive_spacing(image.header.get_zooms()[:3])
        mask, info = _binarise(_scaled_slabs(image.dataobj, shape), options.threshold_hu)
    except BadFile:
        raise
    except Exception as error:  # nibabel raises several types on corrupt files
        raise BadFile(f"cannot read it as NIfTI ({error})") from error
    affine = np.asarray(image.affine, dtype=np.float64)
    _positive_spacing(np.linalg.norm(affine[:3, :3], axis=0))
    return Scan(mask, affine, np.eye(4), {**_geometry(affine, shape), **info})


def _scaled_slabs(proxy: Any, shape: tuple[int, int, int]) -> Iterator[np.ndarray]:
    """z-slabs of a NIfTI image in its scaled units, reading the file once.

    The stored values (e.g. int16) stay in memory as they are; only one slab
    at a time is converted to floats.
    """
    raw = np.asanyarray(proxy.get_unscaled()).reshape(shape)
    slope, inter = float(proxy.slope), float(proxy.inter)
    for slab in _slabs(raw):
        yield slab if (slope, inter) == (1.0, 0.0) else slab * slope + inter


def _read_npy(file: Path, options: Options) -> Scan:
    spacing = _read_sidecar(file.with_suffix(".json"))
    try:
        data = np.load(file, mmap_mode="r", allow_pickle=False)
    except Exception as error:  # numpy raises several types on corrupt files
        raise BadFile(f"cannot read it as a NumPy array ({error})") from error
    data = _as_3d(data)
    if data.dtype.kind not in "biuf":
        raise BadFile(f"array of dtype {data.dtype}; expected booleans, integers or floats")
    affine = make_affine(np.diag(spacing), np.zeros(3))
    mask, info = _binarise(_slabs(data), options.threshold_hu)
    return Scan(mask, affine, np.eye(4), {**_geometry(affine, data.shape), **info})


def _read_sidecar(sidecar: Path) -> np.ndarray:
    if not sidecar.is_file():
        raise BadFile(f"no voxel spacing: the sidecar {sidecar.name} with "
                      f'{{"spacing_mm": [sx, sy, sz]}} is missing')
    try:
        spacing = json.loads(sidecar.read_text())["spacing_mm"]
    except (OSError, ValueError, TypeError, KeyError) as error:
        raise BadFile(f"sidecar {sidecar.name} must hold {{\"spacing_mm\": [sx, sy, sz]}} "
                      f"({type(error).__name__}: {error})") from error
    return _positive_spacing(spacing)


def _read_mesh(file: Path, options: Options, file_format: str) -> Scan:
    try:
        mesh = trimesh.load(str(file), file_type=file_format, force="mesh")
    except Exception as error:  # trimesh raises several types on corrupt files
        raise BadFile(f"cannot read it as a {file_format.upper()} mesh ({error})") from error
    if not isinstance(mesh, trimesh.Trimesh) or len(mesh.faces) == 0:
        raise BadFile("the file holds no triangles")
    if not np.isfinite(mesh.vertices).all():
        raise BadFile("the mesh has vertices that are not finite numbers")
    low, high = mesh.bounds
    if np.max(high - low) > FIELD_OF_VIEW_MM * math.sqrt(3):
        raise BadFile(f"the mesh spans {format_mm(high - low)} mm, more than the "
                      f"{FIELD_OF_VIEW_MM:g} mm field of view can hold in any pose; are its "
                      f"units millimetres?")
    pitch = options.voxel_mm / MESH_SUPERSAMPLING
    nx, ny, nz = (int(n) for n in np.maximum(np.ceil((high - low) / pitch), 1))
    shape = (nx, ny, nz)
    affine = make_affine(np.eye(3) * pitch, low + pitch / 2)
    mask = fill_mesh(np.asarray(mesh.triangles, dtype=np.float64), affine, shape)
    if not mask.any():
        raise BadFile("the mesh encloses no voxel centre; is it a closed surface?")
    info = {**_geometry(affine, shape), "mesh": {"vertices": len(mesh.vertices),
                                                 "faces": len(mesh.faces),
                                                 "watertight": bool(mesh.is_watertight)}}
    return Scan(mask, affine, np.eye(4), info)


READERS: dict[str, Callable[[Path, Options], Scan]] = {
    "nrrd": _read_nrrd,
    "nifti": _read_nifti,
    "stl": functools.partial(_read_mesh, file_format="stl"),
    "ply": functools.partial(_read_mesh, file_format="ply"),
    "obj": functools.partial(_read_mesh, file_format="obj"),
    "npy": _read_npy,
}


def _shape_3d(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """The shape less trailing axes of length 1, which must leave three axes."""
    shape = tuple(int(s) for s in shape)
    while len(shape) > 3 and shape[-1] == 1:
        shape = shape[:-1]
    if len(shape) != 3:
        raise BadFile(f"the array is {len(shape)}-D with shape {shape}; expected a 3-D volume")
    if min(shape) == 0:
        raise BadFile(f"the array has shape {shape}, with no voxels")
    return shape


def _as_3d(data: np.ndarray) -> np.ndarray:
    return data.reshape(_shape_3d(data.shape))


def _positive_spacing(values: Iterable[float]) -> np.ndarray:
    """Voxel spacing (3,) in mm, checked to be finite and positive."""
    try:
        spacing = np.asarray(values, dtype=np.float64).reshape(3)
    except (TypeError, ValueError) as error:
        raise BadFile(f"voxel spacing {values!r} is not three numbers") from error
    if not (np.isfinite(spacing).all() and (spacing > 0).all()):
        raise BadFile(f"voxel spacing {spacing.tolist()} mm is not positive")
    return spacing


def make_affine(directions: np.ndarray, origin: np.ndarray) -> np.ndarray:
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = directions, origin
    return affine


def _geometry(affine: np.ndarray, shape: tuple[int, ...]) -> dict[str, list]:
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    return {"spacing_mm": [round(float(s), 6) for s in spacing],
            "shape": [int(s) for s in shape]}


def _slabs(data: np.ndarray) -> Iterator[np.ndarray]:
    for k in range(0, data.shape[2], _SLAB):
        yield data[:, :, k:k + _SLAB]


def _binarise(slabs: Iterable[np.ndarray], threshold_hu: float
              ) -> tuple[np.ndarray, dict[str, Any]]:
    """Bone mask from z-slabs of a volume: a 0/1 mask as is, else CT thresholded in HU.

    Returns:
        bool (X, Y, Z) mask and the manifest's record of how it was made.

    Raises:
        BadFile: the mask is empty.
    """
    ones, above = [], []
    is_mask, low, high = True, math.inf, -math.inf
    for slab in slabs:
        one = slab == 1
        is_mask = is_mask and bool(np.all(one | (slab == 0)))
        ones.append(one)
        above.append(slab >= threshold_hu)
        if slab.size:
            low, high = min(low, float(np.min(slab))), max(high, float(np.max(slab)))
    mask = np.concatenate(ones if is_mask else above, axis=2)
    info = {"intensity": "mask" if is_mask else "hounsfield", "value_range": [low, high]}
    if not mask.any():
        raise BadFile("the mask is empty" if is_mask else
                      f"no voxel reaches the bone threshold of {threshold_hu:g} HU (values "
                      f"{low:g} to {high:g}); lower threshold_hu (--threshold-hu)")
    return mask, info


def apply_affine(affine: np.ndarray, point: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) affine to a (..., 3) point array."""
    return point @ affine[:3, :3].T + affine[:3, 3]


def format_mm(values: np.ndarray, as_list: bool = False) -> str | list[float]:
    rounded = [round(float(v), 1) for v in values]
    return rounded if as_list else " x ".join(f"{v:g}" for v in rounded)
