"""Anatomical measures of skull volumes: the input of the anatomy metrics.

Every measure is taken per sample, in millimetres from the voxel size, on bool
volumes (N, R, R, R) in canonical pose in the common grid (RAS axes: x to the
subject's right, y anterior, z superior; see :mod:`bench.data.grid`). Voxel
(i, j, k) is the cube of edge h = voxel size centred at ``(index + 0.5) h - R h / 2``.

Definitions (craniometric names in brackets are what each approximates):

- ``bone_volume_ml``: number of bone voxels times h^3, in mL (1 mL = 1000 mm^3).
- ``cranial_length_mm`` [glabella-opisthocranion]: extent along y of the bone
  whose voxel centres lie at or above the *vault base*, the plane z =
  ``vault_base_mm`` (default 0, the centre of the grid).
- ``cranial_width_mm`` [euryon-euryon]: extent along x of the same bone.
- ``skull_height_mm`` [vertex to the lowest point, menton when the mandible is
  present]: extent along z of all bone.
- ``cephalic_index``: 100 x width / length (dimensionless).
- ``symmetry_error_mm``: mean distance from the bone surface to the surface of
  the bone mirrored in the midsagittal plane x = 0 (an index flip along x,
  since the grid is centred). The surface is the set of bone voxels with a
  background 6-neighbour (``A`` minus its erosion, as MONAI's surface
  distances take it) and distances run between voxel centres, so the value is
  MONAI's average surface distance between a volume and its mirror image; it
  is 0 for a shape symmetric about x = 0 and about d for a sphere centred d mm
  off it.
- ``n_components``: number of 26-connected components of bone.
- ``largest_component_fraction``: share of the bone voxels in the largest of them.

An *extent* is the distance between the outer faces of the two extreme voxels,
``(last - first + 1) h``, so a voxelised ellipsoid with semi-axes (a, b, c)
centred in the grid measures 2a, 2b and 2c within one voxel.

Why the vault base is the grid's centre plane: datasets are centred from vertex
to menton (synthskull puts its mean skull there; an import centres each
skull's bounding box), so the plane z = 0 lies near the skull's mid-height.
In synthskull it is about 10 mm above the Frankfort plane (z = -10 mm), above
the zygomatic arches (at Frankfort level), the mastoids and the mandible, and
below the nasion (about +12 mm), the glabella, the opisthocranion and the
euryons, which the measured length and width therefore include. A fixed plane
of the common grid, rather than one relative to each sample's bone, keeps a
stray voxel from moving the plane, and treats reference and generated samples
alike.

Typical use::

    measures = measure_volumes(train.volumes, train.voxel_size_mm)
    measures.cephalic_index                 # float64 (N,)

Where a measure is undefined it is NaN: every measure but the volume and the
component count for an empty volume, length, width and cephalic index when no
bone lies above the vault base. The metrics of :mod:`metrics.anatomy` compare
these measures between real and generated sets.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt
from scipy import ndimage
from scipy.spatial import cKDTree

from bench.core.errors import BenchError

VAULT_BASE_MM = 0.0
"""Default vault base: the plane z = 0 mm of the grid (see the module docstring)."""

CONNECTIVITY = np.ones((3, 3, 3), dtype=bool)
"""26-connectivity, for counting components."""


@dataclass(frozen=True)
class Measure:
    """How one per-sample measure is named and reported.

    Attributes:
        attribute: field of :class:`AnatomyMeasures`.
        tag: short name in metric names, e.g. ``"cephalic-index"``.
        unit: unit of the measure, and of its Wasserstein-1 distance.
    """

    attribute: str
    tag: str
    unit: str


MEASURES = (
    Measure("bone_volume_ml", "bone-volume", "mL"),
    Measure("cranial_length_mm", "cranial-length", "mm"),
    Measure("cranial_width_mm", "cranial-width", "mm"),
    Measure("skull_height_mm", "skull-height", "mm"),
    Measure("cephalic_index", "cephalic-index", ""),
    Measure("symmetry_error_mm", "symmetry-error", "mm"),
    Measure("n_components", "components", ""),
    Measure("largest_component_fraction", "largest-component", ""),
)
"""Every measure of :class:`AnatomyMeasures`, in order."""


@dataclass(frozen=True)
class AnatomyMeasures:
    """Per-sample measures of N volumes; every attribute is a float64 array (N,).

    See the module docstring for the definitions; NaN where undefined.
    """

    bone_volume_ml: np.ndarray
    cranial_length_mm: np.ndarray
    cranial_width_mm: np.ndarray
    skull_height_mm: np.ndarray
    cephalic_index: np.ndarray
    symmetry_error_mm: np.ndarray
    n_components: np.ndarray
    largest_component_fraction: np.ndarray

    def __len__(self) -> int:
        return len(self.bone_volume_ml)

    def as_dict(self) -> dict[str, np.ndarray]:
        """Measure name -> values (N,)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def stack(self, names: tuple[str, ...] | None = None) -> np.ndarray:
        """The named measures (all by default) as columns of a float64 array (N, m)."""
        names = tuple(m.attribute for m in MEASURES) if names is None else names
        return np.stack([getattr(self, name) for name in names], axis=1)


def measure_volume(volume: np.ndarray, voxel_size_mm: float,
                   vault_base_mm: float = VAULT_BASE_MM) -> dict[str, float]:
    """All measures of one bool volume (R, R, R) as a dict of floats (see the module doc)."""
    volume = _check_volume(volume)
    size = float(voxel_size_mm)
    count = int(volume.sum())
    n_components, largest = component_stats(volume)
    length, width, height = cranial_extents(volume, size, vault_base_mm)
    index = 100.0 * width / length if length > 0 else np.nan
    return {
        "bone_volume_ml": count * size ** 3 / 1000.0,
        "cranial_length_mm": length,
        "cranial_width_mm": width,
        "skull_height_mm": height,
        "cephalic_index": index,
        "symmetry_error_mm": symmetry_error_mm(volume, size),
        "n_components": float(n_components),
        "largest_component_fraction": largest,
    }


def measure_volumes(volumes: np.ndarray, voxel_size_mm: float,
                    vault_base_mm: float = VAULT_BASE_MM) -> AnatomyMeasures:
    """The measures of every volume of a bool array (N, R, R, R).

    Args:
        volumes: bool (N, R, R, R) in the common grid, canonical pose.
        voxel_size_mm: voxel edge h in mm (``SkullDataset.voxel_size_mm``).
        vault_base_mm: z of the plane above which length and width are measured.

    Returns:
        :class:`AnatomyMeasures` with arrays (N,).
    """
    volumes = np.asarray(volumes)
    if volumes.ndim != 4:
        raise BenchError(f"volumes must have shape (N, R, R, R), got {volumes.shape}")
    rows = [measure_volume(v, voxel_size_mm, vault_base_mm) for v in volumes]
    return AnatomyMeasures(**{f.name: np.array([r[f.name] for r in rows], dtype=np.float64)
                              for f in fields(AnatomyMeasures)})


def cranial_extents(volume: np.ndarray, voxel_size_mm: float,
                    vault_base_mm: float = VAULT_BASE_MM) -> tuple[float, float, float]:
    """Cranial length (y) and width (x) above the vault base, and skull height (z), in mm.

    Args:
        volume: bool (R, R, R).
        voxel_size_mm: voxel edge h in mm.
        vault_base_mm: only voxels whose centre z is at least this enter length and width.

    Returns:
        (length, width, height); NaN where there is no bone to measure.
    """
    size = float(voxel_size_mm)
    resolution = volume.shape[2]
    centres_z = (np.arange(resolution) + 0.5) * size - resolution * size / 2
    height = _extent(volume.any(axis=(0, 1)), size)
    vault = volume[:, :, centres_z >= vault_base_mm]
    length = _extent(vault.any(axis=(0, 2)), size)
    width = _extent(vault.any(axis=(1, 2)), size)
    return length, width, height


def _extent(occupied: npt.ArrayLike, size: float) -> float:
    """(last - first + 1) * size over the True entries of a 1-D mask; NaN if none."""
    hits = np.flatnonzero(occupied)
    return float((hits[-1] - hits[0] + 1) * size) if len(hits) else np.nan


def component_stats(volume: np.ndarray) -> tuple[int, float]:
    """Number of 26-connected bone components and the largest one's share of the bone.

    Returns:
        (count, fraction); (0, NaN) for an empty volume.
    """
    box = _bounding_box(volume)
    if box is None:
        return 0, np.nan
    labels, count = ndimage.label(volume[box], structure=CONNECTIVITY)
    sizes = np.bincount(labels.ravel())[1:]
    return int(count), float(sizes.max() / sizes.sum())


def symmetry_error_mm(volume: np.ndarray, voxel_size_mm: float) -> float:
    """Mean distance (mm) from the bone surface to the surface of its x-mirror image.

    The surface is ``A & ~erode(A)`` with the 6-connected structuring element;
    distances are Euclidean between voxel centres, found with a k-d tree over
    the mirrored surface's voxels (the values of ``distance_transform_edt``
    with ``sampling`` = voxel size on the surface, which measured slower on
    the skull's box: 10.5 ms against 7 ms a skull at 64^3). Mirroring flips the x
    index, which is the reflection x -> -x because the grid is centred on x =
    0. The two directed means are equal (each is the mirror of the other), so
    this is also the symmetric average surface distance. NaN for an empty
    volume.
    """
    box = _bounding_box(volume)
    if box is None:
        return np.nan
    resolution = volume.shape[0]
    low, high = box[0].start, box[0].stop
    mirrored_x = slice(min(low, resolution - high), max(high, resolution - low))
    crop = np.pad(volume[(mirrored_x,) + box[1:]], 1)
    surface = np.argwhere(crop & ~ndimage.binary_erosion(crop))
    mirrored = surface * np.array([-1, 1, 1]) + np.array([crop.shape[0] - 1, 0, 0])
    distance, _ = cKDTree(mirrored).query(surface)
    return float(distance.mean() * float(voxel_size_mm))


def _bounding_box(volume: np.ndarray) -> tuple[slice, ...] | None:
    """Slices around the True voxels of a 3-D array; None if there are none."""
    box = []
    for axis in range(3):
        hits = np.flatnonzero(volume.any(axis=tuple(a for a in range(3) if a != axis)))
        if not len(hits):
            return None
        box.append(slice(int(hits[0]), int(hits[-1]) + 1))
    return tuple(box)


def _check_volume(volume: np.ndarray) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != 3 or volume.dtype != bool:
        raise BenchError(f"a volume must be a bool array (R, R, R), got dtype {volume.dtype} "
                         f"and shape {volume.shape}")
    return volume
