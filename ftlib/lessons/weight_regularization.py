"""Lesson 05's driver: fine-tune under no penalty, L2 or L2-SP, and measure accuracy, drift and retention."""

from __future__ import annotations

import functools

import matplotlib.pyplot as plt
from torch import nn

from .. import data
from ..data import ImageSet
from ..evaluation import evaluate
from ..models import load_pretrained
from ..regularize import L2SP, L2Penalty, drift, retention, starting_point
from . import plots
from .experiments import Results, run

__all__ = ["HEAD_DECAY", "PENALTIES", "regularized_run", "show_strength"]

PENALTIES = ("none", "l2", "l2sp")
HEAD_DECAY = 1e-3  # beta: the new head is pulled towards zero with this strength in both penalties


@functools.cache
def _source() -> tuple[nn.Linear, ImageSet]:
    """The shipped model's letters head, and every 4th fixed test letter (25 per class) to measure retention."""
    test = data.test_set("letters")
    return load_pretrained().head, ImageSet(test.images[::4], test.labels[::4], test.classes, "letters (1 in 4)")


def regularized_run(penalty: str, alpha: float, lr: float, seed: int, n: int = 5, steps: int = 100,
                    target: str = "mnist") -> dict:
    """Fine-tune the shipped model on ``n`` labels per class of ``target`` under a penalty, and measure it.

    ``penalty`` is ``"none"``, ``"l2"`` (towards zero) or ``"l2sp"`` (towards the pretrained weights), with strength
    ``alpha`` on the backbone. Returns target test ``accuracy``, backbone ``drift`` ``||w - w0||``, and
    ``retention``: letters accuracy with the original letters head put back.
    """
    if penalty not in PENALTIES:
        raise ValueError(f"unknown penalty {penalty!r}; choose one of {', '.join(PENALTIES)}")
    start = {}

    def penalise(model: nn.Module) -> dict:
        start.update(starting_point(model))
        rule = {"none": lambda: None, "l2": lambda: L2Penalty(alpha, HEAD_DECAY),
                "l2sp": lambda: L2SP(model, alpha, HEAD_DECAY)}[penalty]()
        return {"penalty": rule}

    train_set = data.few_shot(target, n, seed)
    model = run("fine-tune", train_set, seed, steps, lr=lr, prepare=penalise).model
    head, letters = _source()
    return {"accuracy": evaluate(model, data.test_set(target)).accuracy, "drift": drift(model, start),
            "retention": retention(model, head, letters)}


def show_strength(sweep: Results, alpha: float) -> None:
    """Drift, digit accuracy and letters kept at strength ``alpha`` for L2 and L2-SP, beside no penalty, with bars."""
    print(f"alpha = {alpha}: mean over {len(sweep.unique('seed'))} seeds")
    for penalty in ["l2", "l2sp"]:
        runs = sweep.where(penalty=penalty, alpha=alpha)
        print(f"  {penalty:<5} drift {runs.mean('drift'):.1f}  digits {runs.mean('accuracy'):.1%}  "
              f"letters kept {runs.mean('retention'):.1%}")
    free = sweep.where(penalty="none")
    print(f"  none  drift {free.mean('drift'):.1f}  digits {free.mean('accuracy'):.1%}  "
          f"letters kept {free.mean('retention'):.1%}")
    chosen = Results(r for r in sweep if r["alpha"] in (alpha, 0.0))
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.5))
    for ax, metric, title in [(axes[0], "accuracy", "digit test accuracy"), (axes[1], "retention", "letters kept")]:
        plots.plot_bars(chosen, x="penalty", y=metric, ax=ax, title=f"{title}, alpha = {alpha}")
    plt.show()
