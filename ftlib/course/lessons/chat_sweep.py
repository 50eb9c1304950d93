"""Lesson 09's rate sweep: full fine-tuning and LoRA at every rate of the course's grid, on three seeds.

A comparison of two ways to fine-tune is fair only at each one's own rate, chosen alike on validation. The tuning
table's records are classifiers' (a validation accuracy chooses); a chat model has no accuracy, so this sweep ships
on its own, in ``data/chat_sweep.json``, and ``python -m ftlib chat-sweep`` rebuilds it bit for bit (same thread
count and torch build; ``--check`` compares the bytes). Each record is a pure function of its method, rate and seed
(the lesson re-runs its seed-0 runs live and compares them with their stored twins).

Every rate is chosen by the lowest mean ``val_loss`` over the table's seeds (0, 1, 2): the chat loss on a slice of
the held-out dialogues that the lesson never reports (it reports the first slice, ``chat``). The stored runs also
give the trade-off curve of each method, one point per rate (chat loss against prose loss), which is how Biderman
et al. (2024) compared LoRA with full fine-tuning.
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
from ftlib.course.lessons.chat_finetuning import GROUPS, ChatFinetuning, format_breakdown, view
from ftlib.course.lessons.records import Results
from ftlib.course.lessons.tuning import RATES
from ftlib.course.versions import warn_if_different
from ftlib.lm import chat
from ftlib.paths import DATA_DIR
from ftlib.runtime import seed_everything
from ftlib.train import NonFiniteLoss

__all__ = ["CHOOSING_SEEDS", "METHODS", "SETTINGS", "SWEEP", "as_record", "build", "chosen", "lesson_runs", "load",
           "load_self_chat",
           "matched", "plot_curves", "rate_curve", "rate_table", "recheck", "run_one", "stored_run", "study"]

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


def run_one(runs: ChatFinetuning, method: str, lr: float, seed: int) -> dict:
    """One stored record: ``method`` at ``lr`` on ``seed``; a run whose loss diverges keeps NaN scores."""
    try:
        return {"method": method, "lr": lr, "seed": seed,
                **stored_run(runs.run(method, seed, lr=lr), view(runs.base))}
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
    sweep = {"settings": settings, "torch": torch.__version__.split("+")[0], "records": records,
             "self_chat": self_chat.build(runs, chosen(Results(records)), threads=settings["threads"],
                                          progress=progress)}
    Path(path).write_text(json.dumps(sweep, indent=1) + "\n")
    return sweep


def load(path: str | Path = SWEEP) -> tuple[dict, Results]:
    """The shipped sweep: its settings and its records (filter them with ``method=``, ``lr=``, ``seed=``)."""
    sweep = json.loads(Path(path).read_text())
    return sweep["settings"], Results(sweep["records"])


def load_self_chat(path: str | Path = SWEEP) -> dict:
    """The shipped self-chat experiment (:func:`ftlib.course.lessons.self_chat.build`), its records as Results."""
    part = json.loads(Path(path).read_text())["self_chat"]
    return {**part, "records": Results(part["records"])}


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values and all(math.isfinite(v) for v in values) else math.nan


def chosen(sweep: Results, seeds=CHOOSING_SEEDS) -> dict[str, float]:
    """Each method's rate: the lowest mean ``val_loss`` over ``seeds`` (a diverged rate last; ties to the lower)."""
    picks = {}
    for method in METHODS:
        rates = sorted(sweep.where(method=method).unique("lr"))
        losses = [_mean([r["val_loss"] for r in sweep.where(method=method, lr=lr) if r["seed"] in seeds])
                  for lr in rates]
        picks[method] = min(zip(rates, losses),
                            key=lambda rl: (not math.isfinite(rl[1]), round(rl[1], 9) if math.isfinite(rl[1])
                                            else 0.0))[0]
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


def matched(sweep: Results, seed: int, rates: dict[str, float]) -> list[tuple[float, float, float]]:
    """Forgetting at matched learning, on ``seed``: for each LoRA rate up to its chosen one, ``(rate, LoRA's prose
    loss, full fine-tuning's prose loss at the same chat loss)``, the latter read on full fine-tuning's rate curve
    up to its chosen rate (linear between the two rates whose chat losses bracket LoRA's); points whose chat loss
    lies outside full fine-tuning's range are left out (no extrapolation)."""
    full = rate_curve(sweep, "full", seed, rates["full"])
    out = []
    for lr, level, prose in rate_curve(sweep, "lora", seed, rates["lora"]):
        for (_, c0, p0), (_, c1, p1) in zip(full, full[1:]):
            if min(c0, c1) <= level <= max(c0, c1) and c0 != c1:
                out.append((lr, prose, p0 + (level - c0) / (c1 - c0) * (p1 - p0)))
                break
    return out


def plot_curves(sweep: Results, seeds: list[int], rates: dict[str, float], names: dict[str, str],
                base: dict[str, float]) -> None:
    """The trade-off curves: prose loss against chat loss, one point per rate (mean over ``seeds``, rates that
    diverged in a seed left out), each rate labelled, each method's chosen rate ringed; the base model in black."""
    fig, ax = plt.subplots(figsize=(8, 4.8))
    for i, method in enumerate(METHODS):
        points = []
        for lr in sorted(sweep.where(method=method).unique("lr")):
            rows = [r for r in sweep.where(method=method, lr=lr) if r["seed"] in seeds]
            chat_, prose = _mean([r["chat"] for r in rows]), _mean([r["prose"] for r in rows])
            if math.isfinite(chat_) and math.isfinite(prose):
                points.append((lr, chat_, prose))
        ax.plot([p[1] for p in points], [p[2] for p in points], "o-", color=f"C{i}", label=names[method])
        for lr, x, y in points:
            ax.annotate(f"{lr:g}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8, color=f"C{i}")
            if lr == rates[method]:
                ax.plot([x], [y], "o", ms=14, mfc="none", color=f"C{i}")
    ax.plot([base["chat"]], [base["prose"]], "ko", label="base model")
    ax.invert_xaxis()
    ax.set(xlabel="chat loss on held-out dialogues, bpc (learning: the axis runs right to left)",
           ylabel="prose loss, bpc (forgetting: higher is worse)",
           title=f"after {SETTINGS['steps']} steps, one point per rate (mean over {len(seeds)} seeds; ringed: chosen)")
    ax.grid(alpha=0.3)
    ax.legend()
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
