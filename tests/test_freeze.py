import copy

import pytest
import torch

from ftlib import freeze, models


def test_freeze_stops_gradients_and_counts_trainable_parameters():
    model = models.GlyphNet(10)
    total = freeze.count_parameters(model)
    freeze.freeze(model, ["block1", "block2"])
    frozen = freeze.count_parameters(model.block1) + freeze.count_parameters(model.block2)
    assert freeze.count_parameters(model, trainable_only=True) == total - frozen
    model(torch.rand(4, 1, 28, 28)).sum().backward()
    assert all(p.grad is None for p in model.block1.parameters())
    assert all(p.grad is not None for p in model.block3.parameters())


def test_frozen_batchnorm_keeps_its_running_statistics_in_train_mode():
    model = models.GlyphNet(10)
    freeze.freeze_backbone(model)
    before = model.block1[1].running_mean.clone()
    model.train()
    model(torch.rand(8, 1, 28, 28) * 5)
    assert torch.equal(model.block1[1].running_mean, before)


def test_the_batchnorm_trap_can_be_reproduced_on_purpose():
    model = models.GlyphNet(10)
    freeze.freeze(model, "block1", update_bn_stats=True)
    before = model.block1[1].running_mean.clone()
    model.train()
    model(torch.rand(8, 1, 28, 28) * 5)
    assert not torch.equal(model.block1[1].running_mean, before)


def test_unfreeze_restores_training_of_weights_and_statistics():
    model = models.GlyphNet(10)
    freeze.freeze_backbone(model)
    freeze.unfreeze(model)
    assert freeze.count_parameters(model, trainable_only=True) == freeze.count_parameters(model)
    before = model.block1[1].running_mean.clone()
    model.train()
    model(torch.rand(8, 1, 28, 28) * 5)
    assert not torch.equal(model.block1[1].running_mean, before)


def test_unknown_block_name_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown block name\(s\) \['conv9'\].*block1, block2"):
        freeze.freeze(models.GlyphNet(10), ["block1", "conv9"])


def test_param_groups_give_backbone_and_head_their_own_rates():
    model = models.GlyphNet(10)
    groups = freeze.param_groups(model, {"backbone": 1e-4, "head": 1e-2})
    assert {g["name"]: g["lr"] for g in groups} == {"block1": 1e-4, "block2": 1e-4, "block3": 1e-4,
                                                   "block4": 1e-4, "head": 1e-2}
    freeze.freeze_backbone(model)
    assert [g["name"] for g in freeze.param_groups(model, 1e-3)] == ["head"]


@pytest.mark.parametrize("lr, message", [({"neck": 1e-3}, "unknown block name 'neck'"),
                                         ({"backbone": -1.0, "head": 1e-3}, "must be a positive number"),
                                         ({"head": 1e-3}, "trainable block 'block1' has no learning rate")])
def test_bad_learning_rates_are_clear_errors(lr, message):
    with pytest.raises(ValueError, match=message):
        freeze.param_groups(models.GlyphNet(10), lr)


def test_snapshot_and_changed_see_weights_and_batchnorm_statistics():
    model = models.GlyphNet(10)
    before = freeze.snapshot(model, ["block1", "head"])
    assert "block1.1.running_mean" in before and "head.weight" in before
    assert freeze.changed(model, before) == []
    model.train()
    model(torch.rand(8, 1, 28, 28))
    assert freeze.changed(model, before) == ["block1.1.running_mean", "block1.1.running_var",
                                             "block1.1.num_batches_tracked"]


def test_freezing_again_with_update_bn_stats_lets_batchnorm_update():
    model = models.GlyphNet(10)
    freeze.freeze_backbone(model)
    freeze.freeze_backbone(model, update_bn_stats=True)
    before = freeze.snapshot(model, ["block1"])
    model.train()
    model(torch.rand(8, 1, 28, 28))
    assert freeze.count_parameters(model, trainable_only=True) == freeze.count_parameters(model.head)
    assert "block1.1.running_mean" in freeze.changed(model, before)
    assert "block1.0.weight" not in freeze.changed(model, before)


def test_a_copy_of_a_frozen_model_is_frozen_on_its_own():
    model = models.GlyphNet(10)
    freeze.freeze_backbone(model)
    twin = copy.deepcopy(model)
    freeze.unfreeze(twin)
    before = freeze.snapshot(model, ["block1"])
    model.train()
    model(torch.rand(8, 1, 28, 28))
    assert freeze.changed(model, before) == []
