"""Lesson 01's helpers in ftlib.course.lessons.experiments: gains seed by seed, labels to reach an accuracy, the plot of
differences, and the rate a transfer run may override."""

import math
import time

import matplotlib
import pytest

from ftlib import freeze
from ftlib.course.lessons import experiments, pretraining
from ftlib.course.lessons.exercises import lesson01
from ftlib.course.lessons.experiments import Results

matplotlib.use("Agg")


def _curve():
    rows = [("scratch", 1, 0, 0.30), ("scratch", 1, 1, 0.40), ("scratch", 10, 0, 0.80), ("scratch", 10, 1, 0.90),
            ("probe", 1, 0, 0.60), ("probe", 1, 1, 0.50), ("probe", 10, 0, 0.85), ("probe", 10, 1, 0.95),
            ("fine", 1, 0, 0.70), ("fine", 1, 1, 0.30), ("fine", 10, 0, 0.70), ("fine", 10, 1, 0.96)]
    return Results({"method": m, "n": n, "seed": s, "accuracy": a} for m, n, s, a in rows)


def test_gains_pair_each_method_with_scratch_seed_by_seed():
    gains = experiments.gains(_curve(), "method", "scratch", "n", ["probe"])
    assert [(r["n"], r["seed"]) for r in gains] == [(1, 0), (1, 1), (10, 0), (10, 1)]
    assert gains.values("gain") == pytest.approx([0.30, 0.10, 0.05, 0.05])


def test_the_best_of_several_methods_per_seed_is_at_least_each_of_them():
    curve = _curve()
    best = experiments.gain_over_scratch(curve, ["probe", "fine"], n=1)
    probe, fine = (curve.differences("method", m, "scratch", n=1) for m in ("probe", "fine"))
    assert best == pytest.approx([max(p, f) for p, f in zip(probe, fine)])
    assert sum(best) > max(sum(probe), sum(fine))  # the per-seed maximum flatters: the bias the docstring names


def test_labels_to_reach_reads_the_mean_curve_on_a_log_scale():
    curve = _curve()  # scratch: mean 0.35 at N=1, 0.85 at N=10
    assert experiments.labels_to_reach(curve, "scratch", 0.35) == 1
    assert experiments.labels_to_reach(curve, "scratch", 0.60) == pytest.approx(10 ** 0.5)
    assert experiments.labels_to_reach(curve, "scratch", 0.85) == pytest.approx(10)
    assert experiments.labels_to_reach(curve, "scratch", 0.90) == math.inf


def test_plot_differences_draws_one_row_per_comparison_in_points():
    ax = experiments.plot_differences({"a − b": [0.01, 0.03], "c − d": [-0.02, 0.0]})
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a − b", "c − d"]
    assert [bar.get_width() for bar in ax.patches] == pytest.approx([2.0, -1.0])


def test_transfer_run_passes_a_rate_to_fit():
    default = experiments.transfer_run("scratch", "font_digits", 1, seed=0, steps=2)
    other = experiments.transfer_run("scratch", "font_digits", 1, seed=0, steps=2, lr=3e-2)
    assert default["trainable"] == other["trainable"] and default["accuracy"] != other["accuracy"]


# The exercises and the live slider (issue #24)

def _at_five():
    fine = lesson01.GAIN_METHOD
    rows = [("scratch", 0, 0.70), ("scratch", 1, 0.74), (fine, 0, 0.86), (fine, 1, 0.90)]
    return Results({"method": m, "n": 5, "seed": s, "accuracy": a} for m, s, a in rows)  # a mean gain of 16 points


def test_lesson01_prediction_of_the_gain_at_five(capsys):
    curve = _at_five()
    untouched = lesson01.gain_at_five(..., curve)
    assert untouched.passed is None and "write your prediction" in capsys.readouterr().out
    assert lesson01.gain_at_five(lesson01.SOLUTIONS["gain_at_five"], curve).passed is True
    wrong = lesson01.gain_at_five(lesson01.WRONG_ANSWERS["gain_at_five"][0][0], curve)
    assert wrong.passed is False and "too low" in wrong.message
    assert "already computes such features" not in wrong.message  # the why comes once the guess is close


def test_lesson01_question_on_why_pretraining_wins(capsys):
    untouched = lesson01.why_pretraining_wins(...)
    assert untouched.passed is None and "already seen digits during its pretraining." in capsys.readouterr().out
    assert lesson01.why_pretraining_wins(lesson01.SOLUTIONS["why_pretraining_wins"]).passed is True
    wrong = lesson01.why_pretraining_wins(lesson01.WRONG_ANSWERS["why_pretraining_wins"][0][0])
    assert wrong.passed is False and "same steps" in wrong.message


def test_lesson01_probe_by_freezing_trains_only_the_head(capsys):
    def freeze_for_probe(model):
        ...  # the placeholder a learner has not filled in yet

    curve = _at_five()  # scratch scored 70% in seed 0
    untouched = lesson01.probe_by_freezing(freeze_for_probe, curve)
    assert untouched.passed is None and "not attempted" in capsys.readouterr().out
    assert lesson01.probe_by_freezing(..., curve).passed is None
    solved = lesson01.probe_by_freezing(lesson01.SOLUTIONS["probe_by_freezing"], curve)
    assert solved.passed is True and "Only the head trains (1,290 parameters)" in capsys.readouterr().out
    wrong = lesson01.probe_by_freezing(lesson01.WRONG_ANSWERS["probe_by_freezing"][0][0], curve)
    assert wrong.passed is False and "Nothing trains" in wrong.message
    too_much = lesson01.probe_by_freezing(lambda model: freeze.freeze(model, ["block1"]), curve)
    assert too_much.passed is False and "only the head's 1,290" in too_much.message


def test_lesson01_live_race_names_its_steps_first(capsys):
    start = time.perf_counter()
    pretraining.race(10)
    seconds = time.perf_counter() - start  # about 0.5 s here; 40 steps, the slider's most, about 1.7 s
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("10 training steps for each method") and "500 test digits" in lines[0]
    assert [line.split()[0] for line in lines[1:3]] == ["scratch", "fine-tune,"], seconds
    assert len(pretraining.live_test_set()) == 500
