"""Methods sampled along their training budget from the EMA snapshots of one fit."""

import pytest
import torch

from bench.core.errors import BenchError
from bench.core.training import TrainConfig
from methods.backbones import BackboneConfig
from methods.base import FitConfig
from methods.registry import create_method
from conftest import eight_gaussians

pytestmark = pytest.mark.usefixtures("one_torch_thread")

STEPS = 60


def fitted(name, checkpoint_dir, **train):
    config = FitConfig(backbone=BackboneConfig(width=32, depth=1, time_embedding=8),
                       train=TrainConfig(steps=STEPS, batch_size=32, warmup_steps=5,
                                         evaluate_at=(20,), **train),
                       checkpoint_dir=checkpoint_dir)
    method = create_method(name, **({"reflow_pairs": 64} if name == "rf2" else {}))
    method.fit(eight_gaussians(256, 0), None, config, seed=0)
    return method


@pytest.mark.parametrize("name", ["otfm", "ddpm", "rf2"])
def test_the_last_snapshot_samples_as_the_method_and_an_earlier_one_differs(tmp_path, name):
    method = fitted(name, tmp_path)
    final, final_seconds = method.at_training_step(STEPS, tmp_path)
    early, early_seconds = method.at_training_step(20, tmp_path)
    samples = method.sample(16, 5, seed=3).samples
    assert torch.equal(final.sample(16, 5, seed=3).samples, samples)
    assert not torch.allclose(early.sample(16, 5, seed=3).samples, samples)
    assert 0 < early_seconds < final_seconds
    assert torch.equal(method.sample(16, 5, seed=3).samples, samples)  # unchanged


def test_rf2_counts_its_first_stage_in_the_training_time(tmp_path):
    method = fitted("rf2", tmp_path)
    _, seconds = method.at_training_step(20, tmp_path)
    cfm = fitted("cfm", tmp_path / "cfm")
    _, cfm_seconds = cfm.at_training_step(STEPS, tmp_path / "cfm")
    assert seconds > 0.5 * cfm_seconds  # stage 1 alone is a whole cfm training


def test_a_method_that_does_not_train_has_no_budget(tmp_path):
    gaussian = create_method("gaussian")
    gaussian.fit(eight_gaussians(64, 0), None, FitConfig(), seed=0)
    with pytest.raises(BenchError, match="'gaussian' is not trained step by step"):
        gaussian.at_training_step(10, tmp_path)


def test_an_unkept_step_is_a_clear_error(tmp_path):
    method = fitted("otfm", tmp_path)
    with pytest.raises(BenchError, match=r"no EMA snapshot of training step 30 "
                                         r"\(kept: \[20, 60\]\)"):
        method.at_training_step(30, tmp_path)
