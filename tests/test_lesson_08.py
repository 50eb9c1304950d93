"""Lesson 08's drivers: each method trains what it says, rates are chosen on validation, costs split adapters/head."""

import pytest

from ftlib import data, lora
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
    assert out.count("Exercise not attempted yet") == 3 and "2,816" not in out
    assert ") With both at zero neither gets" in out


def test_the_adapter_size_prediction_is_exact_and_a_forgotten_kernel_is_explained():
    assert lesson08.predict_adapter_size(lesson08.SOLUTIONS["predict_adapter_size"]).passed is True
    wrong = lesson08.predict_adapter_size(lesson08.WRONG_ANSWERS["predict_adapter_size"][0][0])
    assert wrong.passed is False and "counts the channels only" in wrong.message


def test_the_zero_b_question_explains_why_both_zero_would_not_train():
    assert lesson08.explain_zero_b(lesson08.SOLUTIONS["explain_zero_b"]).passed is True
    for answer, words in lesson08.WRONG_ANSWERS["explain_zero_b"]:
        wrong = lesson08.explain_zero_b(answer)
        assert wrong.passed is False and words in wrong.message


def test_the_zero_b_question_asks_what_the_lesson_has_not_already_said():
    """The lesson's prose says B = 0 makes training start at the pretrained model: the question asks why A must be
    random, and its right option does not repeat that sentence."""
    right = lesson08.ZERO_B_QUESTION.options[lesson08.ZERO_B_QUESTION.right_letter].text
    assert "pretrained model" not in right and "gradient" in right
    assert "at zero too" in lesson08.ZERO_B_QUESTION.prompt


@pytest.mark.parametrize("guess, passes", [(2816, True), (2816.0, True), (2815, False), (2817, False), (768, False),
                                           (704, False), (73728, False), ("2816", False), (None, False)])
def test_the_adapter_size_is_exact_and_a_string_or_a_neighbour_is_not(guess, passes, capsys):
    feedback = lesson08.predict_adapter_size(guess)
    assert feedback.passed is passes and (passes or "2,816" not in feedback.message)


def test_a_build_that_attaches_no_adapter_is_told_so_not_to_lower_a_rank(capsys):
    for lazy in (lesson08.WRONG_ANSWERS["fit_the_budget"][1][0], lambda model: None):
        feedback = lesson08.fit_the_budget(lazy)
        assert feedback.passed is False and "No adapter found" in feedback.message
        assert "lower the rank" not in feedback.message


@pytest.mark.slow
def test_rank_one_on_block4_alone_fits_the_budget_but_misses_and_the_miss_does_not_hand_over_the_answer(capsys):
    miss = lesson08.fit_the_budget(lambda model: lora.add_lora(model, ["block4"], rank=1, alpha=8.0))
    assert miss.passed is False and "Not yet" in miss.message
    assert "block 3" not in miss.message and "rank-1" not in miss.message


@pytest.mark.slow
def test_rank_one_on_blocks_3_4_fits_the_budget_and_rank_four_is_over_it():
    assert lesson08.fit_the_budget(lesson08.SOLUTIONS["fit_the_budget"]).passed is True
    wrong = lesson08.fit_the_budget(lesson08.WRONG_ANSWERS["fit_the_budget"][0][0])
    assert wrong.passed is False and "Over budget: 5,514 numbers train" in wrong.message


def test_the_live_rank_trains_for_real_and_names_its_rank_first(capsys):
    adapters.rank_live(2, lr=1e-2, steps=20, blocks=["block3", "block4"], alpha=8.0)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("rank = 2: 2,112 adapter + 1,290 head parameters") and "test accuracy" in lines[1]
