"""The real-anatomy base of the vault: FreeSurfer's fsaverage inner-skull surface.

The ``mne`` wheel ships the population-average (fsaverage) boundary-element
surfaces and head fiducials under ``mne/data/fsaverage``. They are read from
the installed package at run time, never downloaded and never copied into this
repository. The inner-skull surface (10,242 vertices, MNI305-like space) is
moved into the benchmark's Frankfort frame and turned into a radial function:
the distance from a centre to the surface in every direction, tabulated on a
(polar, azimuth) grid. The vault generator deforms and thickens that function.

The Frankfort frame: origin midway between the porions, x towards the
subject's right, y anterior, z superior, with the Frankfort horizontal plane
(both porions and the orbitales) at z = 0. The fsaverage fiducials are skin
points, so porion and orbitale are estimated from them with fixed offsets
(``PORION_FROM_PREAURICULAR_MM``, ``ORBITALE_FROM_NASION_MM``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial import cKDTree

from bench.core.errors import BenchError

# Bony porion relative to the skin pre-auricular point (medial, posterior, superior), mm.
PORION_FROM_PREAURICULAR_MM = np.array([8.0, -9.0, 5.0])
# Orbitale relative to the skin nasion (lateral, posterior, inferior), mm.
ORBITALE_FROM_NASION_MM = np.array([33.0, -12.0, -24.0])
POLAR_BINS = 90
AZIMUTH_BINS = 180


@dataclass(frozen=True)
class VaultTemplate:
    """The inner-skull surface as a radial table in the Frankfort frame (mm).

    Attributes:
        vertices: (V, 3) surface vertices in the Frankfort frame, mm.
        centre: (3,) centre from which radii are measured, mm.
        radius: (POLAR_BINS, AZIMUTH_BINS) distance from ``centre`` to the
            surface, mm; row i is polar angle (i + 0.5) * pi / POLAR_BINS from
            +z, column j azimuth -pi + (j + 0.5) * 2 pi / AZIMUTH_BINS from +x.
    """

    vertices: np.ndarray
    centre: np.ndarray
    radius: np.ndarray


def fsaverage_folder() -> Path:
    """The fsaverage data folder of the installed ``mne`` package."""
    try:
        import mne  # heavy (seconds to import), and only generating synthskull needs it
    except ImportError as error:
        raise BenchError("synthskull needs the 'mne' package for its fsaverage template; "
                         "install the project with `make install`") from error
    folder = Path(mne.__file__).parent / "data" / "fsaverage"
    if not (folder / "fsaverage-inner_skull-bem.fif").is_file():
        raise BenchError(f"{folder}: fsaverage-inner_skull-bem.fif is missing from the installed "
                         f"mne package; reinstall mne")
    return folder


@functools.lru_cache(maxsize=1)
def load_template() -> VaultTemplate:
    """Read the fsaverage inner skull and build its radial table (cached per process)."""
    import mne  # heavy: see fsaverage_folder

    folder = fsaverage_folder()
    surface = mne.read_bem_surfaces(folder / "fsaverage-inner_skull-bem.fif", verbose=False)[0]
    fiducials, _ = mne.io.read_fiducials(folder / "fsaverage-fiducials.fif", verbose=False)
    points = {int(f["ident"]): np.asarray(f["r"]) * 1000.0 for f in fiducials}
    left, nasion, right = points[1], points[2], points[3]
    vertices = _to_frankfort(np.asarray(surface["rr"]) * 1000.0, left, nasion, right)
    # The average brain is nearly but not exactly symmetric; the template is made
    # exactly symmetric (vertices and their mirror images) so that asymmetry is
    # only what the generator adds on purpose.
    both = np.concatenate([vertices, vertices * [-1, 1, 1]])
    centre = both.mean(axis=0)
    return VaultTemplate(vertices=vertices, centre=centre, radius=_radial_table(both - centre))


def _to_frankfort(vertices: np.ndarray, left_pa: np.ndarray, nasion: np.ndarray,
                  right_pa: np.ndarray) -> np.ndarray:
    """Move fsaverage coordinates (mm) into the Frankfort frame."""
    porion_left = left_pa + PORION_FROM_PREAURICULAR_MM * [1, 1, 1]
    porion_right = right_pa + PORION_FROM_PREAURICULAR_MM * [-1, 1, 1]
    origin = (porion_left + porion_right) / 2
    orbitale = nasion + ORBITALE_FROM_NASION_MM * [0, 1, 1]
    forward = orbitale - origin
    tilt = np.arctan2(forward[2], forward[1])
    cos, sin = np.cos(-tilt), np.sin(-tilt)
    rotation = np.array([[1, 0, 0], [0, cos, -sin], [0, sin, cos]])
    return (vertices - origin) @ rotation.T


def _radial_table(offsets: np.ndarray) -> np.ndarray:
    """Radius of the surface in each table direction, by inverse-distance weighting.

    Args:
        offsets: (V, 3) surface vertices relative to the centre, mm.

    Returns:
        (POLAR_BINS, AZIMUTH_BINS) radii in mm.
    """
    radii = np.linalg.norm(offsets, axis=1)
    tree = cKDTree(offsets / radii[:, None])
    polar = (np.arange(POLAR_BINS) + 0.5) * np.pi / POLAR_BINS
    azimuth = -np.pi + (np.arange(AZIMUTH_BINS) + 0.5) * 2 * np.pi / AZIMUTH_BINS
    polar, azimuth = np.meshgrid(polar, azimuth, indexing="ij")
    directions = np.stack([np.sin(polar) * np.cos(azimuth), np.sin(polar) * np.sin(azimuth),
                           np.cos(polar)], axis=-1).reshape(-1, 3)
    distance, index = tree.query(directions, k=6)
    weights = 1.0 / np.maximum(distance, 1e-6) ** 2
    table = (weights * radii[index]).sum(axis=1) / weights.sum(axis=1)
    return table.reshape(POLAR_BINS, AZIMUTH_BINS).astype(np.float32)
