"""The recipe chooses on validation (issue 33): the library's one rule (shared with the course's records.choose),
the backbone factor and the linear probe against fine-tuning chosen by it, tiny splits warned about with the test
interval reported, the AdamW weight decay stated, and the command's defaults the lesson's."""

import json
import math
import shutil

import pytest
import torch

from ftlib import folder, recipe, selection, stats
from ftlib.course import example_images
from ftlib.course.lessons import records
from ftlib.data import ImageSet


def test_the_rule_takes_accuracy_then_loss_then_the_first_and_ranks_a_diverged_setting_last():
    assert selection.best([(0.5, 0.1), (0.6, 0.9)]) == 1  # accuracy first
    assert selection.best([(0.6, 0.5), (0.6, 0.4)]) == 1  # a tie goes to the lower loss
    assert selection.best([(0.6, 0.4), (0.6, 0.4)]) == 0  # then to the first (the most cautious)
    assert selection.best([(0.1 + 0.2, 0.5), (0.3, 0.4)]) == 1  # equal to 9 decimals is a tie
    assert selection.best([(math.nan, 0.1), (0.2, 0.9)]) == 1 and selection.best([(0.9, math.inf), (0.2, 1)]) == 1
    with pytest.raises(ValueError, match="scores=\\[\\] is not allowed"):
        selection.best([])


def test_the_course_choose_rule_is_the_library_rule():
    grid = [{"f": f, "seed": s, "val_accuracy": a, "val_loss": loss} for f, s, a, loss in
            [(0.3, 0, 0.8, 0.5), (1.0, 0, 0.8, 0.4), (0.3, 1, 0.7, 0.6), (1.0, 1, 0.7, 0.7)]]
    for seed, expected in [(0, 1.0), (1, 0.3), (None, 0.3)]:  # means over seeds: 0.75 each, loss 0.55 each
        assert records.choose(grid, "f", seed=seed) == expected


@pytest.fixture(scope="module")
def thirteen(tmp_path_factory):
    """A tiny imbalanced folder: 10 images of one class, 3 of another (issue 33)."""
    root = tmp_path_factory.mktemp("thirteen")
    example_images.generate(root, seed=3, per_class=10)
    folders = sorted(p for p in root.iterdir() if p.is_dir())
    for extra in folders[2:]:
        shutil.rmtree(extra)
    for extra in sorted(folders[1].iterdir())[3:]:
        extra.unlink()
    return root


_fit = recipe.fit


def test_a_tiny_folder_is_warned_about_and_the_worse_arm_is_never_exported(thirteen, tmp_path, monkeypatch):
    monkeypatch.setattr(recipe, "fit", lambda model, train, steps, **kw: _collapse_after(model, train, **kw))
    with pytest.warns(UserWarning, match="tiny split: 3 validation images .* and 6 test images"):
        result = recipe.finetune(thirteen, steps=2, eval_every=1, range_steps=4, out=tmp_path)
    probe, *tuned = result.candidates
    assert probe.name == "linear probe" and [c.name for c in tuned] == ["fine-tune x0.3", "fine-tune x1"]
    assert all(c.val_accuracy == pytest.approx(1 / 3) for c in tuned)  # collapsed onto the 1 image of "at"
    assert probe.val_accuracy > 1 / 3  # validation tells them apart, so the probe is exported
    assert result.chosen == "linear probe" and result.model is probe.model and result.history is None
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["chosen"] == "linear probe" and meta["validation"]["fine-tune x1"]["accuracy"] == pytest.approx(1 / 3)
    assert meta["warnings"] and meta["warnings"][0].startswith("tiny split")
    low, high = result.test.interval
    assert low < result.test.accuracy < high or result.test.accuracy in (low, high)
    assert "(95% interval" in str(result.test) and high - low > 0.4  # 6 test images say little


def _collapse_after(model, train, **kwargs):
    """Fine-tune for real, then collapse every prediction onto the second class (a run that went wrong)."""
    history = _fit(model, train, 2, **kwargs)
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.tensor([0.0, 5.0]))
    val = kwargs["val_data"]
    from ftlib.evaluation import evaluate

    scores = evaluate(model, val)
    history.val_loss = [scores.loss] * len(history.val_loss)
    history.val_accuracy = [scores.accuracy] * len(history.val_accuracy)
    return history


def test_the_split_warning_names_tiny_parts_only():
    def part(per_class):
        labels = torch.arange(2).repeat_interleave(per_class)
        return ImageSet(torch.zeros(len(labels), 1, 28, 28), labels, ("a", "b"))

    assert recipe.split_warning({"val": part(8), "test": part(20)}) is None  # the example folder's split
    warning = recipe.split_warning({"val": part(2), "test": part(20)})
    assert warning.startswith("tiny split: 4 validation images (as few as 2 in a class)")
    assert "test images" not in warning


def test_the_loader_and_the_split_warning_give_one_better_size():
    """Lesson 11 review 2, L8: the loader said 'more than 20 is better', the warning 'more than 25'."""
    assert folder.ENOUGH_PER_CLASS == recipe.TINY_SPLIT / recipe.VAL_FRACTION  # 5 validation images of each class
    labels = torch.arange(2).repeat_interleave(2)
    tiny = ImageSet(torch.zeros(len(labels), 1, 28, 28), labels, ("a", "b"))
    assert recipe.split_warning({"val": tiny, "test": tiny}).endswith("; at least 25 images per class are better")


def test_the_report_gives_the_wilson_interval():
    report = recipe.TestReport(("a", "b"), torch.tensor([[1, 3], [0, 1]]))
    assert report.interval == stats.proportion_interval(2, 5)
    assert report.interval == pytest.approx((0.1176, 0.7693), abs=1e-3)
    assert "test accuracy 40.0% on 5 images (95% interval 11.8% to 76.9%)" in str(report)
    assert stats.standard_error(0.85, 160) == pytest.approx(0.0282, abs=1e-4)
    with pytest.raises(ValueError, match="correct=6 is not allowed"):
        stats.proportion_interval(6, 5)


def test_the_recipe_states_its_adamw_weight_decay(tmp_path, monkeypatch):
    example_images.generate(tmp_path, seed=1, per_class=4)
    seen = []

    def record(model, train, steps, **kwargs):
        seen.append(kwargs["optimizer"]([]).param_groups)
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "fit", record)
    with pytest.raises(KeyboardInterrupt):
        recipe.finetune(tmp_path, lr=1e-3, test=0.25)
    assert recipe.WEIGHT_DECAY == 0.01 and {g["weight_decay"] for g in seen[0]} == {recipe.WEIGHT_DECAY}


def test_the_command_tries_every_factor_by_default_and_takes_several(tmp_path, monkeypatch, capsys):
    example_images.generate(tmp_path / "f", seed=1, per_class=4)
    seen = []

    def record(*args, **kwargs):
        seen.append((kwargs["backbone_factor"], kwargs["test"], kwargs["val"]))
        raise ValueError("not training in this test")

    monkeypatch.setattr(recipe, "finetune", record)
    monkeypatch.setattr(recipe, "colour_warning", lambda *args: None)
    assert recipe.cli([str(tmp_path / "f")]) == 2
    assert recipe.cli([str(tmp_path / "f"), "--backbone-factor", "1", "0.1"]) == 2
    assert seen == [(list(recipe.FACTORS), 0.5, 0.2), ([1.0, 0.1], 0.5, 0.2)]
    assert recipe.factors_of([1.0, 0.1, 1.0]) == (0.1, 1.0) and recipe.factors_of(0.3) == (0.3,)
    with pytest.raises(ValueError, match="backbone_factor=20.0 is not allowed"):
        recipe.factors_of([0.3, 20.0])
