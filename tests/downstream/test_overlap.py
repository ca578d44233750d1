"""Implant scores against their definitions on analytic shapes and an independent HD95."""

import numpy as np
import pytest
from scipy import ndimage

from downstream.defects import cut_defect
from downstream.overlap import (border_band, border_dice, dice, empty_penalty_mm,
                                hausdorff95_mm, implant_scores)


def ball(shape, centre, radius):
    grid = np.indices(shape, dtype=np.float64)
    return sum((g - c) ** 2 for g, c in zip(grid, centre)) <= radius ** 2


def reference_hd95(a, b, spacing):
    """Surfaces as mask minus its erosion; 95th percentile of each direction; the larger."""
    edges = [m & ~ndimage.binary_erosion(m) for m in (a, b)]
    directed = []
    for source, target in ((edges[0], edges[1]), (edges[1], edges[0])):
        distance = ndimage.distance_transform_edt(~target, sampling=spacing)
        directed.append(np.percentile(distance[source], 95))
    return max(directed)


def test_dice_matches_its_definition():
    rng = np.random.default_rng(0)
    a = rng.random((12, 12, 12)) < 0.3
    b = rng.random((12, 12, 12)) < 0.4
    assert dice(a, b) == pytest.approx(2 * (a & b).sum() / (a.sum() + b.sum()))
    assert dice(a, a) == 1.0
    assert dice(a, np.zeros_like(a)) == 0.0
    assert np.isnan(dice(np.zeros_like(a), b))


def test_dice_of_a_shifted_ball():
    a = ball((40, 40, 40), (20, 20, 20), 8)
    b = np.roll(a, 4, axis=0)
    overlap = (a & b).sum()
    assert dice(a, b) == pytest.approx(2 * overlap / (2 * a.sum()))
    # two balls of radius r whose centres are d apart overlap in 2 caps: pi (4r + d)(2r - d)^2 / 12
    r, d = 8.0, 4.0
    analytic = np.pi * (4 * r + d) * (2 * r - d) ** 2 / 12 / (4 / 3 * np.pi * r ** 3)
    assert dice(a, b) == pytest.approx(analytic, abs=0.04)


def test_hd95_of_concentric_balls_is_the_radius_difference():
    spacing = 2.0
    a = ball((48, 48, 48), (24, 24, 24), 10)
    b = ball((48, 48, 48), (24, 24, 24), 13)
    value = hausdorff95_mm(a, b, spacing)
    assert value == pytest.approx(3 * spacing, abs=spacing)
    assert value == pytest.approx(reference_hd95(a, b, spacing), abs=1e-5)
    assert hausdorff95_mm(a, a, spacing) == 0.0


def test_hd95_of_a_shifted_ball_is_near_the_shift():
    """For a shift d well below the radius, distances d |cos theta| are uniform in [0, d]."""
    a = ball((64, 64, 64), (32, 32, 32), 20)
    b = np.roll(a, 6, axis=0)
    value = hausdorff95_mm(a, b, 1.0)
    assert value == pytest.approx(0.95 * 6, abs=1.0)
    assert value == pytest.approx(reference_hd95(a, b, 1.0), abs=1e-5)


def test_hd95_of_an_empty_mask_is_the_field_of_view_diagonal():
    a = ball((16, 16, 16), (8, 8, 8), 4)
    penalty = empty_penalty_mm(16, 4.0)
    assert penalty == pytest.approx(np.sqrt(3) * 64)
    assert hausdorff95_mm(a, np.zeros_like(a), 4.0) == penalty
    assert hausdorff95_mm(np.zeros_like(a), a, 4.0) == penalty


def plate_with_hole(radius):
    plate = np.zeros((64, 64, 64), dtype=bool)
    plate[:, :, 30:34] = True
    disc = ball((64, 64, 1), (32, 32, 0), radius)[:, :, :1]
    implant = plate & disc
    return plate & ~implant, implant


def test_border_band_surrounds_the_rim_of_the_defect():
    defective, implant = plate_with_hole(20)
    band = border_band(implant, defective, 1.0, 5.0)
    x, y = np.indices((64, 64))
    distance_to_centre = np.hypot(x - 32, y - 32)
    in_plane = band[:, :, 31]
    assert in_plane[distance_to_centre < 13].sum() == 0  # the implant's centre is far from the rim
    assert in_plane[(distance_to_centre > 18) & (distance_to_centre < 22)].all()
    assert not band[:, :, 31][distance_to_centre > 27].any()


def test_border_dice_scores_only_the_band():
    defective, implant = plate_with_hole(20)
    band = border_band(implant, defective, 1.0, 5.0)
    centre = ball((64, 64, 64), (32, 32, 32), 10)
    prediction = implant & ~centre  # right at the border, a hole in the middle
    assert border_dice(implant, prediction, band) == 1.0
    assert dice(implant, prediction) < 0.9
    shrunk = implant & ball((64, 64, 64), (32, 32, 32), 17)  # 3 mm short at the border
    assert border_dice(implant, shrunk, band) < 0.8


def test_implant_scores_on_a_crop_equal_the_full_grid(skulls64):
    volume = skulls64.volumes[3]
    voxel = skulls64.voxel_size_mm
    defect = cut_defect(volume, voxel, "parietotemporal", np.random.default_rng(0))
    prediction = np.roll(defect.implant, 1, axis=2) & defect.region
    band = border_band(defect.implant, defect.defective, voxel, 10.0)
    full = (dice(defect.implant, prediction), border_dice(defect.implant, prediction, band),
            hausdorff95_mm(defect.implant, prediction, voxel))
    assert implant_scores(defect.implant, prediction, defect.defective, voxel, 10.0) == \
        pytest.approx(full)
    empty = implant_scores(defect.implant, np.zeros_like(prediction), defect.defective, voxel,
                           10.0)
    assert empty == pytest.approx((0.0, 0.0, empty_penalty_mm(64, voxel)))
