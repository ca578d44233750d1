"""One binary scan -> one volume of the common grid, in canonical pose.

The steps (see :mod:`bench.data.importing`): drop small connected components,
crop to the bone, average blocks of whole source voxels, align, centre, and
resample trilinearly with a threshold of 0.5.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import ndimage

from bench.data.grid import FIELD_OF_VIEW_MM
from bench.data.importing.readers import (MESH_SUPERSAMPLING, BadFile, Options, Scan, apply_affine,
                                          format_mm, make_affine)

# Landmarks that define the Frankfort frame of ``align="landmarks"``.
FRANKFORT_LANDMARKS = ("nasion", "porion_left", "porion_right", "orbitale_left")


def standardise(scan: Scan, options: Options, landmarks: dict[str, np.ndarray]
                ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Clean, crop, align, centre and resample one scan.

    Args:
        scan: the binary volume in its file's frame.
        options: the import options.
        landmarks: name -> (3,) RAS mm; used by ``align="landmarks"``.

    Returns:
        bool (R, R, R) volume, the (4, 4) RAS mm -> canonical mm transform,
        and the manifest's record of the steps.
    """
    mask, affine = _crop(scan.mask, scan.affine)
    mask, dropped = _drop_small_components(mask, options.min_component_fraction)
    mask, affine = _crop(mask, affine)
    occupancy, affine = _block_mean(mask, affine, options.voxel_mm)
    points, weights = _occupied_points(occupancy, affine)
    rotation = _rotation(options.align, points, weights, landmarks)
    low, high = _bone_box(points, rotation, affine)
    shift = _centring(low, high, options.voxel_mm, options.align)
    if options.align == "landmarks":
        shift[0] = rotation[0] @ landmarks["nasion"]
        _check_inside(low - shift, high - shift)
    volume = _resample(occupancy, affine, rotation, shift, low - shift, high - shift,
                       options.resolution)
    to_canonical = make_affine(rotation, -shift)
    record = {"components_dropped": dropped, "bone_extent_mm": format_mm(high - low, as_list=True)}
    return volume, to_canonical, record


def _crop(mask: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The bounding box of the bone (a view) and its voxel -> mm affine."""
    bounds = []
    for axis in range(3):
        rows = np.flatnonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))
        bounds.append((rows[0], rows[-1] + 1))
    start = np.array([b[0] for b in bounds], dtype=np.int64)
    cropped = mask[tuple(slice(a, b) for a, b in bounds)]
    return cropped, affine @ make_affine(np.eye(3), start)


def _drop_small_components(mask: np.ndarray, fraction: float) -> tuple[np.ndarray, int]:
    """Remove 26-connected components below ``fraction`` of the bone; keep the largest."""
    labels, count = ndimage.label(mask, structure=np.ones((3, 3, 3), dtype=bool))
    sizes = np.bincount(labels.ravel())[1:]
    keep = sizes >= fraction * sizes.sum()
    keep[np.argmax(sizes)] = True
    if keep.all():
        return mask, 0
    return np.concatenate([[False], keep])[labels], int(count - keep.sum())


def _block_mean(mask: np.ndarray, affine: np.ndarray, voxel_mm: float
                ) -> tuple[np.ndarray, np.ndarray]:
    """Occupancy averaged over blocks of whole source voxels that fit in a target voxel.

    Blocks start at the low corner of the bone's bounding box, so that corner
    stays on a block boundary (and later, after centring, on a voxel boundary
    of the grid).

    Args:
        mask: bool (X, Y, Z), cropped to the bone.
        affine: (4, 4) voxel index -> mm of ``mask``.
        voxel_mm: target voxel size.

    Returns:
        float32 occupancy in [0, 1] and its voxel -> mm affine.
    """
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    factors = np.maximum(np.floor(voxel_mm / spacing + 1e-6), 1).astype(np.int64)
    if (factors == 1).all():
        return mask.astype(np.float32), affine
    padded = np.pad(mask, [(0, -n % f) for n, f in zip(mask.shape, factors)])
    blocks = padded.reshape([s for n, f in zip(padded.shape, factors) for s in (n // f, f)])
    occupancy = blocks.mean(axis=(1, 3, 5), dtype=np.float32)
    centre = (factors - 1) / 2
    return occupancy, affine @ make_affine(np.diag(factors.astype(np.float64)), centre)


def _occupied_points(occupancy: np.ndarray, affine: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Centres (P, 3) in RAS mm and occupancies (P,) of the voxels holding any bone."""
    index = np.argwhere(occupancy > 0)
    return apply_affine(affine, index.astype(np.float64)), occupancy[tuple(index.T)]


def _rotation(align: str, points: np.ndarray, weights: np.ndarray,
              landmarks: dict[str, np.ndarray]) -> np.ndarray:
    """(3, 3) rotation whose rows are the canonical x, y, z axes in RAS."""
    if align == "principal":
        return _principal_axes(points, weights)
    if align == "landmarks":
        return _frankfort_axes(landmarks)
    return np.eye(3)


def _principal_axes(points: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Principal axes of the bone; see ``align`` in :func:`import_folder` for the convention."""
    offsets = points - np.average(points, axis=0, weights=weights)
    covariance = (offsets * weights[:, None]).T @ offsets / weights.sum()
    _, vectors = np.linalg.eigh(covariance)  # ascending variance
    y, z = vectors[:, 2], vectors[:, 1]

    def skew(axis: np.ndarray) -> float:
        return float(np.average((offsets @ axis) ** 3, weights=weights))

    y = -y if skew(y) > 0 else y
    z = -z if skew(z) < 0 else z
    return np.stack([np.cross(y, z), y, z])


def _frankfort_axes(landmarks: dict[str, np.ndarray]) -> np.ndarray:
    """Frankfort frame from both porions and the left orbitale (RAS mm)."""
    left, right = landmarks["porion_left"], landmarks["porion_right"]
    x = _unit(right - left, "porion_left and porion_right coincide")
    forward = landmarks["orbitale_left"] - left
    y = _unit(forward - (forward @ x) * x, "orbitale_left lies on the line through the porions")
    return np.stack([x, y, np.cross(x, y)])


def _unit(vector: np.ndarray, problem: str) -> np.ndarray:
    norm = float(np.linalg.norm(vector))
    if norm < 1e-6:
        raise BadFile(f"landmarks cannot define the Frankfort frame: {problem}")
    return vector / norm


def _bone_box(points: np.ndarray, rotation: np.ndarray, affine: np.ndarray
              ) -> tuple[np.ndarray, np.ndarray]:
    """Bounding box (low, high) in mm of the bone voxels, in the rotated frame."""
    centres = points @ rotation.T
    half = 0.5 * np.abs(rotation @ affine[:3, :3]).sum(axis=1)
    return centres.min(axis=0) - half, centres.max(axis=0) + half


def _centring(low: np.ndarray, high: np.ndarray, voxel_mm: float, align: str) -> np.ndarray:
    """Shift (3,) mm that centres the box, snapped so its low corner is on a voxel boundary."""
    extent = high - low
    if np.any(extent > FIELD_OF_VIEW_MM + 1e-6):
        pose = "" if align == "none" else (f" in the pose of align={align!r} (it may fit in "
                                           f"another pose)")
        raise BadFile(f"the bone spans {format_mm(extent)} mm{pose}, more than the "
                      f"{FIELD_OF_VIEW_MM:g} mm field of view")
    slack = (FIELD_OF_VIEW_MM - extent) / voxel_mm
    steps = np.clip(np.floor(slack / 2 + 0.5), 0, np.floor(slack + 1e-6))
    return low - (steps * voxel_mm - FIELD_OF_VIEW_MM / 2)


def _check_inside(low: np.ndarray, high: np.ndarray) -> None:
    half = FIELD_OF_VIEW_MM / 2 + 1e-6
    if np.any(low < -half) or np.any(high > half):
        raise BadFile(f"with the midsagittal plane through the nasion the bone spans "
                      f"{format_mm(low)} to {format_mm(high)} mm, outside the "
                      f"{FIELD_OF_VIEW_MM:g} mm field of view")


def _resample(occupancy: np.ndarray, affine: np.ndarray, rotation: np.ndarray,
              shift: np.ndarray, low: np.ndarray, high: np.ndarray, resolution: int
              ) -> np.ndarray:
    """Trilinear resampling into the common grid, thresholded at 0.5.

    A canonical point q comes from RAS point p = rotation.T @ (q + shift); only
    the grid block covering the bone box [low, high] (canonical mm) is computed.

    Returns:
        bool (R, R, R).
    """
    size = FIELD_OF_VIEW_MM / resolution
    start = np.clip(np.floor((low + FIELD_OF_VIEW_MM / 2) / size), 0, resolution).astype(int)
    stop = np.clip(np.ceil((high + FIELD_OF_VIEW_MM / 2) / size), 0, resolution).astype(int)
    to_index = np.linalg.inv(affine[:3, :3])
    matrix = to_index @ rotation.T * size
    first = (start + 0.5) * size - FIELD_OF_VIEW_MM / 2
    offset = to_index @ (rotation.T @ (first + shift) - affine[:3, 3])
    block = ndimage.affine_transform(occupancy, matrix, offset, output_shape=tuple(stop - start),
                                     order=1, mode="grid-constant", cval=0.0, prefilter=False)
    volume = np.zeros((resolution,) * 3, dtype=bool)
    volume[tuple(slice(a, b) for a, b in zip(start, stop))] = block >= 0.5
    return volume


def describe_steps(options: Options, file_format: str) -> dict[str, Any]:
    """The manifest's record of the preprocessing steps and their parameters."""
    if file_format in ("stl", "ply", "obj"):
        first = {"fill_mesh": {"pitch_mm": options.voxel_mm / MESH_SUPERSAMPLING,
                               "rule": "voxel centres inside the surface (ray parity along "
                                       "x, y and z, majority vote)"}}
    else:
        first = {"binarise": {"threshold_hu": options.threshold_hu,
                              "rule": "values all 0 or 1: a mask; otherwise CT in HU, "
                                      "bone where value >= threshold_hu"}}
    return {
        "order": [*first, "drop_small_components", "crop", "align", "centre", "resample"],
        **first,
        "drop_small_components": {"min_component_fraction": options.min_component_fraction,
                                  "connectivity": 26, "largest_kept": True},
        "crop": {"to": "bounding box of the bone"},
        "align": {"method": options.align, **ALIGN_CONVENTIONS[options.align]},
        "centre": {"rule": "bounding-box centre at the origin, snapped by at most half a voxel "
                           "so the box starts on a voxel boundary"},
        "resample": {"resolution": options.resolution, "voxel_size_mm": options.voxel_mm,
                     "field_of_view_mm": FIELD_OF_VIEW_MM,
                     "rule": "mean over blocks of whole source voxels, then trilinear "
                             "interpolation of the occupancy, bone where >= 0.5"},
    }


ALIGN_CONVENTIONS = {
    "none": {"frame": "the file's orientation, converted to RAS"},
    "principal": {"frame": "principal axes of the bone: largest variance -> y, middle -> z, "
                           "smallest -> x; +y where the third moment is negative, +z where "
                           "it is positive, x = y cross z"},
    "landmarks": {"frame": "Frankfort: x from porion_left to porion_right, y anterior in the "
                           "plane of both porions and orbitale_left, z up; x = 0 at the "
                           "nasion"},
}
