"""Lesson 06's printed helpers: the curve described, the one-cycle rate, the gap closed, and the two watched scores."""

import math

import numpy as np
import pytest

from ftlib import stopping
from ftlib.course.lessons import early_stopping, experiments


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
    assert lines[2].startswith("on these 1 seeds, test accuracy watching val_accuracy minus watching val_loss")
    assert "1: +0.0 ± inf, 3: -10.0 ± inf points" in lines[2], lines[2]
    assert lines[2].endswith("a difference resolved at patience none")  # one seed resolves nothing
    lines = early_stopping.compare_monitors(early_stopping.tradeoff([history, history], [1, 3]),
                                            early_stopping.policies([history, history], patience=2, min_delta=0.0))
    assert lines[2].endswith("resolved at patience 3 (val_loss higher)"), lines[2]  # the same in both seeds


def test_evaluation_cost_counts_forward_passes_against_training_steps():
    # 8 evaluations of 50 digits = 400 forward passes; a step of 32 digits = 3 x 32 = 96: 400 / 96 steps' worth
    assert early_stopping.evaluation_cost(80, 10, 50, 32) == pytest.approx(400 / 96)
    assert early_stopping.evaluation_cost(89, 10, 50, 32) == early_stopping.evaluation_cost(80, 10, 50, 32)
    assert early_stopping.evaluation_cost(9, 10, 50, 32) == 0.0  # stopped before its first evaluation
    with pytest.raises(ValueError, match="eval_every=0"):
        early_stopping.evaluation_cost(80, 0, 50)


def test_describe_saving_gives_the_cost_as_a_share_of_the_steps_saved_or_none_saved():
    text = early_stopping.describe_saving([80, 150], 150, 10, [50, 48], 32)
    assert text.startswith("steps saved 70, 0 of 150; its 8, 15 evaluations of the 50, 48 validation digits")
    assert "cost 4.2, 7.5 training steps' worth (as a share of the steps saved: 6%, none saved)" in text, text
    with pytest.raises(ValueError, match="max_steps=150"):
        early_stopping.describe_saving([160], 150, 10, [50])
    with pytest.raises(ValueError, match="one validation size per seed"):
        early_stopping.describe_saving([80, 150], 150, 10, [50])


def test_validation_sizes_follow_the_per_class_split_of_the_noisy_labels():
    sizes = early_stopping.validation_sizes([0, 1, 2], 25, 0.3, 0.2)
    assert sizes == [len(early_stopping.noisy_split(25, 0.3, 0.2, s)[2]) for s in (0, 1, 2)]
    assert all(45 <= n <= 55 for n in sizes) and len(set(sizes)) > 1  # about 50, not 50 in every seed


class _Table:
    """A tuning table with two rates of early stopping on two seeds (validation sizes 50 and 49)."""

    settings = {"seeds": [0, 1]}

    def __init__(self, records, chosen):
        self._records, self._chosen = records, chosen

    def arm(self, key):
        from ftlib.course.lessons.tuning import Arm

        return Arm("06", key[3:], "early_stopping:policy_run", {"n_labelled": 25, "noise": 0.3, "val_fraction": 0.2})

    def records(self, key, **point):
        return experiments.Results(r for r in self._records if r["lr"] == point["lr"])

    def chosen(self, key):
        return {"lr": self._chosen}


def test_rate_choice_counts_digits_right_and_describe_choice_says_what_won_and_by_how_much():
    records = [{"lr": 0.1, "seed": 0, "val_accuracy": 30 / 50, "val_loss": 1.5},
               {"lr": 0.1, "seed": 1, "val_accuracy": 29 / 49, "val_loss": 1.6},
               {"lr": 0.2, "seed": 0, "val_accuracy": 29 / 50, "val_loss": 1.4},
               {"lr": 0.2, "seed": 1, "val_accuracy": 30 / 49, "val_loss": 1.8}]
    choice = early_stopping.rate_choice(_Table(records, 0.2), [0.1, 0.2])
    assert [(r["right"], r["total"], r["chosen"]) for r in choice] == [(59, 99, False), (59, 99, True)]
    lines = early_stopping.describe_choice(choice)
    assert lines[1].startswith("lr 0.2: mean validation accuracy 59.6122%, 59 of 99") and "<- chosen" in lines[1]
    assert lines[2] == ("lr 0.2 won over 0.1 by +0.0204 points of mean validation accuracy (the same 59 of 99 digits "
                        "right at both); the lower mean validation loss would pick 0.1"), lines[2]  # 1.6 vs 1.55
    records[3]["val_accuracy"], records[3]["val_loss"] = 31 / 49, 1.6
    lines = early_stopping.describe_choice(early_stopping.rate_choice(_Table(records, 0.2), [0.1, 0.2]))
    assert "(60 against 59 of 99 digits right); the lower mean validation loss would pick 0.2" in lines[2], lines[2]
    with pytest.raises(ValueError, match="not in the table's grid"):
        early_stopping.rate_choice(_Table(records, 0.2), [0.3])


def test_rescue_kept_never_prints_a_negative_share():
    assert early_stopping.rescue_kept(-0.04) == "none (below zero)"
    assert early_stopping.rescue_kept(0.0) == "0%" and early_stopping.rescue_kept(0.12) == "12%"


# Exercises and the live slider (issue #24)

from ftlib.course.lessons.exercises import lesson06 as ex06  # noqa: E402


@pytest.fixture(scope="module")
def histories():
    """Seed 0's full recorded run (validation only), the curve the do exercise is judged against."""
    return [early_stopping.long_run(0, 25, 0.3, 0.2, 150, 10, early_stopping.rate(), watch_test=False).history]


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
    for guess in (20, 40, 120, 0):  # a neighbouring evaluation (40: the test accuracy's peak) is not the turn
        assert ex06.turning_step(guess, history).passed is False, guess
    assert ex06.turning_step(34, history).passed is True and ex06.turning_step(26, history).passed is True


def test_turning_step_counts_every_step_on_the_flat_bottom_of_the_curve():
    history = _history()
    history.eval_step = [10, 20, 30, 40, 50, 60]
    history.val_loss = [1.759, 1.539, 1.490, 1.493, 1.527, 1.567]  # seed 0's: 40 is 0.003 above the lowest (30)
    for guess in (30, 40, 25, 45):
        feedback = ex06.turning_step(guess, history)
        assert feedback.passed is True and "lowest at step 30 (1.490)" in feedback.message, guess
        assert "(30, 40)" in feedback.message
    for guess, side in ((20, "too low"), (50, "too high"), (19, "too low"), (51, "too high")):
        feedback = ex06.turning_step(guess, history)  # 20 and 50 are over 0.01 above the lowest
        assert feedback.passed is False and side in feedback.message, guess
    assert ex06.turning_step("30", history).passed is False
    assert ex06.turning_step(np.int64(30), history).passed is True  # e.g. a step read off an array


def test_a_missed_turning_step_says_which_way_to_think_not_to_look_at_results_not_shown_yet():
    history = _history()
    history.eval_step, history.val_loss = [10, 20, 30, 40, 50], [0.9, 0.8, 0.5, 0.6, 0.7]
    for guess, direction in ((120, ex06.TOO_LATE), (10, ex06.TOO_EARLY)):
        message = ex06.turning_step(guess, history).message
        assert direction in message and "results above" not in message, message


def test_turning_step_prints_one_message_whether_it_passes_or_misses(capsys):
    history = _history()
    history.eval_step = [10, 20, 30, 40, 50]
    history.val_loss = [0.9, 0.8, 0.5, 0.6, 0.7]
    capsys.readouterr()
    for guess, word in ((30, "Close:"), (34, "Close:"), (36, "Not yet:"), (120, "Not yet:")):
        feedback = ex06.turning_step(guess, history)
        out = capsys.readouterr().out
        assert out.count(word) == 1 and out.count("Close:") + out.count("Not yet:") == 1, (guess, out)
        assert "Why: \n" not in out and not out.rstrip().endswith("Why:"), (guess, out)
        assert feedback.message in out


def test_stop_a_real_run_has_no_budget_of_its_own_the_recorded_run_sets_it():
    import inspect

    assert "steps" not in inspect.signature(ex06.stop_a_real_run.__wrapped__ if hasattr(
        ex06.stop_a_real_run, "__wrapped__") else ex06.stop_a_real_run).parameters


@pytest.mark.slow
def test_stop_a_real_run_judges_a_short_recorded_run_on_that_same_run(capsys):
    short = [early_stopping.long_run(0, 25, 0.3, 0.2, 60, 10, early_stopping.rate(), watch_test=False).history]
    capsys.readouterr()
    assert ex06.stop_a_real_run(stopping.EarlyStopping("val_accuracy", patience=2), short).passed is True
    out = capsys.readouterr().out
    assert "trained 60 of 60 steps" in out and "first reached at step 40" in out, out  # target and run: 60 steps
    hasty = ex06.stop_a_real_run(stopping.EarlyStopping("val_accuracy", patience=1), short)
    assert hasty.passed is False and "stopped before it got there" in hasty.message


def test_patience_question_solution_and_wrong_answer():
    assert ex06.choose_patience_on(ex06.SOLUTIONS["choose_patience_on"]).passed is True
    wrong = ex06.choose_patience_on(ex06.WRONG_ANSWERS["choose_patience_on"][0][0])
    assert wrong.passed is False and "compare the test accuracies of the patiences" in wrong.message


@pytest.mark.slow
def test_stop_a_real_run_passes_the_least_patient_rule_and_fails_wrong_and_lazy_ones(histories):
    solution = ex06.SOLUTIONS["stop_a_real_run"]
    assert ex06.stop_a_real_run(solution, histories).passed is True
    for wrong, why in ex06.WRONG_ANSWERS["stop_a_real_run"]:
        feedback = ex06.stop_a_real_run(wrong, histories)
        assert feedback.passed is False and why in feedback.message, (wrong, feedback.message)
    unrestored = ex06.stop_a_real_run(stopping.EarlyStopping("val_accuracy", solution.patience, restore_best=False),
                                      histories)
    assert unrestored.passed is False and "restore_best=False" in unrestored.message
    assert "restored step" not in unrestored.message
    lazy = [3, solution.patience, stopping.EarlyStopping("val_accuracy", patience=solution.patience + 1),
            stopping.EarlyStopping("val_accuracy", patience=12), stopping.EarlyStopping("val_accuracy", patience=1),
            stopping.EarlyStopping("val_loss", patience=solution.patience),
            stopping.EarlyStopping("val_accuracy", patience=solution.patience, min_delta=0.05),
            stopping.EarlyStopping("val_accuracy", patience=solution.patience, mode="min")]
    for answer in lazy:
        if answer != solution:
            assert ex06.stop_a_real_run(answer, histories).passed is False, answer


def test_exercise_3_sees_the_validation_curve_before_any_test_accuracy_by_patience():
    """The do exercise is judged on validation data: the learner gets seed 0's validation accuracy above it, and the
    tables of test accuracy by patience (section 6) come after it, so they cannot hand over the answer."""
    import json
    from pathlib import Path

    cells = json.loads((Path(__file__).parents[1] / "notebooks" / "06_early_stopping.ipynb").read_text())["cells"]
    sources = ["".join(c["source"]) for c in cells]
    exercise = next(i for i, s in enumerate(sources) if "exercises.stop_a_real_run(rule" in s)
    curve = next(i for i, s in enumerate(sources) if "early_stopping.scores_line(histories[0]" in s)
    tables = [i for i, s in enumerate(sources) if "early_stopping.tradeoff(" in s or "compare_monitors(" in s]
    assert curve < exercise and tables and min(tables) > exercise, (curve, exercise, tables)
    assert "hindsight" in sources[exercise - 1] or "hindsight" in sources[exercise - 2]


def test_scores_line_and_the_clean_control_description():
    history = _history()
    assert early_stopping.scores_line(history) == "step 10: 50, step 20: 60, step 30: 60, step 40: 70, step 50: 60"
    assert early_stopping.scores_line(history, "val_loss").startswith("step 10: 0.900, step 20: 0.500")
    with pytest.raises(ValueError, match="monitor 'loss' is not a watched score"):
        early_stopping.scores_line(history, "loss")
    clean = _history()
    clean.val_loss = [0.9, 0.5, 0.4, 0.3, 0.2]  # still falling at the end
    control = {"history": clean, "low_step": 50, "stop_step": None, "accuracy": 0.95}
    first, second = early_stopping.describe_control(control, history, 0.3, patience=2)
    assert first == ("no wrong labels: validation loss lowest at step 50 (0.20), still falling at the last "
                     "evaluation; early stopping (patience 2) does not stop; test accuracy of the last step 95.0%")
    assert second.startswith("30% wrong labels: validation loss lowest at step 20 (0.50), +0.30 by the last")
    assert "stops at step 40" in second and second.endswith("test accuracy of the last step 30.0%")


def test_stop_a_real_run_checks_the_rule_before_training():
    for answer, why in ((stopping.EarlyStopping("val_accuracy", 2, restore_best=False), "restore_best=False"),
                        (stopping.EarlyStopping("val_loss", 2), "watch val_accuracy"), (2, "not int"),
                        (stopping.EarlyStopping("val_accuracy", 2, mode="min"), "mode='min'")):
        feedback = ex06.stop_a_real_run(answer, [])
        assert feedback.passed is False and why in feedback.message


# The tuning table's driver and the policies (issue #32)

def test_replay_keeps_what_each_policy_keeps_with_its_validation_scores():
    history = _history()
    end, stop, oracle = (early_stopping.replay(history, p, patience=2) for p in
                         ("train to the end", "early stopping", early_stopping.ORACLE))
    assert end == {"steps": 50, "accuracy": 0.3, "best_step": 50, "val_accuracy": 0.6, "val_loss": 0.8}
    assert stop == {"steps": 40, "accuracy": 0.6, "best_step": 20, "val_accuracy": 0.6, "val_loss": 0.5}
    assert oracle["best_step"] == 20 and oracle["accuracy"] == 0.6
    with pytest.raises(ValueError, match="policy 'last' is not a stopping policy"):
        early_stopping.replay(history, "last")


def test_gaps_closed_per_seed_and_none_without_a_gap():
    history = _history()
    history.eval_accuracy = [0.1, 0.5, 0.6, 0.4, 0.3]  # oracle 0.6 at step 30; early stopping keeps step 20 (0.5)
    closed = early_stopping.gaps_closed(early_stopping.policies([history], patience=2, min_delta=0.0))
    assert closed == [pytest.approx((0.5 - 0.3) / (0.6 - 0.3))]
    history.eval_accuracy = [0.1, 0.2, 0.3, 0.4, 0.5]  # still rising at the end: no gap to close
    assert math.isnan(early_stopping.gaps_closed(early_stopping.policies([history], 2, 0.0))[0])


def test_every_policy_has_an_arm_in_the_tuning_table_with_its_rate_chosen_from_the_grid():
    from ftlib.course.lessons import tuning

    table = tuning.load()
    for schedule in ("constant", "onecycle"):
        for policy in early_stopping.POLICIES:
            key = early_stopping.arm(policy, schedule)
            entry = table.entry(key)
            assert entry["grid"] == {"lr": list(tuning.RATES)} and entry["fixed"]["schedule"] == schedule
            assert entry["fixed"]["policy"] == policy and "fixed on purpose" in entry["note"]
            assert table.chosen(key)["lr"] in tuning.RATES
    assert early_stopping.rate() == table.chosen("06 early stopping, patience 5")["lr"]


def test_overfitting_measures_the_turn_of_the_validation_loss_and_the_fall_of_the_test_accuracy():
    [row] = early_stopping.overfitting([_history()])
    assert row["low_step"] == 20 and row["loss_rise"] == pytest.approx(0.3)
    assert row["peak_step"] == 20 and row["accuracy_drop"] == pytest.approx(0.3) and row["gap"] == 0
    history = _history()
    history.eval_accuracy = [0.1, 0.5, 0.6, 0.4, 0.3]
    assert early_stopping.overfitting([history])[0]["gap"] == 10


def test_equivalence_needs_the_whole_interval_inside_the_margin():
    mean, half, word = early_stopping.equivalence([-0.004, 0.005, -0.010], 0.025)
    assert word == "equivalent within ±2.5 points" and abs(mean) + half < 0.025
    assert early_stopping.equivalence([-0.019, 0.028, -0.009], 0.025)[2].startswith("no difference resolved")
    assert early_stopping.equivalence([0.064, 0.074, 0.086], 0.025)[2] == "early stopping better"
    assert early_stopping.equivalence([-0.064, -0.074, -0.086], 0.025)[2] == "training to the end better"


def test_across_rates_reuses_known_runs_and_a_whole_curve_gives_the_run_to_the_end():
    history = _history()
    known = experiments.Results([{"policy": "early stopping", "lr": 0.001, "seed": 0, "history": history,
                                  **early_stopping.replay(history, "early stopping", patience=2)}])
    rows = early_stopping.across_rates(known, [0.001], [0], max_steps=50, patience=2)  # nothing left to run
    assert [(r["policy"], r["accuracy"], r["steps"]) for r in rows] == [("train to the end", 0.3, 50),
                                                                        ("early stopping", 0.6, 40)]


def test_across_rates_reads_the_tables_runs_where_the_settings_are_the_tables(monkeypatch):
    from ftlib.course.lessons import tuning, workers

    table = tuning.load()
    fixed = table.arm(early_stopping.arm("early stopping")).fixed
    setting = {k: fixed[k] for k in ("n_labelled", "noise", "val_fraction", "max_steps", "eval_every", "patience",
                                     "min_delta")}
    ran = []
    fake = {"accuracy": 0.5, "steps": 1, "best_step": 1, "val_accuracy": 0.5, "val_loss": 1.0}
    monkeypatch.setattr(workers, "run_calls", lambda calls, progress=None: ran.extend(calls) or [fake] * len(calls))
    rows = early_stopping.across_rates(experiments.Results(), [1e-3, 3e-3], [0, 1], table, **setting)
    assert not ran, "every run at the table's settings and seeds is read back"
    stored = {r["lr"]: r for r in table.results(early_stopping.arm("early stopping")) if r["seed"] == 1}
    assert rows.values("accuracy", policy="early stopping", lr=3e-3, seed=1) == [stored[3e-3]["accuracy"]]
    early_stopping.across_rates(experiments.Results(), [1e-3], [0], table, **{**setting, "noise": 0.2})
    assert len(ran) == 2, "at another noise level than the table's, both policies must run"


@pytest.mark.slow
def test_policy_run_without_the_test_curve_stops_and_scores_like_the_replay():
    args = dict(seed=0, lr=early_stopping.rate(), n_labelled=25, noise=0.3, max_steps=150)
    inside = early_stopping.policy_run("early stopping", record_test=False, **args)
    replayed = early_stopping.policy_run("early stopping", **args)
    kept = ("steps", "best_step", "accuracy", "val_accuracy", "val_loss")
    assert {k: inside[k] for k in kept} == {k: replayed[k] for k in kept}


def test_by_rate_gives_each_policys_stored_validation_records_over_the_grid():
    from ftlib.course.lessons import tuning

    table = tuning.load()
    grid = early_stopping.by_rate(table)
    assert grid.unique("policy") == list(early_stopping.POLICIES)
    assert sorted(grid.unique("lr")) == sorted(tuning.RATES)
    end = early_stopping.arm("train to the end")
    assert grid.where(policy="train to the end") == [{"policy": "train to the end", **r} for r in table.results(end)]


def test_clean_controls_runs_the_control_on_every_seed_in_order(monkeypatch):
    from ftlib.course.lessons import workers

    calls = []
    monkeypatch.setattr(workers, "run_calls",
                        lambda c, progress=None: calls.extend(c) or [{"seed": o["seed"]} for _, o in c])
    runs = early_stopping.clean_controls(range(3), n_labelled=25, val_fraction=0.2, steps=150, eval_every=10, lr=1e-3,
                                         patience=5, min_delta=0.0)
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert all(run is early_stopping.clean_control and options["lr"] == 1e-3 for run, options in calls)
