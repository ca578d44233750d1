"""synthskull: the embedded procedural dataset of craniofacial skeletons.

Subject ``index`` of ``seed`` is drawn from its own generator
``numpy.random.default_rng([seed, index])``, so a subject does not change when
the dataset grows or is generated in another order, and the same (seed,
index, resolution) always gives the same volume.
"""

from __future__ import annotations

import functools
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Iterable

import numpy as np
from scipy import ndimage

from bench.data.dataset import SkullDataset, assign_split
from bench.data.grid import FIELD_OF_VIEW_MM, MAX_RESOLUTION, MIN_RESOLUTION
from bench.data.synthskull.anatomy import (CLASS_NAMES, NASION_HEIGHT_MM, Skull,
                                           SkullParameters, SynthskullPrior, build_skull,
                                           sample_parameters)
from bench.data.synthskull.shapes import occupied, paint
from bench.data.synthskull.template import load_template
from bench.core.errors import BenchError

# Position of the Frankfort frame's origin (mid-porion) in the grid, mm: puts
# the mean skull, vertex to menton and glabella to opisthocranion, at the centre.
FRANKFORT_ORIGIN_MM = np.array([0.0, -15.0, -10.0])
LANDMARK_NAMES = ("nasion", "porion_left", "porion_right", "orbitale_left", "orbitale_right",
                  "menton")
GENERATOR_VERSION = 1


@dataclass(frozen=True)
class Subject:
    """One generated skull.

    Attributes:
        volume: bool (R, R, R) occupancy, axes (x, y, z) of the common grid.
        parameters: the drawn parameters.
        landmarks: name -> (3,) position in mm in the grid frame (menton is
            NaN without mandible).
    """

    volume: np.ndarray
    parameters: SkullParameters
    landmarks: dict[str, np.ndarray]


def generate_subject(seed: int, index: int, resolution: int, mandible: bool = True,
                     prior: SynthskullPrior = SynthskullPrior()) -> Subject:
    """Generate subject ``index`` of dataset ``seed`` at grid size ``resolution``."""
    _check_resolution(resolution)
    rng = np.random.default_rng([seed, index])
    skull = build_skull(sample_parameters(rng, prior), load_template())
    cranium = _largest_component(
        paint(skull.cranium, resolution, FIELD_OF_VIEW_MM, FRANKFORT_ORIGIN_MM))
    volume = cranium
    if mandible:
        jaw = paint(skull.mandible, resolution, FIELD_OF_VIEW_MM, FRANKFORT_ORIGIN_MM)
        volume = cranium | _largest_component(_separated(jaw, cranium))
    return Subject(volume=volume, parameters=skull.parameters,
                   landmarks=_landmarks(skull, mandible))


def make_dataset(n: int, resolution: int, seed: int = 0, mandible: bool = True,
                 name: str = "synthskull", workers: int = 1) -> SkullDataset:
    """Generate ``n`` subjects as a :class:`SkullDataset` with a stratified split.

    ``workers`` > 1 generates in that many processes; the result is identical,
    since every subject has its own random generator.
    """
    if n < 1:
        raise BenchError(f"synthskull: n must be at least 1, got {n}")
    subjects = generate_subjects(seed, range(n), resolution, mandible, workers=workers)
    ids = [f"synthskull-{seed}-{i:05d}" for i in range(n)]
    labels = np.array([CLASS_NAMES.index(s.parameters.label) for s in subjects])
    landmarks = {k: np.stack([s.landmarks[k] for s in subjects]) for k in LANDMARK_NAMES}
    if not mandible:
        landmarks.pop("menton")
    manifest = {
        "source": {"generator": "synthskull", "version": GENERATOR_VERSION, "seed": seed,
                   "mandible": mandible,
                   "template": "fsaverage inner skull (FreeSurfer, shipped with mne)"},
        "parameters": [s.parameters.as_dict() for s in subjects],
    }
    return SkullDataset(name=name, volumes=np.stack([s.volume for s in subjects]),
                        subject_ids=ids, split=assign_split(ids, labels, seed=seed),
                        labels=labels, class_names=CLASS_NAMES, landmarks=landmarks,
                        field_of_view_mm=FIELD_OF_VIEW_MM, manifest=manifest)


def generate_subjects(seed: int, indices: Iterable[int], resolution: int, mandible: bool = True,
                      prior: SynthskullPrior = SynthskullPrior(), workers: int = 1
                      ) -> list[Subject]:
    """:func:`generate_subject` for each index, in ``workers`` processes (same result)."""
    _check_resolution(resolution)
    indices = list(indices)
    task = functools.partial(generate_subject, seed, resolution=resolution, mandible=mandible,
                             prior=prior)
    if workers > 1 and len(indices) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            chunk = max(len(indices) // (4 * workers), 1)
            return list(pool.map(task, indices, chunksize=chunk))
    return [task(i) for i in indices]


def _check_resolution(resolution: int) -> None:
    if not MIN_RESOLUTION <= resolution <= MAX_RESOLUTION:
        raise BenchError(f"synthskull: resolution must be between {MIN_RESOLUTION} and "
                         f"{MAX_RESOLUTION}, got {resolution}")


def _separated(jaw: np.ndarray, cranium: np.ndarray) -> np.ndarray:
    """The mandible less every voxel touching the cranium (26-neighbourhood).

    Keeps the two parts separate components at every resolution, as the
    temporomandibular joint's articular disc separates them in life.
    """
    box = _bounding_box(jaw, margin=1)
    if box is None:
        return jaw
    touching = ndimage.binary_dilation(cranium[box], structure=np.ones((3, 3, 3), dtype=bool))
    separated = np.zeros_like(jaw)
    separated[box] = jaw[box] & ~touching
    return separated


def _largest_component(part: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of one part.

    Thin bone sampled on a coarse grid, and the cuts of openings, can leave
    islands of a few voxels; a CT segmentation would drop them too.
    """
    box = _bounding_box(part, margin=0)
    if box is None:
        return part
    labels, count = ndimage.label(part[box], structure=np.ones((3, 3, 3), dtype=bool))
    if count <= 1:
        return part
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    kept = np.zeros_like(part)
    kept[box] = labels == largest
    return kept


def _bounding_box(volume: np.ndarray, margin: int) -> tuple[slice, ...] | None:
    """Slices around the non-zero voxels, grown by ``margin``; None if empty."""
    box = []
    for axis in range(3):
        hit = np.flatnonzero(volume.any(axis=tuple(a for a in range(3) if a != axis)))
        if not len(hit):
            return None
        box.append(slice(max(hit[0] - margin, 0), hit[-1] + margin + 1))
    return tuple(box)


def _landmarks(skull: Skull, mandible: bool) -> dict[str, np.ndarray]:
    """Landmarks on the continuous bone surface, in grid coordinates (mm).

    Each is found by marching along a ray through the painting program, so its
    position does not depend on the grid resolution.
    """
    params = skull.parameters
    # Porion: the top of the external acoustic meatus, on the lateral surface.
    nasion, porion_right, porion_left = _last_exits(skull.cranium, [
        ([0, 40, NASION_HEIGHT_MM * params.size], [0, 1, 0]),
        ([20, 0, 0], [1, 0, 0]), ([-20, 0, 0], [-1, 0, 0])])
    orbit_x = 33 * params.facial_width * params.size
    orbitale_right = _orbitale(skull.cranium, orbit_x, nasion[1])
    orbitale_left = _orbitale(skull.cranium, -orbit_x, nasion[1])
    menton = _menton(skull.mandible, nasion[1]) if mandible else np.full(3, np.nan)
    found = {"nasion": nasion, "porion_left": porion_left, "porion_right": porion_right,
             "orbitale_left": orbitale_left, "orbitale_right": orbitale_right, "menton": menton}
    return {k: v + FRANKFORT_ORIGIN_MM for k, v in found.items()}


def _orbitale(strokes: list, orbit_x: float, nasion_y: float) -> np.ndarray:
    """Orbitale: the lowest point of the infraorbital margin.

    Rays go down from inside the orbit at its centre line; the margin is the
    front edge of the orbital floor, so the most anterior ray that meets bone
    within the orbit's height range gives the point.
    """
    rays = [([orbit_x, y, 14], [0, 0, -1]) for y in np.arange(nasion_y - 40, nasion_y, 2.0)]
    hits = np.array(_first_hits(strokes, rays, length_mm=40.0, step_mm=0.5))
    on_floor = np.flatnonzero(hits[:, 2] > -20)
    return hits[on_floor[-1]] if len(on_floor) else np.full(3, np.nan)


def _menton(strokes: list, nasion_y: float) -> np.ndarray:
    """Menton: the lowest point of the mandibular symphysis in the midsagittal plane."""
    rays = [([0, y, -50], [0, 0, -1]) for y in np.arange(nasion_y - 45, nasion_y + 5, 2.0)]
    exits = np.array(_last_exits(strokes, rays, length_mm=80.0, step_mm=0.5))
    return exits[np.nanargmin(exits[:, 2])]


def _ray_hits(strokes: list, rays: list[tuple[list[float], list[float]]],
              length_mm: float = 120.0, step_mm: float = 0.25) -> tuple[np.ndarray, np.ndarray]:
    """Points (rays, steps, 3) along each (start, direction) and whether each is bone."""
    t = np.arange(0.0, length_mm, step_mm)
    points = np.stack([np.asarray(start, float) + t[:, None] * np.asarray(direction, float)
                       for start, direction in rays])
    bone = occupied(strokes, points.reshape(-1, 3)).reshape(points.shape[:2])
    return points, bone


def _last_exits(strokes: list, rays: list, **ray_options: float) -> list[np.ndarray]:
    """The last bone point along each ray: the outer surface in that direction."""
    points, bone = _ray_hits(strokes, rays, **ray_options)
    return [p[np.flatnonzero(b)[-1]] if b.any() else np.full(3, np.nan)
            for p, b in zip(points, bone)]


def _first_hits(strokes: list, rays: list, **ray_options: float) -> list[np.ndarray]:
    """The first bone point along each ray started in empty space."""
    points, bone = _ray_hits(strokes, rays, **ray_options)
    return [p[np.flatnonzero(b)[0]] if b.any() else np.full(3, np.nan)
            for p, b in zip(points, bone)]
