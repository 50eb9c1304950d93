"""Lesson 01's helpers in ftlib.lessons.experiments: gains seed by seed, labels to reach an accuracy, the plot of
differences, and the rate a transfer run may override."""

import math

import matplotlib
import pytest

from ftlib.lessons import experiments
from ftlib.lessons.experiments import Results

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
