"""Volume-level corruptions of known severity, for the metric audit (``bench audit``).

Each takes bool volumes (N, R, R, R) in the common grid and a severity s in
[0, 1]; s = 0 returns the volumes unchanged, and every random draw of volume i
comes from a generator seeded by (seed, i), so a corruption is deterministic
and volume i does not depend on the others.

- :func:`fragment`: at s = 1, 12 balls of 12 mm radius carved out of the bone
  around random bone voxels, and 20 spurious islands of 4 mm radius added at
  random positions of the skull's bounding box (both counts scale with s).
- :func:`rescale`: every length scaled by 1 + 0.1 s about the grid's centre
  (s = 1: 10 % larger in every direction).
- :func:`memorise`: a share s of the volumes (round(s N), at positions drawn
  with the seed) replaced by training skulls.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from bench.core.errors import BenchError
from bench.core.volumes import as_binary_volumes

CARVED_BALLS = 12
CARVED_RADIUS_MM = 12.0
ISLANDS = 20
ISLAND_RADIUS_MM = 4.0
MAX_SCALE_CHANGE = 0.10
_STREAM = 0xC0_44_0B7


def check_severity(severity: float) -> float:
    """``severity`` as a float in [0, 1], or a BenchError naming it."""
    if isinstance(severity, bool) or not 0.0 <= float(severity) <= 1.0:
        raise BenchError(f"corruption severity must lie in [0, 1], got {severity!r}")
    return float(severity)


def fragment(volumes: np.ndarray, severity: float, seed: int, voxel_size_mm: float
             ) -> np.ndarray:
    """Carve holes in the bone and add spurious islands (see the module notes)."""
    volumes = as_binary_volumes(volumes)
    severity = check_severity(severity)
    holes, islands = round(CARVED_BALLS * severity), round(ISLANDS * severity)
    out = volumes.copy()
    for i, volume in enumerate(out):
        rng = np.random.default_rng([_STREAM, seed, i])
        bone = np.argwhere(volume)
        if not len(bone):
            continue
        for centre in bone[rng.integers(len(bone), size=holes)]:
            _paint_ball(volume, centre, CARVED_RADIUS_MM / voxel_size_mm, False)
        low, high = bone.min(0), bone.max(0) + 1
        for centre in rng.integers(low, high, size=(islands, 3)):
            _paint_ball(volume, centre, ISLAND_RADIUS_MM / voxel_size_mm, True)
    return out


def rescale(volumes: np.ndarray, severity: float) -> np.ndarray:
    """Scale every length by 1 + 0.1 severity about the grid's centre."""
    volumes = as_binary_volumes(volumes)
    scale = 1.0 + MAX_SCALE_CHANGE * check_severity(severity)
    if scale == 1.0:
        return volumes.copy()
    centre = (np.array(volumes.shape[1:]) - 1) / 2.0
    # Output voxel x samples the input at centre + (x - centre) / scale.
    out = [ndimage.affine_transform(volume.astype(np.float32), np.eye(3) / scale,
                                    offset=centre - centre / scale, order=1) > 0.5
           for volume in volumes]
    return np.stack(out)


def memorise(volumes: np.ndarray, train: np.ndarray, severity: float, seed: int
             ) -> np.ndarray:
    """Replace round(severity N) of the volumes, at seeded positions, by training skulls."""
    volumes = as_binary_volumes(volumes)
    train = as_binary_volumes(train, volumes.shape[1])
    count = round(check_severity(severity) * len(volumes))
    rng = np.random.default_rng([_STREAM, seed])
    positions = rng.permutation(len(volumes))[:count]
    out = volumes.copy()
    out[positions] = train[rng.integers(len(train), size=count)]
    return out


def _paint_ball(volume: np.ndarray, centre: np.ndarray, radius: float, value: bool) -> None:
    """Set the voxels within ``radius`` voxels of ``centre`` to ``value``, in place."""
    reach = int(np.ceil(radius))
    low = np.maximum(centre - reach, 0)
    high = np.minimum(centre + reach + 1, volume.shape)
    grid = np.ogrid[tuple(slice(a, b) for a, b in zip(low, high))]
    inside = sum((axis - c) ** 2 for axis, c in zip(grid, centre)) <= radius ** 2
    region = volume[tuple(slice(a, b) for a, b in zip(low, high))]
    region[inside] = value
