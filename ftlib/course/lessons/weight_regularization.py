"""Lesson 05's driver: fine-tune under no penalty, decoupled weight decay, L2 in the loss, or L2-SP, and measure
target accuracy (validation and test), drift (Euclidean and per layer) and retention of the letters task."""

from __future__ import annotations

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
from ftlib.course.runner import points
from ftlib.data import ImageSet
from ftlib.evaluation import evaluate
from ftlib.models import load_pretrained
from ftlib.regularize import L2SP, L2Penalty, drift, layer_drift, output_change, retention, source_probe, starting_point
from ftlib.runtime import model_device
from ftlib.schedules import make_schedule

__all__ = ["COLOURS", "COLUMNS", "HEAD_DECAY", "LETTERS_USED", "LIVE_STRENGTHS", "NAMES", "N_VAL", "PENALTIES",
           "TRACED", "affordable", "label", "check_claims", "explain_drift", "explain_turning", "live_l2sp", "paired",
           "plot_drift", "plot_statistics", "plot_trace", "rank_agreement", "rank_correlation", "regularized_run",
           "shipped_retention", "show_difference", "show_trace", "split_forgetting", "stored", "summary",
           "trace_table", "turning"]

PENALTIES = ("none", "decay", "l2", "l2sp")
NAMES = {"none": "no penalty", "decay": "weight decay (AdamW)", "l2": "L2 in the loss (Adam)",
         "l2sp": "L2-SP (towards w0)"}
HEAD_DECAY = 1e-3  # beta: the new head is pulled towards zero with this strength under every penalty
_BN_SEED = 5  # the seed of the 520 letters drawn to re-estimate BatchNorm statistics on
N_VAL = 20  # validation digits per class, from the labelled pool, disjoint from the training digits


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


def _decoupled(model: nn.Module, decay: float):
    """AdamW whose decoupled weight decay ``decay`` acts on the backbone only (the head is treated as elsewhere)."""
    return lambda groups: torch.optim.AdamW(
        [{**g, "weight_decay": 0.0 if g.get("name") == "head" else decay} for g in groups])


def _holding(penalty: str, alpha: float, start: dict) -> Callable[[nn.Module], dict]:
    """The ``prepare`` step of a run under ``penalty`` of strength ``alpha``: it keeps the starting weights in
    ``start`` and returns the ``fit`` options that hold the backbone (optimizer and penalty)."""
    if penalty not in PENALTIES:
        raise ValueError(f"unknown penalty {penalty!r}; choose one of {', '.join(PENALTIES)}")

    def prepare(model: nn.Module) -> dict:
        start.update(starting_point(model))
        if penalty == "none":
            return {}
        if penalty == "decay":
            return {"optimizer": _decoupled(model, alpha), "penalty": L2Penalty(0.0, HEAD_DECAY)}
        rule = L2Penalty(alpha, HEAD_DECAY) if penalty == "l2" else L2SP(model, alpha, HEAD_DECAY)
        return {"penalty": rule}

    return prepare


def regularized_run(penalty: str, alpha: float, lr: float, seed: int, n: int = 5, steps: int = 100,
                    target: str = "mnist", n_val: int = N_VAL) -> dict:
    """Fine-tune the shipped model on ``n`` labels per class of ``target`` under a penalty, and measure it.

    ``penalty`` (strength ``alpha`` on the backbone) is ``"none"``; ``"decay"``: AdamW's decoupled weight decay
    (each step shrinks every backbone weight by ``lr * alpha`` of itself); ``"l2"``: ``alpha/2 ||w||^2`` added to
    the loss (Adam then normalises its gradient with the data's); or ``"l2sp"``: ``alpha/2 ||w - w0||^2`` added to
    the loss. The three pull the new head towards zero alike (``HEAD_DECAY``). Returns target ``accuracy`` (test)
    and ``val_accuracy``, ``val_loss`` (``n_val`` held-out labels per class), backbone ``drift`` ``||w - w0||``,
    ``layer_drift`` and ``direction_drift`` (mean over layers of :func:`ftlib.regularize.layer_drift`, plain and
    scale-free), ``output_change`` (KL of the letters predictions from the shipped model's, on 520 unlabelled
    letters that are not test ones, with the letters head and the letters' BatchNorm statistics), and
    ``retention``: letters test accuracy with the letters head put back, as is (``retention``) and with the
    letters' BatchNorm statistics re-estimated (``retention_bn``).
    """
    start = {}
    train_set, val_set = data.few_shot_split(target, n, n_val, seed)
    model = run("fine-tune", train_set, seed, steps, lr=lr, prepare=_holding(penalty, alpha, start)).model
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
            "retention_bn": evaluate(probe, letters).accuracy}


def turning(penalty: str, alpha: float, lr: float, seed: int, n: int = 5, steps: int = 100) -> dict[str, dict]:
    """Fine-tune as :func:`regularized_run` does and follow each convolution's weights ``W`` step by step: per layer,
    ``norm`` (``||W||`` at the end over ``||W0||``), ``mean_norm`` (the same, averaged over the steps), ``across``
    (mean length of the part of a step ``W_t - W_(t-1)`` across ``W``, the part that can turn it; Adam makes it
    about the rate in every weight, whatever their scale) and ``turn`` (mean angle, in degrees, between ``W_(t-1)``
    and ``W_t``: how much a step changes the layer's direction, all a BatchNorm after it lets through)."""
    start: dict = {}
    previous: dict[str, torch.Tensor] = {}
    seen: dict[str, list[tuple[float, float, float]]] = {}

    def follow(model: nn.Module) -> dict:
        for name, weight in model.named_parameters():
            if name not in start or weight.dim() < 4:
                continue
            now, before = weight.detach().flatten().clone(), previous.get(name, start[name].flatten())
            unit = before / before.norm()
            step = now - before
            across = float((step - torch.dot(step, unit) * unit).norm())
            cosine = float(torch.dot(now, unit) / now.norm())
            seen.setdefault(name, []).append((float(now.norm() / start[name].norm()), across,
                                              math.degrees(math.acos(max(-1.0, min(1.0, cosine))))))
            previous[name] = now
        return {}

    run("fine-tune", data.few_shot("mnist", n, seed), seed, steps, lr=lr, prepare=_holding(penalty, alpha, start),
        evaluate=follow, eval_every=1)
    return {name.split(".")[0]: {"norm": rows[-1][0], "mean_norm": fmean(r[0] for r in rows),
                                 "across": fmean(r[1] for r in rows), "turn": fmean(r[2] for r in rows)}
            for name, rows in seen.items()}


def _ratios(runs: dict[str, dict[str, dict]], label: str, base: str, key: str) -> str:
    return ", ".join(f"x{runs[label][k][key] / runs[base][k][key]:.2f}" for k in runs[base])


def explain_turning(runs: dict[str, dict[str, dict]]) -> str:
    """Per layer, for each labelled :func:`turning` run: the norm at the end and on average, the mean step across
    the weights and the mean turn per step; then each run over the first, per layer."""
    labels = list(runs)
    layers = list(runs[labels[0]])
    width = max(len(label) for label in labels) + 2
    lines = [f"{'layer':<8}{'':<{width}}{'||W||/||W0||: end':>19}{'mean':>7}{'step across W':>15}"
             f"{'turn per step':>15}"]
    for layer in layers:
        for k, label in enumerate(labels):
            row = runs[label][layer]
            lines.append(f"{layer if k == 0 else '':<8}{label:<{width}}{row['norm']:>19.2f}{row['mean_norm']:>7.2f}"
                         f"{row['across']:>15.4f}{row['turn']:>14.3f}°")
    base = labels[0]
    for label in labels[1:]:
        lines.append(f"{label} over {base}, layer by layer: mean norm {_ratios(runs, label, base, 'mean_norm')}; "
                     f"step across W {_ratios(runs, label, base, 'across')}; turn per step "
                     f"{_ratios(runs, label, base, 'turn')}")
    return "\n".join(lines)


COLOURS = {"none": "0.35", "decay": "C0", "l2": "C1", "l2sp": "C2"}  # one colour per penalty in every plot
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
        settings = results.unique("setting")
        _annotate_apart(ax, settings, [results.mean(x, setting=s) for s in settings],
                        [100 * results.mean("retention_bn", setting=s) for s in settings],
                        [COLOURS[results.where(setting=s)[0]["penalty"]] for s in settings])
        ax.axhline(100 * shipped, color="k", ls=":", lw=1, label=f"shipped model: {shipped:.1%}")
        ax.set(xlabel=xlabel)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("letters kept, letters' BN statistics (%)")
    axes[0].set_title("Letters kept against Euclidean drift")
    axes[1].set_title("Change of the letters outputs (needs no labels)")
    axes[1].legend(fontsize=8, loc="lower left")
    plt.show()


TRACED = {"decay": "05 weight decay", "l2": "05 L2 in the loss", "l2sp": "05 L2-SP"}  # each penalty's tuned arm


def trace_table(table) -> Results:
    """Every penalty at every strength of its grid, from the tuning table's stored validation records (nothing
    retrains): one record per penalty, strength and seed, with ``setting`` and the measures (letters kept...)."""
    return Results({**r, "penalty": penalty, "setting": f"{penalty} {r['alpha']:g}"}
                   for penalty, key in TRACED.items() for r in table.results(key))


def show_trace(trace: Results, free: Results) -> str:
    """Per penalty and strength: validation digits and letters kept (mean ± std over seeds), and the letters kept
    minus no penalty's (``free``: its stored runs at its chosen rate) per seed."""
    base = {r["seed"]: r for r in free}
    lines = [f"{'setting':<14}{'validation digits':>19}{'letters kept':>16}   letters kept minus no penalty, per seed"]
    lines.append(f"{'none':<14}{records.spread(free.mean('val_accuracy'), free.std('val_accuracy')):>19}"
                 f"{records.spread(free.mean('retention'), free.std('retention')):>16}")
    for setting in trace.unique("setting"):
        runs = trace.where(setting=setting)
        gains = [r["retention"] - base[r["seed"]]["retention"] for r in runs]
        lines.append(f"{setting:<14}{records.spread(runs.mean('val_accuracy'), runs.std('val_accuracy')):>19}"
                     f"{records.spread(runs.mean('retention'), runs.std('retention')):>16}   {points(gains)}")
    return "\n".join(lines)


def plot_trace(trace: Results, free: Results, chosen: dict[str, float]) -> None:
    """Letters kept against validation digits, one curve per penalty over its strengths (means over seeds, bars: the
    letters kept's std; each point labelled with its strength, the chosen one circled), no penalty as a black star."""
    fig, ax = plt.subplots(figsize=(9, 4.6))
    for penalty in trace.unique("penalty"):
        runs = trace.where(penalty=penalty)
        strengths = runs.unique("alpha")
        xs = [100 * runs.mean("val_accuracy", alpha=a) for a in strengths]
        ys = [100 * runs.mean("retention", alpha=a) for a in strengths]
        ax.errorbar(xs, ys, yerr=[100 * runs.std("retention", alpha=a) for a in strengths], fmt="-o", ms=4, capsize=2,
                    color=COLOURS[penalty], label=NAMES[penalty], alpha=0.85)
        for a, x, y in zip(strengths, xs, ys):
            ax.annotate(f"{a:g}", (x, y), textcoords="offset points", xytext=(5, 3), fontsize=8,
                        color=COLOURS[penalty])
            if a == chosen[penalty]:
                ax.plot(x, y, "o", ms=11, mfc="none", mec=COLOURS[penalty], mew=1.5)
    ax.errorbar(100 * free.mean("val_accuracy"), 100 * free.mean("retention"), yerr=100 * free.std("retention"),
                fmt="*", ms=12, color="k", label="no penalty")
    ax.set(xlabel="validation digits (%)", ylabel="letters kept, as fine-tuned (%)",
           title="Each penalty over its strengths (circled: chosen on validation; bars: std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    plt.show()


def _annotate_apart(ax: plt.Axes, labels: list[str], xs: list[float], ys: list[float], colours: list[str]) -> None:
    """Label points; a point close to one already labelled (within 6% of the spread) gets its label lower down."""
    width, height = (max(xs) - min(xs)) or 1.0, (max(ys) - min(ys)) or 1.0
    placed = []
    for text, x, y, colour in zip(labels, xs, ys, colours):
        near = sum(abs(x - px) < 0.06 * width and abs(y - py) < 0.06 * height for px, py in placed)
        ax.annotate(text, (x, y), textcoords="offset points", xytext=(6, 4 - 11 * near), fontsize=8, color=colour)
        placed.append((x, y))


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
    low = min(100 * results.mean("retention", setting=s) - 100 * results.std("retention", setting=s)
              for s in settings)
    ax.set_ylim(max(0.0, low - 5), 100)
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
    w0 = torch.cat([w.flatten() for w in starting_point(_shipped()).values()])
    kept = math.exp(-decay["alpha"] * total)
    l2 = trace.where(penalty="l2")
    strengths = l2.unique("alpha")
    drifts = [l2.mean("drift", alpha=a) for a in strengths]
    bound = float(w0.abs().clamp(max=total).square().sum().sqrt())
    return "\n".join([
        f"weight decay {decay['alpha']:g} at lr {decay['lr']:g}: the decay alone shrinks every weight to {kept:.0%} "
        f"of itself (exp(-lambda * sum of the {decay['steps']} rates, {total:.3f})), a drift of "
        f"{(1 - kept) * float(w0.norm()):.1f}; measured {table.records('05 weight decay 10, shown').mean('drift'):.1f}",
        f"{NAMES['l2']}: drift " + ", ".join(f"{d:.1f} at {a:g}" for a, d in zip(strengths, drifts))
        + f": x{strengths[-1] / strengths[0]:g} the strength, x{drifts[-1] / drifts[0]:.1f} the drift",
        f"Adam moves a weight by about the rate at most per step: moving every backbone weight {total:.3f} towards "
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


def check_claims(trace: Results, free: Results, shown: Results, turns: dict, rescue: Results, budget: float,
                 shipped: float) -> SimpleNamespace:
    """The lesson's claims: printed ``lines``, ``checks`` (name, holds, detail) and a ``headline``.

    ``trace`` and ``free``: the table's runs of each penalty over its strengths and of no penalty; ``shown``: the
    strong settings fixed on purpose (stored); ``turns``: :func:`turning` of no penalty and the strong weight decay;
    ``rescue``: this lesson's runs at the too-high rate (``penalty`` ``"none"`` and ``"l2sp"``)."""
    at_budget = affordable(trace, free, budget)
    others = [p for p in at_budget.gains if p != "l2sp"]
    ahead = [min(at_budget.gains["l2sp"][i] - at_budget.gains[p][i] for p in others)
             for i in range(len(at_budget.gains["l2sp"]))]
    every = [r["retention"] - {f["seed"]: f["retention"] for f in free}[r["seed"]]
             for r in trace.where(penalty="l2sp")]
    none_turn, decay_turn = turns.values()
    layers = list(none_turn)
    l2sp = shown.where(penalty="l2sp")
    from_shipped = [shipped - r["retention_bn"] for r in l2sp]
    in_statistics = [r["retention_bn"] - r["retention"] for r in l2sp]
    digits, _ = paired(rescue.where(penalty="l2sp"), rescue.where(penalty="none"))
    letters, _ = paired(rescue.where(penalty="l2sp"), rescue.where(penalty="none"), "retention")
    lines = [
        f"within {budget:g} point(s) of validation digits, L2-SP's letters kept minus the better of the other two "
        f"penalties', per seed: {points(ahead)}",
        f"L2-SP at every strength of its grid minus no penalty, letters kept: from {100 * min(every):+.1f} to "
        f"{100 * max(every):+.1f} points over {len(every)} runs",
        "weight decay over no penalty (seed 0), per layer: norm x" + ", x".join(
            f"{decay_turn[k]['norm'] / none_turn[k]['norm']:.2f}" for k in layers) + "; turn per step x" + ", x".join(
            f"{decay_turn[k]['turn'] / none_turn[k]['turn']:.2f}" for k in layers),
        f"{l2sp[0]['setting']}, letters' BN statistics: {points(-d for d in from_shipped)} from the "
        f"shipped model; the statistics alone give back {points(in_statistics)}",
        f"too-high rate, L2-SP minus no penalty: digits test {points(digits)}; letters kept {points(letters)}"]
    checks = [
        ("at equal validation cost, L2-SP keeps the most letters", all(a > 0 for a in ahead), f"{ahead}"),
        ("L2-SP keeps more letters than no penalty at every strength", all(g > 0 for g in every), f"{every}"),
        ("strong weight decay shrinks every layer and turns it more per step",
         all(decay_turn[k]["norm"] < none_turn[k]["norm"] and decay_turn[k]["turn"] > none_turn[k]["turn"]
             for k in layers), f"{turns}"),
        ("strong L2-SP forgets mostly BatchNorm statistics", all(d < 0.02 for d in from_shipped)
         and all(g > 0.02 for g in in_statistics), f"from shipped {from_shipped}, statistics {in_statistics}"),
        ("at the too-high rate L2-SP keeps far more letters", all(k > 0.5 for k in letters)
         and stats.verdict(letters)[2] == "helps", f"letters {letters}"),
    ]
    seeds = len(digits)
    head = (f"within {budget:g} point of validation digits, L2-SP keeps {100 * fmean(ahead):+.1f} points more letters "
            f"than weight decay or L2 in the loss ({len(ahead)}/{len(ahead)} table seeds); at a rate 10x too high it "
            f"keeps {100 * fmean(letters):+.0f} points more letters than no penalty ({seeds}/{seeds} seeds), its "
            f"digits {100 * fmean(digits):+.1f} points ({stats.verdict(digits)[2]})")
    return SimpleNamespace(lines=lines, checks=checks, headline=head)


LIVE_STRENGTHS = [0, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10]  # the live slider's L2-SP strengths


def live_l2sp(alpha: float, lr: float = 3e-2, steps: int = 60, seed: int = 0) -> None:
    """The live slider's run: fine-tune seed 0 for ``steps`` steps at the over-aggressive rate under L2-SP of
    strength ``alpha`` (0: no penalty), for real, and print digits test accuracy, letters kept and drift."""
    record = regularized_run("l2sp" if alpha else "none", float(alpha), lr, seed, steps=steps)
    print(f"L2-SP strength alpha = {alpha}")
    print(f"seed {seed}, {steps} steps at lr={lr:g}: digits test {record['accuracy']:.1%}; letters kept "
          f"{record['retention']:.1%} as fine-tuned, {record['retention_bn']:.1%} with the letters' BN statistics; "
          f"drift ||w - w0|| {record['drift']:.3g}")
