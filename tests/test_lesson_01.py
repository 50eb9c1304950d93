"""Lesson 01's helpers in ftlib.course.lessons.experiments: gains seed by seed, labels to reach an accuracy, the plot of
differences, the rate a transfer run may override, and the tuning table's arms of the curve and the live race."""

import inspect
import math
import re
import time

import matplotlib
import nbformat
import pytest

from ftlib import freeze
from ftlib.course.lessons import experiments, pretraining, tuning
from ftlib.course.lessons.exercises import lesson01
from ftlib.course.lessons.experiments import Results
from ftlib.paths import NOTEBOOK_DIR
from ftlib.probe import linear_probe

matplotlib.use("Agg")
NOTEBOOK = NOTEBOOK_DIR / "01_pretraining_vs_finetuning.ipynb"


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

def _at_five(gain=16.0, plain=15.0):
    """Scratch, plain fine-tuning and :data:`lesson01.GAIN_METHOD` at N = 5 on two seeds: the mean gains in points."""
    rows = [("scratch", 0, 0.70), ("scratch", 1, 0.74)]
    rows += [(method, seed, base + points / 100)
             for method, points in ((lesson01.GAIN_METHOD, gain), ("fine-tune", plain))
             for seed, base in ((0, 0.70), (1, 0.74))]
    return Results({"method": m, "n": 5, "seed": s, "accuracy": a} for m, s, a in rows)


def test_lesson01_prediction_of_the_gain_at_five(capsys):
    curve = _at_five()
    untouched = lesson01.gain_at_five(..., curve)
    assert untouched.passed is None and "write your prediction" in capsys.readouterr().out
    solved = lesson01.gain_at_five(lesson01.SOLUTIONS["gain_at_five"], curve)
    assert solved.passed is True and "measured 16.0 points" in solved.message
    assert "Plain fine-tuning gains 15.0 points, so its gain would have passed too" in solved.message
    far = lesson01.gain_at_five(17, _at_five(plain=10.0))
    assert far.passed is True and "Plain fine-tuning gains 10.0 points, more than 2.5 points away" in far.message
    for guess, words in lesson01.WRONG_ANSWERS["gain_at_five"]:
        wrong = lesson01.gain_at_five(guess, curve)
        assert wrong.passed is False and words in wrong.message
        assert "already computes such features" not in wrong.message  # the why comes once the guess is close
    for lazy in (0, 50, "17", float("nan")):  # no thought, or not a number
        assert lesson01.gain_at_five(lazy, curve).passed is False, lazy
    assert lesson01.gain_at_five(13.2, _at_five(17.8, 16.1)).passed is False  # the probe's gain (3 seeds) is not it


def test_lesson01_a_missed_prediction_gets_a_direction_and_no_pointer_to_the_numbers():
    curve = _at_five()
    for guess, side in ((5, "too low: "), (30, "too high: ")):
        message = lesson01.gain_at_five(guess, curve).message
        assert side in message and "16" not in message, message  # the measured gain stays hidden
        assert "results above" not in message and "table" not in message, message


def test_lesson01_the_gain_is_checked_before_the_lesson_prints_any_number_of_the_curve():
    """The old path, copying the table's two N = 5 means, is gone: no cell above the check prints the curve or the
    tuning table (the check runs on the curve computed silently above it, and the table follows the check)."""
    cells = nbformat.read(NOTEBOOK, as_version=4).cells
    [check] = [i for i, c in enumerate(cells) if "exercises.gain_at_five(" in c.source]
    [computed] = [i for i, c in enumerate(cells) if "curve = pretraining.curve(" in c.source]
    shows = [i for i, c in enumerate(cells) if c.cell_type == "code" and any(
        word in c.source for word in ("table.show(", "curve.where(n=5).table(", "rate_grid(", "pretraining.compare("))]
    assert computed < check < min(shows), (computed, check, shows)
    assert not any(c.outputs for c in cells[computed:check] if c.cell_type == "code")
    assert "guess = ..." in cells[check - 1].source


def test_lesson01_the_gain_solution_passes_at_three_and_six_seeds():
    for gain, plain in ((17.8, 16.1), (16.4, 14.8)):  # the lesson's mean gains at N = 5 with 3 and with 6 seeds
        assert lesson01.gain_at_five(lesson01.SOLUTIONS["gain_at_five"], _at_five(gain, plain)).passed is True, gain


def test_lesson01_question_on_why_pretraining_wins(capsys):
    untouched = lesson01.why_pretraining_wins(...)
    assert untouched.passed is None and "at its best rate it would match" in capsys.readouterr().out
    assert "same steps" not in lesson01.WHY_PRETRAINING_WINS.prompt  # the question itself rules nothing out
    assert lesson01.why_pretraining_wins(lesson01.SOLUTIONS["why_pretraining_wins"]).passed is True
    wrong = lesson01.why_pretraining_wins(lesson01.WRONG_ANSWERS["why_pretraining_wins"][0][0])
    assert wrong.passed is False and "rate grid" in wrong.message


def test_lesson01_probe_by_freezing_trains_only_the_head(capsys):
    def freeze_for_probe(model):
        ...  # the placeholder a learner has not filled in yet

    curve = _at_five()  # scratch scored 70% in seed 0
    untouched = lesson01.probe_by_freezing(freeze_for_probe, curve)
    assert untouched.passed is None and "not attempted" in capsys.readouterr().out
    assert lesson01.probe_by_freezing(..., curve).passed is None
    solved = lesson01.probe_by_freezing(lesson01.SOLUTIONS["probe_by_freezing"], curve)
    rate = tuning.load().chosen(lesson01.PROBE_RATE_ARM)["lr"]  # plain fine-tuning's rate, chosen on validation
    out = capsys.readouterr().out
    assert solved.passed is True and "Only the head trains (1,290 parameters)" in out
    assert f"at plain fine-tuning's rate ({rate:g})" in out
    for build, words in lesson01.WRONG_ANSWERS["probe_by_freezing"]:  # everything, weights only, momentum 0, .eval()
        wrong = lesson01.probe_by_freezing(build, curve)
        assert wrong.passed is False and words in wrong.message, (build.__name__, wrong.message)
    lesson01.probe_by_freezing(lesson01.SOLUTIONS["probe_by_freezing"], curve, steps=2, lr=1e-4)
    assert "at the rate you passed (0.0001)" in capsys.readouterr().out  # the rate used, not the table's
    too_much = lesson01.probe_by_freezing(lambda model: freeze.freeze(model, ["block1"]), curve)
    assert too_much.passed is False and "only the head's 1,290" in too_much.message


def test_lesson01_live_race_names_its_steps_first_and_runs_at_the_tables_rates(capsys):
    start = time.perf_counter()
    pretraining.race(10)
    seconds = time.perf_counter() - start  # about 0.5 s here; 40 steps, the slider's most, about 1.7 s
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("10 training steps for each method") and "500 test digits" in lines[0]
    assert [line.split()[0] for line in lines[1:3]] == ["scratch", "fine-tune,"], seconds
    table = tuning.load()
    scratch_rate = table.chosen("01 scratch, N=5")["lr"]
    assert lines[1].endswith(f"(rate chosen on validation for scratch, N=5: {scratch_rate:g})")
    head = table.chosen("01 fine-tune, low backbone LR, N=5")["lr"]
    assert lines[2].endswith(f"backbone {head / 10:g}, head {head:g})")
    assert len(pretraining.live_test_set()) == 500
    assert "re-estimating each model's BatchNorm statistics on its 50 training digits" in lines[0]


def test_lesson01_race_scores_scratch_above_chance_after_a_few_steps():
    accuracy = pretraining.race_accuracies(10)  # BatchNorm re-estimated: about 74% (45 points above chance at least)
    assert accuracy["scratch"] > 0.55 and accuracy["fine-tune, low backbone LR"] > 0.55, accuracy


def test_lesson01_race_trains_each_method_at_the_rate_the_table_chose(monkeypatch):
    rates = []

    class Passed(Exception):
        pass

    def fake_run(method, train_set, seed, steps, **options):
        rates.append((method, options.get("lr")))
        raise Passed  # enough: the rate has been passed

    monkeypatch.setattr(pretraining, "run", fake_run)
    with pytest.raises(Passed):
        pretraining.race_accuracies(5, n=40)
    table = tuning.load()
    assert rates == [("scratch", table.options("01 scratch, N=20")["lr"])]  # N = 40: the arm tuned at N = 20


# The tuning table's arms (issue #32)

def test_arm_key_is_the_tables_arm_at_n_or_at_the_nearest_tuned_n():
    table = tuning.load()
    assert pretraining.arm_key("scratch", 5, table) == "01 scratch, N=5"
    assert pretraining.arm_key("fine-tune, low backbone LR", 40, table) == "01 fine-tune, low backbone LR, N=20"
    assert pretraining.arm_keys([5, 20, 40], table, ["linear probe"]) == ["01 linear probe, N=5",
                                                                           "01 linear probe, N=20"]
    with pytest.raises(ValueError, match="not on lesson 01's curve"):
        pretraining.arm_key("probe", 5, table)
    with pytest.raises(ValueError, match="n=0 is not allowed"):
        pretraining.arm_key("scratch", 0, table)


def test_every_arm_of_the_curve_is_in_the_table_and_tuned_on_the_one_grid():
    table = tuning.load()
    for key in pretraining.arm_keys([1, 5, 10, 20], table):
        arm = table.arm(key)
        assert arm.grid == ({} if "linear probe" in key else {"lr": tuning.RATES}), key
        assert table.chosen(key) == ({} if "linear probe" in key else {"lr": table.chosen(key)["lr"]})


def test_the_curve_at_an_untuned_n_runs_the_nearest_arms_setting_and_says_so():
    table = tuning.load()
    runs = pretraining.curve([40], seeds=1, steps=2, table=table)
    assert runs.unique("method") == list(pretraining.CURVE_METHODS) and runs.unique("n") == [40]
    assert all("(n 40, tuned at 20) (steps 2, tuned at 100)" in r["label"] for r in runs)
    assert runs.values("lr", method="scratch") == [table.chosen("01 scratch, N=20")["lr"]]
    assert "lr" not in runs.where(method="linear probe")[0]


def test_rate_grid_shows_every_rate_and_stars_the_chosen_one():
    table = tuning.load()
    text = pretraining.rate_grid(table, {"scratch": "01 scratch, N=5"}).splitlines()
    assert len(text) == 1 + len(tuning.RATES)
    starred = [line.split()[0] for line in text[1:] if line.rstrip().endswith("*")]
    assert starred == [f"{table.chosen('01 scratch, N=5')['lr']:g}"]
    with pytest.raises(ValueError, match="no rate grid"):
        pretraining.rate_grid(table, {"probe": "01 linear probe, N=5"})


def test_compare_states_a_margin_inside_the_seed_spread_as_unresolved():
    rows = [("a", 5, 0, 0.80), ("a", 5, 1, 0.90), ("a", 5, 2, 0.85), ("b", 5, 0, 0.82), ("b", 5, 1, 0.86),
            ("b", 5, 2, 0.86), ("a", 20, 0, 0.95), ("a", 20, 1, 0.96), ("a", 20, 2, 0.97), ("b", 20, 0, 0.90),
            ("b", 20, 1, 0.91), ("b", 20, 2, 0.92)]
    runs = Results({"method": m, "n": n, "seed": s, "accuracy": a} for m, n, s, a in rows)
    lines = pretraining.compare(runs, "a", "b", [5, 20]).splitlines()
    assert lines[0].startswith("N =  5: a minus b: +0.3 ± ") and lines[0].endswith("not resolved at this scale")
    assert lines[1] == "N = 20: a minus b: +5.0 ± 0.0 points: a ahead"


def test_reach_by_seed_reads_each_seeds_own_curve():
    rows = [("scratch", 1, 0, 0.30), ("scratch", 10, 0, 0.90), ("fine", 1, 0, 0.60),
            ("scratch", 1, 1, 0.30), ("scratch", 10, 1, 0.50), ("fine", 1, 1, 0.60)]
    runs = Results({"method": m, "n": n, "seed": s, "accuracy": a} for m, n, s, a in rows)
    reach = pretraining.reach_by_seed(runs, "fine", n=1)
    assert reach[0] == pytest.approx(10 ** 0.5) and reach[1] == math.inf


def test_the_probes_fixed_penalty_is_named_where_its_arm_is_printed():
    penalty = inspect.signature(linear_probe).parameters["weight_decay"].default
    table = tuning.load()
    for key in pretraining.arm_keys([1, 5, 10, 20], table, ["linear probe"]):
        named = re.search(r"L2 penalty (\S+) is fixed on purpose, not tuned", table.arm(key).note)
        assert named and float(named.group(1)) == penalty, key
    assert "fixed on purpose, not tuned" in table.show(["01 linear probe, N=5"])
