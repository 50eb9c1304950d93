"""The course-only helpers in ftlib.course.lessons: the one run helper and the lesson drivers' small pieces."""

import pytest
import torch

from ftlib import data, freeze, lora, models, stopping
from ftlib.course.lessons import adapters, early_stopping, experiments


def _tiny(seed=0):
    return data.few_shot("font_digits", 2, seed)


def test_run_fits_the_method_at_its_rate_and_the_options_override_it():
    trained = experiments.run("fine-tune", _tiny(), seed=0, steps=3)
    assert len(trained.history.step) == 3 and trained.history.lr[0] < 1e-3 and trained.seconds > 0
    constant = experiments.run("fine-tune", _tiny(), seed=0, steps=3, lr=5e-2, schedule="constant")
    assert constant.history.lr == [5e-2] * 3


def test_run_is_seeded_and_the_probe_trains_only_the_head():
    a, b = (experiments.run("scratch", _tiny(), seed=4, steps=2).model for _ in range(2))
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    probe = experiments.run("linear probe", _tiny(), seed=0)
    assert probe.history is None
    assert freeze.count_parameters(probe.model, trainable_only=True) == freeze.count_parameters(probe.model.head)


def test_run_passes_what_prepare_returns_to_fit_and_lets_train_replace_fit():
    seen = []
    penalty = lambda model: seen.append(1) or torch.zeros(())  # noqa: E731
    trained = experiments.run("fine-tune", _tiny(), seed=0, steps=2, prepare=lambda model: {"penalty": penalty})
    assert len(seen) == 2 and len(trained.history.step) == 2
    custom = experiments.run("fine-tune", _tiny(), seed=0, train=lambda model: "mine")
    assert custom.history == "mine"


def test_run_starts_from_a_given_model():
    start = models.GlyphNet(10)
    assert experiments.run("fine-tune", _tiny(), seed=0, steps=1, model=start).model is start


def test_the_replayed_rule_and_the_policies_read_a_recorded_curve():
    history = stopping.History(step=list(range(1, 51)), eval_step=[10, 20, 30, 40, 50],
                            val_loss=[0.9, 0.5, 0.6, 0.7, 0.4], val_accuracy=[0.5, 0.6, 0.6, 0.6, 0.7],
                            eval_accuracy=[0.1, 0.6, 0.5, 0.4, 0.7])
    assert early_stopping.early_stop(history, patience=2, min_delta=0.0) == \
        {"steps": 40, "accuracy": 0.6, "best_step": 20}
    assert early_stopping.early_stop(history, patience=5, min_delta=0.0)["steps"] == 50  # never stops: all steps
    compared = early_stopping.policies([history], patience=2, min_delta=0.0)
    assert compared.values(policy="train to the end") == [0.7]
    assert compared.values("steps", policy=early_stopping.ORACLE) == [50]


def test_multiply_adds_count_the_frozen_and_the_adapter_work_per_image():
    model = lora.add_lora(models.GlyphNet(10), ["block4"], rank=2, alpha=4.0)
    base, extra = lora.multiply_adds(model, torch.zeros(3, 1, 28, 28))
    conv = model.block4[0]
    positions = 3 * 3  # block4 sees 3x3 maps
    assert base == positions * conv.base.weight.numel()
    assert extra == positions * (conv.lora_A.numel() + conv.lora_B.numel())


def test_a_merge_round_trip_changes_no_prediction_and_restores_the_weights():
    model = lora.add_lora(models.GlyphNet(10), ["block4"], rank=2, alpha=4.0).eval()
    torch.nn.init.normal_(model.block4[0].lora_B)
    report = adapters.merge_round_trip(model, torch.rand(8, 1, 28, 28))
    assert report["logits agree"] and report["same predictions"] == 8 and report["restored"] < 1e-6


@pytest.mark.parametrize("name", ["scratch", "linear probe", "fine-tune", "fine-tune, low backbone LR"])
def test_every_standard_method_runs(name):
    assert experiments.run(name, _tiny(), seed=0, steps=1).model.num_classes == 10
