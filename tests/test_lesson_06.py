"""Lesson 06's printed helpers: the curve described, the one-cycle rate, the gap closed, and the two watched scores."""

import pytest

from ftlib import stopping
from ftlib.course.lessons import early_stopping


def _history():
    return stopping.History(step=list(range(1, 51)), loss=[1.0] * 10 + [0.5] * 30 + [0.2] * 10,
                            eval_step=[10, 20, 30, 40, 50], val_loss=[0.9, 0.5, 0.6, 0.7, 0.8],
                            val_accuracy=[0.5, 0.6, 0.6, 0.7, 0.6], eval_accuracy=[0.1, 0.6, 0.5, 0.4, 0.3])


def test_describe_curve():
    text = early_stopping.describe_curve(_history())
    assert "1.00 at the start, 0.20 at the end" in text
    assert "lowest at step 20 (0.50)" in text and "peaks at step 20 (60.0%) and ends at 30.0%" in text


def test_onecycle_rate_starts_low_peaks_at_a_quarter_and_ends_near_zero():
    assert early_stopping.onecycle_rate(1, 100) == pytest.approx(0.04)
    assert early_stopping.onecycle_rate(26, 100) == pytest.approx(1.0, abs=1e-3)
    assert early_stopping.onecycle_rate(100, 100) < 0.01


def test_gap_closed_and_the_two_watched_scores():
    history = _history()
    compared = early_stopping.policies([history], patience=2, min_delta=0.0)
    assert "closes 100% of the gap" in early_stopping.gap_closed(compared)
    history.eval_accuracy = [0.1, 0.5, 0.6, 0.4, 0.3]  # the oracle is step 30; val_loss restores step 20
    compared = early_stopping.policies([history], patience=2, min_delta=0.0)
    lines = early_stopping.compare_monitors(early_stopping.tradeoff([history], [1, 3]), compared)
    assert lines[0].startswith("watching val_loss: as good as the oracle in 0/1, 0/1 seeds at patience 1, 3; ")
    assert lines[0].endswith("mean test accuracy 50.0% to 50.0% over these patiences")
    assert lines[1].startswith("watching val_accuracy: as good as the oracle in 0/1, 0/1 seeds at patience 1, 3")
    assert lines[2].endswith("val_accuracy against val_loss: equal at patience 1; lower at patience 3")


# Exercises and the live slider (issue #24)

from ftlib.course.lessons.exercises import lesson06 as ex06  # noqa: E402


@pytest.fixture(scope="module")
def histories():
    """Seed 1's full recorded run (validation only), the curve the do exercise is judged against; seed 0 a stub."""
    return [_history(), early_stopping.long_run(1, 25, 0.3, 0.2, 150, 10, watch_test=False).history]


def test_exercises_untouched_print_what_to_do_and_compute_nothing(capsys):
    for feedback in (ex06.turning_step(..., _history()), ex06.stop_a_real_run(..., []),
                     ex06.choose_patience_on(...)):
        assert feedback.passed is None and "not attempted" in feedback.message
    out = capsys.readouterr().out
    assert "stopping.EarlyStopping" in out and ") A rule picked for its test score" in out


def test_turning_step_solution_and_wrong_guess():
    history = _history()
    history.eval_step = [10, 20, 30, 40, 50]
    history.val_loss = [0.9, 0.8, 0.5, 0.6, 0.7]  # lowest at step 30, as seed 0's
    assert ex06.turning_step(ex06.SOLUTIONS["turning_step"], history).passed is True
    wrong = ex06.turning_step(ex06.WRONG_ANSWERS["turning_step"][0][0], history)
    assert wrong.passed is False and "too high" in wrong.message and "memorise the wrong labels" not in wrong.message


def test_patience_question_solution_and_wrong_answer():
    assert ex06.choose_patience_on(ex06.SOLUTIONS["choose_patience_on"]).passed is True
    wrong = ex06.choose_patience_on(ex06.WRONG_ANSWERS["choose_patience_on"][0][0])
    assert wrong.passed is False and "compare the test accuracies of the patiences" in wrong.message


@pytest.mark.slow
def test_stop_a_real_run_a_short_patience_passes_and_the_lessons_patience_trains_too_long(histories):
    assert ex06.stop_a_real_run(ex06.SOLUTIONS["stop_a_real_run"], histories).passed is True
    wrong = ex06.stop_a_real_run(ex06.WRONG_ANSWERS["stop_a_real_run"][0][0], histories)
    assert wrong.passed is False and "each evaluation of patience costs 10 more steps" in wrong.message
    assert ex06.stop_a_real_run(3, histories).passed is False


@pytest.mark.slow
def test_live_noise_names_its_value_first(capsys, monkeypatch):
    monkeypatch.setattr(early_stopping.plt, "show", lambda: None)
    early_stopping.live_noise(0.1, steps=20)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "noise = 0.1" and "early stopping (patience 5)" in lines[1]
