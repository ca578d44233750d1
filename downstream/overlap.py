"""Scores of a predicted implant against the true one: Dice, border Dice, HD95.

Arguments come in one order everywhere, (reference, prediction), as bool
volumes (R, R, R) of one grid. The border Dice follows the AutoImplant and
SkullBreak evaluations: Dice restricted to the voxels within ``border_mm``
(10 mm) of the defect border, where the implant must meet the remaining
bone. Here the *defect border* is the bone of the defective skull that
touches the true implant (26-neighbourhood), and the band is every voxel
whose centre lies within ``border_mm`` of a border voxel's centre.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch
from monai.metrics import compute_dice, compute_hausdorff_distance
from scipy import ndimage

_CUBE = np.ones((3, 3, 3), dtype=bool)


def dice(reference: np.ndarray, prediction: np.ndarray) -> float:
    """2 |A and B| / (|A| + |B|) (MONAI ``compute_dice``); NaN when the reference is empty."""
    y = torch.from_numpy(np.ascontiguousarray(reference, dtype=np.float32))[None, None]
    y_pred = torch.from_numpy(np.ascontiguousarray(prediction, dtype=np.float32))[None, None]
    return float(compute_dice(y_pred, y, include_background=True, ignore_empty=True))


def border_band(reference: np.ndarray, defective: np.ndarray, voxel_size_mm: float,
                border_mm: float) -> np.ndarray:
    """Voxels within ``border_mm`` of the defect border, bool (R, R, R).

    Args:
        reference: the true implant.
        defective: the skull without it.
        voxel_size_mm: voxel edge, mm.
        border_mm: half-width of the band, mm.
    """
    border = defective & ndimage.binary_dilation(reference, structure=_CUBE)
    if not border.any():
        return np.zeros_like(border)
    distance = ndimage.distance_transform_edt(~border, sampling=voxel_size_mm)
    return distance <= border_mm


def border_dice(reference: np.ndarray, prediction: np.ndarray, band: np.ndarray) -> float:
    """Dice of the implants inside the border band (see :func:`border_band`)."""
    return dice(reference & band, prediction & band)


def empty_penalty_mm(resolution: int, voxel_size_mm: float) -> float:
    """The HD95 given to an empty mask: the diagonal of the field of view, mm."""
    return float(np.sqrt(3) * resolution * voxel_size_mm)


def hausdorff95_mm(reference: np.ndarray, prediction: np.ndarray, voxel_size_mm: float) -> float:
    """Symmetric 95th-percentile Hausdorff distance between the masks' surfaces, mm.

    MONAI's ``compute_hausdorff_distance(percentile=95)``: the 95th percentile
    of the distances from the surface voxels of each mask to the other mask's
    surface, the larger of the two directions. An empty mask has no surface:
    then the distance is the diagonal of the field of view (the largest
    possible), a documented penalty instead of a missing or perfect value.
    """
    if not reference.any() or not prediction.any():
        return empty_penalty_mm(reference.shape[0], voxel_size_mm)
    y = torch.from_numpy(np.ascontiguousarray(reference))[None, None]
    y_pred = torch.from_numpy(np.ascontiguousarray(prediction))[None, None]
    with warnings.catch_warnings():  # MONAI 1.5+ warns about an argument it passes itself
        warnings.filterwarnings("ignore", message=".*always_return_as_numpy.*",
                                category=FutureWarning)
        value = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95,
                                           spacing=voxel_size_mm)
    return float(value)


def implant_scores(reference: np.ndarray, prediction: np.ndarray, defective: np.ndarray,
                   voxel_size_mm: float, border_mm: float) -> tuple[float, float, float]:
    """(Dice, border Dice, HD95 in mm) of a predicted implant, computed on a crop.

    The crop is the bounding box of both implants grown by ``border_mm`` plus two
    voxels: it holds both masks with an empty margin and the whole border band,
    so the three values equal those on the full grid, at a fraction of the cost.
    """
    union = reference | prediction
    if not union.any():
        return float("nan"), float("nan"), empty_penalty_mm(len(union), voxel_size_mm)
    margin = int(np.ceil(border_mm / voxel_size_mm)) + 2
    slices = []
    for axis in range(3):
        rows = np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != axis)))
        slices.append(slice(max(rows[0] - margin, 0), rows[-1] + 1 + margin))
    crop = tuple(slices)
    reference, prediction, defective = reference[crop], prediction[crop], defective[crop]
    band = border_band(reference, defective, voxel_size_mm, border_mm)
    hd95 = (hausdorff95_mm(reference, prediction, voxel_size_mm)
            if reference.any() and prediction.any()
            else empty_penalty_mm(len(union), voxel_size_mm))
    return (dice(reference, prediction), border_dice(reference, prediction, band), hd95)
