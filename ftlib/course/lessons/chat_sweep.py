"""Lesson 09's rate sweep: full fine-tuning and LoRA at every rate of the course's grid, on three seeds.

A comparison of two ways to fine-tune is fair only at each one's own rate, chosen alike on validation. The tuning
table's records are classifiers' (a validation accuracy chooses); a chat model has no accuracy, so this sweep ships
on its own, in ``data/chat_sweep.json``, and ``python -m ftlib chat-sweep`` rebuilds it bit for bit (same thread
count and torch build; ``--check`` compares the bytes). Each record is a pure function of its method, rate and seed
(the lesson re-runs its seed-0 runs live and compares them with their stored twins).

Every rate is chosen by the lowest mean ``val_loss`` over the table's seeds (0, 1, 2): the chat loss on a slice of
the held-out dialogues that the lesson never reports (it reports the first slice, ``chat``). The stored runs also
give the trade-off curve of each method, one point per rate (chat loss against prose loss); the ``lengths`` runs
give the other one, each method at its chosen rate for shorter budgets, the axis along which Biderman et al. (2024)
compared LoRA with full fine-tuning. The ``memoriser`` is the knowledge test's positive control, and ``self_chat``
Baize's experiment (:mod:`~ftlib.course.lessons.self_chat`).
"""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import matplotlib.pyplot as plt
import torch

from ftlib.course import pretrain_lm
from ftlib.course.lessons import self_chat
from ftlib.course.lessons.chat_finetuning import (
    GROUPS,
    ChatFinetuning,
    answer_bits,
    answer_choice,
    format_breakdown,
    view,
)
from ftlib.course.lessons.records import Results, choose
from ftlib.course.lessons.tuning import RATES
from ftlib.course.versions import warn_if_different
from ftlib.lm import chat
from ftlib.lm.finetune import finetune
from ftlib.paths import DATA_DIR
from ftlib.runtime import seed_everything
from ftlib.train import NonFiniteLoss

__all__ = ["CHOOSING_SEEDS", "METHODS", "SETTINGS", "SWEEP", "as_record", "build", "chosen", "length_curve",
           "lesson_runs", "load", "load_lengths", "load_memoriser", "load_self_chat", "matched", "matched_length",
           "memoriser", "plot_curves", "rate_curve", "rate_table", "recheck", "run_one", "stored_run", "study"]

SWEEP = DATA_DIR / "chat_sweep.json"
METHODS = ("full", "lora")
CHOOSING_SEEDS = (0, 1, 2)  # the seeds whose mean val_loss chooses each rate (the tuning table's)
SETTINGS = {
    "steps": 80,
    "batch_size": 8,  # windows of 64 characters per step
    "rank": 8,  # LoRA's rank, on q, k, v, o of every block
    "temperature": 0.7,  # the format rate's sampling temperature
    # the course's one grid (lowest first: a tie goes to it), four neighbouring rates per method on this 2-core
    # budget: each method's chosen rate must lie inside its window (checked by chosen()), never on its edge
    "rates": {"full": list(RATES[:4]), "lora": list(RATES[2:6])},
    "seeds": 3,  # the tuning table's seeds; a lesson run with more seeds trains the others live
    # the other axis of the trade-off (Biderman et al.'s): each method at its chosen rate, trained for shorter
    # budgets, each with its own warm-up and cosine schedule (the budget of "steps" is the rate sweep's run)
    "lengths": [10, 20, 40],
    # the knowledge test's positive control: full fine-tuning on the first training dialogues alone, many epochs,
    # at a rate fixed on purpose (a memoriser, not a tuned model), the test read every "every" steps
    "memorise": {"dialogues": 48, "steps": 1000, "lr": 3e-3, "every": 200, "candidates": 8, "chars": 16},
    "eval_chars": 3072,
    "threads": 2,  # bit-identical rebuilds need the same thread count
    "rule": "lowest mean val_loss (chat bpc on the choosing slice of the held-out dialogues) over seeds 0, 1, 2; "
            "a diverged rate ranks last; ties to the lower rate",
}
_DIGITS = 6


def study(settings: dict = SETTINGS, lr: dict[str, float] | None = None) -> ChatFinetuning:
    """The lesson's :class:`ChatFinetuning` with the sweep's ``settings`` (rates ``lr``, default the grid's first)."""
    base = pretrain_lm.load_pretrained()
    train_text, _ = chat.chat_text(chat.load_dialogues("train"))
    val_text, answer_mask = chat.chat_text(chat.load_dialogues("val"))
    rates = lr or {m: settings["rates"][m][0] for m in METHODS}
    return ChatFinetuning(base, train_text, val_text, answer_mask, settings["steps"], rates, settings["batch_size"],
                          settings["rank"], settings["temperature"], eval_chars=settings["eval_chars"])


def stored_run(record: dict, shown: int) -> dict:
    """What the sweep keeps of a live :meth:`ChatFinetuning.run` record: its scores (rounded), the scores at every
    checked step, the format rate by kind of turn (:data:`GROUPS`) and where the missing probability goes
    (``missing_u``: the share of it on a reply that starts with ``U``)."""
    turns = record["turns"]
    parts = format_breakdown(turns, shown)
    missing = (1 - turns["chance"]).sum().item()
    round_ = lambda x: round(float(x), _DIGITS)  # noqa: E731
    return {**{k: round_(record[k]) for k in ("val_loss", "chat", "answer", "prose", "format")},
            "trainable": record["trainable"],
            "by_group": {g: round_(parts[g][0]) for g in GROUPS},
            "missing_u": round_(turns["user_first"].sum().item() / missing) if missing > 0 else 0.0,
            "curves": {str(step): {k: round_(scores[k]) for k in ("chat", "prose")}
                       for step, scores in record["curves"].items()}}


def run_one(runs: ChatFinetuning, method: str, lr: float, seed: int, steps: int | None = None) -> dict:
    """One stored record: ``method`` at ``lr`` on ``seed`` (for ``steps``, default the sweep's); a run whose loss
    diverges keeps NaN scores."""
    try:
        return {"method": method, "lr": lr, "seed": seed,
                **stored_run(runs.run(method, seed, lr=lr, steps=steps), view(runs.base))}
    except NonFiniteLoss:
        return {"method": method, "lr": lr, "seed": seed, "diverged": True,
                **{k: math.nan for k in ("val_loss", "chat", "answer", "prose", "format")}}


def build(path: str | Path = SWEEP, settings: dict = SETTINGS, progress: bool = True) -> dict:
    """Run every method at every rate on every seed, then Baize's self-chat at the chosen rates
    (:func:`ftlib.course.lessons.self_chat.build`), and write both to ``path`` as JSON; return what was written."""
    warn_if_different("the shipped chat sweep")
    seed_everything(0, settings["threads"])
    runs = study(settings)
    records = []
    for method in METHODS:
        for lr in settings["rates"][method]:
            for seed in range(settings["seeds"]):
                records.append(run_one(runs, method, lr, seed))
                if progress:
                    print(f"{method} lr {lr:g} seed {seed}: val_loss {records[-1]['val_loss']:.4f} chat "
                          f"{records[-1]['chat']:.4f} prose {records[-1]['prose']:.4f}", flush=True)
    rates = chosen(Results(records))
    lengths = []
    for method in METHODS:
        for steps in settings["lengths"]:
            for seed in range(settings["seeds"]):
                lengths.append({"steps": steps, **run_one(runs, method, rates[method], seed, steps)})
                if progress:
                    print(f"{method} {steps} steps seed {seed}: chat {lengths[-1]['chat']:.4f} prose "
                          f"{lengths[-1]['prose']:.4f}", flush=True)
    sweep = {"settings": settings, "torch": torch.__version__.split("+")[0], "records": records, "lengths": lengths,
             "memoriser": memoriser(runs, settings["memorise"]),
             "self_chat": self_chat.build(runs, rates, threads=settings["threads"],
                                          progress=progress)}
    Path(path).write_text(json.dumps(sweep, indent=1) + "\n")
    return sweep


def memoriser(runs: ChatFinetuning, plan: dict) -> list[dict]:
    """The knowledge test's positive control: the base model fully fine-tuned (seed 0) on the first
    ``plan["dialogues"]`` training dialogues alone, for ``plan["steps"]`` at ``plan["lr"]``; every ``plan["every"]``
    steps (and before, step 0) the loss of their answers and :func:`~ftlib.course.lessons.chat_finetuning.answer_choice`
    on their first questions. Returns ``[{"step", "answer", "choice"}, ...]``, rounded."""
    dialogues = chat.load_dialogues("train")[:plan["dialogues"]]

    def test(lm) -> dict:
        return {"answer": round(answer_bits(lm, dialogues), _DIGITS),
                "choice": round(answer_choice(lm, dialogues, plan["candidates"], plan["chars"]), _DIGITS)}

    _, history = finetune(runs.base, chat.chat_text(dialogues)[0], "full", plan["steps"], plan["lr"], 0,
                          batch_size=runs.batch_size, evaluate=test, every=plan["every"])
    return [{"step": 0, **test(runs.base)}, *({"step": step, **scores} for step, scores in history.evals.items())]


def load_memoriser(path: str | Path = SWEEP) -> Results:
    """The shipped positive control of the knowledge test (:func:`memoriser`)."""
    return Results(json.loads(Path(path).read_text())["memoriser"])


def load(path: str | Path = SWEEP) -> tuple[dict, Results]:
    """The shipped sweep: its settings and its records (filter them with ``method=``, ``lr=``, ``seed=``)."""
    sweep = json.loads(Path(path).read_text())
    return sweep["settings"], Results(sweep["records"])


def load_lengths(path: str | Path = SWEEP) -> Results:
    """The shipped runs of each method at its chosen rate for the shorter budgets (``steps``) of ``lengths``."""
    return Results(json.loads(Path(path).read_text())["lengths"])


def load_self_chat(path: str | Path = SWEEP) -> dict:
    """The shipped self-chat experiment (:func:`ftlib.course.lessons.self_chat.build`), its records as Results."""
    part = json.loads(Path(path).read_text())["self_chat"]
    return {**part, "records": Results(part["records"])}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values and all(math.isfinite(v) for v in values) else math.nan


def chosen(sweep: Results, seeds=CHOOSING_SEEDS) -> dict[str, float]:
    """Each method's rate: the lowest mean ``val_loss`` over ``seeds`` (:func:`~ftlib.course.lessons.records.choose`,
    the course's one rule: a diverged rate last, ties to the lower); one on the edge of its grid is an error."""
    picks = {}
    for method in METHODS:
        runs = Results(r for r in sweep.where(method=method) if r["seed"] in seeds)
        rates = sorted(runs.unique("lr"))
        picks[method] = choose(Results(sorted(runs, key=lambda r: r["lr"])), "lr")  # the grid's order: lowest first
        if picks[method] in (rates[0], rates[-1]):
            raise ValueError(f"{method}'s chosen rate {picks[method]:g} lies on the edge of its grid {rates}: "
                             "widen SETTINGS['rates'] and rebuild the sweep")
    return picks


def rate_curve(sweep: Results, method: str, seed: int, upto: float | None = None) -> list[tuple[float, float, float]]:
    """``(rate, chat, prose)`` of ``method`` on ``seed`` at every rate that did not diverge (up to ``upto``), the
    lowest rate first: one point per rate of the trade-off curve."""
    rows = sorted(sweep.where(method=method, seed=seed), key=lambda r: r["lr"])
    return [(r["lr"], r["chat"], r["prose"]) for r in rows
            if math.isfinite(r["chat"]) and (upto is None or r["lr"] <= upto)]


def _read_at(curve: list[tuple[float, float, float]], level: float) -> float:
    """The prose loss at chat loss ``level`` on ``curve`` (``(knob, chat, prose)`` points in the knob's order),
    linear between the first two neighbouring points whose chat losses bracket it; NaN outside (no extrapolation)."""
    for (_, c0, p0), (_, c1, p1) in zip(curve, curve[1:]):
        if min(c0, c1) <= level <= max(c0, c1) and c0 != c1:
            return p0 + (level - c0) / (c1 - c0) * (p1 - p0)
    return math.nan


def matched(sweep: Results, seed: int, rates: dict[str, float]) -> list[tuple[float, float, float]]:
    """Forgetting at matched learning along the rate, on ``seed``: for each LoRA rate up to its chosen one,
    ``(rate, LoRA's prose loss, full fine-tuning's prose loss at the same chat loss)``, the latter read on full
    fine-tuning's rate curve up to its chosen rate (linear between the two rates whose chat losses bracket LoRA's);
    points whose chat loss lies outside full fine-tuning's range are left out (no extrapolation)."""
    full = rate_curve(sweep, "full", seed, rates["full"])
    out = [(lr, prose, _read_at(full, level)) for lr, level, prose in rate_curve(sweep, "lora", seed, rates["lora"])]
    return [point for point in out if math.isfinite(point[2])]


def length_curve(sweep: Results, lengths: Results, method: str, seed: int, rates: dict[str, float],
                 steps: int = SETTINGS["steps"]) -> list[tuple[float, float, float]]:
    """``(steps, chat, prose)`` of ``method`` at its chosen rate on ``seed`` for every budget: the shorter ones of
    ``lengths`` and the sweep's own run of ``steps``, the shortest first."""
    rows = [(r["steps"], r["chat"], r["prose"]) for r in lengths.where(method=method, seed=seed)]
    rows += [(steps, r["chat"], r["prose"]) for r in sweep.where(method=method, seed=seed, lr=rates[method])]
    return sorted(row for row in rows if math.isfinite(row[1]))


def matched_length(sweep: Results, lengths: Results, seed: int, rates: dict[str, float],
                   steps: int = SETTINGS["steps"]) -> tuple[float, float]:
    """Forgetting at matched learning along the training length, on ``seed``: ``(LoRA's prose loss after
    ``steps``, full fine-tuning's prose loss at LoRA's chat loss on its length curve)`` (NaN if outside it)."""
    (_, level, prose), = [p for p in length_curve(sweep, lengths, "lora", seed, rates, steps) if p[0] == steps]
    return prose, _read_at(length_curve(sweep, lengths, "full", seed, rates, steps), level)


def plot_curves(sweep: Results, lengths: Results, seeds: list[int], rates: dict[str, float], names: dict[str, str],
                base: dict[str, float]) -> None:
    """The trade-off curves, prose loss against chat loss (mean over ``seeds``; a point that diverged in a seed left
    out), along the two knobs: left, one point per rate after the sweep's steps (each method's chosen rate ringed);
    right, one point per training budget at the chosen rate. The base model in black."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for i, method in enumerate(METHODS):
        for ax, knob, rows_at, label in (
                (axes[0], sorted(sweep.where(method=method).unique("lr")),
                 lambda k, m=method: sweep.where(method=m, lr=k), "{:g}"),
                (axes[1], [*SETTINGS["lengths"], SETTINGS["steps"]],
                 lambda k, m=method: lengths.where(method=m, steps=k) if k != SETTINGS["steps"] else
                 sweep.where(method=m, lr=rates[m]), "{} steps")):
            points = []
            for k in knob:
                rows = [r for r in rows_at(k) if r["seed"] in seeds]
                chat_, prose = _mean([r["chat"] for r in rows]), _mean([r["prose"] for r in rows])
                if math.isfinite(chat_) and math.isfinite(prose):
                    points.append((k, chat_, prose))
            ax.plot([p[1] for p in points], [p[2] for p in points], "o-", color=f"C{i}", label=names[method])
            for k, x, y in points:
                ax.annotate(label.format(k), (x, y), textcoords="offset points", xytext=(-5, 5) if i == 0 else
                            (5, -12), ha="right" if i == 0 else "left", fontsize=8,
                            color=f"C{i}")  # full fine-tuning's labels above left, LoRA's below right
                if ax is axes[0] and k == rates[method]:
                    ax.plot([x], [y], "o", ms=14, mfc="none", color=f"C{i}")
    for ax, title in zip(axes, (f"along the rate: one point per rate, {SETTINGS['steps']} steps (ringed: chosen)",
                                "along the training length: one point per budget, chosen rate")):
        ax.plot([base["chat"]], [base["prose"]], "ko", label="base model")
        ax.invert_xaxis()
        ax.set(xlabel="chat loss on held-out dialogues, bpc (learning: right to left)", title=title)
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0].set_ylabel("prose loss, bpc (forgetting: higher is worse)")
    fig.suptitle(f"learning against forgetting, mean over {len(seeds)} seeds", fontsize=11)
    fig.tight_layout()
    plt.show()


def as_record(stored: dict) -> dict:
    """A stored run as the lesson's records read it: its ``curves`` by integer step."""
    return {**stored, "curves": {int(step): scores for step, scores in stored["curves"].items()}}


def lesson_runs(runs: ChatFinetuning, sweep: Results, settings: dict, rates: dict[str, float], seeds: int
                ) -> tuple[Results, dict[str, object]]:
    """Both methods at their chosen ``rates`` on seeds ``0 .. seeds-1``: the sweep's stored runs where it has them
    (the lesson's settings equal to the sweep's), the others trained now; seed 0 is always trained now, since the
    lesson talks to its models. Returns the records (each ``from_sweep`` or not) and the seed-0 models."""
    same = runs.steps == settings["steps"] and runs.batch_size == settings["batch_size"] and \
        runs.rank == settings["rank"] and runs.eval_chars == settings["eval_chars"]
    records, models = [], {}
    for method in METHODS:
        for seed in range(seeds):
            stored = sweep.where(method=method, lr=rates[method], seed=seed) if same else []
            if stored and seed:
                records.append({**as_record(stored[0]), "from_sweep": True})
                continue
            live = runs.run(method, seed, lr=rates[method])
            if seed == 0:
                models[method] = live["model"]
            records.append({"method": method, "lr": rates[method], "seed": seed, "from_sweep": False,
                            **as_record(stored_run(live, view(runs.base)))})
    return Results(records), models


def recheck(results: Results, sweep: Results, tolerance: float = 0.02) -> str:
    """Compare the runs trained now with their stored twins (same method, rate and seed); raise where a loss
    differs by more than ``tolerance`` bpc (a stale sweep, or training that changed). Returns a line to print."""
    pairs = [(r, sweep.where(method=r["method"], lr=r["lr"], seed=r["seed"])) for r in results
             if not r["from_sweep"]]
    pairs = [(r, twin[0]) for r, twin in pairs if twin]
    if not pairs:
        return "no run trained now has a stored twin: nothing to re-check"
    worst = max(abs(r[k] - t[k]) for r, t in pairs for k in ("chat", "prose", "val_loss"))
    if worst > tolerance:
        raise AssertionError(f"the chat sweep is stale: a loss differs by {worst:.3f} bpc from its stored twin; "
                             "rebuild it with `python -m ftlib chat-sweep`")
    return (f"re-ran {len(pairs)} stored runs: their losses match the sweep's within {worst:.4f} bpc "
            f"(tolerance {tolerance} bpc)")


def rate_table(sweep: Results, rates: dict[str, float], names: dict[str, str], seeds=CHOOSING_SEEDS) -> str:
    """How each method's rate was set: the mean ± std validation chat loss (``val_loss``) over ``seeds`` at every
    rate of its grid, the chosen one marked with ``*``."""
    lines = [f"{'method':<18}" + "".join(f"{'lr ' + format(lr, 'g'):>17}" for lr in RATES[:6])]
    for method in METHODS:
        cells = []
        for lr in RATES[:6]:
            rows = [r["val_loss"] for r in sweep.where(method=method, lr=lr) if r["seed"] in seeds]
            mark = "*" if lr == rates[method] else " "
            cells.append(f"{_mean(rows):>10.3f} ± {statistics.pstdev(rows):.3f}{mark}" if rows else f"{'-':>17}")
        lines.append(f"{names[method]:<18}" + "".join(cells))
    return "\n".join(lines)
