"""Lesson 05's driver: fine-tune under no penalty, L2 or L2-SP, and measure accuracy, drift and retention."""

from __future__ import annotations

import functools

from torch import nn

from .. import data
from ..data import ImageSet
from ..models import load_pretrained
from ..regularize import L2SP, L2Penalty, drift, retention, starting_point
from ..train import evaluate
from .experiments import run

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
