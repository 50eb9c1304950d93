"""Lesson 07's drivers: the ladder of targets with fairly tuned transfer arms, linear probes on each block, and
fine-tuning a sound or a flawed (narrow-source) checkpoint.

:func:`ladder_run` trains one method on one target (the course's methods plus two that give transfer a fair chance
on a far target: fine-tuning at scratch's rate, and a linear probe on BatchNorm statistics re-estimated on the
target, AdaBN); :func:`probe_run` fits a linear probe on an intermediate block's features; :func:`flaw_run`
fine-tunes either checkpoint and tests on data with the variation the flawed source lacked, with or without a
remedy, from a fresh head or from a linear probe's (LP-FT). :func:`rotation_live` (the live slider) fits a
probe on each checkpoint and tests both on upright digits turned by a chosen angle.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from ftlib import augment, data
from ftlib.course.lessons.experiments import Results, get_method, run
from ftlib.course.lessons.workers import independent
from ftlib.course.pretrain import checkpoint_path
from ftlib.evaluation import evaluate
from ftlib.freeze import unfreeze
from ftlib.models import pretrained_start
from ftlib.probe import linear_probe
from ftlib.transfer import adapt_batchnorm, subset, truncate

__all__ = ["FAIR_ARMS", "FLAW_SETTINGS", "HEADS", "LIVE_ANGLES", "REINIT_LR", "REMEDIES", "SHIFTED_TEST",
           "TEST_PER_CLASS", "flaw_run", "flaw_setting_run", "ladder_run", "plot_rows", "probe_run", "rotated",
           "rotation_live"]

REINIT_LR = 3e-3  # rate for re-initialised blocks, which must learn from nothing
REMEDIES = {  # remedy -> (fine-tuning target, augment?, blocks re-initialised)
    "none": ("upright_digits", False, ()),
    "diverse data": ("font_digits", False, ()),
    "augmentation": ("upright_digits", True, ()),
    "re-initialise block4": ("upright_digits", False, ("block4",)),
}
HEADS = ("fresh", "probe only", "probe, then fine-tune")  # fine-tune a new head; linear probe; LP-FT
SHIFTED_TEST = "font_digits"  # rotated, sheared, thick, dim digits: the variation the narrow source lacked
TEST_PER_CLASS = 100  # 1,000 test images per 10-class target: a standard error of about 1.5 points or less
FAIR_ARMS = ("fine-tune at scratch's rate", "linear probe, AdaBN")
LIVE_ANGLES = (0, 15, 30, 45, 60, 90)  # the live slider's angles, in degrees
_HEAD_NAMES = {"": "fresh", ", linear probe": "probe only", ", LP-FT": "probe, then fine-tune"}
FLAW_SETTINGS = {  # the lesson's name of each start and remedy -> flaw_run's (variant, remedy, head)
    **{f"{name}{label}": (variant, "none", head) for name, variant in (("sound", "full"), ("flawed", "narrow"))
       for label, head in _HEAD_NAMES.items()},
    **{f"flawed + {remedy}": ("narrow", remedy, "fresh") for remedy in list(REMEDIES)[1:]}}


@independent
def ladder_run(method: str, target: str, n: int, seed: int, steps: int = 100) -> dict:
    """Train ``method`` on ``n`` labels per class of ``target`` (split ``seed``); test on 100 images per class.

    ``method`` is one of the course's methods or one of :data:`FAIR_ARMS`: the pretrained start trained like
    scratch (every block at scratch's rate), or a linear probe after :func:`ftlib.transfer.adapt_batchnorm` on the
    ``n``-shot training images (AdaBN: the target's BatchNorm statistics, not the letters').
    """
    train_set = data.few_shot(target, n, seed)
    if method == "fine-tune at scratch's rate":
        model = run("fine-tune", train_set, seed, steps, lr=get_method("scratch").lr).model
    elif method == "linear probe, AdaBN":
        adapt = lambda m: _no_options(adapt_batchnorm(m, train_set.images))  # noqa: E731
        model = run("linear probe", train_set, seed, prepare=adapt).model
    else:
        model = run(method, train_set, seed, steps).model
    return {"accuracy": evaluate(model, subset(data.test_set(target), TEST_PER_CLASS)).accuracy}


def _no_options(_model) -> None:
    """``run``'s ``prepare`` may return extra fit options; AdaBN has none."""
    return None


@independent
def probe_run(target: str, n: int, seed: int, block: str, variant: str = "full", test_per_class: int = 100) -> dict:
    """A linear probe on the pooled features after ``block`` of a checkpoint, trained on ``n`` labels per class."""
    train_set = data.few_shot(target, n, seed)
    start = truncate(pretrained_start(train_set.num_classes, seed, checkpoint_path(variant)), block)
    model = run("linear probe", train_set, seed, model=start).model
    return {"accuracy": evaluate(model, subset(data.test_set(target), test_per_class)).accuracy}


def flaw_run(variant: str, remedy: str, seed: int, n: int = 5, steps: int = 100, head: str = "fresh") -> dict:
    """Fine-tune checkpoint ``variant`` on ``n`` digits per class the way ``remedy`` says (see :data:`REMEDIES`).

    The backbone trains at the course's low rate ("fine-tune, low backbone LR"), re-initialised blocks at
    :data:`REINIT_LR`. ``head`` (see :data:`HEADS`): a fresh head fine-tuned with the backbone; a linear probe
    alone (frozen backbone); or LP-FT, fine-tuning that starts from the probe's head (Kumar et al. 2022). Returns
    the accuracy on the shifted test set (``accuracy``) and on upright digits like the fine-tuning data
    (``upright_accuracy``), 100 images per class each.
    """
    if remedy not in REMEDIES:
        raise ValueError(f"unknown remedy {remedy!r}; choose one of {', '.join(REMEDIES)}")
    if head not in HEADS:
        raise ValueError(f"unknown head {head!r}; choose one of {', '.join(HEADS)}")
    target, augmented, reinit = REMEDIES[remedy]
    method = get_method("fine-tune, low backbone LR")
    train_set = data.few_shot(target, n, seed)
    model = pretrained_start(len(data.DIGITS), seed, checkpoint_path(variant), reinit)
    if head != "fresh":
        linear_probe(model, train_set)
    if head != "probe only":
        model = run(method, train_set, seed, steps, model=unfreeze(model),
                    lr={**method.lr, **dict.fromkeys(reinit, REINIT_LR)},
                    augment=augment.random_affine(degrees=15) if augmented else None).model
    return {"accuracy": evaluate(model, subset(data.test_set(SHIFTED_TEST), TEST_PER_CLASS)).accuracy,
            "upright_accuracy": evaluate(model, subset(data.test_set("upright_digits"), TEST_PER_CLASS)).accuracy}


@independent
def flaw_setting_run(setting: str, n: int, seed: int, steps: int = 100) -> dict:
    """:func:`flaw_run` for the start and remedy named ``setting`` (a key of :data:`FLAW_SETTINGS`)."""
    if setting not in FLAW_SETTINGS:
        raise ValueError(f"unknown setting {setting!r}; choose one of {', '.join(FLAW_SETTINGS)}")
    variant, remedy, head = FLAW_SETTINGS[setting]
    return flaw_run(variant, remedy, seed, n, steps, head)


def plot_rows(results: Results, field: str, metric: str = "accuracy", ax: plt.Axes | None = None,
              title: str = "", xlabel: str = "test accuracy (%)") -> plt.Axes:
    """Mean ``metric`` of each value of ``field`` as a horizontal bar with ± one std over seeds, on a zoomed axis.

    Horizontal bars keep long setting names readable; the first value is on top, each mean is written past its
    error bar, and the axis starts a little below the lowest bar.
    """
    ax = ax or plt.subplots(figsize=(7, 0.45 * len(results.unique(field)) + 1))[1]
    names = results.unique(field)
    means = [100 * results.mean(metric, **{field: v}) for v in names]
    stds = [100 * results.std(metric, **{field: v}) for v in names]
    ax.barh(range(len(names)), means, xerr=stds, capsize=3, color=[f"C{i}" for i in range(len(names))])
    for row, (m, s) in enumerate(zip(means, stds)):  # each value just past its error bar, clear of it
        ax.annotate(f"{m:.1f}", (m + s, row), xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names, fontsize=9)
    if not ax.yaxis_inverted():  # first row on top; axes that share y are inverted once, not twice
        ax.invert_yaxis()
    low = min(m - s for m, s in zip(means, stds))
    ax.set_xlim(max(0, low - 10), max(m + s for m, s in zip(means, stds)) + 8)
    ax.set(xlabel=xlabel, title=title)
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
