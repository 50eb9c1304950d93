import pytest
import torch

from ftlib import data, freeze, models, unfreezing
from ftlib.course.lessons import freezing


def _tiny_set(n: int = 24) -> data.ImageSet:
    g = torch.Generator().manual_seed(0)
    return data.ImageSet(torch.rand(n, 1, 28, 28, generator=g), torch.arange(n) % 3, ("a", "b", "c"), "tiny")


def test_gradual_unfreezing_adds_one_block_per_stage_from_the_top():
    stages = unfreezing.stage_plan("gradual unfreezing", steps=50)
    assert [s.trainable for s in stages] == [("head",), ("block4", "head"), ("block3", "block4", "head"),
                                             ("block2", "block3", "block4", "head"),
                                             ("block1", "block2", "block3", "block4", "head")]
    assert [s.steps for s in stages] == [10] * 5


def test_recipes_freeze_first_k_and_lp_ft():
    assert unfreezing.stage_plan("freeze first k", 30, k=3)[0].trainable == ("block4", "head")
    assert unfreezing.stage_plan("freeze first k", 30, k=0)[0].trainable == (*models.BLOCKS, "head")
    lp, ft = unfreezing.stage_plan("LP-FT", 30, lr=1e-3)
    assert lp.probe and lp.trainable == ("head",)
    assert not ft.probe and ft.steps == 30 and ft.lr == 1e-3 and ft.trainable == (*models.BLOCKS, "head")


@pytest.mark.parametrize("args, message", [(("warm start", 10), "unknown stage plan 'warm start'"),
                                           (("freeze first k", 10, 3e-3, 5), "k=5 is not allowed"),
                                           (("gradual unfreezing", 4), "steps=0 is not allowed")])
def test_bad_stage_plans_are_clear_errors(args, message):
    with pytest.raises(ValueError, match=message):
        unfreezing.stage_plan(*args)


def test_a_probe_stage_trains_only_the_head():
    with pytest.raises(ValueError, match="a probe stage trains only the head"):
        unfreezing.Stage(("block4", "head"), probe=True)


def test_each_stage_trains_only_its_blocks_and_leaves_the_rest_exactly_as_they_were():
    model = models.GlyphNet(3)
    before = freeze.snapshot(model, ["block1", "block2", "block3"])
    stages = [unfreezing.Stage(("head",), 3), unfreezing.Stage(("block4", "head"), 3)]
    histories = unfreezing.train_in_stages(model, _tiny_set(), stages, batch_size=8)
    assert [len(h.step) for h in histories] == [3, 3]
    assert freeze.changed(model, before) == []  # weights and BatchNorm statistics of block1-3
    assert [n for n, b in model.named_children() if any(p.requires_grad for p in b.parameters())] == ["block4",
                                                                                                     "head"]


def test_a_stage_naming_an_unknown_block_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown block name\(s\) \['block9'\]"):
        unfreezing.train_in_stages(models.GlyphNet(3), _tiny_set(), [unfreezing.Stage(("block9",), 2)])


def test_lp_ft_fits_the_probe_then_trains_everything():
    torch.manual_seed(0)
    model = models.GlyphNet(3)
    backbone = freeze.snapshot(model, list(models.BLOCKS))
    probe_stage, _ = unfreezing.stage_plan("LP-FT", steps=2)
    unfreezing.train_in_stages(model, _tiny_set(), [probe_stage])
    assert freeze.changed(model, backbone) == []  # the probe touches only the head
    histories = unfreezing.train_in_stages(model, _tiny_set(), unfreezing.stage_plan("LP-FT", steps=2), batch_size=8)
    assert histories[0] is None and len(histories[1].step) == 2
    assert "block1.0.weight" in freeze.changed(model, backbone)
    assert freeze.count_parameters(model, trainable_only=True) == freeze.count_parameters(model)


def test_staged_run_reports_accuracy_time_and_trainable_parameters():
    result = freezing.staged_run("freeze first k", "font_digits", n=2, seed=0, steps=2, k=4, batch_size=10)
    assert set(result) == {"accuracy", "seconds", "cpu_seconds", "trainable"}
    assert 0 <= result["accuracy"] <= 1 and result["seconds"] > 0
    assert result["trainable"] == models.FEATURE_DIM * 10 + 10  # only the head trains
