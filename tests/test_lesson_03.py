"""Lesson 03's helpers: the freeze-depth run (k = 4 is the exact probe), gains over a baseline, signed bar plots."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402

from ftlib import models  # noqa: E402
from ftlib.lessons import experiments, freezing, plots  # noqa: E402
from ftlib.lessons.experiments import Results  # noqa: E402


def test_depth_run_fits_the_head_exactly_when_every_block_is_frozen():
    probe = freezing.depth_run("font_digits", len(models.BLOCKS), n=2, seed=0, steps=5)
    same = freezing.staged_run("linear probe", "font_digits", 2, 0, steps=5)
    assert probe["how"] == "linear probe" and probe["accuracy"] == same["accuracy"]
    assert probe["trainable"] == same["trainable"] == models.CHANNELS[-1] * 10 + 10
    tuned = freezing.depth_run("font_digits", 3, n=2, seed=0, steps=5)
    assert tuned["how"] == "5 steps" and tuned["trainable"] > probe["trainable"]


def test_gains_from_k0_pair_seeds_on_every_target():
    rows = Results({"target": t, "k": k, "seed": s, "accuracy": 0.5 + 0.1 * k + 0.01 * s}
                   for t in ["a", "b"] for k in [0, 1] for s in [0, 1])
    gains = experiments.gains(rows, "k", 0, "target")
    assert gains.values("gain", target="a", k=1) == pytest.approx([0.1, 0.1])
    assert gains.values("gain", target="b", k=0) == [0.0, 0.0]


def test_plot_bars_shows_negative_differences():
    rows = Results({"target": t, "seed": 0, "gain": g} for t, g in [("a", -0.05), ("b", 0.02)])
    low, high = plots.plot_bars(rows, x="target", y="gain").get_ylim()
    assert low < -5 and high > 2
    zero = Results([{"target": "a", "seed": 0, "gain": 0.0}])
    low, high = plots.plot_bars(zero, x="target", y="gain").get_ylim()
    assert high > low


def test_plan_work_says_what_each_plan_trains():
    assert freezing.plan_work("linear probe", 60) == "exact fit"
    assert freezing.plan_work("LP-FT", 60) == "exact fit + 60 steps"
    assert freezing.plan_work("freeze first k", 60) == "60 steps"
    assert freezing.plan_work("gradual unfreezing", 60) == "5 stages x 12 steps"
