"""Lesson 11's additions: the paired count and its z score, early stopping replayed with less patience, and the
recipe's LP-FT start."""

import pytest
import torch
from torch import nn

from ftlib import example_images, recipe
from ftlib.data import ImageSet
from ftlib.lessons import your_own_images
from ftlib.stopping import History


class Fixed(nn.Module):
    def __init__(self, predictions):
        super().__init__()
        self.predictions = torch.tensor(predictions)

    def forward(self, x):
        return nn.functional.one_hot(self.predictions, 2).float()


def test_paired_counts_the_images_only_one_model_gets_right():
    test = ImageSet(torch.zeros(5, 1, 28, 28), torch.tensor([0, 1, 0, 1, 0]), ("a", "b"), "t")
    assert your_own_images.paired(Fixed([0, 1, 1, 0, 0]), Fixed([0, 0, 0, 1, 1]), test) == (2, 2)
    assert your_own_images.sign_test_z(9, 1) == pytest.approx(8 / 10 ** 0.5)


def test_replaying_less_patience_stops_where_fit_would():
    h = History()
    h.step = list(range(1, 101))
    h.eval_step = list(range(10, 101, 10))
    h.val_loss = [1.0, 0.8, 0.9, 0.95, 0.9, 0.7, 0.6, 0.65, 0.66, 0.67]
    assert your_own_images.replay_patience(h, 3) == (50, 0.8)
    assert your_own_images.replay_patience(h, 8) == (100, 0.6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny11")
    example_images.generate(root, seed=5, per_class=6)
    return root


def test_lp_ft_starts_fine_tuning_from_the_probe_head(tiny, monkeypatch):
    seen = []
    original = recipe.fit

    def spy(model, *args, **kwargs):
        seen.append(model.head.weight.detach().clone())
        return original(model, *args, **kwargs)

    monkeypatch.setattr(recipe, "fit", spy)
    fresh = recipe.finetune(tiny, steps=10, batch_size=16, eval_every=5)
    lp_ft = recipe.finetune(tiny, steps=10, batch_size=16, eval_every=5, lp_ft=True)
    assert fresh.probe_accuracy == lp_ft.probe_accuracy  # the same probe baseline either way
    assert seen[0].abs().max() < 0.2 < seen[1].abs().max()  # a fresh head is small; the probe's is fitted
