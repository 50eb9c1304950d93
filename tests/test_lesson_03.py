"""Lesson 03's helpers: the freeze-depth run (k = 4 is the exact probe), gains over a baseline, signed bar plots."""

import matplotlib

matplotlib.use("Agg")

import numpy  # noqa: E402
import pytest  # noqa: E402

from ftlib import models  # noqa: E402
from ftlib.course.lessons import experiments, freezing, plots  # noqa: E402
from ftlib.course.lessons.experiments import Results  # noqa: E402


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


# --- Exercises (ftlib.course.lessons.exercises.lesson03) and the live slider's run ------------------------------------

def _far_sweep():
    """A fake sweep on gratings: k = 1 best, k = 0 within the seeds' spread, deeper freezes far behind."""
    means = {0: 0.725, 1: 0.737, 2: 0.698, 3: 0.637, 4: 0.529}
    return Results({"target": "gratings", "k": k, "seed": s, "accuracy": m + 0.02 * (s - 1)}
                   for k, m in means.items() for s in range(3))


def test_far_depth_accepts_the_depth_chosen_on_validation_or_shallower_and_gives_a_miss_no_direction(capsys):
    from ftlib.course.lessons.exercises import lesson03 as ex

    untouched = ex.far_depth(..., _far_sweep(), "gratings", chosen=1)
    assert untouched.passed is None and "guess_far_k" in capsys.readouterr().out
    right = ex.far_depth(ex.SOLUTIONS["far_depth"], _far_sweep(), "gratings", chosen=1)
    assert right.passed is True and right.message.startswith("Right: k = 1") and "hypothesis" in right.message
    shallower = ex.far_depth(0, _far_sweep(), "gratings", chosen=1)
    assert shallower.passed is True and "Close, but validation chose k = 1, not 0" in shallower.message
    assert "Right" not in shallower.message
    for deep in (2, 3, 4):
        wrong = ex.far_depth(deep, _far_sweep(), "gratings", chosen=1)
        assert wrong.passed is False and "not the depth validation chose" in wrong.message
        assert not any(word in wrong.message for word in ("fewer", "more blocks", "k = 1", "strokes",
                                                          "costs accuracy"))
    wide = Results({**r, "accuracy": r["accuracy"] + (0.05 if r["k"] == 2 else 0)} for r in _far_sweep())
    assert ex.far_depth(2, wide, "gratings", chosen=1).passed is False  # judged by the chosen k, not the test scores
    assert ex.far_depth(7, _far_sweep(), "gratings", chosen=1).passed is False
    for not_whole in (1.0, 0.0, 1.5, True, False, "1"):  # a float equal to a depth is not a whole number of blocks
        rejected = ex.far_depth(not_whole, _far_sweep(), "gratings", chosen=1)
        assert rejected.passed is False and "whole number of blocks" in rejected.message, not_whole
    assert ex.far_depth(numpy.int64(1), _far_sweep(), "gratings", chosen=1).passed is True
    with pytest.raises(TypeError):  # no fallback to a depth picked on the test scores
        ex.far_depth(1, _far_sweep(), "gratings")
    with pytest.raises(ValueError, match="chosen must be the depth chosen on validation"):
        ex.far_depth(1, _far_sweep(), "gratings", chosen=9)


@pytest.mark.slow
def test_freeze_first_two_passes_ftlib_freeze_and_catches_the_weights_only_freeze(capsys):
    from ftlib.course.lessons.exercises import lesson03 as ex

    def build(model):
        ...  # the notebook's placeholder

    assert ex.freeze_first_two(build).passed is None and ex.freeze_first_two(...).passed is None
    assert "Exercise not attempted yet" in capsys.readouterr().out
    assert ex.freeze_first_two(ex.SOLUTIONS["freeze_first_two"]).passed is True
    for wrong_build, message in ex.WRONG_ANSWERS["freeze_first_two"]:  # weights only; BatchNorm not tracking
        wrong = ex.freeze_first_two(wrong_build)
        assert wrong.passed is False and message in wrong.message, wrong_build.__name__

    def top_two(model):
        ex.freeze(model, ["block3", "block4"])

    wrong_blocks = ex.freeze_first_two(top_two)
    assert wrong_blocks.passed is False and "Frozen now: block3, block4" in wrong_blocks.message

    def typo(model):
        ex.freeze(model, ["block1", "blok2"])

    broken = ex.freeze_first_two(typo)
    assert broken.passed is False and "build(model) raised ValueError: unknown block name" in broken.message

    def frozen_then_released(model):  # frozen properly, then the trap on purpose: the statistics move again
        ex.freeze(model, ["block1", "block2"])
        ex.freeze(model, ["block1", "block2"], update_bn_stats=True)

    assert ex.freeze_first_two(frozen_then_released).passed is False


def test_batchnorm_trap_question_gives_each_misconception_its_feedback():
    from ftlib.course.lessons.exercises import lesson03 as ex

    question = ex.BATCHNORM_TRAP
    assert ex.batchnorm_trap(ex.SOLUTIONS["batchnorm_trap"]).passed is True
    assert question.right_letter != "c"  # the letter the question had before: moved away from the course's habit
    mismatch = ex.batchnorm_trap(question.letter_of(1))
    assert mismatch.passed is False and "AdaBN" in mismatch.message
    assert "the mismatch is not the cost" in mismatch.message and "moving minus AdaBN" in mismatch.message
    schedule = ex.batchnorm_trap(question.letter_of(2))
    assert schedule.passed is False and "rate chosen for it on validation" in schedule.message
    assert "not the trap run more" in ex.batchnorm_trap(question.letter_of(3)).message
    lengths = [len(option.text) for option in question.options.values()]
    assert max(lengths) <= 1.1 * min(lengths), lengths  # no option stands out by its length
    for option in question.choices:  # the question rules out weight updates: no option may offer them
        assert "weights" not in option.text and "always" not in option.text


def _table(val_by_k: dict[int, list[float]], target: str = "gratings"):
    """A fake tuning table with one depth arm per k, its stored validation accuracies on seeds 0, 1, 2."""
    from ftlib.course.lessons import tuning

    arms = [{"lesson": "03", "arm": f"freeze k={k}, {target}", "run": "freezing:depth_run", "fixed": {"k": k},
             "grid": {"lr": [0.001, 0.01]}, "rates": "", "note": "", "chosen": {"lr": 0.01},
             "records": [{"lr": lr, "seed": s, "val_accuracy": v if lr == 0.01 else 0.0, "val_loss": 1.0}
                         for lr in (0.001, 0.01) for s, v in enumerate(values)]}
            for k, values in val_by_k.items()]
    return tuning.Table({"settings": {"seeds": [0, 1, 2]}, "arms": arms})


def test_chosen_depth_reads_the_stored_validation_scores_at_each_arms_chosen_rate():
    table = _table({0: [0.70, 0.72, 0.74], 1: [0.75, 0.71, 0.74], 2: [0.60, 0.61, 0.62]})
    assert freezing.chosen_depth(table, "gratings", [0, 1, 2]) == 1  # best mean validation accuracy
    tied = _table({0: [0.70, 0.70, 0.70], 1: [0.70, 0.70, 0.70]})
    assert freezing.chosen_depth(tied, "gratings", [0, 1]) == 0  # a tie goes to the first in the grid
    assert freezing.depth_key(3, "gratings") == "03 freeze k=3, gratings"


def test_run_interleaved_takes_turns_seed_by_seed_and_names_each_arm(monkeypatch):
    from ftlib.course.lessons import tuning

    calls = []

    def fake_run_chosen(key, seeds, table, live=False, **changes):
        assert live, "timed runs must train now, not be read back from the table"
        calls.append((key, *seeds))
        return Results([{"seed": seeds[0], "accuracy": 0.5, **changes}])

    monkeypatch.setattr(tuning, "run_chosen", fake_run_chosen)
    runs = freezing.run_interleaved({"a": "key a", "b": "key b"}, range(2), table=None, field="recipe_name", n=3)
    assert calls == [("key a", 0), ("key b", 0), ("key a", 1), ("key b", 1)]
    assert runs.values("seed", recipe_name="b") == [0, 1] and runs.values("n") == [3] * 4


@pytest.mark.slow
def test_live_labels_trains_both_arms_at_their_chosen_rates_and_names_n_first(capsys):
    import time

    from ftlib.course.lessons import tuning

    table = tuning.load()
    start = time.perf_counter()
    freezing.live_labels(20, "font_digits", table)
    seconds = time.perf_counter() - start
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("N = 20 labels per class of font_digits (seed 0; each arm at its rate chosen at N = 10)")
    rate = table.chosen(freezing.depth_key(0, "font_digits"))["lr"]
    assert f"lr {rate:g}" in lines[1] and "fine-tune (k = 0)" in lines[1]
    assert "probe (k = 4)" in lines[2] and "exact fit" in lines[2] and "test accuracy" in lines[2]
    print(f"live_labels(20): {seconds:.2f} s")  # about 1-2 s on 2 cores (shown with pytest -s)
