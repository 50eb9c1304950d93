"""Lesson 02's drivers: fine-tuning runs at a given peak rate and schedule, scored on validation and test digits;
choosing on validation; a linear probe of the backbone before and after fine-tuning; the schedules that take one-cycle
apart; the sweep's plots (intervals over seeds: :mod:`ftlib.stats`)."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from statistics import fmean

import matplotlib.pyplot as plt
import torch

from ftlib import data
from ftlib.course.lessons import records, tuning
from ftlib.course.lessons.experiments import Results, get_method, make_model, run
from ftlib.course.lessons.plots import plot_history
from ftlib.course.lessons.records import choose
from ftlib.course.lessons.workers import independent
from ftlib.evaluation import evaluate
from ftlib.lr import RangeTest
from ftlib.probe import linear_probe

__all__ = ["SCHEDULES", "TABLE_ARM", "VAL_PER_CLASS", "backbone_probes", "choose", "live_rate", "live_steps",
           "onecycle_factors", "plot_range_tests", "plot_sweep", "probe_report", "rate_run", "sweep", "table",
           "top_region", "validation_runs"]

VAL_PER_CLASS = 20  # labelled digits per class kept aside to choose with (never trained on, never the test set)


def _lambda(factor: Callable[[int, int], float]) -> Callable:
    """A ``fit`` schedule ``(optimizer, steps)`` that multiplies every group's peak rate by ``factor(step, steps)``.

    Only the rate moves: unlike ``OneCycleLR``, nothing else of the optimizer (Adam's beta1) is changed.
    """
    return lambda optimizer, steps: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: factor(s, steps))


@functools.lru_cache(maxsize=16)
def onecycle_factors(steps: int) -> tuple[float, ...]:
    """The peak rate's factor at each of ``steps`` steps under ftlib's one-cycle (PyTorch's ``OneCycleLR``,
    ``pct_start=0.25``): a cosine rise from 1/25 over the first quarter, then a cosine fall to 1/250,000."""
    weight = torch.zeros(1, requires_grad=True)
    optimizer = torch.optim.SGD([weight], lr=1.0)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1.0, total_steps=steps, pct_start=0.25,
                                                   cycle_momentum=False)
    factors = []
    for _ in range(steps):
        factors.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        schedule.step()
    return tuple(factors)


def _phase(part: str) -> Callable[[int, int], float]:
    """One phase of one-cycle alone: its ``"warm-up"`` then the peak rate, or the peak rate then its ``"decay"``."""
    def factor(step: int, steps: int) -> float:
        factors = onecycle_factors(steps)
        peak = factors.index(max(factors))
        rising = step <= peak
        return factors[min(step, steps - 1)] if rising == (part == "warm-up") else 1.0  # fit steps once more
    return factor


# The schedules of section 4, none of which touches Adam's beta1 (it stays 0.9): one-cycle's own two phases, each
# alone (its cosine warm-up over the first quarter, then the peak rate; or the peak rate, then its cosine decay),
# and PyTorch's one-cycle (both phases) with its beta1 cycle switched off.
SCHEDULES = {
    "constant": _lambda(lambda s, steps: 1.0),
    "warm-up only": _lambda(_phase("warm-up")),
    "decay only": _lambda(_phase("decay")),
    "one-cycle, beta1 fixed": lambda optimizer, steps: torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=[g["lr"] for g in optimizer.param_groups], total_steps=steps, pct_start=0.25,
        cycle_momentum=False),
}


@independent
def rate_run(lr: float | dict[str, float], seed: int, *, n: int, steps: int, method: str = "fine-tune",
             schedule: str = "onecycle", label: str = "", n_val: int = VAL_PER_CLASS, keep_model: bool = False) -> dict:
    """Train ``method`` on ``n`` digits per class (split ``seed``) at peak rate ``lr`` under ``schedule``.

    ``schedule`` is one of :data:`SCHEDULES` or a name ``fit`` knows (``"onecycle"``, which also cycles Adam's
    beta1). Returns the ``accuracy`` on the test digits and the ``val_accuracy`` and ``val_loss`` on the
    ``n_val`` validation digits per class after the last step, the ``history``, and the ``method``, ``schedule``
    and a ``label`` for tables (by default "one rate, <lr>"); with ``keep_model``, the trained ``model`` too.
    """
    train, val = data.few_shot_split("mnist", n, n_val, seed)
    trained = run(method, train, seed, steps, lr=lr, schedule=SCHEDULES.get(schedule, schedule),
                  eval_data=data.test_set("mnist"), val_data=val)
    history = trained.history
    return {"accuracy": history.final_accuracy, "val_accuracy": history.val_accuracy[-1],
            "val_loss": history.val_loss[-1], "history": history, "method": method, "schedule": schedule,
            "label": label or f"one rate, {lr}", **({"model": trained.model} if keep_model else {})}


def live_rate(lr: float, *, n: int, steps: int, seed: int = 0) -> None:
    """Fine-tune at peak rate ``lr`` for ``steps`` steps on ``n`` digits per class of split ``seed``
    (:func:`rate_run`), print its validation and test accuracy and final training loss, and draw its training loss.
    The first printed line names ``lr`` as a slider shows it (``str``: ``0.003``)."""
    _live(lr, n, steps, seed, f"lr = {lr}: after {steps} steps on seed {seed}")


def live_steps(steps: int, *, lr: float, n: int, seed: int = 0) -> None:
    """The live slider's compute: :func:`live_rate` at the chosen rate ``lr`` for ``steps`` steps, a knob the
    sweep keeps fixed (one-cycle stretches its warm-up and decay over whatever steps it is given). The first printed
    line names ``steps`` as the slider shows it."""
    _live(lr, n, steps, seed, f"steps = {steps}: peak rate {lr:g} on seed {seed}")


def _live(lr: float, n: int, steps: int, seed: int, first: str) -> None:
    result = rate_run(lr, seed, n=n, steps=steps)
    history = result["history"]
    print(f"{first}: validation {result['val_accuracy']:.1%}, test {result['accuracy']:.1%}")
    print(f"training loss at the end: {fmean(history.loss[-10:]):.1e} (mean of the last 10 steps)")
    ax = plot_history({f"peak rate {lr:g}, {steps} steps": history},
                      title=f"Training loss at peak rate {lr:g} over {steps} steps, trained just now")
    ax.set(yscale="log", ylim=(1e-6, 5))
    plt.show()


TABLE_ARM = "02 one rate"  # the tuning table's entry for this lesson's sweep


def _same_settings(table: tuning.Table, rates: list[float], n: int, steps: int) -> bool:
    """Whether the sweep at ``rates``, ``n`` and ``steps`` is the tuning table's (its runs can be read back)."""
    arm = table.arm(TABLE_ARM)
    return (arm.fixed == {"n": n, "steps": steps} and list(rates) == list(arm.grid["lr"])
            and table.settings["n_val"] == VAL_PER_CLASS)


def sweep(table: tuning.Table, rates: list[float], seeds: range, *, n: int, steps: int,
          live_seeds: tuple[int, ...] = (0,)) -> Results:
    """:func:`rate_run` at every rate of ``rates`` on every seed of ``seeds`` (records as ``run_grid`` gives them,
    rate by rate). Where the sweep is the tuning table's (the same rates, ``n`` and ``steps``), a run the table
    made is read back from it (``from_table``; no ``history``), except on ``live_seeds``, which train now: their
    curves are drawn, and they re-check the table (:func:`validation_runs`). Other runs train now too. A run trained
    now keeps its ``history`` and its ``model`` (for :func:`backbone_probes`)."""
    from ftlib.course.lessons.experiments import run_grid

    finetune = functools.partial(rate_run, n=n, steps=steps, keep_model=True)
    if not _same_settings(table, rates, n, steps):
        return run_grid(finetune, lr=rates, seed=seeds)
    stored = {(r["lr"], r["seed"]): r for r in table.results(TABLE_ARM)}
    wanted = [(lr, seed) for lr in rates for seed in seeds]
    train = [s for s in seeds if s in live_seeds or any((lr, s) not in stored for lr in rates)]
    now = {(r["lr"], r["seed"]): r for r in (run_grid(finetune, lr=rates, seed=train) if train else [])}
    return Results(now.get(key) or {**stored[key], "from_table": True} for key in wanted)


def validation_runs(sweep: Results, table: tuning.Table, *, n: int, steps: int) -> tuple[Results, str]:
    """The validation runs the rate is chosen on, and a line saying which.

    With the lesson's default settings they are the tuning table's: the same runs as ``sweep``'s (those it trained
    now are re-checked, seed by seed, at every rate), stored so that the choice is the same on every machine, where
    a choice made on each machine's own float sums can flip at a tie. With other settings, the sweep's own
    validation runs.
    """
    if not _same_settings(table, sweep.unique("lr"), n, steps):
        return sweep, "chosen on this sweep's own validation runs (its settings differ from the tuning table's)"
    stored = table.settings["seeds"]
    ran = sorted({r["seed"] for r in sweep if not r.get("from_table") and r["seed"] in stored})
    for rate in table.arm(TABLE_ARM).grid["lr"]:  # raises if the stored runs are stale
        table.recheck(TABLE_ARM, Results(r for r in sweep.where(lr=rate) if not r.get("from_table")), lr=rate)
    extra = sorted(set(sweep.unique("seed")) - set(stored))
    return table.results(TABLE_ARM), (
        f"chosen on the tuning table's validation runs of seeds {stored[0]}-{stored[-1]}, which this sweep reads back "
        f"(seed{'s' if len(ran) > 1 else ''} {', '.join(map(str, ran))} trained again now at every rate and "
        "re-checked: within 3 points)" + (f"; seeds {extra[0]}-{extra[-1]} only report" if extra else ""))


def backbone_probes(sweep: Results, rates: list[float], *, n: int, steps: int) -> Results:
    """How well the backbone's features read digits: a linear probe (:func:`ftlib.probe.linear_probe`, a new head
    fitted on frozen features) fitted on each seed's validation digits and scored on the test digits, for the
    pretrained backbone and after fine-tuning at each of ``rates``, on every seed of ``sweep``. A run that kept its
    model (trained now) is probed as it is; one read back from the tuning table is trained again at its rate
    (:func:`rate_run`, ``steps`` steps) to get its model. One record per seed and backbone: ``seed``, ``label`` and
    ``accuracy``.

    A diagnostic, not a choice: nothing is chosen by it, so fitting it on the validation digits is fine.
    """
    test = data.test_set("mnist")
    probes = []
    for seed in sweep.unique("seed"):
        _, val = data.few_shot_split("mnist", n, VAL_PER_CLASS, seed)
        backbones = {"pretrained": make_model(get_method("fine-tune"), 10, seed),
                     **{f"after {rate:g}": _kept_model(sweep, rate, seed, n=n, steps=steps) for rate in rates}}
        for name, model in backbones.items():
            probed = linear_probe(copy.deepcopy(model), val)  # a copy: the sweep's model keeps its own head
            probes.append({"seed": seed, "label": name, "accuracy": evaluate(probed, test).accuracy})
    return Results(probes)


def _kept_model(sweep: Results, rate: float, seed: int, *, n: int, steps: int) -> torch.nn.Module:
    """The model the sweep's run at ``rate`` on ``seed`` kept, or, for a run read back from the table, the same run
    (:func:`rate_run`'s training, one-cycle) trained again now, without scoring it: only its model is probed."""
    kept = sweep.where(lr=rate, seed=seed)[0]
    if "model" in kept:
        return kept["model"]
    train, _ = data.few_shot_split("mnist", n, VAL_PER_CLASS, seed)
    return run("fine-tune", train, seed, steps, lr=rate, schedule="onecycle").model


def probe_report(probes: Results) -> str:
    """One line per seed of :func:`backbone_probes`: each backbone's probe accuracy on test."""
    return "\n".join(f"seed {seed}: " + ", ".join(f"{r['label']} {r['accuracy']:.1%}" for r in probes.where(seed=seed))
                     for seed in probes.unique("seed"))


def top_region(results: Results, field: str, within: float = 0.02, **where) -> list:
    """The values of ``field`` whose mean validation accuracy is within ``within`` of the best mean (validation
    only, never test)."""
    runs = results.where(**where)
    values = runs.unique(field)
    best = runs.mean("val_accuracy", **{field: choose(runs, field)})
    return [v for v in values if runs.mean("val_accuracy", **{field: v}) >= best - within - 1e-9]


def table(results: Results, rows: str) -> str:
    """A text table: for each value of ``rows``, validation and test accuracy, mean ± std over the seeds (%)."""
    return records.table(results, rows, [records.Column("validation", "val_accuracy"), records.Column("test")])


def plot_sweep(sweep: Results, top: list[float], best: float, ax: plt.Axes) -> plt.Axes:
    """Validation and test accuracy against the rate (mean ± std over seeds), the top region and the choice."""
    rates = sweep.unique("lr")
    for metric, name in (("val_accuracy", "validation (chooses)"), ("accuracy", "test (reports)")):
        means = [100 * sweep.mean(metric, lr=r) for r in rates]
        stds = [100 * sweep.std(metric, lr=r) for r in rates]
        line, = ax.plot(rates, means, marker="o", label=name)
        ax.fill_between(rates, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                        color=line.get_color(), alpha=0.15)
    ax.axvspan(min(top) / 1.15, max(top) * 1.15, color="green", alpha=0.1,
               label="top region (validation within 2 points of its best)")
    ax.axvline(best, color="green", ls="--", lw=1, label=f"chosen on validation: {best:.0e}")
    ax.set(xscale="log", xlabel="peak learning rate (log scale)", ylabel="accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower center")
    return ax


def plot_range_tests(tests: list[RangeTest], top: list[float], ax: plt.Axes) -> plt.Axes:
    """Each seed's smoothed loss against the rising rate, a dot at its suggestion, and the sweep's top region."""
    for seed, result in enumerate(tests):
        line, = ax.plot(result.lrs, result.losses, label=f"seed {seed}", lw=1.2)
        k = result.lrs.index(result.suggestion)
        ax.plot(result.suggestion, result.losses[k], "o", color=line.get_color(), ms=7, mec="black")
    ax.axvspan(min(top) / 1.15, max(top) * 1.15, color="green", alpha=0.1, label="the sweep's top region (validation)")
    ax.set(xscale="log", xlabel="learning rate (rising at every step)", ylabel="training loss (smoothed)",
           title="Range test: a dot marks each seed's steepest fall (its suggestion)")
    ax.grid(alpha=0.3)
    ax.grid(which="minor", alpha=0.1)  # the small ticks (2, 3, ... 9 times a gridline) to read a rate off
    ax.legend(fontsize=8)
    return ax
