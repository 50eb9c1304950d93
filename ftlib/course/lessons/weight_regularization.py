"""Lesson 05's driver: fine-tune under no penalty, decoupled weight decay, L2 in the loss, or L2-SP, and measure
target accuracy (validation and test), drift (Euclidean and per layer) and retention of the letters task."""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Callable
from statistics import fmean
from types import SimpleNamespace

import matplotlib.pyplot as plt
import torch
from torch import nn

from ftlib import data, stats
from ftlib.course.lessons import records
from ftlib.course.lessons.experiments import Results, run
from ftlib.course.lessons.workers import independent
from ftlib.course.runner import points
from ftlib.data import ImageSet
from ftlib.evaluation import evaluate
from ftlib.models import BLOCKS, load_pretrained
from ftlib.regularize import L2SP, L2Penalty, drift, layer_drift, output_change, retention, source_probe, starting_point
from ftlib.runtime import model_device
from ftlib.schedules import make_schedule

__all__ = ["COLOURS", "COLUMNS", "HEAD_DECAY", "LETTERS_USED", "LIVE_STRENGTHS", "NAMES", "N_VAL", "PENALTIES",
           "RATE_ARMS", "TRACED", "VAL_LETTERS_SEED", "affordable", "against_lower_rates", "bn_shrink", "check_claims",
           "costliest", "costliest_text", "explain_drift", "explain_turning", "held_out", "joint_choice", "label",
           "letters_verdicts", "live_l2sp", "no_ops", "paired", "plot_drift", "plot_statistics", "plot_trace",
           "rank_agreement", "rank_correlation", "rate_curve", "rate_pairs", "rate_trace", "regularized_run",
           "shipped_retention", "show_difference", "show_rate_curve", "show_rates", "show_trace", "shrunk_batchnorm",
           "split_forgetting", "stored", "summary", "trace_table", "unseen_text", "validation_letters"]

PENALTIES = ("none", "decay", "decay_all", "l2", "l2sp")
NAMES = {"none": "no penalty", "decay": "weight decay (AdamW)", "decay_all": "weight decay, BN gamma/beta too",
         "l2": "L2 in the loss (Adam)", "l2sp": "L2-SP (towards w0)"}
HEAD_DECAY = 1e-3  # beta: the new head is pulled towards zero with this strength under every penalty
_BN_SEED = 5  # the seed of the 520 letters drawn to re-estimate BatchNorm statistics on
N_VAL = 20  # validation digits per class, from the labelled pool, disjoint from the training digits
VAL_LETTERS_SEED = 7  # fresh letters that choices read retention on (pretraining drew seed 0's, BN seed 5's)


@functools.cache
def _source() -> tuple[nn.Linear, ImageSet, torch.Tensor]:
    """The shipped model's letters head, every 4th fixed test letter (25 per class) to measure retention, and 520
    freshly drawn letters (not test ones; their labels are not used) to re-estimate BatchNorm statistics on and to
    measure the output change on."""
    test = data.test_set("letters")
    return (load_pretrained().head, ImageSet(test.images[::4], test.labels[::4], test.classes, "letters (1 in 4)"),
            next(data.letter_batches(520, _BN_SEED))[0])


@functools.cache
def _shipped() -> nn.Module:
    """The shipped letters model, to compare outputs with (never trained)."""
    return load_pretrained().eval()


@functools.cache
def _shipped_logits() -> torch.Tensor:
    """The shipped model's outputs on the unlabelled letters that output change is measured on (once)."""
    with torch.no_grad():
        return _shipped()(_source()[2])


def _is_weight(parameter: torch.Tensor) -> bool:
    """A convolution's or linear layer's weight (2 or more dimensions), not a BatchNorm gamma/beta or a bias."""
    return parameter.dim() > 1


def _decoupled(decay: float, everything: bool = False):
    """AdamW whose decoupled weight decay ``decay`` acts on the backbone's weights only, never on BatchNorm's
    gamma/beta or biases (the usual ``no_decay`` group); with ``everything``, on every backbone parameter (the naive
    ``AdamW(model.parameters(), weight_decay=...)``). The head is treated as elsewhere."""
    def optimizer(groups):
        split = []
        for group in groups:
            options = {k: v for k, v in group.items() if k != "params"}
            params = list(group["params"])
            if group.get("name") == "head" or everything:
                split.append({**options, "params": params, "weight_decay": 0.0 if group.get("name") == "head"
                              else decay})
                continue
            split += [{**options, "params": [p for p in params if _is_weight(p)], "weight_decay": decay},
                      {**options, "params": [p for p in params if not _is_weight(p)], "weight_decay": 0.0}]
        return torch.optim.AdamW([g for g in split if g["params"]])
    return optimizer


class _L2OnWeights(L2Penalty):
    """``alpha/2 * ||W||^2`` over the backbone's weights only (not BatchNorm's gamma/beta nor biases: the parameters
    weight decay holds) and ``beta/2 * ||w_head||^2``."""

    def __call__(self, model: nn.Module) -> torch.Tensor:
        body = sum(w.square().sum() for n, w in model.named_parameters()
                   if not n.startswith("head.") and _is_weight(w))
        return 0.5 * self.alpha * body + L2Penalty(0.0, self.beta)(model)


def _holding(penalty: str, alpha: float, start: dict) -> Callable[[nn.Module], dict]:
    """The ``prepare`` step of a run under ``penalty`` of strength ``alpha``: it keeps the starting weights in
    ``start`` and returns the ``fit`` options that hold the backbone (optimizer and penalty)."""
    if penalty not in PENALTIES:
        raise ValueError(f"unknown penalty {penalty!r}; choose one of {', '.join(PENALTIES)}")

    def prepare(model: nn.Module) -> dict:
        start.update(starting_point(model))
        if penalty == "none":
            return {}
        if penalty in ("decay", "decay_all"):
            return {"optimizer": _decoupled(alpha, everything=penalty == "decay_all"),
                    "penalty": L2Penalty(0.0, HEAD_DECAY)}
        rule = _L2OnWeights(alpha, HEAD_DECAY) if penalty == "l2" else L2SP(model, alpha, HEAD_DECAY)
        return {"penalty": rule}

    return prepare


@independent
def regularized_run(penalty: str, alpha: float, lr: float, seed: int, n: int = 5, steps: int = 100,
                    target: str = "mnist", n_val: int = N_VAL, follow: bool = False) -> dict:
    """Fine-tune the shipped model on ``n`` labels per class of ``target`` under a penalty, and measure it.

    ``penalty`` (strength ``alpha`` on the backbone) is ``"none"``; ``"decay"``: AdamW's decoupled weight decay
    (each step shrinks every convolution weight by ``lr * alpha`` of itself; BatchNorm's gamma/beta are not
    decayed, the usual practice); ``"decay_all"``: the same on every backbone parameter, gamma/beta included (the
    naive ``AdamW(model.parameters(), ...)``); ``"l2"``: ``alpha/2 ||W||^2`` over the same weights as ``"decay"``
    added to the loss (Adam then normalises its gradient with the data's); or ``"l2sp"``: ``alpha/2 ||w - w0||^2``
    over every backbone parameter added to the loss. All pull the new head towards zero alike (``HEAD_DECAY``).
    Returns target ``accuracy`` (test) and ``val_accuracy``, ``val_loss`` (``n_val`` held-out labels per class),
    backbone ``drift`` ``||w - w0||``,
    ``layer_drift`` and ``direction_drift`` (mean over layers of :func:`ftlib.regularize.layer_drift`, plain and
    scale-free), ``output_change`` (KL of the letters predictions from the shipped model's, on 520 unlabelled
    letters that are not test ones, with the letters head and the letters' BatchNorm statistics), and
    ``retention``: letters test accuracy with the letters head put back, as is (``retention``) and with the
    letters' BatchNorm statistics re-estimated (``retention_bn``). With ``follow``, also ``layers``: each
    convolution followed step by step (:func:`held_out`).
    """
    start = {}
    train_set, val_set = data.few_shot_split(target, n, n_val, seed)
    follower = _Follower(start) if follow else None
    model = run("fine-tune", train_set, seed, steps, lr=lr, prepare=_holding(penalty, alpha, start),
                **({"evaluate": follower, "eval_every": 1} if follow else {})).model
    head, letters, source_images = _source()
    probe = source_probe(model, head, source_images)  # the letters head and the letters' BatchNorm statistics
    with torch.no_grad():
        moved = output_change(probe(source_images.to(model_device(probe))), _shipped_logits())  # not test letters
    validation = evaluate(model, val_set)
    return {"accuracy": evaluate(model, data.test_set(target)).accuracy,
            "val_accuracy": validation.accuracy, "val_loss": validation.loss, "drift": drift(model, start),
            "layer_drift": fmean(layer_drift(model, start).values()),
            "direction_drift": fmean(layer_drift(model, start, scale_free=True).values()),
            "output_change": moved, "retention": retention(model, head, letters),
            "retention_bn": evaluate(probe, letters).accuracy,
            **({"layers": follower.layers(model)} if follow else {})}


class _Follower:
    """Called after every step: per convolution ``W``, its norm over ``||W0||``, the length of the step across ``W``
    and the angle it turned; per BatchNorm, the angle its ``(gamma, beta)`` turned (see :func:`held_out`)."""

    def __init__(self, start: dict[str, torch.Tensor]) -> None:
        self.start, self.previous, self.seen, self.bn_turns = start, {}, {}, {}

    def __call__(self, model: nn.Module) -> dict:
        for name, weight in model.named_parameters():
            if name not in self.start or weight.dim() < 4:
                continue
            now, before = weight.detach().flatten().clone(), self.previous.get(name, self.start[name].flatten())
            unit = before / before.norm()
            step = now - before
            across = float((step - torch.dot(step, unit) * unit).norm())
            self.seen.setdefault(name, []).append((float(now.norm() / self.start[name].norm()), across,
                                                   _angle(before, now)))
            self.previous[name] = now
        parameters = dict(model.named_parameters())
        for name in self.seen:
            gamma, beta = name.replace(".0.weight", ".1.weight"), name.replace(".0.weight", ".1.bias")
            now = torch.cat([parameters[gamma].detach().flatten(), parameters[beta].detach().flatten()])
            before = self.previous.get(gamma, torch.cat([self.start[gamma].flatten(), self.start[beta].flatten()]))
            self.bn_turns.setdefault(name, []).append(_angle(before, now))
            self.previous[gamma] = now
        return {}

    def layers(self, model: nn.Module) -> dict[str, dict]:
        norms = {name: float(p.detach().norm() / self.start[name].norm()) for name, p in model.named_parameters()
                 if name in self.start and not _is_weight(p)}
        return {name.split(".")[0]: {"norm": rows[-1][0], "mean_norm": fmean(r[0] for r in rows),
                                     "across": fmean(r[1] for r in rows), "turn": fmean(r[2] for r in rows),
                                     "gamma": norms[name.replace(".0.weight", ".1.weight")],
                                     "beta": norms[name.replace(".0.weight", ".1.bias")],
                                     "bn_turn": fmean(self.bn_turns[name])}
                for name, rows in self.seen.items()}


def _angle(before: torch.Tensor, now: torch.Tensor) -> float:
    """The angle, in degrees, between two flattened parameter vectors."""
    cosine = float(torch.dot(now, before) / (now.norm() * before.norm()))
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


def held_out(settings: dict[str, tuple[str, float]], lr: float, seeds, n: int = 5, steps: int = 100,
             follow: tuple[str, ...] = ()) -> Results:
    """:func:`regularized_run` of each labelled setting ``(penalty, alpha)`` on each of ``seeds``, all the runs
    sharing the cores: records with ``penalty``, ``alpha``, ``seed`` and ``setting`` (the label). The settings
    named in ``follow`` also follow their convolutions step by step, in ``layers``, per layer: ``norm`` (the
    convolution's ``||W||`` at the end over ``||W0||``), ``mean_norm`` (the same, averaged over the steps),
    ``across`` (mean length of the part of a step ``W_t - W_(t-1)`` across ``W``, the part that can turn it; Adam
    makes it about the rate in every weight, whatever their scale), ``turn`` (mean angle, in degrees, between
    ``W_(t-1)`` and ``W_t``: how much a step changes the layer's direction, all a BatchNorm after it lets
    through), and the BatchNorm after it: ``gamma`` and ``beta``, ``||.||`` at the end over at the start, and
    ``bn_turn``, the mean angle per step of the vector ``(gamma, beta)`` (the next BatchNorm undoes a uniform scale
    of both, so, as for a convolution, only their direction matters)."""
    from ftlib.course.lessons.workers import run_calls

    seeds = list(seeds)
    plan = [(label, penalty, alpha, seed) for label, (penalty, alpha) in settings.items() for seed in seeds]
    found = run_calls([(regularized_run, {"penalty": penalty, "alpha": alpha, "lr": lr, "seed": seed, "n": n,
                                          "steps": steps, "follow": label in follow})
                       for label, penalty, alpha, seed in plan])
    return Results({**record, "penalty": penalty, "alpha": alpha, "lr": lr, "seed": seed, "setting": label}
                   for (label, penalty, alpha, seed), record in zip(plan, found))


def _layer_mean(runs: Results, layer: str, key: str) -> float:
    return fmean(r["layers"][layer][key] for r in runs)


def explain_turning(outside: Results, labels: list[str]) -> str:
    """Per layer and each of the :func:`held_out` settings ``labels``, means over its seeds: the convolution's norm
    at the end and on average, the mean step across it and the mean turn per step, and the BatchNorm's
    ``||gamma||`` and ``||beta||`` at the end (over the start) and the mean turn per step of ``(gamma, beta)``; then
    each setting's validation digits and letters kept."""
    runs = {label: outside.where(setting=label) for label in labels}
    layers = list(runs[labels[0]][0]["layers"])
    width = max(len(label) for label in labels) + 2
    lines = [f"{'layer':<8}{'':<{width}}{'conv ||W||/||W0||: end':>23}{'mean':>7}{'step across W':>15}"
             f"{'turn per step':>15}{'||gamma||':>11}{'||beta||':>10}{'(gamma, beta) turn':>20}"]
    for layer in layers:
        for k, label in enumerate(labels):
            row = {key: _layer_mean(runs[label], layer, key)
                   for key in ("norm", "mean_norm", "across", "turn", "gamma", "beta", "bn_turn")}
            lines.append(f"{layer if k == 0 else '':<8}{label:<{width}}{row['norm']:>23.2f}{row['mean_norm']:>7.2f}"
                         f"{row['across']:>15.4f}{row['turn']:>14.3f}°{row['gamma']:>11.2f}{row['beta']:>10.2f}"
                         f"{row['bn_turn']:>19.3f}°")
    seeds = ", ".join(str(r["seed"]) for r in runs[labels[0]])
    lines.append(f"(ratios to the start, means over seeds {seeds}; the same runs:)")
    for label in labels:
        spread = {m: records.spread(runs[label].mean(m), runs[label].std(m))
                  for m in ("val_accuracy", "retention", "retention_bn")}
        lines.append(f"  {label:<{width}}validation digits {spread['val_accuracy']}, letters kept "
                     f"{spread['retention']}, with the letters' BN {spread['retention_bn']}")
    return "\n".join(lines)


def bn_shrink(runs: Results) -> float:
    """The mean, over layers and seeds of :func:`held_out` runs that followed their layers, of ``||gamma||`` at the
    end over at the start: how far a decay shrank BatchNorm's scales."""
    return fmean(layer["gamma"] for r in runs for layer in r["layers"].values())


def shrunk_batchnorm(factor: float) -> SimpleNamespace:
    """The shipped model with every block's BatchNorm gamma and beta multiplied by ``factor`` (no training), scored
    on the letters that measure retention: ``shipped``; ``every_block``: all four blocks shrunk, BatchNorm
    statistics re-estimated on the 520 unlabelled letters (as fine-tuning re-estimates them on its data);
    ``kept_statistics``: blocks 1-3 shrunk, the shipped statistics kept; ``text`` says it. A block's
    conv -> BN -> ReLU (-> pool) is scaled by ``factor`` as a whole, and the next block's BatchNorm divides it out."""
    if not 0 < factor <= 1:
        raise ValueError(f"factor={factor!r}: a shrink is a number in (0, 1]")
    head, letters, images = _source()

    def shrunk(blocks: tuple[str, ...], statistics: torch.Tensor | None) -> float:
        model = copy.deepcopy(_shipped())
        with torch.no_grad():
            for name in blocks:
                norm = getattr(model, name)[1]
                norm.weight.mul_(factor)
                norm.bias.mul_(factor)
        return retention(model, head, letters, statistics)

    shipped = shipped_retention()
    every, kept = shrunk(BLOCKS, images), shrunk(BLOCKS[:-1], None)
    text = (f"the shipped model, no training, every block's gamma and beta x{factor:.2f}: letters {every:.1%} with "
            f"the BatchNorm statistics re-estimated on letters (shipped: {shipped:.1%}); blocks 1-3 shrunk with "
            f"the shipped statistics kept: {kept:.1%}")
    return SimpleNamespace(shipped=shipped, every_block=every, kept_statistics=kept, text=text)


# one colour per penalty in every plot
COLOURS = {"none": "0.35", "decay": "C0", "decay_all": "C4", "l2": "C1", "l2sp": "C2"}
COLUMNS = {"accuracy": ("digits test", True), "val_accuracy": ("validation digits", True),
           "retention": ("letters kept", True), "retention_bn": ("kept, letters' BN", True),
           "drift": ("||w - w0||", False), "direction_drift": ("direction change", False),
           "output_change": ("output change", False)}


def label(record: dict) -> str:
    """A setting's short name: ``"none"`` or ``"<penalty> <strength>"``."""
    return "none" if record["penalty"] == "none" else f"{record['penalty']} {record['alpha']:g}"


def summary(results: Results, metrics: list[str]) -> str:
    """One row per setting: the mean over seeds of each metric (accuracies in %, with their std)."""
    def plain(metric: str):
        return lambda rows: f"{rows.mean(metric):.3g}"

    columns = [records.Column(COLUMNS[m][0], m, width=19) if COLUMNS[m][1] else
               records.Column(COLUMNS[m][0], cell=plain(m), width=19) for m in metrics]
    return records.table(results, "setting", columns, lead=26)


def plot_drift(results: Results, shipped: float) -> None:
    """Letters kept (with the letters' BatchNorm statistics) against Euclidean drift (left) and against the change
    of the letters outputs (right): one point per setting, mean ± std over seeds, the shipped model as a line."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    for ax, x, xlabel in [(axes[0], "drift", "Euclidean drift ||w - w0||"),
                          (axes[1], "output_change", "output change on letters (KL from the shipped model, nats)")]:
        for setting in results.unique("setting"):
            runs = results.where(setting=setting)
            penalty = runs[0]["penalty"]
            ax.errorbar(runs.mean(x), 100 * runs.mean("retention_bn"), xerr=runs.std(x),
                        yerr=100 * runs.std("retention_bn"), fmt="o", color=COLOURS[penalty], capsize=3,
                        label=NAMES[penalty] if setting == results.where(penalty=penalty)[0]["setting"] else None)
        ax.axhline(100 * shipped, color="k", ls=":", lw=1, label=f"shipped model: {shipped:.1%}")
        ax.margins(x=0.25)  # room for the labels of the outermost points
        ax.set_xlim(left=0)  # a distance: from no move at all
        settings = results.unique("setting")
        _annotate_apart(ax, settings, [results.mean(x, setting=s) for s in settings],
                        [100 * results.mean("retention_bn", setting=s) for s in settings],
                        [COLOURS[results.where(setting=s)[0]["penalty"]] for s in settings])
        ax.set(xlabel=xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("letters kept, letters' BN statistics (%)")
    axes[0].set_title("Letters kept against Euclidean drift")
    axes[1].set_title("Change of the letters outputs (needs no labels)")
    fig.legend(*axes[1].get_legend_handles_labels(), fontsize=8, loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=3)  # below the plots: no label or point hides under it
    plt.show()


TRACED = {"decay": "05 weight decay", "l2": "05 L2 in the loss", "l2sp": "05 L2-SP"}  # each penalty's tuned arm


RATE_ARMS = ("05 L2-SP", "05 L2-SP, lr 0.03")  # L2-SP's strengths tuned at no penalty's rate, then at 10x it


def rate_trace(table, keys: tuple[str, ...] = RATE_ARMS) -> Results:
    """L2-SP at every strength of its grid at each rate of ``keys`` (arms of the tuning table that differ only in
    their fixed ``lr``), from the stored validation records (nothing retrains); the lower rate first, each record
    with its ``lr`` and ``point`` ``(lr, alpha)``."""
    arms = sorted(keys, key=lambda k: table.arm(k).fixed["lr"])
    return Results({**r, "penalty": "l2sp", "lr": table.arm(k).fixed["lr"], "point": (table.arm(k).fixed["lr"],
                    r["alpha"]), "setting": f"l2sp {r['alpha']:g}, lr {table.arm(k).fixed['lr']:g}"}
                   for k in arms for r in table.results(k))


def costliest(runs: Results) -> list[float]:
    """The strengths of ``runs`` (one penalty at one rate) whose mean validation digits are the lowest (several
    when tied to 9 decimals): a reading of the trace, not a choice of setting."""
    digits = {a: round(runs.mean("val_accuracy", alpha=a), 9) for a in runs.unique("alpha")}
    low = min(digits.values())
    return [a for a, d in digits.items() if d == low]


def show_rates(both: Results, alphas: list[float] | None = None) -> str:
    """Side by side per strength (``alphas``, default every one): validation digits and letters kept (mean ± std
    over the table's seeds) at each rate of :func:`rate_trace`'s ``both``. The strength that costs the validation
    digits the most is :func:`costliest_text`'s, printed apart (it answers exercise 1)."""
    rates = both.unique("lr")
    alphas = both.unique("alpha") if alphas is None else alphas
    missing = [a for a in alphas if a not in both.unique("alpha")]
    if missing:
        raise ValueError(f"alphas {missing} are not in the stored grid: choose from {both.unique('alpha')}")
    lines = [f"{'L2-SP':<12}" + "".join(f"{f'lr {lr:g}: validation digits':>31}{'letters kept':>15}" for lr in rates)]
    for a in alphas:
        cells = []
        for lr in rates:
            runs = both.where(lr=lr, alpha=a)
            cells.append(f"{records.spread(runs.mean('val_accuracy'), runs.std('val_accuracy')):>31}"
                         f"{records.spread(runs.mean('retention'), runs.std('retention')):>15}")
        lines.append(f"{'alpha ' + format(a, 'g'):<12}" + "".join(cells))
    return "\n".join(lines)


def costliest_text(both: Results) -> str:
    """Per rate of :func:`rate_trace`'s ``both``, the L2-SP strength with the lowest mean validation digits
    (:func:`costliest`), as one printable line."""
    return "lowest validation digits: " + "; ".join(
        f"alpha {' and '.join(format(a, 'g') for a in costliest(both.where(lr=lr)))} at lr {lr:g}"
        for lr in both.unique("lr"))


def rate_pairs(both: Results, alphas: list[float]) -> str:
    """Per strength of ``alphas``: L2-SP at the higher rate of ``both`` minus at the lower, per seed (the table's
    seeds), validation digits and letters kept, with the mean's 95% interval and verdict."""
    low, high = both.unique("lr")[0], both.unique("lr")[-1]
    lines = [f"L2-SP at lr {high:g} minus at lr {low:g}, same strength, per seed (the table's runs):"]
    for a in alphas:
        first, second = both.where(lr=high, alpha=a), both.where(lr=low, alpha=a)
        lines += [f"  alpha {a:<6g}validation digits  {paired(first, second, 'val_accuracy')[1]}",
                  f"  {'':<12}letters kept       {paired(first, second, 'retention')[1]}"]
    return "\n".join(lines)


NO_PENALTY = "05 no penalty"  # no penalty's tuned arm: its whole rate grid is stored


def rate_curve(table, lrs: list[float] | None = None, key: str = NO_PENALTY) -> Results:
    """No penalty's stored runs at the rates ``lrs`` of its tuning grid (default: every rate), from the tuning
    table (nothing retrains): one record per rate and seed, with ``penalty`` ``"none"`` and ``setting``."""
    runs = table.results(key)
    lrs = runs.unique("lr") if lrs is None else list(lrs)
    missing = [lr for lr in lrs if lr not in runs.unique("lr")]
    if missing:
        raise ValueError(f"lrs {missing} are not in no penalty's stored grid: choose from {runs.unique('lr')}")
    return Results({**r, "penalty": "none", "alpha": 0.0, "setting": f"none, lr {r['lr']:g}"}
                   for r in runs if r["lr"] in lrs)


def show_rate_curve(curve: Results) -> str:
    """Per rate of :func:`rate_curve`'s ``curve``: validation digits and letters kept, mean ± std over seeds."""
    lines = [f"{'no penalty':<14}{'validation digits':>19}{'letters kept':>16}"]
    for lr in curve.unique("lr"):
        runs = curve.where(lr=lr)
        lines.append(f"{'lr ' + format(lr, 'g'):<14}"
                     f"{records.spread(runs.mean('val_accuracy'), runs.std('val_accuracy')):>19}"
                     f"{records.spread(runs.mean('retention'), runs.std('retention')):>16}")
    return "\n".join(lines)


def against_lower_rates(both: Results, curve: Results, points: list[tuple[float, float]], below: float,
                        close: float = 1.5) -> SimpleNamespace:
    """Each L2-SP ``(lr, alpha)`` of ``points`` (stored in :func:`rate_trace`'s ``both``) against no penalty at
    every rate of ``curve`` below ``below`` (no penalty's chosen rate: a lower rate is the other way to forget less)
    whose mean validation digits are within ``close`` points of the L2-SP setting's: per seed, validation digits and
    letters kept, L2-SP minus no penalty, with the mean's 95% interval and verdict. Returns ``pairs``
    (``{(lr, alpha, none_lr): (digits, letters, letters' verdict word)}``, differences in fractions) and ``text``."""
    if close <= 0:
        raise ValueError(f"close must be a positive number of points, got {close!r}")
    lines = [f"L2-SP minus no penalty at a lower rate with validation digits within {close:g} points, per seed "
             "(the table's runs):"]
    pairs = {}
    for lr, alpha in points:
        runs = both.where(lr=lr, alpha=alpha)
        if not runs:
            raise ValueError(f"point {(lr, alpha)} is not in the stored L2-SP runs: lr from {both.unique('lr')}, "
                             f"alpha from {both.unique('alpha')}")
        near = [r for r in curve.unique("lr") if r < below and abs(100 * (runs.mean("val_accuracy")
                                                                      - curve.mean("val_accuracy", lr=r))) <= close]
        if not near:
            lines.append(f"  L2-SP {alpha:g} at lr {lr:g}: no lower no-penalty rate within {close:g} points")
        for rate in near:
            digits, digits_text = paired(runs, curve.where(lr=rate), "val_accuracy")
            letters, letters_text = paired(runs, curve.where(lr=rate), "retention")
            pairs[(lr, alpha, rate)] = (digits, letters, stats.verdict(letters)[2])
            lines += [f"  L2-SP {alpha:g} at lr {lr:g} minus no penalty at lr {rate:g}:",
                      f"    validation digits  {digits_text}", f"    letters kept       {letters_text}"]
    return SimpleNamespace(pairs=pairs, text="\n".join(lines))


def joint_choice(both: Results) -> SimpleNamespace:
    """The (rate, strength) chosen jointly on validation over every point of ``both`` (:func:`rate_trace`) by the
    course's one rule, :func:`records.choose` (the lower rate and the weaker strength first, so ties go to them):
    ``lr``, ``alpha`` and a printable ``text``."""
    lr, alpha = records.choose(both, "point")
    runs = both.where(lr=lr, alpha=alpha)
    text = (f"(rate, strength) chosen jointly on validation over both rates and every strength (records.choose): "
            f"lr {lr:g}, alpha {alpha:g}: validation digits {runs.mean('val_accuracy'):.1%}, letters kept "
            f"{runs.mean('retention'):.1%}")
    return SimpleNamespace(lr=lr, alpha=alpha, text=text)


def trace_table(table) -> Results:
    """Every penalty at every strength of its grid, from the tuning table's stored validation records (nothing
    retrains): one record per penalty, strength and seed, with ``setting`` and the measures (letters kept...)."""
    return Results({**r, "penalty": penalty, "setting": f"{penalty} {r['alpha']:g}"}
                   for penalty, key in TRACED.items() for r in table.results(key))


def show_trace(trace: Results, free: Results) -> str:
    """Per penalty and strength: validation digits and letters kept (mean ± std over seeds), the backbone's drift
    ``||w - w0||`` (mean; how far it moved at all), and the letters kept minus no penalty's (``free``: its stored
    runs at its chosen rate) per seed."""
    base = {r["seed"]: r for r in free}
    lines = [f"{'setting':<14}{'validation digits':>19}{'letters kept':>16}{'drift':>10}   letters kept minus no "
             "penalty, per seed"]
    lines.append(f"{'none':<14}{records.spread(free.mean('val_accuracy'), free.std('val_accuracy')):>19}"
                 f"{records.spread(free.mean('retention'), free.std('retention')):>16}{free.mean('drift'):>10.3g}")
    for setting in trace.unique("setting"):
        runs = trace.where(setting=setting)
        gains = [r["retention"] - base[r["seed"]]["retention"] for r in runs]
        lines.append(f"{setting:<14}{records.spread(runs.mean('val_accuracy'), runs.std('val_accuracy')):>19}"
                     f"{records.spread(runs.mean('retention'), runs.std('retention')):>16}{runs.mean('drift'):>10.3g}"
                     f"   {points(gains)}")
    return "\n".join(lines)


def letters_verdicts(trace: Results, free: Results, penalties: tuple[str, ...] = ("decay", "l2")) -> str:
    """The settings of ``penalties`` in the trace grouped by the verdict (:func:`ftlib.stats.verdict`) on their
    letters kept minus no penalty's (``free``), paired by seed over the table's seeds: which the seeds resolve."""
    unknown = set(penalties) - set(trace.unique("penalty"))
    if unknown:
        raise ValueError(f"penalties {sorted(unknown)} are not in the trace: choose from {trace.unique('penalty')}")
    base = {r["seed"]: r["retention"] for r in free}
    groups: dict[str, list[str]] = {}
    for setting in (s for p in penalties for s in trace.where(penalty=p).unique("setting")):
        mean, half, word = stats.verdict([r["retention"] - base[r["seed"]] for r in trace.where(setting=setting)])
        groups.setdefault(word, []).append(f"{setting} ({records.spread(mean, half, sign='+')})")
    return (f"{', '.join(NAMES[p] for p in penalties)}: letters kept minus no penalty, mean ± 95% interval over "
            "the table's seeds, by verdict:\n"
            + "\n".join(f"  {word}: {', '.join(items)}" for word, items in groups.items()))


def no_ops(trace: Results, free: Results, tolerance: float = 0.005) -> SimpleNamespace:
    """The settings of the trace whose validation digits and letters kept are both within ``tolerance`` (a
    fraction; 0.005 is one validation image in 200) of no penalty's (``free``) in every seed: at this rate they change
    nothing measurable. Returns ``settings`` and a printable ``text`` with each one's largest gap."""
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance must be a fraction in [0, 1), got {tolerance!r}")
    base = {r["seed"]: r for r in free}
    gaps = {s: [max(abs(r[m] - base[r["seed"]][m]) for r in trace.where(setting=s))
                for m in ("val_accuracy", "retention")] for s in trace.unique("setting")}
    settings = [s for s, g in gaps.items() if max(g) <= tolerance + 1e-9]
    listed = ", ".join(f"{s} (largest gaps {100 * gaps[s][0]:.1f} and {100 * gaps[s][1]:.1f})" for s in settings)
    text = (f"within {100 * tolerance:g} points of no penalty in every seed, validation digits and letters kept "
            f"(no-ops at this rate, on the table's seeds): " + (listed or "none"))
    return SimpleNamespace(settings=settings, text=text)


def plot_trace(trace: Results, free: Results, chosen: dict[str, float], rates: Results | None = None) -> None:
    """Letters kept against validation digits, one curve per penalty over its strengths (means over seeds, bars: the
    letters kept's std; each point labelled with its strength, the chosen one circled), no penalty as a black star
    (without a bar, so that the labels of the weakest strengths, which sit on it, stay readable) and, if given, no
    penalty over its ``rates`` (:func:`rate_curve`) as a dashed grey curve, each point labelled with its rate."""
    fig, ax = plt.subplots(figsize=(10.5, 4.6))
    labelled: list[tuple[str, float, float, str]] = []
    for penalty in trace.unique("penalty"):
        runs = trace.where(penalty=penalty)
        strengths = runs.unique("alpha")
        xs = [100 * runs.mean("val_accuracy", alpha=a) for a in strengths]
        ys = [100 * runs.mean("retention", alpha=a) for a in strengths]
        ax.errorbar(xs, ys, yerr=[100 * runs.std("retention", alpha=a) for a in strengths], fmt="-o", ms=4, capsize=2,
                    color=COLOURS[penalty], label=NAMES[penalty], alpha=0.85)
        for a, x, y in zip(strengths, xs, ys):
            labelled.append((f"{a:g}", x, y, COLOURS[penalty]))
            if a == chosen[penalty]:
                ax.plot(x, y, "o", ms=11, mfc="none", mec=COLOURS[penalty], mew=1.5)
    if rates is not None:
        lrs = rates.unique("lr")
        xs = [100 * rates.mean("val_accuracy", lr=lr) for lr in lrs]
        ys = [100 * rates.mean("retention", lr=lr) for lr in lrs]
        ax.plot(xs, ys, "--s", ms=4, color="grey", label="no penalty over its rates (lr)")
        labelled += [(f"lr {lr:g}", x, y, "grey") for lr, x, y in zip(lrs, xs, ys)]
    ax.plot(100 * free.mean("val_accuracy"), 100 * free.mean("retention"), "*", ms=12, color="k",
            label="no penalty (its std: the table under the plot)")  # no bar: the strengths' labels stay clear
    _annotate_apart(ax, *(list(column) for column in zip(*_merged(labelled))),
                    avoid=[(100 * free.mean("val_accuracy"), 100 * free.mean("retention"))])
    ax.set(xlabel="validation digits (%)", ylabel="letters kept, as fine-tuned (%)",
           title="Each penalty over its strengths (circled: chosen on validation; bars: std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # outside: no point hides under it
    plt.show()


def _merged(labelled: list[tuple[str, float, float, str]], close: float = 0.8) -> list[tuple[str, float, float, str]]:
    """Points of one colour within ``close`` (in both axes' units) of the previous one share one label
    (``"0.01, 0.1"``), so that labels do not pile up where a curve bunches."""
    merged: list[tuple[str, float, float, str]] = []
    for text, x, y, colour in labelled:
        if merged and merged[-1][3] == colour and abs(merged[-1][1] - x) < close and abs(merged[-1][2] - y) < close:
            merged[-1] = (f"{merged[-1][0]}, {text}", *merged[-1][1:])
        else:
            merged.append((text, x, y, colour))
    return merged


_OFFSETS = [(6, 4), (6, -12), (-6, 4), (-6, -12), (6, 15), (-6, 15), (6, -23), (-6, -23), (10, 27), (-10, 27),
            (10, -35), (-10, -35), (14, 40), (-14, 40), (14, -48), (-14, -48)]  # points from the labelled point


def _annotate_apart(ax: plt.Axes, labels: list[str], xs: list[float], ys: list[float], colours: list[str],
                    avoid: list[tuple[float, float]] = ()) -> None:
    """Label points, each at the first of :data:`_OFFSETS` where its text stays inside the axes and covers no label
    placed before and no point (the labelled ones and ``avoid``, in data units); a label set away from its point
    gets a thin line to it. Set the axes' limits before calling: the placement is measured on the drawn figure."""
    renderer = ax.figure.canvas.get_renderer()
    ax.get_xlim(), ax.get_ylim()  # settles the autoscaled limits before measuring
    frame = ax.get_window_extent(renderer)
    marks = ax.transData.transform([*zip(xs, ys), *avoid])
    taken = []
    for text, x, y, colour in zip(labels, xs, ys, colours):
        for dx, dy in _OFFSETS:
            note = ax.annotate(text, (x, y), textcoords="offset points", xytext=(dx, dy), fontsize=8, color=colour,
                               ha="left" if dx > 0 else "right",
                               arrowprops=dict(arrowstyle="-", lw=0.5, color=colour) if abs(dy) > 12 else None)
            box = note.get_window_extent(renderer).padded(2)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(t) for t in taken) and not any(box.contains(*m) for m in marks):
                break
            note.remove()
        else:  # nowhere free: the first place
            note = ax.annotate(text, (x, y), textcoords="offset points", xytext=_OFFSETS[0], fontsize=8, color=colour)
            box = note.get_window_extent(renderer)
        taken.append(box)


def plot_statistics(results: Results, shipped: float) -> None:
    """Letters kept per setting as is and with the letters' BatchNorm statistics, beside the shipped model."""
    fig, ax = plt.subplots(figsize=(11, 3.8))
    settings = results.unique("setting")
    for k, (metric, text) in enumerate([("retention", "as fine-tuned (digits' BN statistics)"),
                                        ("retention_bn", "letters' BN statistics re-estimated")]):
        means = [100 * results.mean(metric, setting=s) for s in settings]
        stds = [100 * results.std(metric, setting=s) for s in settings]
        ax.bar([i + 0.4 * (k - 0.5) for i in range(len(settings))], means, width=0.4, yerr=stds, capsize=3,
               color=[COLOURS[results.where(setting=s)[0]["penalty"]] for s in settings],
               alpha=0.45 if k == 0 else 0.95, label=text, edgecolor="k", lw=0.5)
    ax.axhline(100 * shipped, color="k", ls=":", lw=1, label=f"shipped model: {shipped:.1%}")
    ax.set_xticks(range(len(settings)), settings)
    ax.set_ylim(0, 100)  # from zero: the bars' heights compare
    ax.set(ylabel="letters kept (%)",
           title="Letters kept as fine-tuned (pale) and with the letters' BatchNorm statistics re-estimated (dark)")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=3)
    plt.show()


def show_difference(results: Results, metric: str) -> None:
    """Per penalty: ``metric`` minus no penalty's in the same seed (bars: mean; dots: seeds), on a zoomed axis."""
    title, percent = COLUMNS[metric]
    scale, unit = (100, "points") if percent else (1, "")
    penalties = [p for p in PENALTIES if p != "none" and results.where(penalty=p)]
    fig, ax = plt.subplots(figsize=(8, 3.4))
    print(f"{metric} = {title}: minus no penalty, per seed{' (' + unit + ')' if unit else ''}:")
    for i, penalty in enumerate(penalties):
        alpha = max(results.where(penalty=penalty).unique("alpha"))
        gaps = [scale * d for d in _minus_none(results, penalty, alpha, metric)]
        ax.bar(i, fmean(gaps), color=COLOURS[penalty], alpha=0.8)
        ax.plot([i] * len(gaps), gaps, "k.", ms=6)
        print(f"  {NAMES[penalty]} {alpha:g}: " + ", ".join(f"{g:+.1f}" if percent else f"{g:+.3f}" for g in gaps))
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(range(len(penalties)), [f"{NAMES[p]} {max(results.where(penalty=p).unique('alpha')):g}"
                                          for p in penalties], fontsize=9)
    ax.set(ylabel=f"minus no penalty{' (' + unit + ')' if unit else ''}",
           title=f"{title}: each penalty minus no penalty (bars: mean; dots: seeds)")
    ax.grid(axis="y", alpha=0.3)
    plt.show()


def _minus_none(results: Results, penalty: str, alpha: float, metric: str) -> list[float]:
    return [results.values(metric, penalty=penalty, alpha=alpha, seed=s)[0] - results.values(metric, penalty="none",
            seed=s)[0] for s in results.unique("seed")]


LETTERS_USED = 1300  # test letters that measure retention (every 4th: 25 per class)


def shipped_retention() -> float:
    """The shipped model's accuracy on the letters that measure retention: the most any run can keep."""
    head, letters, _ = _source()
    return evaluate(_shipped(), letters).accuracy


def _rates_sum(lr: float, steps: int) -> float:
    """Sum of the one-cycle rates over ``steps`` at peak rate ``lr``: how far Adam's steps of about the rate each
    can move one weight, and what weight decay's shrink ``exp(-lambda * sum)`` follows."""
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=lr)
    schedule = make_schedule("onecycle", optimizer, steps)
    total = 0.0
    for _ in range(steps):
        total += optimizer.param_groups[0]["lr"]
        optimizer.step()
        schedule.step()
    return total


def stored(table, keys: dict[str, str]) -> Results:
    """The tuning table's stored validation records of the arms ``keys`` (``{setting: key}``) at their chosen
    points, each with its ``setting`` and ``penalty``: nothing retrains."""
    return Results({**r, "setting": setting, "penalty": table.arm(key).fixed["penalty"]}
                   for setting, key in keys.items() for r in table.records(key))


def explain_drift(table, trace: Results) -> str:
    """Why weight decay and L2 in the loss drift as they do, from the stored runs: the decay's predicted shrink
    against the measured drift, and L2's drift over its strengths against Adam's pace."""
    decay = table.arm("05 weight decay 10, shown").fixed
    total = _rates_sum(decay["lr"], decay["steps"])
    w0 = torch.cat([w.flatten() for w in starting_point(_shipped()).values() if _is_weight(w)])  # what they hold
    kept = math.exp(-decay["alpha"] * total)
    l2 = trace.where(penalty="l2")
    strengths = l2.unique("alpha")
    drifts = [l2.mean("drift", alpha=a) for a in strengths]
    bound = float(w0.abs().clamp(max=total).square().sum().sqrt())
    return "\n".join([
        f"weight decay {decay['alpha']:g} at lr {decay['lr']:g}: the decay alone shrinks every convolution weight to "
        f"{kept:.0%} "
        f"of itself (exp(-lambda * sum of the {decay['steps']} rates, {total:.3f})), a drift of "
        f"{(1 - kept) * float(w0.norm()):.1f}; measured {table.records('05 weight decay 10, shown').mean('drift'):.1f}",
        f"{NAMES['l2']}: drift " + ", ".join(f"{d:.1f} at {a:g}" for a, d in zip(strengths, drifts))
        + f": x{strengths[-1] / strengths[0]:g} the strength, x{drifts[-1] / drifts[0]:.1f} the drift",
        f"Adam moves a weight by about the rate at most per step: moving every convolution weight {total:.3f} towards "
        f"zero (and no further) is a drift of {bound:.1f}"])


def affordable(trace: Results, free: Results, budget: float) -> SimpleNamespace:
    """Per penalty, the strongest strength of its grid whose validation digits (mean over the table's seeds) stay
    within ``budget`` points of no penalty's (``free``), and the letters kept there minus no penalty's, per seed:
    the penalties compared at (about) equal validation accuracy. ``strength`` maps each penalty to it (None if even
    the weakest costs more); ``gains`` to its per-seed letters kept minus no penalty's; ``text`` says it."""
    floor = free.mean("val_accuracy") - budget / 100
    base = {r["seed"]: r["retention"] for r in free}
    strength, gains, lines = {}, {}, []
    for penalty in trace.unique("penalty"):
        runs = trace.where(penalty=penalty)
        within = [a for a in runs.unique("alpha") if runs.mean("val_accuracy", alpha=a) >= floor]  # weakest first
        strength[penalty] = within[-1] if within else None
        if strength[penalty] is None:
            lines.append(f"  {NAMES[penalty]}: every strength costs more than {budget:g} points")
            continue
        chosen = runs.where(alpha=strength[penalty])
        gains[penalty] = [r["retention"] - base[r["seed"]] for r in chosen]
        lines.append(f"  {NAMES[penalty] + ' ' + format(strength[penalty], 'g'):<28}validation "
                     f"{chosen.mean('val_accuracy'):.1%}, letters kept {chosen.mean('retention'):.1%}; minus no "
                     f"penalty per seed: {points(gains[penalty])}")
    head = (f"no penalty: validation {free.mean('val_accuracy'):.1%}, letters kept {free.mean('retention'):.1%}. "
            f"Each penalty at its strongest strength within {budget:g} point(s) of validation digits:")
    return SimpleNamespace(strength=strength, gains=gains, text="\n".join([head, *lines]))


def unseen_text(outside: Results, labels: list[str]) -> str:
    """On the :func:`held_out` seeds: each of the settings ``labels`` minus no penalty (setting ``"none"``),
    validation digits and letters kept, per seed with the mean's 95% interval and verdict."""
    free = outside.where(setting="none")
    lines = [f"seeds {', '.join(str(s) for s in free.unique('seed'))} (never in the tuning table), minus no "
             "penalty in the same seed:"]
    for setting in labels:
        runs = outside.where(setting=setting)
        lines += [f"  {NAMES[runs[0]['penalty']] + ' ' + format(runs[0]['alpha'], 'g'):<28}validation digits "
                  f"{paired(runs, free, 'val_accuracy')[1]}",
                  f"  {'':<28}letters kept      {paired(runs, free, 'retention')[1]}"]
    return "\n".join(lines)


def split_forgetting(results: Results, shipped: float) -> str:
    """Per setting: letters lost (shipped minus kept), and how much of it the letters' BatchNorm statistics give
    back (means over seeds, in points)."""
    lines = [f"{'setting':<26}{'lost':>8}{'in BN statistics':>19}{'in the weights':>17}"]
    for s in results.unique("setting"):
        lost = 100 * (shipped - results.mean("retention", setting=s))
        weights = 100 * (shipped - results.mean("retention_bn", setting=s))
        lines.append(f"{s:<26}{lost:>8.1f}{lost - weights:>19.1f}{weights:>17.1f}")
    return "\n".join(lines)


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    for rank, i in enumerate(order):
        ranks[i] = float(rank)
    return ranks


def rank_correlation(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation of two equally long lists (no ties expected)."""
    rx, ry = _ranks(xs), _ranks(ys)
    mx, my = fmean(rx), fmean(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    return cov / (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5


def rank_agreement(results: Results, target: str, measures: list[str]) -> dict[str, float]:
    """Rank correlation, over the settings (means over seeds), between ``target`` and each of ``measures``."""
    settings = results.unique("setting")
    ys = [results.mean(target, setting=s) for s in settings]
    return {m: rank_correlation([results.mean(m, setting=s) for s in settings], ys) for m in measures}


def paired(first: Results, second: Results, metric: str = "accuracy") -> tuple[list[float], str]:
    """Per seed, ``metric`` of ``first`` minus ``second`` (records paired by seed), and a line with their mean, its
    95% interval and :func:`ftlib.stats.verdict`'s word."""
    other = {r["seed"]: r[metric] for r in second}
    differences = [r[metric] - other[r["seed"]] for r in first]
    mean, half, word = stats.verdict(differences)
    return differences, (f"{points(differences)}; mean {records.spread(mean, half, sign='+', unit=' points')} "
                         f"(95% interval): {word}")


def _cost(outside: Results, setting: str) -> tuple[list[float], tuple[float, float, str]]:
    """Per unseen seed, ``setting``'s validation digits minus no penalty's (points), and their verdict."""
    differences = [100 * d for d in paired(outside.where(setting=setting), outside.where(setting="none"),
                                           "val_accuracy")[0]]
    return differences, stats.verdict(differences)


def _lowest_minus_highest(runs: Results, floor: float = 0.0, kept: str = "l2sp") -> list[float]:
    """Per seed: the fewest letters kept by any setting of penalty ``kept`` of strength ``floor`` or more minus the
    most kept by any other setting run there, no penalty included (it stands for the strengths that change nothing).
    Positive in a seed: every such ``kept`` setting keeps more there than no penalty and every other penalty."""
    if not any(r["penalty"] == kept and r["alpha"] >= floor for r in runs):
        raise ValueError(f"floor={floor!r} leaves no {kept} setting: give a strength at most the strongest run")
    seeds = runs.unique("seed")
    return [min(r["retention"] for r in runs if r["penalty"] == kept and r["alpha"] >= floor and r["seed"] == s)
            - max(r["retention"] for r in runs if r["penalty"] != kept and r["seed"] == s) for s in seeds]


def _seeds(runs: Results) -> str:
    return ", ".join(str(s) for s in runs.unique("seed"))


def check_claims(outside: Results, rescue: Results, strengths: dict[str, float], shipped: float, trace: Results,
                 free: Results, invariance: SimpleNamespace, lower: SimpleNamespace | None = None) -> SimpleNamespace:
    """The lesson's claims, on seeds the tuning table never saw where they are about runs: printed ``lines``,
    ``checks`` (name, holds, detail) and a ``headline``.

    ``outside``: :func:`held_out` runs of ``"none"``, each penalty at ``strengths`` (chosen within the budget on
    the table's seeds; setting ``"<penalty> <alpha>"``), L2-SP at the weakest strength of its grid, ``"l2sp 0.1"``,
    ``"l2sp 1000"``, ``"decay 10"`` and ``"decay_all 10"``; ``rescue``: the runs at the too-high rate (``penalty``
    ``"none"`` and ``"l2sp"``); ``trace``: every strength of every penalty on the table's seeds
    (:func:`trace_table`); ``free``: no penalty's stored runs on the same seeds; ``invariance``:
    :func:`shrunk_batchnorm` at the shrink of gamma and beta measured under ``"decay_all 10"``; ``lower``
    (optional): :func:`against_lower_rates`, whose letters kept verdicts the headline states apart."""
    none = outside.where(setting="none")
    seeds = _seeds(none)
    rate = none[0]["lr"]  # no penalty's chosen rate: every penalty of ``outside`` ran at it
    high_rate = rescue[0]["lr"]
    floor = strengths["l2sp"]  # L2-SP's strongest strength within the budget
    stored = Results([*trace, *({**r, "penalty": "none", "alpha": 0.0, "setting": "none"} for r in free)])
    apart_table, apart_unseen = _lowest_minus_highest(stored, floor), _lowest_minus_highest(outside, floor)
    apart_mean, apart_half, apart_word = stats.verdict(apart_unseen)  # judged on the seeds the table never saw
    l2sp_settings = [s for s in outside.unique("setting") if outside.where(setting=s)[0]["penalty"] == "l2sp"
                     and outside.where(setting=s)[0]["alpha"] >= floor]
    other_settings = [s for s in outside.unique("setting") if outside.where(setting=s)[0]["penalty"] != "l2sp"]
    weakest = min(trace.where(penalty="l2sp").unique("alpha"))  # validation's choice: the edge of the grid
    weakest_table = paired(stored.where(penalty="l2sp", alpha=weakest), stored.where(penalty="none"), "retention")[0]
    weakest_unseen, weakest_text = paired(outside.where(setting=f"l2sp {weakest:g}"), none, "retention")
    weak_mean, weak_half, weak_word = stats.verdict(weakest_unseen)
    budget_cost, (budget_mean, budget_half, budget_word) = _cost(outside, f"l2sp {floor:g}")
    costs = {a: _cost(outside, f"l2sp {a:g}") for a in (weakest, 0.1, 1000)}
    middle = costs[0.1][0]  # per unseen seed, the middle strength's cost (points)
    middle_minus = {a: paired(outside.where(setting="l2sp 0.1"), outside.where(setting=f"l2sp {a:g}"),
                              "val_accuracy") for a in (weakest, 1000)}
    middle_mean, middle_half, middle_word = stats.verdict(middle_minus[1000][0])
    conv, naive = outside.where(setting="decay 10"), outside.where(setting="decay_all 10")
    layers = list(none[0]["layers"])
    shrink = [conv[i]["layers"][k]["norm"] / none[i]["layers"][k]["norm"] for i in range(len(none)) for k in layers]
    turn = [fmean(conv[i]["layers"][k]["turn"] / none[i]["layers"][k]["turn"] for i in range(len(none)))
            for k in layers]
    bn_turn = [naive[i]["layers"][k]["bn_turn"] / conv[i]["layers"][k]["bn_turn"] for i in range(len(none))
               for k in layers]
    lost_to_gamma = [c["retention"] - a["retention"] for c, a in zip(conv, naive)]
    lost_to_conv = [f["retention"] - c["retention"] for f, c in zip(none, conv)]
    gamma_share = fmean(lost_to_gamma) / (fmean(lost_to_gamma) + fmean(lost_to_conv))
    shares = [g / (g + c) for g, c in zip(lost_to_gamma, lost_to_conv)]
    strong = outside.where(setting="l2sp 1000")
    from_shipped = [shipped - r["retention_bn"] for r in strong]
    in_statistics = [r["retention_bn"] - r["retention"] for r in strong]
    digits, _ = paired(rescue.where(penalty="l2sp"), rescue.where(penalty="none"))
    letters, _ = paired(rescue.where(penalty="l2sp"), rescue.where(penalty="none"), "retention")
    unchanged = invariance.every_block - invariance.shipped

    lines = [
        f"L2-SP from {floor:g} up (the strongest within the budget) minus no penalty and every weight decay or L2 "
        f"strength, letters kept (fewest of those L2-SP settings minus most of the others, per seed): on the "
        f"table's seeds, every strength of the trace: {points(apart_table)}",
        f"  on unseen seeds {seeds}, {', '.join(l2sp_settings)} against {', '.join(other_settings)}: "
        f"{points(apart_unseen)}; mean {records.spread(apart_mean, apart_half, sign='+', unit=' points')} "
        f"(95% interval): {apart_word}",
        f"L2-SP {weakest:g} (validation's choice, the weakest of the grid) minus no penalty, letters kept: on the "
        f"table's seeds {points(weakest_table)}; on unseen seeds {seeds}: {weakest_text}",
        f"L2-SP {floor:g}, validation digits minus no penalty on seeds {seeds}: "
        f"{', '.join(f'{c:+.1f}' for c in budget_cost)} points; mean {budget_mean:+.1f} ± {budget_half:.1f} points "
        f"(95% interval): {budget_word}",
        f"L2-SP's validation digits minus no penalty's on the unseen seeds, at lr {rate:g} (points): " + "; ".join(
            f"alpha {a:g} {', '.join(f'{c:+.1f}' for c in costs[a][0])}" for a in costs),
        *(f"  alpha 0.1 minus alpha {a:g}, validation digits: {text}" for a, (_, text) in middle_minus.items()),
        f"weight decay 10 on the convolutions, over no penalty: every convolution's norm x{min(shrink):.2f} to "
        f"x{max(shrink):.2f}; per layer, a step turns it x{min(turn):.2f} to x{max(turn):.2f} as far on average; "
        f"letters kept {points(-d for d in lost_to_conv)}",
        f"weight decay 10 on every parameter minus on the convolutions only: letters kept "
        f"{points(-d for d in lost_to_gamma)}; (gamma, beta) turn per step x{min(bn_turn):.1f} to "
        f"x{max(bn_turn):.1f} (every layer and seed); gamma/beta's share of what the naive AdamW loses: "
        f"{', '.join(f'{s:.0%}' for s in shares)} per seed, {gamma_share:.0%} of the mean loss",
        f"  a demonstration, not a finding (BatchNorm divides a uniform scale out): {invariance.text}",
        f"L2-SP 1000, letters' BN statistics: {points(-d for d in from_shipped)} from the shipped model; the "
        f"statistics alone give back {points(in_statistics)}",
        f"lr {high_rate:g} (too high for no penalty), L2-SP minus no penalty: digits test {points(digits)}; "
        f"letters kept {points(letters)}"]
    checks = [
        (f"L2-SP from {floor:g} up keeps more letters than no penalty and every weight decay or L2 strength, in "
         "every seed (the table's and unseen), by a margin the unseen seeds resolve",
         all(a > 0 for a in apart_table + apart_unseen) and apart_word == "helps",
         f"{apart_table}, {apart_unseen}, {apart_word}"),
        (f"at lr {rate:g}, L2-SP's cost in digits is not monotone: alpha 0.1 costs validation digits, and more than "
         "the weakest and 1000, in every unseen seed", all(c < 0 for c in middle) and all(m < min(w, f) for m, w, f in
                                          zip(middle, costs[weakest][0], costs[1000][0])),
         f"{ {a: c[0] for a, c in costs.items()} }"),
        ("weight decay on the convolutions shrinks each and turns it further per step, and costs letters",
         all(s < 0.5 for s in shrink) and all(t > 1 for t in turn) and all(d > 0 for d in lost_to_conv),
         f"{shrink}, {turn}, {lost_to_conv}"),
        ("decaying gamma/beta too costs letters beyond decaying the convolutions alike, more than half of what "
         "the naive AdamW loses on average, and turns (gamma, beta) further per step",
         all(g > 0 for g in lost_to_gamma) and gamma_share > 0.5 and all(t > 1 for t in bn_turn),
         f"{lost_to_gamma}, {gamma_share}, {bn_turn}"),
        ("demonstration: shrinking gamma and beta alone changes nothing once the statistics follow",
         abs(unchanged) < 0.01 and invariance.kept_statistics < invariance.shipped - 0.2, f"{invariance}"),
        ("strong L2-SP forgets mostly BatchNorm statistics", all(d < 0.02 for d in from_shipped)
         and all(g > 0.02 for g in in_statistics), f"from shipped {from_shipped}, statistics {in_statistics}"),
        (f"at lr {high_rate:g} (too high for no penalty) L2-SP keeps far more letters", all(k > 0.5 for k in letters)
         and stats.verdict(letters)[2] == "helps", f"letters {letters}"),
    ]
    n_seeds = len(apart_table) + len(apart_unseen)
    head = (f"at lr {rate:g}, L2-SP from alpha {floor:g} up keeps more letters than no penalty at that rate and "
            f"every weight decay or L2 strength on the table's seeds, and than the {len(other_settings)} other "
            f"settings run on unseen seeds ({n_seeds}/{n_seeds} seeds; unseen seeds {100 * apart_mean:+.1f} ± "
            f"{100 * apart_half:.1f} points, {apart_word}); alpha {floor:g}'s validation digits minus no penalty's "
            f"on unseen seeds: {budget_mean:+.1f} ± {budget_half:.1f} points ({budget_word}); validation's choice, "
            f"its weakest {weakest:g}, keeps {100 * weak_mean:+.1f} ± {100 * weak_half:.1f} points over no penalty "
            f"({weak_word}); at lr {rate:g} L2-SP's digits cost most at alpha 0.1 in every unseen seed (minus 1000: "
            f"{100 * middle_mean:+.1f} ± {100 * middle_half:.1f} points, {middle_word}); decaying BatchNorm's "
            "gamma/beta costs "
            f"{100 * fmean(lost_to_gamma):.0f} points of letters more than the convolutions alone, with (gamma, beta) "
            f"turning x{min(bn_turn):.1f} or more further per step; at lr {high_rate:g} (too high for no penalty) "
            "L2-SP keeps "
            f"{100 * fmean(letters):+.0f} points more letters than no penalty, its digits "
            f"{100 * fmean(digits):+.1f} points ({stats.verdict(digits)[2]})")
    if lower is not None:
        head += "; against no penalty at a lower rate with similar validation digits, letters kept: " + "; ".join(
            f"L2-SP {alpha:g} at lr {lr:g} minus lr {rate:g} {100 * stats.verdict(letters)[0]:+.1f} ± "
            f"{100 * stats.verdict(letters)[1]:.1f} points ({word})"
            for (lr, alpha, rate), (_, letters, word) in lower.pairs.items())
    return SimpleNamespace(lines=lines, checks=checks, headline=head)


LIVE_STRENGTHS = [0, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10]  # the live slider's L2-SP strengths


@functools.cache
def validation_letters() -> ImageSet:
    """1,300 freshly drawn labelled letters (seed :data:`VAL_LETTERS_SEED`), not test ones: the letters kept that a
    choice may read (a slider, an exercise), so that no choice reads the test letters the lesson reports on."""
    images, labels = next(data.letter_batches(LETTERS_USED, VAL_LETTERS_SEED))
    return ImageSet(images, labels, data.test_set("letters").classes, "validation letters")


def live_l2sp(alpha: float, lr: float = 3e-2, steps: int = 100, seed: int = 0, n: int = 5) -> None:
    """The live slider's run: fine-tune ``seed`` (one seed only) for ``steps`` steps at rate ``lr`` under L2-SP of
    strength ``alpha`` (0: no penalty), for real, and print what a choice may read: the validation digits and the
    letters kept on :func:`validation_letters` (never the test digits or the test letters), and the drift."""
    start: dict = {}
    train_set, val_set = data.few_shot_split("mnist", n, N_VAL, seed)
    model = run("fine-tune", train_set, seed, steps, lr=lr,
                prepare=_holding("l2sp" if alpha else "none", float(alpha), start)).model
    kept = retention(model, _source()[0], validation_letters())
    print(f"L2-SP strength alpha = {alpha}")
    print(f"seed {seed} only, {steps} steps at lr={lr:g}: validation digits {evaluate(model, val_set).accuracy:.1%}; "
          f"validation letters kept {kept:.1%} (fresh letters, not the test ones); drift ||w - w0|| "
          f"{drift(model, start):.3g}")
