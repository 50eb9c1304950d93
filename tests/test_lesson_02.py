"""Lesson 02's drivers: the labelled split with its validation digits, the schedules that take one-cycle apart,
choosing on validation, and the tables."""

import math
import time
import types

import matplotlib
import pytest
import torch

from ftlib import data, models, train
from ftlib.course.lessons import learning_rate
from ftlib.course.lessons.exercises import lesson02
from ftlib.course.lessons.experiments import Results

matplotlib.use("Agg")


@pytest.mark.parametrize("name, first, peak_step, last", [
    ("constant", 1.0, 0, 1.0), ("warm-up only", 1 / 25, 24, 1.0), ("decay only", 1.0, 0, None),
("one-cycle, beta1 fixed", 1 / 25, 24, None)])
@pytest.mark.slow
def test_the_schedules_move_the_rate_and_leave_beta1_alone(name, first, peak_step, last):
    model = models.GlyphNet(10)
    history = train.fit(model, data.few_shot("font_digits", 2, 0), 100, lr=1e-2, schedule=learning_rate.SCHEDULES[name],
                        optimizer=lambda groups: _remember(torch.optim.AdamW(groups)))
    rates = [r / 1e-2 for r in history.lr]
    assert rates[0] == pytest.approx(first, rel=1e-3) and max(rates) == pytest.approx(1.0)
    assert rates.index(max(rates)) == peak_step
    assert rates[-1] == pytest.approx(last) if last is not None else rates[-1] < 0.01
    assert _seen[-1].param_groups[0]["betas"][0] == 0.9


_seen = []


def _remember(optimizer):
    _seen.append(optimizer)
    return optimizer


def _records():
    rows = [(1e-3, 0, 0.80, 0.50, 0.70), (1e-3, 1, 0.90, 0.40, 0.72), (1e-2, 0, 0.85, 0.30, 0.90),
            (1e-2, 1, 0.85, 0.50, 0.50), (1e-1, 0, 0.70, 0.90, 0.99), (1e-1, 1, 0.60, 1.00, 0.99)]
    return Results({"lr": r, "seed": s, "val_accuracy": v, "val_loss": loss, "accuracy": t}
                   for r, s, v, loss, t in rows)


def test_choosing_reads_validation_only_and_breaks_ties_by_the_validation_loss():
    results = _records()  # 1e-3 and 1e-2 tie on mean validation accuracy; 1e-1 is best on test
    assert learning_rate.choose(results, "lr") == 1e-2  # the lower mean validation loss: 0.40 against 0.45
    assert learning_rate.choose(results, "lr", seed=1) == 1e-3
    assert learning_rate.top_region(results, "lr") == [1e-3, 1e-2]
    assert learning_rate.top_region(results, "lr", within=0.3) == [1e-3, 1e-2, 1e-1]


def test_table_prints_mean_and_sample_std_over_the_seeds():
    lines = learning_rate.table(_records(), "lr").splitlines()
    # validation 0.80 and 0.90: sample std (n - 1) 0.0707; test 0.70 and 0.72: 0.0141
    assert lines[0].split() == ["lr", "validation", "test"] and lines[1].split()[1:] == ["85.0", "±", "7.1",
                                                                                          "71.0", "±", "1.4"]
    assert math.isnan(Results([{"accuracy": 0.5}, {"accuracy": math.nan}]).std())  # a diverged run: no spread
    assert Results([{"accuracy": 0.5}]).std() == 0.0


# The exercises and the live slider (issue #24)

def _sweep_ends():
    rows = [(3e-3, 0, 0.88), (3e-3, 1, 0.86), (1e-1, 0, 0.76), (1e-1, 1, 0.74)]
    return Results({"lr": r, "seed": s, "accuracy": a} for r, s, a in rows)  # 1e-1 lands 12 points lower


def test_lesson02_prediction_of_the_drop_at_a_high_rate(capsys):
    sweep = _sweep_ends()
    untouched = lesson02.high_rate_drop(..., sweep, 3e-3)
    assert untouched.passed is None and "write your prediction" in capsys.readouterr().out
    right = lesson02.high_rate_drop(lesson02.SOLUTIONS["high_rate_drop"], sweep, 3e-3)
    assert right.passed is True and "linear probe" in right.message
    wrong = lesson02.high_rate_drop(lesson02.WRONG_ANSWERS["high_rate_drop"][0][0], sweep, 3e-3)
    assert wrong.passed is False and "too high" in wrong.message and "clearer drop" in wrong.message
    assert "linear probe" not in wrong.message  # the why comes once the guess is close
    low = lesson02.high_rate_drop(-40, sweep, 3e-3)
    assert low.passed is False and "too low" in low.message and "smaller than your guess" in low.message
    for miss in (wrong, low):  # checked before the sweep is printed: a miss learns its direction, not the value
        assert "-12" not in miss.message and "results above" not in miss.message, miss.message
    assert "-12.0 points" in right.message  # a hit learns the measured value
    assert lesson02.high_rate_drop(-10, sweep, 1e-1).passed is False  # against the rate given, not a fixed 3e-3


def test_lesson02_question_on_the_training_loss(capsys):
    untouched = lesson02.training_loss_cannot_choose(...)
    assert untouched.passed is None and ") At 1e-01 the run had not converged yet" in capsys.readouterr().out
    assert lesson02.training_loss_cannot_choose(lesson02.SOLUTIONS["training_loss_cannot_choose"]).passed is True
    wrong = lesson02.training_loss_cannot_choose(lesson02.WRONG_ANSWERS["training_loss_cannot_choose"][0][0])
    assert wrong.passed is False and "gone further than any other rate" in wrong.message
    wrong_feedback = [o.feedback for o in lesson02.TRAINING_LOSS_QUESTION.choices if not o.correct]
    assert not any("memorise" in text for text in wrong_feedback), "a wrong option's feedback gives the answer away"


def test_lesson02_a_rate_read_off_the_range_test_is_judged_by_the_reading_then_trained(capsys):
    trained = []

    def finetune(rate, seed):  # stands in for the lesson's 2-second run; records what was trained
        trained.append((rate, seed))
        return {"val_accuracy": 0.905, "accuracy": 0.87}

    validation = Results([{"lr": 3e-3, "seed": 0, "val_accuracy": 0.92, "accuracy": 0.875},
                          {"lr": 3e-2, "seed": 0, "val_accuracy": 0.85, "accuracy": 0.82}])
    steepest = 1e-6 * 1e6 ** (52 / 99)  # seed 0's steepest fall in the lesson: step 52 of the ramp from 1e-6 to 1
    tests = [types.SimpleNamespace(suggestion=steepest)]
    untouched = lesson02.range_test_rate(..., finetune, validation, 3e-3, tests)
    assert untouched.passed is None and "not attempted" in capsys.readouterr().out
    assert lesson02.range_test_rate("1e-3", finetune, validation, 3e-3, tests).passed is False
    for answer, words in lesson02.WRONG_ANSWERS["range_test_rate"]:  # judged by the reading, before any training
        wrong = lesson02.range_test_rate(answer, finetune, validation, 3e-3, tests)
        assert wrong.passed is False and words in wrong.message, answer
        assert f"{steepest:.2g}" not in wrong.message and f"{steepest:.1e}" not in wrong.message  # not given away
    assert trained == []
    capsys.readouterr()
    right = lesson02.range_test_rate(lesson02.SOLUTIONS["range_test_rate"], finetune, validation, 3e-3, tests)
    assert right.passed is True and trained == [(lesson02.SOLUTIONS["range_test_rate"], 0)]
    report = capsys.readouterr().out  # a report beside the chosen rate's run on validation, not a condition
    assert "validation 90.5%, -1.5 points against the rate chosen on validation, 0.003 (92.0%)" in report
    assert lesson02.range_test_rate(1.2e-3, finetune, validation, 3e-3, tests).passed is True  # a reading, not a copy


@pytest.mark.slow
def test_lesson02_live_rate_names_its_rate_first(capsys):
    start = time.perf_counter()
    learning_rate.live_rate(0.01, n=5, steps=80)
    seconds = time.perf_counter() - start  # about 1.5 s here
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("lr = 0.01: after 80 steps on seed 0: validation "), seconds
    assert lines[1].startswith("training loss at the end: ")


@pytest.mark.slow
def test_lesson02_live_steps_names_its_steps_first(capsys):
    learning_rate.live_steps(20, lr=3e-3, n=5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("steps = 20: peak rate 0.003 on seed 0: validation ")


def test_lesson02_chooses_on_the_stored_runs_for_its_defaults_and_on_its_own_otherwise():
    from ftlib.course.lessons import tuning

    table = tuning.load()
    stored = table.results(learning_rate.TABLE_ARM)
    runs, how = learning_rate.validation_runs(stored, table, n=5, steps=80)  # the same runs: re-checked, then used
    assert runs == stored and "re-checked" in how
    stale = Results({**r, "val_accuracy": r["val_accuracy"] - 0.1} for r in stored)
    with pytest.raises(AssertionError, match="stale"):
        learning_rate.validation_runs(stale, table, n=5, steps=80)
    own, how = learning_rate.validation_runs(stale, table, n=5, steps=40)  # other settings: the sweep's own runs
    assert own is stale and "own validation runs" in how
    assert learning_rate.choose(runs, "lr") == table.chosen(learning_rate.TABLE_ARM)["lr"]
