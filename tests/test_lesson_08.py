"""Lesson 08's drivers: each method trains what it says, rates are chosen on validation, costs split adapters/head."""

import pytest

from ftlib import data
from ftlib.course.lessons import adapters

SETTINGS = {"steps": 2, "blocks": ["block3", "block4"], "alpha": 8.0}


def _trainable_blocks(model):
    return {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method, blocks", [
    (adapters.PROBE, {"head"}), (adapters.HEAD, {"head"}), (adapters.lora_name(1), {"block3", "block4", "head"}),
    (adapters.PARTIAL, {"block3", "block4", "head"}), (adapters.FULL, {"block1", "block2", "block3", "block4", "head"}),
])
def test_each_method_trains_only_what_it_names(method, blocks):
    model = adapters.train_method(method, data.few_shot("font_digits", 2, 0), 0, lr=1e-3, **SETTINGS).model
    assert _trainable_blocks(model) == blocks
    lora_params = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert bool(lora_params) == method.startswith("LoRA")


def test_an_unknown_method_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown method 'nonsense'"):
        adapters.train_method("nonsense", data.few_shot("font_digits", 2, 0), 0, lr=1e-3, **SETTINGS)


def test_rates_are_chosen_on_a_validation_split_among_the_candidates():
    chosen, scores = adapters.choose_rates([adapters.HEAD], [1e-3, 1e-2], "font_digits", 4, seed=0, **SETTINGS)
    assert set(chosen) == {adapters.HEAD} and chosen[adapters.HEAD] in (1e-3, 1e-2)
    assert len(scores) == 2 and scores[0]["val_images"] == 10  # one of 4 per class held out, 10 classes
    best = max(scores, key=lambda r: (r["val_accuracy"], -r["val_loss"]))
    assert chosen[adapters.HEAD] == best["lr"]


def test_a_grid_record_splits_the_trainable_parameters_into_adapters_and_head():
    kept = {}
    record = adapters.method_run(adapters.lora_name(1), "font_digits", 2, 0, rates={"LoRA": 1e-2}, keep=kept,
                                 **SETTINGS)
    model = kept[adapters.lora_name(1), 0]
    assert record["trainable_head"] == 128 * 10 + 10
    assert record["trainable_backbone"] == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0
    assert record["trainable"] == record["trainable_backbone"] + record["trainable_head"]
    assert 0 <= record["accuracy"] <= 1


# ------------------------------------------------------------------------------------ exercises and the live slider
from ftlib.course.lessons.exercises import lesson08  # noqa: E402


def test_an_untouched_lesson08_exercise_says_what_to_do_and_computes_nothing(capsys):
    for feedback in (lesson08.predict_adapter_size(...), lesson08.explain_zero_b(...),
                     lesson08.fit_the_budget(...)):
        assert feedback.passed is None
    out = capsys.readouterr().out
    assert out.count("Exercise not attempted yet") == 3 and "2,816" not in out and ") So that B A = 0" in out


def test_the_adapter_size_prediction_is_exact_and_a_forgotten_kernel_is_explained():
    assert lesson08.predict_adapter_size(lesson08.SOLUTIONS["predict_adapter_size"]).passed is True
    wrong = lesson08.predict_adapter_size(lesson08.WRONG_ANSWERS["predict_adapter_size"][0][0])
    assert wrong.passed is False and "counts the channels only" in wrong.message


def test_the_zero_b_question_explains_why_both_zero_would_not_train():
    assert lesson08.explain_zero_b(lesson08.SOLUTIONS["explain_zero_b"]).passed is True
    wrong = lesson08.explain_zero_b(lesson08.WRONG_ANSWERS["explain_zero_b"][0][0])
    assert wrong.passed is False and "nothing would ever train" in wrong.message


@pytest.mark.slow
def test_rank_one_on_blocks_3_4_fits_the_budget_and_rank_four_is_over_it():
    assert lesson08.fit_the_budget(lesson08.SOLUTIONS["fit_the_budget"]).passed is True
    wrong = lesson08.fit_the_budget(lesson08.WRONG_ANSWERS["fit_the_budget"][0][0])
    assert wrong.passed is False and "Over budget: 5,514 numbers train" in wrong.message


def test_the_live_rank_trains_for_real_and_names_its_rank_first(capsys):
    adapters.rank_live(2, lr=1e-2, steps=20, blocks=["block3", "block4"], alpha=8.0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("rank = 2: 2,112 adapter + 1,290 head parameters") and "test accuracy" in lines[1]
