"""Lesson 04's helpers: the validation split, the batched augmentations, choosing a strength, numeric plot order."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from ftlib import data  # noqa: E402
from ftlib.lessons import augmentation, plots  # noqa: E402
from ftlib.lessons.experiments import Results  # noqa: E402


@pytest.mark.parametrize("name", augmentation.EXTRA)
def test_batched_augmentations_draw_per_image_and_stay_in_range(name):
    copies = data.few_shot("mnist", 1, 0).images[:1].expand(6, 1, 28, 28)
    out = augmentation.batched(name, 1.0)(copies, torch.Generator().manual_seed(0))
    assert out.shape == copies.shape and out.min() >= 0 and out.max() <= 1
    assert len({tuple(x.flatten().tolist()) for x in out}) == 6  # one draw per image
    same = augmentation.batched(name, 1.0)(copies, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)  # seeded


def test_batched_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown augmentation"):
        augmentation.batched("mixup")


def test_best_strength_uses_validation_and_prefers_the_weaker_on_ties():
    rows = Results([{"method": "m", "strength": s, "seed": 0, "validation": v, "accuracy": 1 - v}
                    for s, v in [(0, 0.5), (2, 0.8), (0.5, 0.8), (1, 0.7)]])
    assert augmentation.best_strength(rows, "m") == 0.5


def test_digit_changes_in_points():
    before = torch.tensor([[9, 1], [0, 10]])
    after = torch.tensor([[5, 5], [0, 10]])
    assert augmentation.digit_changes(before, after).tolist() == pytest.approx([-40.0, 0.0])


def test_plot_results_draws_numeric_x_in_increasing_order():
    rows = Results({"strength": s, "method": "m", "accuracy": a, "seed": 0}
                   for s, a in [(0, 0.1), (1, 0.3), (0.5, 0.2), (2, 0.4)])
    ax = plots.plot_results(rows, x="strength")
    assert list(ax.lines[0].get_xdata()) == [0, 0.5, 1, 2]
    assert list(ax.lines[0].get_ydata()) == pytest.approx([10, 20, 30, 40])
    labels = Results({"block": b, "method": "m", "accuracy": 0.5, "seed": 0} for b in ["block2", "block1"])
    assert list(plots.plot_results(labels, x="block").lines[0].get_xdata()) == ["block2", "block1"]
