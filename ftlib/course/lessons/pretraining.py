"""Lesson 01's compute: the data-efficiency curve at the tuning table's rates, its read-offs, and the live race.

Every arm of the lesson's curve (scratch, the linear probe, fine-tuning, fine-tuning with a low backbone rate, at
each N) runs at its own setting chosen on validation, read from the course's tuning table
(:mod:`ftlib.course.lessons.tuning`). The live slider trains scratch and fine-tuning on the same N digits per class,
for the same number of steps, at the same chosen rates, then re-estimates each model's BatchNorm statistics on its
training digits (after a few steps at a low rate, the running averages lag far behind the weights), and scores it on a
fixed subset of the test digits.
"""

from __future__ import annotations

from collections.abc import Iterable

from ftlib import data
from ftlib.course.lessons import tuning
from ftlib.course.lessons.experiments import labels_to_reach, run
from ftlib.course.lessons.records import Column, Results, spread
from ftlib.course.lessons.records import table as text_table
from ftlib.evaluation import evaluate
from ftlib.regularize import recalibrate_batchnorm
from ftlib.stats import verdict

__all__ = ["CURVE_METHODS", "LIVE_METHODS", "LIVE_TEST_EVERY", "arm_key", "arm_keys", "compare", "curve",
           "live_test_set", "race", "race_accuracies", "rate_grid", "reach_by_seed"]

CURVE_METHODS = ("scratch", "linear probe", "fine-tune", "fine-tune, low backbone LR")  # the curve's arms, in order
LIVE_METHODS = ("scratch", "fine-tune, low backbone LR")  # the two methods the live slider trains
LIVE_TEST_EVERY = 5  # the live slider scores every 5th test digit: 500 of 2,500, 50 per class


def arm_key(method: str, n: int, table: tuning.Table) -> str:
    """The tuning table's arm of ``method`` at ``n`` labels per class: ``"01 scratch, N=5"``, or the arm tuned at the
    nearest N for an N the table lacks (e.g. N = 20's for N = 40)."""
    if method not in CURVE_METHODS:
        raise ValueError(f"method {method!r} is not on lesson 01's curve: choose one of {', '.join(CURVE_METHODS)}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n={n!r} is not allowed: give a whole number of labels per class, 1 or more")
    return table.nearest(f"01 {method}, N={{n}}", n=n)


def arm_keys(ns: Iterable[int], table: tuning.Table, methods: Iterable[str] = CURVE_METHODS) -> list[str]:
    """The table's arms that :func:`curve` runs for ``ns`` (each once, by N, in the order of ``methods``)."""
    return list(dict.fromkeys(arm_key(m, n, table) for n in ns for m in methods))


def curve(ns: Iterable[int], seeds: int, steps: int, table: tuning.Table, live: Iterable[int] = (5,)) -> Results:
    """Every method of :data:`CURVE_METHODS` at every N of ``ns`` on seeds ``0 .. seeds - 1``, each at its setting
    chosen on validation (:func:`~ftlib.course.lessons.tuning.run_plan`): test and validation scores per run. The
    runs at the N of ``live`` train now (their seconds are timed, and they re-check the table); the others the
    table made are read back from it. An N or ``steps`` the table did not tune keeps the nearest arm's setting, and
    the records' ``label`` says so."""
    ns, live = list(ns), set(live)
    return tuning.run_plan([(arm_key(method, n, table), {"n": n, "steps": steps}) for n in ns
                            for method in CURVE_METHODS], range(seeds), table,
                           live=[arm_key(method, n, table) for n in ns if n in live for method in CURVE_METHODS])


def rate_grid(table: tuning.Table, keys: dict[str, str]) -> str:
    """A text table of the stored validation accuracy (mean ± std over the table's seeds) of each arm of ``keys``
    (column header -> arm) at every rate of its grid, the chosen rate marked with ``*``."""
    untuned = [key for key in keys.values() if "lr" not in table.arm(key).grid]
    if untuned:
        raise ValueError(f"arm {untuned[0]!r} has no rate grid to show: give arms whose rate was tuned")
    records = Results({**r, "arm": key} for key in keys.values() for r in table.results(key))

    def cell(key: str):
        def text(runs: Results) -> str:
            runs = runs.where(arm=key)
            if not runs:
                return "-"
            mark = " *" if runs[0]["lr"] == table.chosen(key).get("lr") else "  "
            return spread(runs.mean("val_accuracy"), runs.std("val_accuracy")) + mark
        return text

    columns = [Column(header, cell=cell(key), width=max(len(header) + 2, 15)) for header, key in keys.items()]
    return text_table(records, "lr", columns, lead=10, title="rate")


def compare(results: Results, first: str, second: str, ns: Iterable[int]) -> str:
    """One line per N: ``first`` minus ``second`` in test accuracy, seed by seed, as a mean and its 95% interval
    over the seeds, with :func:`ftlib.stats.verdict`'s word (a margin inside the seed spread is not resolved)."""
    lines = []
    for n in ns:
        mean, half, word = verdict(results.differences("method", first, second, n=n),
                                   above=f"{first} ahead", below=f"{second} ahead")
        lines.append(f"N = {n:>2}: {first} minus {second}: {spread(mean, half, sign='+')} points: {word}")
    return "\n".join(lines)


def reach_by_seed(results: Results, method: str, n: int = 5, base: str = "scratch") -> dict[int, float]:
    """Per seed, on that seed's own curve: the N at which ``base`` reaches ``method``'s accuracy at ``n``
    (:func:`~ftlib.course.lessons.experiments.labels_to_reach`, read between measured N on a log scale;
    ``inf`` where ``base`` stays below it at every measured N)."""
    return {seed: labels_to_reach(results.where(seed=seed), base, results.values(method=method, n=n, seed=seed)[0])
            for seed in results.unique("seed")}


def live_test_set() -> data.ImageSet:
    """Every :data:`LIVE_TEST_EVERY`-th digit of the fixed MNIST test set (the set is sorted by class, so each
    class keeps the same share): a smaller test set for quick live runs."""
    full = data.test_set("mnist")
    rows = slice(None, None, LIVE_TEST_EVERY)
    return data.ImageSet(full.images[rows], full.labels[rows], full.classes, full.name)


def _live_rates(n: int, table: tuning.Table) -> dict[str, dict]:
    return {m: table.options(arm_key(m, n, table)) for m in LIVE_METHODS}


def race_accuracies(steps: int, n: int = 5, seed: int = 0, table: tuning.Table | None = None) -> dict[str, float]:
    """Accuracy on :func:`live_test_set` of each of :data:`LIVE_METHODS` after ``steps`` steps on ``n`` digits per
    class (split ``seed``): the same digits, the same steps, each method at its rate chosen on validation for ``n``
    (the tuning table's, tuned at the table's steps; the nearest tuned N for another ``n``).

    Before scoring, each model's BatchNorm running statistics are re-estimated on its own training digits
    (:func:`~ftlib.regularize.recalibrate_batchnorm`), for both methods alike: after a few steps the running
    averages (momentum 0.1) still mostly describe the random or pretrained start, not the trained weights, and a
    scratch model scored with them sits at chance however much its weights have learned."""
    table = table or tuning.load()
    train_set, test = data.few_shot("mnist", n, seed), live_test_set()
    rates = _live_rates(n, table)
    accuracy = {}
    for method in LIVE_METHODS:
        model = run(method, train_set, seed, steps, **rates[method]).model
        accuracy[method] = evaluate(recalibrate_batchnorm(model, train_set.images), test).accuracy
    return accuracy


def race(steps: int, n: int = 5, seed: int = 0, table: tuning.Table | None = None) -> None:
    """The live slider's compute: train scratch and fine-tuning (low backbone LR) for ``steps`` steps (see
    :func:`race_accuracies`) and print their accuracies, their rates and the gap.

    The first printed line names ``steps`` as a slider shows it; both methods take the same steps and see the same
    digits at their own chosen rates, so what separates them is only where they start.
    """
    table = table or tuning.load()
    accuracy = race_accuracies(steps, n, seed, table)
    test = len(data.test_set("mnist")) // LIVE_TEST_EVERY
    print(f"{steps} training steps for each method, on N = {n} digits per class (seed {seed}), "
          f"scored on {test} test digits after re-estimating each model's BatchNorm statistics on its "
          f"{len(data.few_shot('mnist', n, seed))} training digits:")
    for method, value in accuracy.items():
        key = arm_key(method, n, table)
        print(f"  {method:<28} {value:.1%}   (rate chosen on validation for {key[3:]}: {_rate(table.options(key))})")
    gap = 100 * (accuracy[LIVE_METHODS[1]] - accuracy[LIVE_METHODS[0]])
    print(f"  fine-tuning minus scratch: {gap:+.1f} points after the same {steps} steps")


def _rate(options: dict) -> str:
    lr = options.get("lr")
    if isinstance(lr, dict):
        return ", ".join(f"{block} {value:g}" for block, value in lr.items())
    return "none" if lr is None else f"{lr:g}"
