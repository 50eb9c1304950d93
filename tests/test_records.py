"""The one experiment shape: fixed record keys, the one choose rule, the one table printer."""

import math
import re
from pathlib import Path

import pytest

from ftlib.course.lessons import experiments, records
from ftlib.course.lessons.records import Column, Results, choose

LESSONS = Path(experiments.__file__).parent


def _runs(*rows):
    """Records of (value, seed, val_accuracy, val_loss, accuracy) for the field ``x``."""
    return Results({"x": x, "seed": s, "val_accuracy": va, "val_loss": vl, "accuracy": a} for x, s, va, vl, a in rows)


def test_choose_takes_the_best_mean_validation_accuracy_and_never_reads_test():
    runs = _runs((1, 0, 0.7, 1.0, 0.9), (1, 1, 0.7, 1.0, 0.9), (2, 0, 0.9, 1.0, 0.1), (2, 1, 0.6, 1.0, 0.1))
    assert choose(runs, "x") == 2  # mean 0.75 against 0.70, though its test accuracy is far lower
    assert choose(runs, "x", seed=1) == 1  # one seed's runs alone


def test_ties_go_to_the_lower_validation_loss_then_to_the_first_in_the_grid():
    assert choose(_runs((1, 0, 0.8, 0.5, 0), (2, 0, 0.8, 0.4, 0)), "x") == 2
    assert choose(_runs((1, 0, 0.8, 0.4, 0), (2, 0, 0.8, 0.4, 0)), "x") == 1
    assert choose(_runs((2, 0, 0.8, 0.4, 0), (1, 0, 0.8, 0.4, 0)), "x") == 2
    without_loss = Results({"x": x, "seed": 0, "val_accuracy": 0.8} for x in (3, 1, 2))
    assert choose(without_loss, "x") == 3


def test_records_with_a_validation_loss_alone_choose_the_lower_mean_loss():
    """A language model's runs (bits per character): the lower mean validation loss wins, a diverged one never;
    the test loss (``past``) is never read."""
    runs = Results({"lr": lr, "seed": s, "val_loss": v + 0.01 * s, "past": t}
                   for lr, v, t in ((1e-4, 2.0, 1.0), (1e-3, 1.9, 3.0), (1e-2, math.nan, 0.5)) for s in range(2))
    assert choose(runs, "lr") == 1e-3
    assert choose(runs.where(seed=0), "lr", seed=0) == 1e-3
    assert choose(Results([{"lr": 1, "val_loss": 1.0}, {"lr": 2, "val_loss": 1.0}]), "lr") == 1  # first in the grid


def test_at_chosen_keeps_each_records_run_at_the_value_chosen_for_it():
    runs = Results({"task": t, "steps": k, "lr": lr, "seed": s} for t in ("a", "b") for k in (40, 160)
                   for lr in (1e-3, 1e-2) for s in range(2))
    chosen = {"a": {"40": 1e-3, "160": 1e-2}, "b": {"40": 1e-2, "160": 1e-2}}
    kept = records.at_chosen(runs, chosen, ("task", "steps"))
    assert len(kept) == 8 and all(r["lr"] == chosen[r["task"]][str(r["steps"])] for r in kept)
    with pytest.raises(KeyError):
        records.at_chosen(runs, {"a": chosen["a"]}, ("task", "steps"))  # a task with no choice is an error


def test_equal_means_summed_in_another_order_still_tie():
    values = [0.1, 0.7, 0.2]  # fmean of these and of their reverse differ in the last bit
    runs = Results([{"x": 1, "seed": s, "val_accuracy": v, "val_loss": 1.0} for s, v in enumerate(values)]
                   + [{"x": 2, "seed": s, "val_accuracy": v, "val_loss": 0.5} for s, v in enumerate(values[::-1])])
    assert choose(runs, "x") == 2  # a tie on accuracy: the lower loss decides, not float noise


def test_choose_without_runs_says_what_it_looked_for():
    with pytest.raises(ValueError, match="no runs to choose 'x'"):
        choose(Results(), "x", method="m")


def test_a_misnamed_measure_is_an_error_that_names_it():
    with pytest.raises(ValueError, match="record key 'validation' is not a measure's name"):
        records.check_record({"validation": 0.5})
    with pytest.raises(ValueError, match="'val accuracy'"):
        experiments.run_grid(lambda seed: {"val accuracy": 0.5}, seed=[0])
    assert experiments.run_grid(lambda seed, lr: {"val_accuracy": 0.5, "x4": 1.0}, seed=[0], lr=[1e-3]) == [
        {"seed": 0, "lr": 1e-3, "val_accuracy": 0.5, "x4": 1.0}]


def test_no_lesson_module_chooses_by_a_rule_of_its_own():
    """Every choice on validation goes through records.choose: no max()/min() over validation scores elsewhere."""
    own_rules = []
    for path in LESSONS.rglob("*.py"):
        if path.name == "records.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if re.search(r"\b(max|min|sorted)\(.*(\[[\"']val_|mean\([\"']val_|kept\()", line):
                own_rules.append(f"{path.name}:{number}: {line.strip()}")
    assert not own_rules, "\n".join(own_rules)


def test_the_table_lays_out_mean_and_sample_std_per_row():
    runs = Results({"method": m, "seed": s, "accuracy": a, "val_accuracy": a - 0.1}
                   for m, values in (("a", (0.8, 0.9)), ("longer name", (0.5, 0.5))) for s, a in enumerate(values))
    text = records.table(runs, "method", [Column("validation", "val_accuracy"), Column("test")], lead=8, width=14)
    assert text.splitlines() == ["method           validation          test",
                                 "a                75.0 ± 7.1    85.0 ± 7.1",
                                 "longer name      40.0 ± 0.0    50.0 ± 0.0"]
    assert runs.table("method", "seed").splitlines()[0].split() == ["method", "seed=0", "seed=1"]


def test_spread_signs_scales_and_marks_missing_values():
    assert records.spread(0.885, 0.0123) == "88.5 ± 1.2"
    assert records.spread(-0.25, 0.05, scale=1, digits=2, sign="+", unit=" bpc") == "-0.25 ± 0.05 bpc"
    assert records.spread(1.5, 0.25, scale=1, digits=2, width=8) == "    1.50 ± 0.25"
    assert records.spread(float("nan"), 0.1) == "-"
    assert records.spread(-0.004, 0.01, digits=0, sign="+") == "+0 ± 1"  # a mean that rounds to zero has no "-"
    assert records.spread(-0.006, 0.01, digits=0, sign="+") == "-1 ± 1"


def test_twin_difference_pairs_each_live_record_with_its_stored_twin():
    stored = Results([{"arm": a, "seed": s, "steps": k, "far": 0.1 * s + (0.5 if a == "pi" else 0.0)}
                      for a in ("pi", "parts") for s in range(3) for k in (40, 160)])
    live = [{"arm": "pi", "seed": 1, "far": 0.62}, {"arm": "parts", "seed": 2, "far": 0.2},
            {"arm": "pi", "seed": 9, "far": 0.0}]  # seed 9 has no twin
    count, largest = stored.twin_difference(live, ("far",), steps=40)
    assert count == 2 and largest == pytest.approx(0.02)
    renamed = [{"method": r["arm"], "seed": r["seed"], "far": r["far"]} for r in live]
    assert stored.twin_difference(renamed, ("far",), {"arm": "method", "seed": "seed"}, steps=160) == (count, largest)
    assert stored.twin_difference([], ("far",)) == (0, 0.0)
    assert stored.twin_difference(live, ("far", "beyond"), steps=40) == (count, largest)  # a metric it lacks
