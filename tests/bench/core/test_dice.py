"""The fast Dice matrix against MONAI's compute_dice and the formula."""

import numpy as np
import pytest
import torch
from monai.metrics import compute_dice

import bench.core.dice as dice_engine
from bench.core.errors import BenchError
from bench.core.dice import dice_matrix, overlap_matrix


def hand_dice(a, b):
    total = a.sum() + b.sum()
    return 1.0 if total == 0 else 2.0 * (a & b).sum() / total


def test_dice_matrix_matches_monai_and_formula(blobs):
    reference = blobs(5, 24, seed=0)
    generated = blobs(4, 24, seed=1)
    dice = dice_matrix(reference, generated)
    assert dice.shape == (5, 4) and dice.dtype == np.float64
    assert 0.05 < dice.mean() < 0.95  # non-trivial overlaps
    for i in range(5):
        for j in range(4):
            assert dice[i, j] == pytest.approx(hand_dice(reference[i], generated[j]), abs=1e-12)
    monai = compute_dice(torch.from_numpy(generated)[:, None],
                         torch.from_numpy(reference[:4])[:, None],
                         include_background=True, ignore_empty=False)[:, 0].double().numpy()
    np.testing.assert_allclose(np.diag(dice[:4]), monai, atol=1e-6)


def test_dice_matrix_empty_volumes_follow_monai(blobs):
    volumes = blobs(2, 16, seed=2)
    empty = np.zeros((1, 16, 16, 16), dtype=bool)
    assert dice_matrix(empty, empty)[0, 0] == 1.0
    assert np.all(dice_matrix(volumes, empty) == 0.0)
    monai = compute_dice(torch.from_numpy(empty)[:, None], torch.from_numpy(empty)[:, None],
                         include_background=True, ignore_empty=False)
    assert float(monai) == 1.0


def test_dice_matrix_is_exact_over_many_blocks(monkeypatch, blobs):
    reference = blobs(6, 20, seed=3)
    generated = blobs(3, 20, seed=4)
    whole = overlap_matrix(reference, generated)[0]
    monkeypatch.setattr(dice_engine, "BLOCK_BYTES", 4 * 9 * 37)  # 37 voxels per block
    blocked = overlap_matrix(reference, generated)[0]
    np.testing.assert_array_equal(whole, blocked)
    expected = np.array([[(a & b).sum() for b in generated] for a in reference])
    np.testing.assert_array_equal(whole, expected)


def test_dice_matrix_rejects_mismatched_grids(blobs):
    with pytest.raises(BenchError):
        dice_matrix(blobs(1, 16, 0), blobs(1, 20, 0))
