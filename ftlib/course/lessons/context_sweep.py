"""Lesson 10's step sweep: every way to extend TinyLM to 256 characters, and the 64-character model fine-tuned
alike, on prose and on chat, for short to long fine-tunes and six seeds.

It takes far longer than a lesson may (about half an hour on 2 cores), so its results ship in ``data/`` as JSON and
``python -m ftlib context-sweep`` rebuilds that file bit for bit (same thread count and torch build). Each record is
a pure function of its task, arm, seed and steps, so any part can be recomputed on its own and compared
(:func:`run_sweep` with a selection); the lesson does that for the 40-step runs it also trains live.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ftlib.course import pretrain_lm
from ftlib.course.lessons import records
from ftlib.course.lessons.context_extension import ChatExtension, ExtensionRuns
from ftlib.course.lessons.experiments import Results, run_grid
from ftlib.course.versions import warn_if_different
from ftlib.lm import chat, corpus
from ftlib.paths import DATA_DIR
from ftlib.runtime import seed_everything
from ftlib.stats import interval, verdict

__all__ = ["ARMS", "SETTINGS", "SWEEP", "TASKS", "build", "differs", "gap_table", "gaps", "largest_difference",
           "load", "plot_sweep", "run_sweep", "runners", "verdicts"]

SWEEP = DATA_DIR / "context_sweep.json"
ARMS = ("window", "naive", "pi", "parts")  # "window": fine-tuned at 64 and read through a sliding window
TASKS = ("prose", "chat")
SETTINGS = {
    "budgets": [40, 160, 640],  # fine-tuning steps: separate runs, each with its own warm-up and cosine decay
    "seeds": 6,
    "length": 256,  # the longer context, 4x the trained 64
    "lr": 1e-3,
    "prose_chars_per_step": 512,  # lesson 10's section 3: 2 windows of 256 (8 of 64 for the window arm)
    "chat_chars_per_step": 256,  # lesson 10's section 5: 1 window of 256 (4 of 64)
    "prose_eval_chars": 8192,
    "chat_eval_chars": 4096,
    "temperature": 0.7,  # the format chance's sampling temperature (lesson 09's)
    "threads": 2,  # bit-identical rebuilds need the same thread count
}


def runners(settings: dict = SETTINGS) -> dict[str, ExtensionRuns]:
    """The prose and chat runners of the sweep, on the shipped TinyLM and lesson 09's texts."""
    base = pretrain_lm.load_pretrained()
    train_prose, val_prose = corpus.split_text()
    train_chat, _ = chat.chat_text(chat.load_dialogues("train"))
    val_chat, _ = chat.chat_text(chat.load_dialogues("val"))
    common = {"length": settings["length"], "steps": settings["budgets"][0], "lr": settings["lr"]}
    return {"prose": ExtensionRuns(base, train_prose, val_prose, chars_per_step=settings["prose_chars_per_step"],
                                   eval_chars=settings["prose_eval_chars"], **common),
            "chat": ChatExtension(base, train_chat, val_chat, chars_per_step=settings["chat_chars_per_step"],
                                  eval_chars=settings["chat_eval_chars"], temperature=settings["temperature"],
                                  control=True, **common)}


def run_sweep(settings: dict = SETTINGS, tasks=TASKS, arms=ARMS, seeds=None, budgets=None,
              progress: bool = False) -> Results:
    """One record per task, arm, seed and budget (default: all of ``settings``): ``past`` (bpc past position 64,
    reading ``length``) and, for chat, ``format`` and ``format_short`` (the chance a reply to a long question, or to
    a short one whose ``User:`` tag is in view, starts in the format), rounded to 4 decimals.

    The runs go through :func:`~ftlib.course.lessons.experiments.run_grid`, task by task, then budget, arm and seed;
    each record lists ``task``, ``arm``, ``seed`` and ``steps`` first (the shipped file's order). ``progress``
    prints a line per run."""
    seeds = range(settings["seeds"]) if seeds is None else seeds
    budgets = settings["budgets"] if budgets is None else budgets
    for name, given, allowed in (("tasks", tasks, TASKS), ("arms", arms, ARMS)):
        bad = sorted(set(given) - set(allowed))
        if bad:
            raise ValueError(f"{name}={bad} is not allowed: choose from {list(allowed)}")
    built = runners(settings)

    def one(task: str, steps: int, arm: str, seed: int) -> dict:
        record = built[task].run(arm, seed, steps)
        if progress:
            print(f"{task} {arm} seed {seed} {steps} steps: {record['past']:.4f} bpc ({record['seconds']:.1f} s)",
                  flush=True)
        return {k: round(v, 4) for k, v in record.items() if k != "seconds"}

    grid = run_grid(one, task=tasks, steps=budgets, arm=arms, seed=seeds)
    first = ("task", "arm", "seed", "steps")
    return Results({k: r[k] for k in first} | {k: v for k, v in r.items() if k not in first} for r in grid)


def build(path: str | Path = SWEEP, progress: bool = True) -> dict:
    """Run the whole sweep with :data:`SETTINGS` and write it to ``path`` as JSON; returns what was written."""
    warn_if_different("the shipped sweep")
    seed_everything(0, SETTINGS["threads"])
    sweep = {"settings": SETTINGS, "torch": torch.__version__.split("+")[0],
             "records": run_sweep(SETTINGS, progress=progress)}
    Path(path).write_text(json.dumps(sweep, indent=1) + "\n")
    return sweep


def load(path: str | Path = SWEEP) -> tuple[dict, Results]:
    """The shipped sweep: its settings and its records (filter them with ``task=``, ``arm=``, ``seed=``, ``steps=``)."""
    sweep = json.loads(Path(path).read_text())
    return sweep["settings"], Results(sweep["records"])


def differs(settings: dict, steps: int, **lesson) -> list[str]:
    """The names of the lesson's settings (``name=value``, named as in ``settings``) that differ from the sweep's,
    and ``"steps"`` if ``steps`` is not one of its budgets: then a live run has no stored twin to compare with."""
    return [name for name, value in lesson.items() if settings[name] != value] + \
        ([] if steps in settings["budgets"] else ["steps"])


def largest_difference(stored: Results, live: Results, task: str, steps: int, metric: str,
                       field: str = "arm") -> tuple[int, float]:
    """How many ``live`` records (their arm in ``field``, and ``seed``) have a stored twin of ``task`` after
    ``steps`` steps, and the largest absolute difference in ``metric`` between twins (0 if none;
    :meth:`Results.twin_difference`)."""
    return stored.twin_difference(live, (metric,), {"arm": field, "seed": "seed"}, task=task, steps=steps)


def gaps(sweep: Results, task: str, metric: str, over: str | float, arms=ARMS[1:]) -> dict[str, dict[int, list]]:
    """Per arm and budget, the per-seed ``metric`` of ``task`` minus that of the ``over`` arm (same seed), or minus
    the number ``over``."""
    budgets = sweep.unique("steps")
    if isinstance(over, str):
        return {arm: {k: sweep.differences("arm", arm, over, metric=metric, task=task, steps=k) for k in budgets}
                for arm in arms}
    return {arm: {k: [v - over for v in sweep.values(metric, task=task, arm=arm, steps=k)] for k in budgets}
            for arm in arms}


def gap_table(table: dict[str, dict[int, list]], names: dict[str, str], scale: float = 1.0, unit: str = "bpc",
              digits: int = 2, higher_is_better: bool = False) -> str:
    """One line per arm of :func:`gaps`: at each budget the mean gap ± the half-width of its 95% interval over the
    seeds (times ``scale``), and in how many seeds the arm is better than the baseline (a gap below zero, or above
    it with ``higher_is_better``)."""
    budgets = list(next(iter(table.values())))

    def cell(gaps: list[float]) -> str:
        better = f"{sum(d > 0 if higher_is_better else d < 0 for d in gaps)}/{len(gaps)} better"
        return records.spread(*interval(gaps), scale=scale, digits=digits, sign="+") + f" ({better})"

    rows = [[names[arm], *(cell(by_budget[k]) for k in budgets)] for arm, by_budget in table.items()]
    return records.layout([unit, *(f"{k} steps" for k in budgets)], rows, lead=36, width=27)


def verdicts(table: dict[str, dict[int, list]], above: str = "higher", below: str = "lower",
             unresolved: str = "not resolved") -> dict[str, dict[int, str]]:
    """For each arm and budget of :func:`gaps`, a word for the 95% interval of its per-seed gaps: ``above`` or
    ``below`` zero, or ``unresolved`` where it holds zero (:func:`ftlib.stats.verdict`)."""
    return {arm: {k: verdict(d, above, below, unresolved)[2] for k, d in by_budget.items()}
            for arm, by_budget in table.items()}


def plot_sweep(sweep: Results, names: dict[str, str], window: float) -> None:
    """Four panels against the fine-tuning steps (log scale), one line per arm (mean ± std over the seeds): the
    prose loss past position 64 (with the untouched base reading a sliding window, ``window``), the chat loss past
    position 64, and the format chance on the long questions and on the others (the control), these two as
    differences from the 64-character chat model in the same seed (a few points would be lost on a 0-100 scale)."""
    budgets = sweep.unique("steps")
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.8))
    panels = (("prose", "past", 1, "prose: bpc past position 64"), ("chat", "past", 1, "chat: bpc past position 64"),
              ("chat", "format", 100, "chat: in format, long questions,\npoints over the 64-char chat model"),
              ("chat", "format_short", 100, "control: short questions,\npoints over the 64-char chat model"))
    colours = {arm: f"C{i}" for i, arm in enumerate(names)}  # one colour per arm in every panel
    for ax, (task, metric, scale, title) in zip(axes, panels):
        relative = metric.startswith("format")
        for arm, name in names.items():
            if relative and arm == "window":
                continue
            runs = [sweep.differences("arm", arm, "window", metric=metric, task=task, steps=k) if relative else
                    sweep.values(metric, task=task, arm=arm, steps=k) for k in budgets]
            means = [scale * statistics.fmean(r) for r in runs]
            stds = [scale * (statistics.stdev(r) if len(r) > 1 else 0.0) for r in runs]
            ax.errorbar(budgets, means, yerr=stds, marker="o", capsize=3, label=name, color=colours[arm])
        if task == "prose":
            ax.axhline(window, color="black", linewidth=1, label="untouched base, sliding window")
        if relative:
            ax.axhline(0, color="black", linewidth=1, label=names.get("window", "window"))
            ax.legend(fontsize=7)
        ax.set(xscale="log", xticks=budgets, xticklabels=[str(k) for k in budgets], xlabel="fine-tuning steps",
               title=title)
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean ± std over seeds")
    axes[0].legend(fontsize=8)
    axes[3].sharey(axes[2])
    fig.tight_layout()
    plt.show()
