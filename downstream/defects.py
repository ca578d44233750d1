"""Cranial defects cut from skulls, in the style of SkullBreak (Kodym et al., Data in Brief 2021).

SkullBreak makes a defect from a main sphere and smaller secondary spheres,
smooths their union by morphological opening and a smooth elastic
deformation, and removes the bone inside; its five defect types are
bilateral, fronto-orbital, parietotemporal, random_1 and random_2 (two
independent random defects). This generator follows that recipe on the
common grid (our own parameters, not SkullBreak's):

1. Vault. Only bone of the cranial vault may be removed: bone whose height z
   is above the *vault floor*, ``vault_depth_mm`` (75 mm) below the highest
   bone voxel (the vertex), a rule that needs no landmarks (generated samples
   have none). On 160 synthskull subjects at 64^3 the floor lay 28 to 52 mm
   (median 38) above the Frankfort plane and 7 to 30 mm above nasion, so the
   bone above it is the vault shell (frontal squama down to the supraorbital
   region, parietal, upper temporal squama, occipital bone); the face, skull
   base and mandible are never cut.
2. Centre. From the centroid of the vault bone, a direction per type (x right,
   y anterior, z superior; jittered by about 8 degrees, side random):
   bilateral (0, 0.6, 0.8), on the midline between forehead and vertex;
   frontoorbital (+-0.4, 0.9, -0.3), low on one side of the forehead;
   parietotemporal (+-1, -0.15, 0), on one side; random_1 and random_2:
   uniform on the directions with z >= -0.2. The main sphere's centre is the vault voxel
   closest in angle to that direction.
3. Shape. Main sphere radius uniform in the type's range (``RADII_MM``);
   2 to 5 secondary spheres of 0.35 to 0.6 times that radius centred on the
   main sphere's rim, tangent to the vault; their union, opened with a ball of
   radius ``opening_mm``, warped by a displacement field of Gaussian-smoothed
   noise (smoothness ``deform_smoothness_mm``, largest displacement
   ``deform_mm``).
4. Cut. The *defect region* is the warped shape above the vault floor; the
   implant is the bone inside it and the defective skull the rest. Its
   volume must lie in [``min_volume_ml``, ``max_volume_ml``] (5 to 50 mL by
   default); otherwise the radius is rescaled by the square root of the
   volume ratio and the shape drawn again (at most ``max_tries`` times).
   Measured medians (10th to 90th percentile) on 60 synthskull skulls at 64^3:
   bilateral 33 mL (20 to 44), frontoorbital 12 (7 to 17), parietotemporal
   28 (20 to 38), random 19 (10 to 30), the same for both random types.

Every draw comes from the generator passed in, so a (volume, kind, seed)
always gives the same defect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from bench.data.grid import axis_centers_mm
from bench.core.errors import BenchError

DEFECT_KINDS = ("bilateral", "frontoorbital", "parietotemporal", "random_1", "random_2")
RADII_MM = {"bilateral": (32.0, 45.0), "frontoorbital": (22.0, 32.0),
            "parietotemporal": (30.0, 42.0), "random_1": (20.0, 38.0),
            "random_2": (20.0, 38.0)}
"""Range of the main sphere's radius per type, mm."""
DIRECTION_JITTER = 0.12
"""Standard deviation of the noise added to a type's unit direction (about 8 degrees)."""


class DefectError(BenchError):
    """No defect in the allowed volume range could be cut (e.g. a skull with too little vault)."""


@dataclass(frozen=True)
class DefectParams:
    """How defects are made; see the module docstring for the steps.

    Attributes:
        min_volume_ml, max_volume_ml: allowed volume of removed bone, mL.
        vault_depth_mm: the vault floor lies this far below the vertex.
        secondary_spheres: (fewest, most) secondary spheres.
        secondary_scale: (smallest, largest) secondary radius over the main radius.
        opening_mm: radius of the ball that opens the sphere union.
        deform_mm: largest displacement of the elastic warp.
        deform_smoothness_mm: standard deviation of the Gaussian that smooths its noise.
        max_tries: shapes drawn before giving up on the volume range.
    """

    min_volume_ml: float = 5.0
    max_volume_ml: float = 50.0
    vault_depth_mm: float = 75.0
    secondary_spheres: tuple[int, int] = (2, 5)
    secondary_scale: tuple[float, float] = (0.35, 0.6)
    opening_mm: float = 6.0
    deform_mm: float = 5.0
    deform_smoothness_mm: float = 10.0
    max_tries: int = 8

    def check(self) -> None:
        """Raise BenchError for values outside their allowed ranges."""
        if not 0 <= self.min_volume_ml < self.max_volume_ml:
            raise BenchError(f"defects: need 0 <= min_volume_ml < max_volume_ml, got "
                             f"{self.min_volume_ml} and {self.max_volume_ml}")
        low, high = self.secondary_spheres
        if not 0 <= low <= high:
            raise BenchError(f"defects: secondary_spheres must be (fewest, most) with "
                             f"0 <= fewest <= most, got {self.secondary_spheres}")
        small, large = self.secondary_scale
        if not 0 < small <= large:
            raise BenchError(f"defects: secondary_scale must be (smallest, largest) with "
                             f"0 < smallest <= largest, got {self.secondary_scale}")
        if self.vault_depth_mm <= 0:
            raise BenchError(f"defects: vault_depth_mm must be positive, got "
                             f"{self.vault_depth_mm}")
        if isinstance(self.max_tries, bool) or not isinstance(self.max_tries, int) or \
                self.max_tries < 1:
            raise BenchError(f"defects: max_tries must be a positive integer, got "
                             f"{self.max_tries!r}")
        for name in ("opening_mm", "deform_mm", "deform_smoothness_mm"):
            if getattr(self, name) < 0:
                raise BenchError(f"defects: {name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class Defect:
    """One defect cut from one skull.

    Attributes:
        defective: bool (R, R, R), the skull without the implant.
        implant: bool (R, R, R), the removed bone (skull AND region).
        region: bool (R, R, R), the defect region: where bone was removed, all of it.
        kind: one of ``DEFECT_KINDS``.
        centre_mm: (3,) centre of the main sphere.
        radius_mm: radius of the main sphere.
        volume_ml: volume of the implant.
    """

    defective: np.ndarray
    implant: np.ndarray
    region: np.ndarray
    kind: str
    centre_mm: np.ndarray
    radius_mm: float
    volume_ml: float


def vault_floor_mm(volume: np.ndarray, voxel_size_mm: float, params: DefectParams) -> float:
    """Height z (mm) of the vault floor: ``vault_depth_mm`` below the highest bone voxel."""
    levels = np.flatnonzero(volume.any(axis=(0, 1)))
    if len(levels) == 0:
        raise DefectError("defects: the skull has no bone")
    centres = axis_centers_mm(volume.shape[0], volume.shape[0] * voxel_size_mm)
    return float(centres[levels[-1]]) - params.vault_depth_mm


def cut_defect(volume: np.ndarray, voxel_size_mm: float, kind: str, rng: np.random.Generator,
               params: DefectParams = DefectParams()) -> Defect:
    """Cut one defect of type ``kind`` from a skull volume (R, R, R).

    Raises:
        BenchError: for an unknown kind or parameters out of range.
        DefectError: when no defect in the volume range was found in ``max_tries``.
    """
    if kind not in DEFECT_KINDS:
        raise BenchError(f"defects: unknown kind {kind!r}; allowed: {', '.join(DEFECT_KINDS)}")
    params.check()
    volume = np.asarray(volume, dtype=bool)
    resolution = volume.shape[0]
    axis = axis_centers_mm(resolution, resolution * voxel_size_mm).astype(np.float64)
    above_floor = axis[None, None, :] > vault_floor_mm(volume, voxel_size_mm, params)
    vault_voxels = np.argwhere(volume & above_floor)
    if len(vault_voxels) == 0:
        raise DefectError("defects: the skull has no bone above the vault floor")
    vault_points = axis[vault_voxels]
    centre, normal = _defect_centre(vault_points, kind, rng)
    voxel_ml = voxel_size_mm ** 3 / 1000.0
    low, high = RADII_MM[kind]
    radius = rng.uniform(low, high)
    target = np.sqrt(params.min_volume_ml * params.max_volume_ml)
    for _ in range(params.max_tries):
        region = above_floor & _warped_shape(resolution, axis, voxel_size_mm, centre, normal,
                                             radius, rng, params)
        implant = volume & region
        volume_ml = implant.sum() * voxel_ml
        if params.min_volume_ml <= volume_ml <= params.max_volume_ml:
            return Defect(volume & ~region, implant, region, kind, centre, float(radius),
                          float(volume_ml))
        radius *= float(np.clip(np.sqrt(target / max(volume_ml, voxel_ml)), 0.5, 2.0))
    raise DefectError(f"defects: no {kind} defect between {params.min_volume_ml} and "
                      f"{params.max_volume_ml} mL in {params.max_tries} tries (last "
                      f"{volume_ml:.1f} mL); the skull may have too little vault bone")


def _defect_centre(vault_points: np.ndarray, kind: str, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    """Centre (mm) and outward unit normal of the main sphere on the vault.

    The centre is the vault point closest in angle, seen from the vault
    centroid, to the type's direction; the normal points from the centroid to it.
    """
    side = rng.choice((-1.0, 1.0))
    if kind.startswith("random"):
        while True:
            direction = rng.standard_normal(3)
            direction /= np.linalg.norm(direction)
            if direction[2] >= -0.2:
                break
    else:
        direction = {"bilateral": np.array([0.0, 0.6, 0.8]),
                     "frontoorbital": np.array([0.4 * side, 0.9, -0.3]),
                     "parietotemporal": np.array([side, -0.15, 0.0])}[kind]
        direction = direction / np.linalg.norm(direction)
        direction = direction + DIRECTION_JITTER * rng.standard_normal(3)
    direction /= np.linalg.norm(direction)
    offsets = vault_points - vault_points.mean(0)
    lengths = np.maximum(np.linalg.norm(offsets, axis=1), 1e-9)
    best = np.argmax(offsets @ direction / lengths)
    return vault_points[best], offsets[best] / lengths[best]


def _warped_shape(resolution: int, axis: np.ndarray, voxel_size_mm: float, centre: np.ndarray,
                  normal: np.ndarray, radius: float, rng: np.random.Generator,
                  params: DefectParams) -> np.ndarray:
    """The opened, warped union of the main and secondary spheres, bool (R, R, R)."""
    centres, radii = _spheres(centre, normal, radius, rng, params)
    margin = params.deform_mm + 2 * voxel_size_mm
    low = np.searchsorted(axis, (centres - radii[:, None]).min(0) - margin)
    high = np.searchsorted(axis, (centres + radii[:, None]).max(0) + margin, side="right")
    box = tuple(slice(a, b) for a, b in zip(low, high))
    grids = np.meshgrid(*(axis[s] for s in box), indexing="ij")
    inside = np.zeros(grids[0].shape, dtype=bool)
    for c, r in zip(centres, radii):
        inside |= sum((g - ci) ** 2 for g, ci in zip(grids, c)) <= r * r
    steps = int(round(params.opening_mm / voxel_size_mm))
    if steps >= 1:
        ball = _ball(steps)
        inside = ndimage.binary_opening(inside, structure=ball)
    inside = _elastic_warp(inside, voxel_size_mm, rng, params)
    shape = np.zeros((resolution,) * 3, dtype=bool)
    shape[box] = inside
    return shape


def _spheres(centre: np.ndarray, normal: np.ndarray, radius: float, rng: np.random.Generator,
             params: DefectParams) -> tuple[np.ndarray, np.ndarray]:
    """Centres (S, 3) and radii (S,): the main sphere, then secondary ones on its rim.

    Secondary centres lie at distance ``radius`` from the main centre in
    random directions perpendicular to ``normal`` (tangent to the vault).
    """
    count = rng.integers(params.secondary_spheres[0], params.secondary_spheres[1] + 1)
    centres, radii = [centre], [radius]
    for _ in range(count):
        tangent = rng.standard_normal(3)
        tangent -= (tangent @ normal) * normal
        tangent /= max(float(np.linalg.norm(tangent)), 1e-9)
        centres.append(centre + radius * tangent)
        radii.append(radius * rng.uniform(*params.secondary_scale))
    return np.array(centres), np.array(radii)


def _ball(radius_voxels: int) -> np.ndarray:
    span = np.arange(-radius_voxels, radius_voxels + 1)
    x, y, z = np.meshgrid(span, span, span, indexing="ij")
    return x * x + y * y + z * z <= radius_voxels * radius_voxels


def _elastic_warp(mask: np.ndarray, voxel_size_mm: float, rng: np.random.Generator,
                  params: DefectParams) -> np.ndarray:
    """``mask`` resampled at p + u(p), u smooth noise with largest length ``deform_mm``."""
    if params.deform_mm <= 0:
        return mask
    sigma = params.deform_smoothness_mm / voxel_size_mm
    field = np.stack([ndimage.gaussian_filter(rng.standard_normal(mask.shape), sigma,
                                              mode="reflect") for _ in range(3)])
    longest = np.sqrt((field ** 2).sum(0)).max()
    field *= params.deform_mm / voxel_size_mm / max(longest, 1e-12)
    coordinates = np.indices(mask.shape, dtype=np.float64) + field
    warped = ndimage.map_coordinates(mask.astype(np.float32), coordinates, order=1,
                                     mode="constant", cval=0.0)
    return warped > 0.5
