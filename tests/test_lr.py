import math

import pytest
import torch

from ftlib import data, freeze, lr, models, runtime, train


@pytest.fixture(scope="module")
def tiny_set():
    return data.few_shot("font_digits", 3, seed=0)


def _model(seed: int = 0) -> models.GlyphNet:
    runtime.seed_everything(seed)
    return models.GlyphNet(10)


def test_range_test_rates_rise_geometrically_from_start_to_end(tiny_set):
    result = lr.range_test(_model(), tiny_set, start=1e-5, end=1e-3, steps=11, diverge=1e9)
    assert not result.diverged and len(result.lrs) == len(result.losses) == len(result.raw_losses) == 11
    assert result.lrs[0] == pytest.approx(1e-5) and result.lrs[-1] == pytest.approx(1e-3)
    ratios = [b / a for a, b in zip(result.lrs, result.lrs[1:])]
    assert ratios == pytest.approx([10 ** 0.2] * 10)


@pytest.mark.slow
def test_range_test_stops_when_the_loss_explodes(tiny_set):
    result = lr.range_test(_model(), tiny_set, start=1e-4, end=1e4, steps=80, optimizer="sgd")
    assert result.diverged and len(result.lrs) < 80
    last = result.losses[-1]
    assert not math.isfinite(last) or last > 4 * min(result.losses)
    assert result.lrs[-1] < 1e4


def test_range_test_smooths_the_loss_without_bias(tiny_set):
    result = lr.range_test(_model(), tiny_set, start=1e-5, end=1e-3, steps=5, smooth=0.5)
    assert result.losses[0] == pytest.approx(result.raw_losses[0])  # bias-corrected: no pull towards zero
    assert result.losses[1] == pytest.approx((0.5 * result.raw_losses[0] + result.raw_losses[1]) / 1.5)


def test_the_suggestion_is_the_steepest_fall_before_the_lowest_loss():
    losses = [3.0, 2.9, 2.5, 1.5, 1.0, 0.8, 0.7, 5.0]  # steepest fall around step 3, lowest at step 6
    result = lr.RangeTest([10.0 ** -k for k in range(8, 0, -1)], losses, losses, diverged=True)
    assert result.suggestion == pytest.approx(1e-5) and result.min_loss_lr == pytest.approx(1e-2)
    with pytest.raises(ValueError, match="lower rate"):
        _ = lr.RangeTest([1e-3, 1e-2, 1e-1], [1.0, 2.0, 9.0], [1.0, 2.0, 9.0], diverged=True).suggestion


@pytest.mark.slow
def test_range_test_restores_the_weights_unless_told_not_to(tiny_set):
    model = _model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    lr.range_test(model, tiny_set, steps=20)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # BatchNorm statistics too
    lr.range_test(model, tiny_set, steps=20, restore=False)
    assert not all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("kwargs, match", [({"end": 1e-7}, "end=1e-07"), ({"steps": 1}, "steps=1"),
                                           ({"smooth": 1.0}, "smooth=1.0"), ({"diverge": 1}, "diverge=1"),
                                           ({"start": 0}, "start=0")])
def test_range_test_rejects_bad_settings(tiny_set, kwargs, match):
    with pytest.raises(ValueError, match=match):
        lr.range_test(_model(), tiny_set, **kwargs)


def test_param_groups_cover_every_trainable_parameter_exactly_once_and_skip_frozen_ones():
    model = models.GlyphNet(10)
    for rates in (1e-3, {"backbone": 1e-4, "head": 1e-2}, {"backbone": 1e-4, "block4": 1e-3, "head": 1e-2}):
        ids = [id(p) for g in freeze.param_groups(model, rates) for p in g["params"]]
        assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters()}
    freeze.freeze(model, ["block1", "block2"])
    groups = freeze.param_groups(model, {"backbone": 1e-4, "head": 1e-2})
    ids = [id(p) for g in groups for p in g["params"]]
    assert len(ids) == len(set(ids)) and set(ids) == {id(p) for p in model.parameters() if p.requires_grad}
    assert [g["name"] for g in groups] == ["block3", "block4", "head"]


def test_fit_trains_each_block_at_its_own_rate(tiny_set):
    model = _model()
    history = train.fit(model, tiny_set, 3, lr={"backbone": 1e-4, "head": 1e-2}, schedule="constant")
    assert history.lr == [1e-2] * 3  # the history records the head's rate (the last group)

