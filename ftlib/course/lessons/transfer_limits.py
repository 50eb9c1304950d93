"""Lesson 07's drivers: the ladder of targets with fairly tuned transfer arms, linear probes on each block, and
fine-tuning a sound or a flawed (narrow-source) checkpoint.

:func:`ladder_run` trains one method on one target (the course's methods plus a linear probe on BatchNorm
statistics re-estimated on the target, AdaBN); :func:`probe_run` fits a linear probe on an intermediate block's
features; :func:`flaw_run` fine-tunes either checkpoint and tests on data with the variation the flawed source
lacked, with or without a remedy, from a fresh head or from a linear probe's (LP-FT, the probe fitted after AdaBN).
Every driver takes ``lr`` and ``n_val``, so the tuning table (``_lesson07`` in
:mod:`~ftlib.course.lessons.tuning`) chooses each arm's rate on held-out validation labels; :func:`chosen_name`
picks one arm among several on the table's stored validation runs (the course's one rule).
:func:`rotation_live` (the live slider) fits a probe on each checkpoint and tests both on upright digits turned by
a chosen angle.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from ftlib import augment, data
from ftlib.course.lessons import tuning
from ftlib.course.lessons.experiments import Results, get_method, run, split, validation_scores
from ftlib.course.lessons.records import choose
from ftlib.course.lessons.workers import independent
from ftlib.course.pretrain import checkpoint_path
from ftlib.evaluation import evaluate
from ftlib.freeze import unfreeze
from ftlib.models import pretrained_start
from ftlib.probe import linear_probe
from ftlib.stats import verdict
from ftlib.transfer import adapt_batchnorm, subset, truncate

__all__ = ["FAIR_ARMS", "FLAW_SETTINGS", "HEADS", "LADDER_ARMS", "LIVE_ANGLES", "REMEDIES", "SHIFTED_TEST",
           "TEST_PER_CLASS", "chosen_name", "error_ratios", "flaw_run", "flaw_setting_run", "kumar_reading",
           "ladder_arms", "ladder_run", "log_odds_differences", "plot_rows", "probe_keys", "probe_run", "rotated",
           "rotation_live", "run_at", "run_named", "show_target", "validation_margin"]

REMEDIES = {  # remedy -> (fine-tuning target, augment?, blocks re-initialised)
    "none": ("upright_digits", False, ()),
    "diverse data": ("font_digits", False, ()),
    "augmentation": ("upright_digits", True, ()),
    "re-initialise block4": ("upright_digits", False, ("block4",)),
}
# fine-tune a new head; linear probe; LP-FT (AdaBN, probe, fine-tune); LP-FT's control, its probe on the letters'
# BatchNorm statistics
HEADS = ("fresh", "probe only", "probe, then fine-tune", "probe without AdaBN, then fine-tune")
SHIFTED_TEST = "font_digits"  # rotated, sheared, thick, dim digits: the variation the narrow source lacked
TEST_PER_CLASS = 100  # 1,000 test images per 10-class target: a standard error of about 1.5 points or less
LADDER_ARMS = ("scratch", "linear probe", "fine-tune, low backbone LR")  # on every target of the ladder
FAIR_ARMS = ("fine-tune, one rate", "linear probe, AdaBN")  # on the far target: every block at one tuned rate; AdaBN
LIVE_ANGLES = (0, 15, 30, 45, 60, 90)  # the live slider's angles, in degrees
_HEAD_NAMES = {"": "fresh", ", linear probe": "probe only", ", LP-FT": "probe, then fine-tune"}
FLAW_SETTINGS = {  # the lesson's name of each start and remedy -> flaw_run's (variant, remedy, head)
    **{f"{name}{label}": (variant, "none", head) for name, variant in (("sound", "full"), ("flawed", "narrow"))
       for label, head in _HEAD_NAMES.items()},
    "flawed, LP-FT without AdaBN": ("narrow", "none", "probe without AdaBN, then fine-tune"),
    "sound + augmentation": ("full", "augmentation", "fresh"),
    **{f"flawed + {remedy}": ("narrow", remedy, "fresh") for remedy in list(REMEDIES)[1:]}}


@independent
def ladder_run(method: str, target: str, n: int, seed: int, steps: int = 100, lr: float | dict | None = None,
               n_val: int = 0) -> dict:
    """Train ``method`` on ``n`` labels per class of ``target`` (split ``seed``); test on 100 images per class.

    ``method`` is one of the course's methods (at rate ``lr``, default the method's own) or ``"linear probe,
    AdaBN"``: a linear probe after :func:`ftlib.transfer.adapt_batchnorm` on the ``n``-shot training images (the
    target's BatchNorm statistics, not the letters'). With ``n_val > 0`` also ``val_accuracy`` and ``val_loss`` on
    ``n_val`` held-out labels per class (the training set is the same).
    """
    train_set, val_set = split(target, n, n_val, seed)
    options = {} if lr is None else {"lr": lr}
    if method == "linear probe, AdaBN":
        adapt = lambda m: _no_options(adapt_batchnorm(m, train_set.images))  # noqa: E731
        model = run("linear probe", train_set, seed, prepare=adapt).model
    else:
        model = run(method, train_set, seed, steps, **options).model
    return {"accuracy": evaluate(model, subset(data.test_set(target), TEST_PER_CLASS)).accuracy,
            **validation_scores(model, val_set)}


def _no_options(_model) -> None:
    """``run``'s ``prepare`` may return extra fit options; AdaBN has none."""
    return None


@independent
def probe_run(target: str, n: int, seed: int, block: str, variant: str = "full", test_per_class: int = 100,
              n_val: int = 0) -> dict:
    """A linear probe on the pooled features after ``block`` of a checkpoint, trained on ``n`` labels per class.

    Returns the test ``accuracy``, the ``train_accuracy`` on its own ``n``-shot training images (how well that many
    features can fit them) and, with ``n_val > 0``, the validation scores.
    """
    train_set, val_set = split(target, n, n_val, seed)
    start = truncate(pretrained_start(train_set.num_classes, seed, checkpoint_path(variant)), block)
    model = run("linear probe", train_set, seed, model=start).model
    return {"accuracy": evaluate(model, subset(data.test_set(target), test_per_class)).accuracy,
            "train_accuracy": evaluate(model, train_set).accuracy, **validation_scores(model, val_set)}


def flaw_run(variant: str, remedy: str, seed: int, n: int = 5, steps: int = 100, head: str = "fresh",
             lr: float | dict | None = None, n_val: int = 0) -> dict:
    """Fine-tune checkpoint ``variant`` on ``n`` digits per class the way ``remedy`` says (see :data:`REMEDIES`).

    ``lr`` sets the rates (per block, ``{"backbone": ..., "head": ...}``; default: the course's "fine-tune, low
    backbone LR"); re-initialised blocks train at the head's rate. ``head`` (see :data:`HEADS`): a fresh head
    fine-tuned with the backbone; a linear probe alone (frozen backbone, the letters' BatchNorm statistics); LP-FT
    (Kumar et al. 2022): the BatchNorm statistics re-estimated on the training images first (AdaBN, so the probe's
    head is fitted on the features fine-tuning will normalise alike), then the probe, then fine-tuning from the
    probe's head; or its control, the same without AdaBN. Returns the accuracy on the shifted test set
    (``accuracy``) and on upright digits (``upright_accuracy``), 100 images per class each; with ``n_val > 0`` also
    the validation scores on ``n_val`` held-out labels per class of the fine-tuning data (never the shifted test
    data).
    """
    if remedy not in REMEDIES:
        raise ValueError(f"unknown remedy {remedy!r}; choose one of {', '.join(REMEDIES)}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    target, augmented, reinit = REMEDIES[remedy]
    method = get_method("fine-tune, low backbone LR")
    rates = dict(method.lr if lr is None else lr if isinstance(lr, dict) else {"backbone": lr, "head": lr})
    train_set, val_set = split(target, n, n_val, seed)
    model = pretrained_start(len(data.DIGITS), seed, checkpoint_path(variant), reinit)
    if head == "probe, then fine-tune":
        adapt_batchnorm(model, train_set.images)
    if head != "fresh":
        linear_probe(model, train_set)
    if head != "probe only":
        model = run(method, train_set, seed, steps, model=unfreeze(model),
                    lr={**rates, **dict.fromkeys(reinit, rates["head"])},
                    augment=augment.random_affine(degrees=15) if augmented else None).model
    return {"accuracy": evaluate(model, subset(data.test_set(SHIFTED_TEST), TEST_PER_CLASS)).accuracy,
            "upright_accuracy": evaluate(model, subset(data.test_set("upright_digits"), TEST_PER_CLASS)).accuracy,
            **validation_scores(model, val_set)}


@independent
def flaw_setting_run(setting: str, n: int, seed: int, steps: int = 100, lr: float | dict | None = None,
                     n_val: int = 0) -> dict:
    """:func:`flaw_run` for the start and remedy named ``setting`` (a key of :data:`FLAW_SETTINGS`)."""
    if setting not in FLAW_SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose one of {', '.join(FLAW_SETTINGS)}")
    variant, remedy, head = FLAW_SETTINGS[setting]
    return flaw_run(variant, remedy, seed, n, steps, head, lr, n_val)


def ladder_arms(targets: list[str]) -> list[tuple[str, str]]:
    """``(arm name, tuning-table key)`` of the ladder: :data:`LADDER_ARMS` on every target, and :data:`FAIR_ARMS` on
    the last (farthest) one."""
    far = targets[-1]
    return [(arm, f"07 {arm}, {t}") for t in targets for arm in LADDER_ARMS + FAIR_ARMS * (t == far)]


def probe_keys(target: str) -> dict[str, str]:
    """``{block: tuning-table key}`` of the linear probes on each block's features for ``target``."""
    from ftlib.models import BLOCKS

    return {block: f"07 probe {block}, {target}" for block in BLOCKS}


def run_named(table: tuning.Table, named: list[tuple[str, str]], seeds, field: str = "arm", live=(),
              **changes) -> Results:
    """Each ``(name, key)`` of ``named`` at its chosen setting on ``seeds``
    (:func:`~ftlib.course.lessons.tuning.run_arms`: the table's runs read back, ``live`` arms and other seeds run
    now), each record's ``field`` holding the arm's ``name``."""
    seeds = list(seeds)
    runs = tuning.run_arms([key for _, key in named], seeds, table, live=live, **changes)
    names = [name for name, _ in named for _ in seeds]  # run_arms keeps the order: keys, then seeds
    return Results({**r, field: name} for name, r in zip(names, runs))


def run_at(table: tuning.Table, key: str, point: dict, seeds, field: str = "arm", name: str = "",
           **changes) -> Results:
    """Arm ``key`` at grid ``point`` of its grid (e.g. a rate it did not choose, as a control) on ``seeds``: the
    table's stored runs at that point where it has them (its seeds, no fixed setting changed), the other seeds run
    now. Each record holds the arm's fixed settings, ``changes``, the point, ``seed`` and, in ``field``, ``name``
    (default: the key's arm and the point)."""
    from ftlib.course.lessons.workers import run_calls

    arm = table.arm(key)
    if any(value not in arm.grid.get(knob, ()) for knob, value in point.items()) or not point:
        raise ValueError(f"point {point!r} is not on {key}'s grid: choose from {arm.grid}")
    unknown = sorted(set(changes) - set(arm.fixed))
    if unknown:
        raise ValueError(f"{key} has no fixed setting {unknown[0]!r} to change: it fixes {', '.join(arm.fixed)}")
    seeds = list(seeds)
    same = all(arm.fixed[k] == v for k, v in changes.items())
    stored = {r["seed"]: r for r in table.records(key, **point)} if same else {}
    missing = [seed for seed in seeds if seed not in stored]
    settings = {**arm.fixed, **changes}
    fresh = run_calls([(arm.driver(), {**settings, **arm.options(point), "seed": seed, "n_val": tuning.N_VAL})
                       for seed in missing])
    runs = {**stored, **dict(zip(missing, fresh))}
    name = name or f"{arm.name} at " + ", ".join(f"{k} {v:g}" for k, v in point.items())
    return Results({**runs[seed], **settings, **point, "seed": seed, field: name} for seed in seeds)


def validation_margin(table: tuning.Table, key: str, other: dict) -> str:
    """One line: by how much the table's stored validation runs of ``key`` preferred its chosen point over grid point
    ``other``: mean validation accuracy (%) and validation images right at each, summed over the table's seeds."""
    fixed = table.arm(key).fixed  # a ladder arm names its target; a flawed-checkpoint arm its setting
    target = fixed.get("target") or REMEDIES[FLAW_SETTINGS[fixed["setting"]][1]][0]
    size = tuning.N_VAL * data.test_set(target).num_classes  # validation images per seed
    chosen = table.chosen(key)
    sides = [table.records(key, **point) for point in (chosen, other)]
    right = [sum(round(r["val_accuracy"] * size) for r in side) for side in sides]
    words = [", ".join(f"{k} {v:g}" for k, v in point.items()) for point in (chosen, other)]
    return (f"{key}: validation chose {words[0]} over {words[1]} by {100 * sides[0].mean('val_accuracy'):.1f}% to "
            f"{100 * sides[1].mean('val_accuracy'):.1f}% ({right[0]} against {right[1]} of {size * len(sides[0])} "
            "validation images right)")


def error_ratios(results: Results, field: str, treated, control, metric: str = "accuracy") -> list[float]:
    """Per seed (paired as :meth:`Results.differences` pairs them), the error rate where ``field`` is ``treated``
    over the error rate where it is ``control``: 0.6 means the treatment removed 40% of the errors. An error rate of
    0 counts as half an error in 10,000, so the ratio stays finite."""
    errors = Results({**r, "log_error": math.log(max(1 - r[metric], 5e-5))} for r in results)
    return [math.exp(d) for d in errors.differences(field, treated, control, metric="log_error")]


def log_odds_differences(results: Results, field: str, first, second, metric: str = "accuracy") -> list[float]:
    """Per seed, the log-odds of ``metric`` (log(p / (1 - p))) where ``field`` is ``first`` minus where it is
    ``second``: a gap that stays put when both sides lose the same share of their errors (points do not: near 100%
    there are fewer errors left to remove)."""
    clipped = [min(max(r[metric], 5e-5), 1 - 5e-5) for r in results]
    odds = Results({**r, "log_odds": math.log(p / (1 - p))} for r, p in zip(results, clipped))
    return odds.differences(field, first, second, metric="log_odds")


def kumar_reading(lp_ft: list[float], same_rate: list[float], probe: list[float]) -> str:
    """One line on Kumar et al.'s claim (LP-FT, and a linear probe, ahead of fine-tuning under a shift), built from
    the per-seed differences on the flawed checkpoint: LP-FT minus fine-tuning at the rates validation chose
    (``lp_ft``), the same with both at one rate (``same_rate``), and the linear probe minus fine-tuning (``probe``).
    Each is read as :func:`ftlib.stats.verdict` reads it (its 95% interval), so the line says only what they say."""
    (lp_mean, _, lp), (same_mean, _, same), (_, _, alone) = (
        verdict(d, "ahead", "behind", "unresolved") for d in (lp_ft, same_rate, probe))
    if "behind" in (lp, same):
        reading = ("LP-FT behind fine-tuning at " + ("the chosen rates" if lp == "behind" else "one rate")
                   + ", by a margin its 95% interval resolves: against Kumar et al.'s direction")
    elif lp == same == "ahead":
        reading = ("LP-FT ahead of fine-tuning at the chosen rates and at one rate, both 95% intervals above zero: "
                   "the miniature confirms Kumar et al.'s direction")
    elif "ahead" in (lp, same):
        resolved_at, open_at = ("the chosen rates", "one rate") if lp == "ahead" else ("one rate", "the chosen rates")
        reading = (f"LP-FT ahead of fine-tuning at {resolved_at}, but at {open_at} the 95% interval reaches zero: "
                   "the miniature leans Kumar et al.'s way without confirming them")
    elif lp_mean > 0 and same_mean > 0:
        reading = ("LP-FT ahead of fine-tuning on average at the chosen rates and at one rate, but both 95% intervals "
                   "reach zero: the miniature leans Kumar et al.'s way without confirming them")
    else:
        reading = ("LP-FT not told apart from fine-tuning, and not ahead on average at both rates: the miniature "
                   "neither confirms nor leans toward Kumar et al.")
    probe_words = {"ahead": "ahead of fine-tuning too", "behind": "behind fine-tuning",
                   "unresolved": "not told apart from fine-tuning"}
    return f"{reading}; the linear probe alone is {probe_words[alone]}"


def chosen_name(table: tuning.Table, keys: dict[str, str]) -> str:
    """The arm of ``keys`` (``{name: table key}``) chosen on validation: the course's one rule
    (:func:`~ftlib.course.lessons.records.choose`) over the table's stored validation runs of each arm at its
    chosen setting (the same on every machine; the test set is never read)."""
    stored = Results({**r, "arm": name} for name, key in keys.items() for r in table.records(key))
    return choose(stored, "arm")


def show_target(target: str, gains: dict, chosen: dict, best_block: dict, ladder: Results, probes: Results,
                n: int) -> None:
    """The lesson's replay of one target: the chosen transfer arm's gain over scratch (mean, seeds ahead), the probe
    block validation chose, and both result plots (the arms, the probe per block)."""
    from statistics import fmean

    gain = gains[target]
    print(f"{target}: {chosen[target]} (chosen on validation) minus scratch {100 * fmean(gain):+.1f} points on "
          f"average, transfer ahead in {sum(g > 0 for g in gain)} of {len(gain)} seeds; probe block chosen on "
          f"validation: {best_block[target]}")
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 3.8), width_ratios=(3, 2))
    plot_rows(ladder.where(target=target), "arm", ax=left, title=f"{target}: arms, N = {n}")
    plot_rows(probes.where(target=target), "block", ax=right, title=f"{target}: probe per block")
    fig.tight_layout()
    plt.show()


def plot_rows(results: Results, field: str, metric: str = "accuracy", ax: plt.Axes | None = None,
              title: str = "", xlabel: str = "test accuracy (%)") -> plt.Axes:
    """Mean ``metric`` of each value of ``field`` as a dot with ± one standard deviation over the seeds (said on the
    axis), on a zoomed axis that never passes 100%.

    Dots, not bars: on a zoomed axis a bar's length would exaggerate the differences, a dot's position does not.
    One row per value (long setting names stay readable), the first on top, each mean written above its dot.
    """
    ax = ax or plt.subplots(figsize=(7, 0.45 * len(results.unique(field)) + 1))[1]
    names = results.unique(field)
    means = [100 * results.mean(metric, **{field: v}) for v in names]
    stds = [100 * results.std(metric, **{field: v}) for v in names]
    rows = range(len(names))
    ax.errorbar(means, rows, xerr=stds, fmt="none", ecolor="gray", capsize=3, zorder=2)
    ax.scatter(means, rows, color=[f"C{i}" for i in rows], zorder=3)
    for row, m in zip(rows, means):
        ax.annotate(f"{m:.1f}", (m, row), xytext=(0, 5), textcoords="offset points", ha="center", fontsize=8)
    ax.set_yticks(list(rows), names, fontsize=9)
    ax.set_ylim(len(names) - 0.5, -0.8)  # first row on top, room above it for its number
    low = max(0.0, min(m - s for m, s in zip(means, stds)) - 3)
    ax.set_xlim(low, min(100.0, max(m + s for m, s in zip(means, stds)) + 2))
    ax.set(xlabel=f"{xlabel}, mean ± std over {len(results.unique('seed'))} seeds", title=title)
    ax.grid(axis="x", alpha=0.3)
    return ax


def rotated(images: torch.Tensor, degrees: float) -> torch.Tensor:
    """``images`` turned by ``degrees`` (counter-clockwise on screen) about their centre, the corners left dark."""
    n = len(images)
    matrices = augment.affine_matrices(torch.full((n,), math.radians(degrees)), torch.ones(n), torch.zeros(n, 2))
    grid = F.affine_grid(matrices, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, align_corners=False)


def rotation_live(angle: int, n: int = 5, seed: int = 0) -> None:
    """The live slider: a linear probe on each checkpoint's features, fitted on ``n`` upright digits per class
    (split ``seed``), tested on 1,000 upright test digits turned by ``angle`` degrees; prints and plots both."""
    train = data.few_shot("upright_digits", n, seed)
    test = subset(data.test_set("upright_digits"), TEST_PER_CLASS)
    turned = data.ImageSet(rotated(test.images, angle), test.labels, test.classes, test.name)
    accuracy = {}
    for name, variant in (("sound", "full"), ("flawed", "narrow")):
        model = linear_probe(pretrained_start(len(data.DIGITS), seed, checkpoint_path(variant)), train)
        accuracy[name] = 100 * evaluate(model, turned).accuracy
    print(f"angle = {angle}°: linear probe on {n} upright digits per class, tested on {len(turned):,} digits "
          f"turned by {angle}°")
    print(f"sound {accuracy['sound']:.1f}%, flawed {accuracy['flawed']:.1f}%: sound minus flawed "
          f"{accuracy['sound'] - accuracy['flawed']:+.1f} points")
    fig, (strip, bars) = plt.subplots(1, 2, figsize=(9, 2.2), width_ratios=(3, 2))
    strip.imshow(torch.cat(list(turned.images[::TEST_PER_CLASS][:6, 0]), dim=1), cmap="gray", vmin=0, vmax=1)
    strip.set_axis_off()
    strip.set_title(f"test digits turned by {angle}°", fontsize=9)
    bars.barh([0, 1], [accuracy["sound"], accuracy["flawed"]], color=["C0", "C3"])
    bars.set_yticks([0, 1], ["sound", "flawed"])
    bars.invert_yaxis()
    bars.set(xlim=(0, 100), xlabel="test accuracy (%)")
    bars.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    plt.show()
