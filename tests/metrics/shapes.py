"""Shapes with known measures in the common grid, shared by the metric tests."""

import numpy as np

FOV = 256.0


def ellipsoid(resolution, radii, centre=(0.0, 0.0, 0.0)):
    """Voxels of the common grid whose centres lie in the ellipsoid (mm), bool (R, R, R)."""
    size = FOV / resolution
    axis = (np.arange(resolution) + 0.5) * size - FOV / 2
    x, y, z = np.meshgrid(axis, axis, axis, indexing="ij")
    return ((x - centre[0]) / radii[0]) ** 2 + ((y - centre[1]) / radii[1]) ** 2 + \
        ((z - centre[2]) / radii[2]) ** 2 <= 1.0


def shell(resolution, radii, thickness, centre=(0.0, 0.0, 0.0)):
    """An ellipsoidal shell: the ellipsoid less the one with semi-axes shorter by ``thickness``."""
    inner = tuple(r - thickness for r in radii)
    return ellipsoid(resolution, radii, centre) & ~ellipsoid(resolution, inner, centre)


def skull_like(resolution, radii, thickness=8.0):
    """A shell (cranium) and a separate blob below it (mandible)."""
    cranium = shell(resolution, radii, thickness, (0.0, 0.0, 10.0))
    jaw = ellipsoid(resolution, (35.0, 25.0, 12.0), (0.0, 30.0, -radii[2] - 15.0))
    return cranium | jaw
