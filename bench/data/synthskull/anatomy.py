"""The distribution of synthskull subjects and the anatomy built from their parameters.

All coordinates here are in the Frankfort frame of :mod:`.template` (mm):
origin midway between the porions, x towards the subject's right, y anterior,
z superior, Frankfort horizontal plane at z = 0. Mean adult dimensions
(Martin's measurements, mixed sex) set the targets: maximum cranial length
about 185 mm, breadth about 140 mm, porion-to-vertex height about 118 mm,
nasion-menton height about 120 mm, bizygomatic breadth about 130 mm.

The parameter distribution is documented in docs/SYNTHSKULL.md; the numbers
below are its single source.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import numpy as np

from bench.data.synthskull.shapes import Bump, Ellipsoid, Stroke, Sweep, VaultShell, occupied
from bench.data.synthskull.template import VaultTemplate

CLASS_NAMES = ("normocephaly", "scaphocephaly", "brachycephaly", "plagiocephaly",
               "trigonocephaly")
CLASS_PRIOR = (0.70, 0.10, 0.08, 0.07, 0.05)
# Per-axis scale that brings the fsaverage inner skull (an enlarged MNI-like
# average) to the mean adult inner skull: outer length 185, breadth 140 mm.
TEMPLATE_SCALE = np.array([0.84, 0.925, 0.87])
# Continuous parameters: name -> (mean, standard deviation); every draw is a
# normal truncated at 2 standard deviations, which keeps every skull inside the
# 240 mm field of view.
CONTINUOUS = {
    "size": (1.0, 0.025),
    "cephalic": (1.0, 0.035),
    "vault_height": (1.0, 0.025),
    "facial_height": (1.0, 0.025),
    "facial_width": (1.0, 0.04),
    "orbit_size": (1.0, 0.05),
    "mandible_size": (1.0, 0.03),
    "mandible_protrusion_mm": (0.0, 3.0),
    "thickness_mm": (6.0, 0.6),
    "asymmetry": (0.0, 0.012),
}
TRUNCATION_SD = 2.0
NASION_HEIGHT_MM = 22.0


@dataclass(frozen=True)
class SkullParameters:
    """Everything that determines one synthskull subject.

    Scale factors are relative to the mean adult (1.0); ``side`` is +1 or -1
    (the flattened side for plagiocephaly, the sign of mild asymmetry
    otherwise); ``severity`` in [0.6, 1] scales the class deformation.
    """

    label: str
    size: float
    cephalic: float
    vault_height: float
    facial_height: float
    facial_width: float
    orbit_size: float
    mandible_size: float
    mandible_protrusion_mm: float
    thickness_mm: float
    asymmetry: float
    side: int
    severity: float

    def as_dict(self) -> dict[str, float | int | str]:
        """Plain values, for manifests and data frames."""
        return asdict(self)


def sample_parameters(rng: np.random.Generator) -> SkullParameters:
    """Draw one subject's parameters from the documented distribution."""
    label = CLASS_NAMES[rng.choice(len(CLASS_NAMES), p=CLASS_PRIOR)]
    values = {}
    for name, (mean, sd) in CONTINUOUS.items():
        values[name] = mean + sd * float(np.clip(rng.standard_normal(), -TRUNCATION_SD,
                                                 TRUNCATION_SD))
    side = 1 if rng.random() < 0.5 else -1
    severity = float(rng.uniform(0.6, 1.0))
    return SkullParameters(label=label, side=side, severity=severity, **values)


@dataclass(frozen=True)
class Skull:
    """The painting programs of one subject, in the Frankfort frame."""

    cranium: list[Stroke]
    mandible: list[Stroke]
    parameters: SkullParameters


def build_skull(params: SkullParameters, template: VaultTemplate) -> Skull:
    """Turn parameters into the cranium's and the mandible's strokes."""
    vault = _vault(params, template)
    front = _frontal_surface_y(vault)
    face = _FaceFrame(params, front)
    face_bone = _face_bone(face)
    # The face's solid blocks reach into the cranial cavity; empty it again there.
    corners = [stroke.shape.bounds() for stroke in face_bone]
    clip = (np.min([c[0] for c in corners], axis=0), np.max([c[1] for c in corners], axis=0))
    cavity = replace(vault, cavity=True, clip=clip)
    cranium = [Stroke(vault)] + face_bone + [Stroke(cavity, add=False)]
    cranium += [Stroke(s, add=False) for s in _face_openings(face, params)]
    return Skull(cranium=cranium, mandible=_mandible(face), parameters=params)


def _vault(params: SkullParameters, template: VaultTemplate) -> VaultShell:
    class_scale, class_bumps = _class_deformation(params)
    scale = (TEMPLATE_SCALE * params.size * class_scale
             * np.array([params.cephalic, 1.0 / params.cephalic, params.vault_height]))
    asymmetry = (Bump(np.array([params.side, 0.3, 0.5]), 0.6, params.asymmetry),
                 Bump(np.array([-params.side, -0.5, 0.4]), 0.6, -params.asymmetry))
    thickness = (Bump(np.array([0.0, 1.0, 0.3]), 0.5, 0.15),
                 Bump(np.array([0.0, -1.0, 0.0]), 0.5, 0.15),
                 Bump(np.array([1.0, 0.0, -0.1]), 0.45, -0.25),
                 Bump(np.array([-1.0, 0.0, -0.1]), 0.45, -0.25))
    return VaultShell(radius_table=template.radius, centre=template.centre * scale,
                      scale=scale, thickness_mm=params.thickness_mm,
                      shape_bumps=class_bumps + asymmetry, thickness_bumps=thickness)


def _class_deformation(params: SkullParameters) -> tuple[np.ndarray, tuple[Bump, ...]]:
    """Per-axis scale and radial bumps of each class, at full severity times ``severity``.

    scaphocephaly (sagittal synostosis): long, narrow, frontal bossing and an
    occipital bullet; brachycephaly (bilateral coronal): short, wide, tall,
    flat occiput; plagiocephaly (positional): one-sided occipital flattening
    with ipsilateral frontal bossing (a parallelogram from above);
    trigonocephaly (metopic): a keeled, narrow, triangular forehead.
    """
    k, s = params.severity, params.side
    if params.label == "scaphocephaly":
        scale = [1 - 0.10 * k, 1 + 0.10 * k, 1 - 0.02 * k]
        bumps = [Bump([0, 1, 0.4], 0.5, 0.06 * k), Bump([0, -1, 0.1], 0.45, 0.06 * k)]
    elif params.label == "brachycephaly":
        scale = [1 + 0.08 * k, 1 - 0.11 * k, 1 + 0.03 * k]
        bumps = [Bump([0, -1, 0.2], 0.6, -0.08 * k), Bump([0, 0.3, 1], 0.5, 0.03 * k)]
    elif params.label == "plagiocephaly":
        scale = [1.0, 1.0, 1.0]
        bumps = [Bump([0.7 * s, -0.7, 0.1], 0.5, -0.13 * k),
                 Bump([0.6 * s, 0.8, 0.3], 0.5, 0.07 * k),
                 Bump([-0.6 * s, -0.8, 0.2], 0.5, 0.05 * k)]
    elif params.label == "trigonocephaly":
        scale = [1 - 0.03 * k, 1.0, 1.0]
        bumps = [Bump([0.75, 0.65, 0.35], 0.45, -0.09 * k),
                 Bump([-0.75, 0.65, 0.35], 0.45, -0.09 * k),
                 Bump([0, 1, 0.25], 0.25, 0.06 * k),
                 Bump([0.8, -0.5, 0.3], 0.5, 0.04 * k), Bump([-0.8, -0.5, 0.3], 0.5, 0.04 * k)]
    else:
        scale, bumps = [1.0, 1.0, 1.0], []
    return np.array(scale), tuple(Bump(np.array(b.direction, dtype=float), b.width, b.amplitude)
                                  for b in bumps)


def _frontal_surface_y(vault: VaultShell) -> float:
    """y of the vault's outer frontal surface in the midline at nasion height, mm."""
    y = np.arange(40.0, 160.0, 0.25)
    points = np.stack([np.zeros_like(y), y, np.full_like(y, NASION_HEIGHT_MM)], axis=1)
    bone = occupied([Stroke(vault)], points)
    return float(y[np.flatnonzero(bone)[-1]]) if bone.any() else 100.0


class _FaceFrame:
    """Maps face coordinates to the Frankfort frame.

    Face coordinates are mm in the mean face: x from the midline, y relative to
    the frontal surface at nasion height (negative is posterior), z in the
    Frankfort frame. Facial width scales x, facial height scales z about the
    nasion height, and the overall size scales everything.
    """

    def __init__(self, params: SkullParameters, front_y: float) -> None:
        self.params = params
        self.front_y = front_y

    def point(self, x: float, y: float, z: float) -> np.ndarray:
        p = self.params
        return np.array([x * p.facial_width * p.size, self.front_y + y * p.size,
                         (NASION_HEIGHT_MM + (z - NASION_HEIGHT_MM) * p.facial_height) * p.size])

    def radii(self, rx: float, ry: float, rz: float) -> np.ndarray:
        p = self.params
        return np.array([rx * p.facial_width, ry, rz * p.facial_height]) * p.size

    def absolute(self, x: float, y: float, z: float) -> np.ndarray:
        """A point tied to the cranial base (porion frame), scaled by size only."""
        return np.array([x * self.params.facial_width, y, z]) * self.params.size

    def ellipsoid(self, centre: tuple[float, float, float], radii: tuple[float, float, float],
                  yaw_deg: float = 0.0) -> Ellipsoid:
        return Ellipsoid(self.point(*centre), self.radii(*radii), _yaw(yaw_deg))

    def mirrored(self, centre: tuple[float, float, float], radii: tuple[float, float, float],
                 yaw_deg: float = 0.0) -> list[Ellipsoid]:
        """The same ellipsoid on the subject's right (x > 0) and left."""
        x, y, z = centre
        return [self.ellipsoid((x, y, z), radii, yaw_deg),
                self.ellipsoid((-x, y, z), radii, -yaw_deg)]


def _yaw(degrees: float) -> np.ndarray:
    angle = np.deg2rad(degrees)
    return np.array([[np.cos(angle), -np.sin(angle), 0.0],
                     [np.sin(angle), np.cos(angle), 0.0], [0.0, 0.0, 1.0]])


def _face_bone(face: _FaceFrame) -> list[Stroke]:
    """Bone added to the vault: brow, maxilla, zygomas and arches, temporal, teeth."""
    shapes = [face.ellipsoid((0, -27, 12), (50, 29, 26)),
              face.ellipsoid((0, -30, -27), (37, 30, 22))]
    shapes += face.mirrored((46, -22, -4), (11, 12, 15))
    for side in (1, -1):
        arch = np.array([face.point(48 * side, -28, -6), face.point(60 * side, -50, -4)]
                        + [face.absolute(63 * side, 28, -2), face.absolute(59 * side, 6, 0)])
        shapes.append(Sweep(arch, np.full(4, 2.6), np.full(4, 5.0), np.array([0.0, 0.0, 1.0])))
        shapes.append(Ellipsoid(face.absolute(58 * side, -12, -6), np.array([13, 16, 13.0]),
                                np.eye(3)))
        shapes.append(Ellipsoid(face.absolute(54 * side, -16, -26), np.array([8, 10, 13.0]),
                                np.eye(3)))
    alveolar = np.array([face.point(x, y, -49) for x, y in
                         [(-27, -56), (-25, -36), (-15, -16), (0, -9), (15, -16), (25, -36),
                          (27, -56)]])
    shapes.append(Sweep(alveolar, np.full(7, 6.0), np.full(7, 6.5), np.array([0.0, 0.0, 1.0])))
    return [Stroke(s) for s in shapes]


def _face_openings(face: _FaceFrame, params: SkullParameters) -> list[Ellipsoid]:
    """Orbits, nasal aperture and cavity, sinuses, ear canals, foramen magnum."""
    o = params.orbit_size
    spacing = 31.0 * (0.92 if params.label == "trigonocephaly" else 1.0)
    openings = face.mirrored((spacing, -22, 14), (19 * o, 26, 17 * o), yaw_deg=-15)
    openings += [face.ellipsoid((0, -5, -16), (11, 14, 17)),
                 face.ellipsoid((0, -7, -25), (13, 12, 9)),
                 face.ellipsoid((0, -36, -15), (14, 30, 18))]
    openings += face.mirrored((20, -30, -22), (11, 15, 12))
    for side in (1, -1):
        openings.append(Ellipsoid(face.absolute(66 * side, 0, -4.5), np.array([14, 4.5, 4.5]),
                                  np.eye(3)))
    openings.append(Ellipsoid(face.absolute(0, -12, -30), np.array([14, 17, 15.0]), np.eye(3)))
    return openings


def _mandible(face: _FaceFrame) -> list[Stroke]:
    """Body, rami, coronoid processes, condyles and chin, scaled by mandible size."""
    p = face.params
    chin_y = -14 + p.mandible_protrusion_mm
    body = [face.absolute(-47, 0, -70)]
    body += [face.point(x, y, z) for x, y, z in
             [(-40, -75 + 0.3 * chin_y, -74), (-30, -45 + 0.6 * chin_y, -77),
              (-16, -22 + 0.9 * chin_y, -78), (0, chin_y, -78), (16, -22 + 0.9 * chin_y, -78),
              (30, -45 + 0.6 * chin_y, -77), (40, -75 + 0.3 * chin_y, -74)]]
    body += [face.absolute(47, 0, -70)]
    height = np.array([11.0, 13, 14, 15, 15, 15, 14, 13, 11])
    shapes: list[Ellipsoid | Sweep] = [
        Sweep(np.array(body), np.full(9, 5.5), height, np.array([0.0, 0.0, 1.0])),
        face.ellipsoid((0, chin_y + 2, -87), (12, 6, 8))]
    for side in (1, -1):
        ramus = np.array([face.absolute(47 * side, 0, -68), face.absolute(51 * side, 9, -16)])
        shapes.append(Sweep(ramus, np.array([4.0, 4.0]), np.array([14.0, 8.0]),
                            np.array([0.0, 1.0, 0.0])))
        coronoid = np.array([face.absolute(47 * side, 18, -52), face.absolute(46 * side, 28, -20)])
        shapes.append(Sweep(coronoid, np.array([3.0, 3.0]), np.array([6.0, 3.0]),
                            np.array([0.0, 1.0, 0.0])))
        shapes.append(Ellipsoid(face.absolute(52 * side, 10, -14), np.array([10, 5, 5.0]),
                                np.eye(3)))
    pivot = face.absolute(0, 10, -14)
    return [Stroke(_scaled(s, pivot, p.mandible_size)) for s in shapes]


def _scaled(shape: Ellipsoid | Sweep, pivot: np.ndarray, factor: float) -> Ellipsoid | Sweep:
    """The shape scaled by ``factor`` about ``pivot``."""
    if isinstance(shape, Ellipsoid):
        return Ellipsoid(pivot + (shape.centre - pivot) * factor, shape.radii * factor,
                         shape.rotation)
    return Sweep(pivot + (shape.points - pivot) * factor, shape.half_width * factor,
                 shape.half_height * factor, shape.up)
