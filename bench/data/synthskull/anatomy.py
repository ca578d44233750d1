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

from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace

import numpy as np

from bench.data.synthskull.shapes import Bump, Ellipsoid, Stroke, Sweep, VaultShell, occupied
from bench.data.synthskull.template import VaultTemplate

CLASS_NAMES = ("normocephaly", "scaphocephaly", "brachycephaly", "plagiocephaly",
               "trigonocephaly")
CLASS_PRIOR = (0.70, 0.10, 0.08, 0.07, 0.05)
# Per-axis scale that brings the fsaverage inner skull (an enlarged MNI-like
# average) to the mean adult inner skull: outer length 185, breadth 140 mm.
TEMPLATE_SCALE = np.array([0.84, 0.925, 0.88])
# Continuous parameters: name -> (mean, standard deviation); every draw is a
# normal truncated at 2.5 standard deviations.
CONTINUOUS = {
    "size": (1.0, 0.03),
    "cephalic": (1.0, 0.035),
    "vault_height": (1.0, 0.03),
    "facial_height": (1.0, 0.035),
    "facial_width": (1.0, 0.04),
    "orbit_size": (1.0, 0.05),
    "mandible_size": (1.0, 0.035),
    "mandible_protrusion_mm": (0.0, 3.0),
    "thickness_mm": (6.0, 0.6),
    "asymmetry": (0.0, 0.012),
}
TRUNCATION_SD = 2.5
NASION_HEIGHT_MM = 22.0
# Heights (Frankfort frame, mm) of the occlusal plane and of the crowns' centres.
OCCLUSAL_Z = -55.0
UPPER_CROWN_Z = -48.5
LOWER_CROWN_Z = -61.5


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


@dataclass(frozen=True)
class SynthskullPrior:
    """The distribution that subjects are drawn from; the default is the documented one.

    The metric audit changes it to corrupt the ground truth in known ways,
    without changing which random numbers a subject draws, so that subject
    (seed, index) under a changed prior is the same skull with other parameters.

    Attributes:
        class_prior: probability of each of :data:`CLASS_NAMES` (sums to 1).
        spread: every continuous parameter's deviation from its mean is
            multiplied by this (0: all at their means; 2: twice the spread).
        asymmetry_shift: added to every subject's vault asymmetry (relative
            bump amplitude; the documented sd is 0.012).
    """

    class_prior: tuple[float, ...] = CLASS_PRIOR
    spread: float = 1.0
    asymmetry_shift: float = 0.0

    def __post_init__(self) -> None:
        prior = np.asarray(self.class_prior, dtype=np.float64)
        if len(prior) != len(CLASS_NAMES) or (prior < 0).any() or not np.isclose(prior.sum(), 1):
            raise ValueError(f"class_prior must be {len(CLASS_NAMES)} probabilities summing to "
                             f"1, got {self.class_prior}")
        if self.spread < 0:
            raise ValueError(f"spread must be 0 or more, got {self.spread}")


def sample_parameters(rng: np.random.Generator,
                      prior: SynthskullPrior = SynthskullPrior()) -> SkullParameters:
    """Draw one subject's parameters from ``prior`` (by default the documented distribution)."""
    label = CLASS_NAMES[rng.choice(len(CLASS_NAMES), p=prior.class_prior)]
    values = {}
    for name, (mean, sd) in CONTINUOUS.items():
        values[name] = mean + prior.spread * sd * float(np.clip(rng.standard_normal(),
                                                                -TRUNCATION_SD, TRUNCATION_SD))
    values["asymmetry"] += prior.asymmetry_shift
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
    cranium += [Stroke(tooth) for tooth in _teeth(face, UPPER_CROWN_Z, 1.0, 0.0)]
    return Skull(cranium=cranium, mandible=_mandible(face), parameters=params)


def _vault(params: SkullParameters, template: VaultTemplate) -> VaultShell:
    class_scale, class_bumps = _class_deformation(params)
    scale = (TEMPLATE_SCALE * params.size * class_scale
             * np.array([params.cephalic, 1.0 / params.cephalic, params.vault_height]))
    asymmetry = (Bump(np.array([params.side, 0.3, 0.5]), 0.6, params.asymmetry),
                 Bump(np.array([-params.side, -0.5, 0.4]), 0.6, -params.asymmetry))
    # Thicker at the frontal and occipital bones than at the parietal walls.
    thickness = (Bump(np.array([0.0, 1.0, 0.3]), 0.7, 0.15),
                 Bump(np.array([0.0, -1.0, 0.0]), 0.7, 0.2))
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

    def sweep(self, points: Sequence[tuple[float, float, float]], half_width: list[float],
              half_height: list[float], up: tuple[float, float, float] = (0, 0, 1)) -> Sweep:
        """A sweep through face-coordinate points (sections scale with size only)."""
        return Sweep(np.array([self.point(*q) for q in points]),
                     np.array(half_width, dtype=float) * self.params.size,
                     np.array(half_height, dtype=float) * self.params.size,
                     np.array(up, dtype=float))

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
    """Bone added to the vault: brow and orbital rims, nose, maxilla, zygomas, arches,
    temporal bones and mastoids."""
    shapes: list[Ellipsoid | Sweep] = [
        face.ellipsoid((0, -35, 15), (56, 36, 28)),
        face.ellipsoid((0, -33, -25), (38, 28, 22)),
        face.sweep([(0, 0.5, 22), (0, 2, 4)], [7, 5], [3, 3], up=(0, 1, 0))]
    for side in (1, -1):
        brow = [(50 * side, -17, 28), (33 * side, -5, 35), (14 * side, -1, 32), (0, 1, 28)]
        shapes.append(face.sweep(brow, [4, 4, 4, 4], [4, 4.5, 4, 4]))
        shapes.append(face.ellipsoid((47 * side, -20, 4), (7, 12, 18)))
        arch = [face.point(49 * side, -28, 0), face.point(58 * side, -48, -1),
                face.absolute(62 * side, 30, -1), face.absolute(58 * side, 5, 1)]
        shapes.append(Sweep(np.array(arch), np.full(4, 2.6), np.array([7.0, 5.5, 5, 5]),
                            np.array([0.0, 0.0, 1.0])))
        shapes.append(Ellipsoid(face.absolute(60 * side, -6, -8), np.array([7, 14, 12.0]),
                                np.eye(3)))
        shapes.append(Ellipsoid(face.absolute(53 * side, -16, -22), np.array([7, 9, 13.0]),
                                _pitch(-20)))
    ridge = [(x * s, y, -44) for s, x, y in _ARCH_SIDES]
    shapes.append(face.sweep(ridge, [6] * len(ridge), [5] * len(ridge)))
    return [Stroke(s) for s in shapes]


def _face_openings(face: _FaceFrame, params: SkullParameters) -> list[Ellipsoid]:
    """Orbits, piriform aperture, nasal cavity, maxillary sinuses, ear canals and the
    foramen magnum."""
    o = params.orbit_size
    spacing = 33.0 * (0.92 if params.label == "trigonocephaly" else 1.0)
    openings = face.mirrored((spacing, -22, 17), (19.5 * o, 25, 17 * o), yaw_deg=-15)
    openings += [face.ellipsoid((0, -2, -5), (8, 12, 12)),
                 face.ellipsoid((0, -6, -19), (12.5, 14, 12)),
                 face.ellipsoid((0, -35, -12), (13, 30, 20))]
    openings += face.mirrored((21, -32, -20), (11, 14, 12))
    for side in (1, -1):
        openings.append(Ellipsoid(face.absolute(66 * side, 0, -4.5), np.array([14, 4.5, 4.5]),
                                  np.eye(3)))
    openings.append(Ellipsoid(face.absolute(0, -12, -30), np.array([14, 17, 15.0]), np.eye(3)))
    return openings


# Half of the dental arch, from the midline backwards: (x, y) in face coordinates.
_ARCH = [(0.0, -7.0), (9, -9), (17, -14), (22, -22), (25, -31), (27, -40), (28, -49), (28, -58)]
_ARCH_SIDES = [(-1, x, y) for x, y in reversed(_ARCH[1:])] + [(1, x, y) for x, y in _ARCH[1:]]
# Mesiodistal crown widths (mm) from central incisor to third molar, and crown
# half-sizes (across the arch, half-height) of incisors, canine, premolars, molars.
_TOOTH_WIDTHS = (8.5, 6.5, 7.5, 7.0, 7.0, 10.0, 9.0, 8.5)
_TOOTH_HALF = ((3.0, 5.0), (3.2, 5.0), (4.0, 5.5), (4.0, 4.5), (4.0, 4.5), (5.0, 4.0),
               (5.0, 4.0), (4.8, 4.0))


def _teeth(face: _FaceFrame, crown_z: float, arch_scale: float,
           shift_y: float) -> list[Ellipsoid]:
    """One jaw's 16 teeth as ellipsoids along the dental arch.

    Args:
        crown_z: height of the crowns' centres, mm (Frankfort frame).
        arch_scale: scale of the arch's width (the lower arch sits inside the upper).
        shift_y: shift of the arch backwards (negative) in mm.
    """
    arch = np.array(_ARCH) * [arch_scale, 1.0] + [0.0, shift_y]
    arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(arch, axis=0), axis=1))])
    centres = np.cumsum(_TOOTH_WIDTHS) - np.array(_TOOTH_WIDTHS) / 2
    teeth = []
    for centre, width, (half_across, half_height) in zip(centres, _TOOTH_WIDTHS, _TOOTH_HALF):
        x, y = np.interp(centre, arc, arch[:, 0]), np.interp(centre, arc, arch[:, 1])
        dx, dy = np.gradient(arch, axis=0)[min(np.searchsorted(arc, centre), len(arc) - 1)]
        yaw = np.degrees(np.arctan2(dx, -dy))
        for side in (1, -1):
            teeth.append(face.ellipsoid((x * side, y, crown_z),
                                        (half_across, width / 2 - 0.3, half_height),
                                        yaw_deg=90 - yaw if side > 0 else yaw - 90))
    return teeth


def _mandible(face: _FaceFrame) -> list[Stroke]:
    """Body, chin, rami, coronoid processes, condyles and lower teeth.

    Scaled by ``mandible_size`` about the centre of the occlusal plane, so that
    the teeth stay in occlusion whatever the size.
    """
    p = face.params
    chin = p.mandible_protrusion_mm
    body = [face.absolute(-48, 0, -77)]
    body += [face.point(x, y, z) for x, y, z in
             [(-38, -55 + 0.3 * chin, -77), (-24, -27 + 0.7 * chin, -78.5), (0, -9 + chin, -79.5),
              (24, -27 + 0.7 * chin, -78.5), (38, -55 + 0.3 * chin, -77)]]
    body += [face.absolute(48, 0, -77)]
    shapes: list[Ellipsoid | Sweep] = [
        Sweep(np.array(body), np.full(7, 5.5), np.array([9.0, 13, 15, 15.5, 15, 13, 9]),
              np.array([0.0, 0.0, 1.0])),
        face.ellipsoid((0, -9 + chin, -88), (12, 6, 8))]
    for side in (1, -1):
        shapes.append(Sweep(np.array([face.absolute(48 * side, 2, -80),
                                      face.absolute(51 * side, 8, -22)]),
                            np.array([4.0, 3.5]), np.array([15.0, 7.0]),
                            np.array([0.0, 1.0, 0.0])))
        shapes.append(Sweep(np.array([face.absolute(47 * side, 18, -52),
                                      face.absolute(46 * side, 26, -16)]),
                            np.array([3.0, 2.5]), np.array([7.0, 3.0]),
                            np.array([0.0, 1.0, 0.0])))
        shapes.append(Ellipsoid(face.absolute(51 * side, 8, -16), np.array([9, 5, 6.0]),
                                np.eye(3)))
    teeth = _teeth(face, LOWER_CROWN_Z, 0.94, -2.0)
    pivot = face.point(0, -30, OCCLUSAL_Z)
    return [Stroke(_scaled(s, pivot, p.mandible_size)) for s in shapes + teeth]


def _scaled(shape: Ellipsoid | Sweep, pivot: np.ndarray, factor: float) -> Ellipsoid | Sweep:
    """The shape scaled by ``factor`` about ``pivot``."""
    if isinstance(shape, Ellipsoid):
        return Ellipsoid(pivot + (shape.centre - pivot) * factor, shape.radii * factor,
                         shape.rotation)
    return Sweep(pivot + (shape.points - pivot) * factor, shape.half_width * factor,
                 shape.half_height * factor, shape.up)


def _pitch(degrees: float) -> np.ndarray:
    """Rotation about x by ``degrees`` (positive tips +y towards +z)."""
    angle = np.deg2rad(degrees)
    return np.array([[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)],
                     [0.0, np.sin(angle), np.cos(angle)]])
