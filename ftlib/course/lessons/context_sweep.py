"""Lesson 10's step sweep: naive, PI and by parts extending TinyLM to 256 characters, and the 64-character model
fine-tuned alike, on prose and on chat, for short to long fine-tunes and six seeds, each arm at its own rate.

For each task, budget and arm, the arm trains at every rate of :data:`SETTINGS`' grid on the choosing seeds (0, 1,
2); its rate is the one :func:`~ftlib.course.lessons.records.choose` picks on the validation text (the lower mean
loss past position 64: ``val_loss``), and the other seeds (3, 4, 5) train at that rate. Every run is scored on test
text it was not chosen on (``past``, and for chat the format chances). The validation prose is the first 8,192
characters of the held-out prose (what lesson 10's sections 1-3 read), the test prose the next 8,192; the chat's
validation text is the last dialogues of lesson 09's training set, held out from the fine-tune, its test text the
validation dialogues.

It takes far longer than a lesson may (about an hour on 2 cores), so its results ship in ``data/`` as JSON and
``python -m ftlib context-sweep`` rebuilds that file bit for bit (same thread count and torch build). Each record is
a pure function of its task, arm, seed, steps and rate, so any part can be recomputed on its own and compared
(:func:`run`); the lesson does that for the 40-step runs it also trains live.
"""

from __future__ import annotations

import functools
import json
import statistics
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ftlib.course import pretrain_lm
from ftlib.course.lessons import records
from ftlib.course.lessons.context_extension import ChatExtension, ExtensionRuns
from ftlib.course.lessons.experiments import Results
from ftlib.course.lessons.records import choose
from ftlib.course.lessons.tuning import RATES
from ftlib.course.lessons.workers import independent, run_calls
from ftlib.course.versions import warn_if_different
from ftlib.lm import chat, corpus
from ftlib.paths import DATA_DIR
from ftlib.runtime import pin_threads, seed_everything
from ftlib.stats import interval, verdict

__all__ = ["ARMS", "SETTINGS", "SWEEP", "TASKS", "at_chosen", "build", "choosing", "differs", "gap_table", "gaps",
           "held_out_dialogues", "largest_difference", "load", "plot_sweep", "rates_table", "run", "runners",
           "sweep_records", "untouched"]

SWEEP = DATA_DIR / "context_sweep.json"
ARMS = ("window", "naive", "pi", "parts")  # "window": fine-tuned at 64 and read through a sliding window
TASKS = ("prose", "chat")
SETTINGS = {
    "budgets": [40, 160, 640],  # fine-tuning steps: separate runs (each its own warm-up and decay), each its rates
    "seeds": 6,
    "choosing_seeds": 3,  # seeds 0-2 train at every rate; the rest at the rate chosen on their validation loss
    "rates": list(RATES[:5]),  # the course's grid, its five lowest rates: 1e-4 to 1e-2 (as the retrieval sweep)
    "length": 256,  # the longer context, 4x the trained 64
    "prose_chars_per_step": 512,  # lesson 10's section 3: 2 windows of 256 (8 of 64 for the window arm)
    "chat_chars_per_step": 256,  # lesson 10's section 5: 1 window of 256 (4 of 64)
    "prose_eval_chars": 8192,  # validation: the first 8,192 held-out prose characters; test: the next 8,192
    "chat_eval_chars": 4096,  # test: the validation dialogues' first 4,096; validation: training dialogues held out
    "temperature": 0.7,  # the format chance's sampling temperature (lesson 09's)
    "threads": 1,  # per run (two runs share 2 cores); bit-identical rebuilds need the same thread count
}


def held_out_dialogues(dialogues: list[dict], chars: int) -> int:
    """How many of the last ``dialogues`` make at least ``chars`` characters of chat text (:func:`chat.chat_text`:
    one line between them), leaving at least one to train on: the validation dialogues held out from the fine-tune."""
    total = -1  # no newline before the first
    for count, dialogue in enumerate(reversed(dialogues[1:]), 1):
        total += len(chat.format_dialogue(dialogue)) + 1
        if total >= chars:
            return count
    raise ValueError(f"chars={chars} is more than the dialogues hold: give at most {total}")


def runners(settings: dict = SETTINGS) -> dict[str, ExtensionRuns]:
    """The prose and chat runners of the sweep, on the shipped TinyLM and lesson 09's texts, each with its
    validation text (``choice_text``) and its test text (``val_text``)."""
    base = pretrain_lm.load_pretrained()
    train_prose, held_prose = corpus.split_text()
    cut = settings["prose_eval_chars"] + 1
    dialogues = chat.load_dialogues("train")
    held = held_out_dialogues(dialogues, settings["chat_eval_chars"] + 1)
    train_chat, _ = chat.chat_text(dialogues[:-held])
    choice_chat, _ = chat.chat_text(dialogues[-held:])
    test_chat, _ = chat.chat_text(chat.load_dialogues("val"))
    common = {"length": settings["length"], "steps": settings["budgets"][0], "lr": settings["rates"][0]}
    return {"prose": ExtensionRuns(base, train_prose, held_prose[cut:], chars_per_step=settings["prose_chars_per_step"],
                                   eval_chars=settings["prose_eval_chars"], choice_text=held_prose[:cut], **common),
            "chat": ChatExtension(base, train_chat, test_chat, chars_per_step=settings["chat_chars_per_step"],
                                  eval_chars=settings["chat_eval_chars"], temperature=settings["temperature"],
                                  control=True, choice_text=choice_chat, **common)}


@functools.lru_cache(maxsize=2)
def _cached_runners(settings: str) -> dict[str, ExtensionRuns]:
    return runners(json.loads(settings))


@independent
def run(task: str, arm: str, seed: int, steps: int, lr: float, settings: dict = SETTINGS,
        progress: bool = False) -> dict:
    """One run of the sweep, a pure function of its arguments, as stored: ``task``, ``arm``, ``seed``, ``steps``
    and ``lr``, then ``val_loss`` (bpc past position 64 on the validation text), ``past`` (the same on the test
    text) and, for chat, ``format`` and ``format_short`` (the chance a reply to a long question, or to a short one
    whose ``User:`` tag is in view, starts in the format), rounded to 4 decimals. It pins ``settings["threads"]``;
    a worker builds the runners once and keeps them. ``progress`` prints a line."""
    for name, given, allowed in (("task", task, TASKS), ("arm", arm, ARMS)):
        if given not in allowed:
            raise ValueError(f"{name}={given!r} is not allowed: choose from {list(allowed)}")
    pin_threads(settings["threads"])
    record = _cached_runners(json.dumps(settings, sort_keys=True))[task].run(arm, seed, steps, lr)
    if progress:
        print(f"{task} {arm} {steps} steps lr {lr:g} seed {seed}: val {record['val_loss']:.4f}, test "
              f"{record['past']:.4f} bpc ({record['seconds']:.1f} s)", flush=True)
    return {"task": task, "arm": arm, "seed": seed, "steps": steps, "lr": lr} | \
        {k: round(v, 4) for k, v in record.items() if k != "seconds"}


def sweep_records(settings: dict = SETTINGS, progress: bool = False) -> tuple[dict, Results]:
    """Every run of the sweep (two at a time on two cores, :func:`~ftlib.course.lessons.workers.run_calls`): the
    choosing seeds at every rate, then the other seeds at each task's, budget's and arm's chosen rate. Returns the
    chosen rates (``chosen["prose"]["40"]["pi"]``) and the records, in a fixed order."""
    choosing = range(settings["choosing_seeds"])
    cells = [(task, steps, arm) for task in TASKS for steps in settings["budgets"] for arm in ARMS]
    options = {"settings": settings, "progress": progress}
    found = Results(run_calls([(run, dict(task=t, arm=a, seed=s, steps=k, lr=lr, **options))
                               for t, k, a in cells for lr in settings["rates"] for s in choosing]))
    chosen: dict = {}
    for task, steps, arm in cells:
        chosen.setdefault(task, {}).setdefault(str(steps), {})[arm] = choose(found, "lr", task=task, steps=steps,
                                                                            arm=arm)
    rest = run_calls([(run, dict(task=t, arm=a, seed=s, steps=k, lr=chosen[t][str(k)][a], **options))
                      for t, k, a in cells for s in range(settings["choosing_seeds"], settings["seeds"])])
    return chosen, Results([*found, *rest])


def build(path: str | Path = SWEEP, progress: bool = True) -> dict:
    """Run the whole sweep with :data:`SETTINGS` and write it to ``path`` as JSON; returns what was written."""
    warn_if_different("the shipped sweep")
    seed_everything(0, SETTINGS["threads"])
    chosen, found = sweep_records(SETTINGS, progress=progress)
    bar = {task: round(value, 4) for task, value in untouched(runners(SETTINGS)).items()}
    sweep = {"settings": SETTINGS, "torch": torch.__version__.split("+")[0],
             "rule": "records.choose: the lower mean val_loss (bpc past position 64 on the validation text) over "
                     "seeds 0-2, then the lower rate; for each task, budget and arm apart",
             "chosen": chosen, "untouched": bar, "records": list(found)}
    Path(path).write_text(json.dumps(sweep, indent=1) + "\n")
    return sweep


def load(path: str | Path = SWEEP) -> tuple[dict, dict, dict[str, float], Results]:
    """The shipped sweep: its settings, the rates chosen (``chosen["prose"]["40"]["pi"]``), the bar (:func:`untouched`
    on each task's test text) and its records (filter them with ``task=``, ``arm=``, ``seed=``, ``steps=``,
    ``lr=``)."""
    sweep = json.loads(Path(path).read_text())
    return sweep["settings"], sweep["chosen"], sweep["untouched"], Results(sweep["records"])


def at_chosen(sweep: Results, chosen: dict) -> Results:
    """The records at their task's, budget's and arm's chosen rate: every seed of each arm, as the lesson reports."""
    return records.at_chosen(sweep, chosen, ("task", "steps", "arm"))


def differs(settings: dict, steps: int, **lesson) -> list[str]:
    """The names of the lesson's settings (``name=value``, named as in ``settings``; a value in a list setting, such
    as a rate in ``rates``, matches) that differ from the sweep's, and ``"steps"`` if ``steps`` is not one of its
    budgets: then a live run has no stored twin to compare with."""
    def matches(name: str, value) -> bool:
        stored = settings[name]
        return stored == value or isinstance(stored, list) and value in stored

    return [name for name, value in lesson.items() if not matches(name, value)] + \
        ([] if steps in settings["budgets"] else ["steps"])


def largest_difference(stored: Results, live: Results, task: str, steps: int, lr: float,
                       field: str = "arm") -> tuple[int, float]:
    """How many ``live`` records (their arm in ``field``, and ``seed``) have a stored twin of ``task`` after
    ``steps`` steps at ``lr``, and the largest absolute difference between the live ``past`` and the twin's
    ``val_loss`` (0 if none; :meth:`Results.twin_difference`): lesson 10's live runs score the validation text."""
    scored = Results(dict(r, val_loss=r["past"]) for r in live)
    return stored.twin_difference(scored, ("val_loss",), {"arm": field, "seed": "seed"}, task=task, steps=steps, lr=lr)


def untouched(built: dict[str, ExtensionRuns]) -> dict[str, float]:
    """The bar of every gap: the base model, untrained, read through a sliding window, in bpc past position 64 on
    each task's test text (``built``: :func:`runners`)."""
    return {task: runs.past(runs.base, "window") for task, runs in built.items()}


def choosing(sweep: Results, settings: dict = SETTINGS, **where) -> Results:
    """The runs of the choosing seeds (every rate of the grid) that match ``where``: what each rate was chosen on."""
    return Results(r for r in sweep.where(**where) if r["seed"] < settings["choosing_seeds"])


def rates_table(sweep: Results, chosen: dict, names: dict[str, str]) -> str:
    """One line per arm of ``names``: for each task and budget, its rate chosen on validation and the mean
    validation loss (bpc past position 64) that chose it, over the choosing seeds (:func:`load`)."""
    columns = [(task, budget) for task in chosen for budget in chosen[task]]

    def cell(task: str, budget: str, arm: str) -> str:
        lr = chosen[task][budget][arm]
        return f"{lr:g}: {choosing(sweep, task=task, steps=int(budget), arm=arm, lr=lr).mean('val_loss'):.3f}"

    rows = [[name, *(cell(task, budget, arm) for task, budget in columns)] for arm, name in names.items()]
    return records.layout(["rate: validation bpc", *(f"{task}, {budget}" for task, budget in columns)], rows,
                          lead=36, width=[15] * len(columns))


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
    """Four panels against the fine-tuning steps (log scale), one line per long reader: its difference from the
    64-character model tuned alike in the same seed (mean ± std over the seeds), for the prose loss past position 64
    (with the untouched base reading a sliding window, ``window``, minus that model's mean), the chat loss past
    position 64, and the format chance on the long questions and on the others (the control). The loss panels use a
    scale that is linear near zero and logarithmic beyond, so that gaps of a few hundredths of a bit stay visible
    beside PI's early ones of a bit or more."""
    budgets = sweep.unique("steps")
    fig, axes = plt.subplots(1, 4, figsize=(19, 3.8))
    over = "over the 64-char model tuned alike"
    panels = (("prose", "past", 1, f"prose: bpc past position 64,\n{over}"),
              ("chat", "past", 1, f"chat: bpc past position 64,\n{over}"),
              ("chat", "format", 100, f"chat: in format, long questions,\npoints {over}"),
              ("chat", "format_short", 100, f"control: short questions,\npoints {over}"))
    colours = {arm: f"C{i}" for i, arm in enumerate(names)}  # one colour per arm in every panel
    for ax, (task, metric, scale, title) in zip(axes, panels):
        ax.set_title(title + "\n(mean ± std over seeds)", fontsize=9)
        for arm, name in names.items():
            if arm == "window":
                continue
            runs = [sweep.differences("arm", arm, "window", metric=metric, task=task, steps=k) for k in budgets]
            means = [scale * statistics.fmean(r) for r in runs]
            stds = [scale * (statistics.stdev(r) if len(r) > 1 else 0.0) for r in runs]
            ax.errorbar(budgets, means, yerr=stds, marker="o", capsize=3, label=name, color=colours[arm])
        ax.axhline(0, color="black", linewidth=1, label=names.get("window", "window"))
        if task == "prose":
            bar = [window - sweep.mean(metric, task=task, arm="window", steps=k) for k in budgets]
            ax.plot(budgets, bar, color="black", linestyle="--", linewidth=1, label="untouched base, sliding window")
        if scale == 1:
            ax.set_yscale("symlog", linthresh=0.01)
            ax.set_ylabel("bpc (linear within ±0.01, log beyond)")
        else:
            ax.set_ylabel("points")
        ax.set(xscale="log", xticks=budgets, xticklabels=[str(k) for k in budgets], xlabel="fine-tuning steps")
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    axes[-1].legend(*axes[0].get_legend_handles_labels(), fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    fig.tight_layout()
    plt.show()
