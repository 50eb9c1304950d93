"""Lesson 05's exercises: predict which penalty keeps the most letters, build an L2-SP penalty whose strength keeps
more letters at no cost on validation digits, and say towards what AdamW's decoupled weight decay pulls."""

from __future__ import annotations

import functools
from collections.abc import Callable
from types import EllipsisType

from torch import nn

from ftlib import data
from ftlib.course.lessons import weight_regularization as wr
from ftlib.course.lessons.exercises import Feedback, Option, Question, attempted, check_target, tell
from ftlib.course.lessons.experiments import Results, run
from ftlib.evaluation import evaluate
from ftlib.models import load_pretrained
from ftlib.regularize import L2SP, retention

__all__ = ["DECAY_QUESTION", "SOLUTIONS", "WRONG_ANSWERS", "build_l2sp", "decay_pulls_to", "most_letters"]

_CHOICES = ("decay", "l2", "l2sp")


def most_letters(guess: str | EllipsisType, sweep: Results) -> Feedback:
    """Predict, then run: which of ``"decay"``, ``"l2"`` or ``"l2sp"`` keeps the most letters (as fine-tuned, mean
    over seeds) in section 1's ``sweep``."""
    if not attempted(guess):
        return tell(None, "Exercise not attempted yet: in the cell before section 1's runs, write which "
                    "penalty you expect to keep the most letters (\"decay\", \"l2\" or \"l2sp\") "
                    "in place of `...`, then run the cells again.")
    if guess not in _CHOICES:
        return tell(False, f"{guess!r} is not one of the choices: write \"decay\", \"l2\" or \"l2sp\".")
    kept = {p: sweep.mean("retention", penalty=p) for p in _CHOICES}
    best = max(kept, key=kept.get)
    measured = ", ".join(f"{wr.NAMES[p]} {kept[p]:.1%}" for p in _CHOICES)
    why = ("Why: only L2-SP pulls towards the pretrained weights w0, where the letters were learned; weight decay "
           "and L2 in the loss pull towards zero, which is no closer to the letters than wherever the digits take "
           "the backbone (weight decay even shrinks every weight at each step).")
    verdict = "Right" if guess == best else f"Not this time: {wr.NAMES[best]} keeps the most"
    return tell(guess == best, f"{verdict}. Letters kept, mean over seeds: {measured}. {why}")


def build(model):
    return L2SP(model, alpha=0.01)


def _too_strong(model: nn.Module) -> L2SP:
    """A typical wrong answer: section 1's strength, which costs digits."""
    return L2SP(model, alpha=1.0)


@functools.cache
def _measured(build: Callable[[nn.Module], object] | None, seed: int = 0) -> tuple[float, float]:
    """Validation digits accuracy and letters kept (as fine-tuned) after section 1's fine-tuning of ``seed`` (5
    digits per class, 100 steps at lr 1e-3) under ``build(model)``'s penalty (None: no penalty)."""
    train_set, val_set = data.few_shot_split("mnist", 5, wr.N_VAL, seed)
    prepare = None if build is None else (lambda model: {"penalty": build(model)})
    model = run("fine-tune", train_set, seed, 100, lr=1e-3, prepare=prepare).model
    head, letters, _ = wr._source()
    return evaluate(model, val_set).accuracy, retention(model, head, letters)


def build_l2sp(build: Callable[[nn.Module], object] | EllipsisType) -> Feedback:
    """Do: ``build(model)`` returns an L2-SP penalty; fine-tuned with it (seed 0, about 2 s), the model must keep
    more letters than with no penalty while its validation digits stay within 1 point of no penalty's."""
    if not attempted(build):
        return check_target(None, target=0.1, quantity="letters kept minus no penalty's (validation digits within "
                                                       "1 point of no penalty's)", unit=" points", hint="")
    if not callable(build):
        return tell(False, "Write a function `def build(model): return L2SP(model, alpha=...)`.")
    penalty = build(load_pretrained())
    if not isinstance(penalty, L2SP):
        return tell(False, f"build(model) returned {type(penalty).__name__}, not an L2SP: the pull must be "
                    "towards the pretrained weights (regularize.L2SP(model, alpha=...)).")
    (val_free, kept_free), (val, kept) = _measured(None), _measured(build)
    cost = 100 * (val_free - val)
    seen = (f"validation digits {val:.1%} (no penalty {val_free:.1%}), letters kept {kept:.1%} (no penalty "
            f"{kept_free:.1%}) at alpha={penalty.alpha:g}. ")
    if cost > 1.0:
        return tell(False, f"Not yet: {seen}The digits lose {cost:.1f} points on validation (at most 1): "
                    "the pull is too strong for 5 digits per class to move the backbone where "
                    "the digits need it. Look at: a strength 10 to 100 times smaller.")
    print(seen.strip())
    return check_target(100 * (kept - kept_free), target=0.1, at_least=True, unit=" points",
                        quantity="letters kept minus no penalty's",
                        hint="the pull is too weak to hold the backbone; try a larger strength (x3 to x10).")


DECAY_QUESTION = Question(
    "Section 1 ran AdamW with weight_decay=10 (decoupled weight decay). Towards what does it pull the backbone, "
    "and why?", {
        "a": Option("Towards the pretrained weights w0, because fine-tuning starts from them", False,
                    "Starting at w0 is not being pulled back to it. Each step subtracts lr * lambda * w, which is "
                    "zero only at w = 0: compare the drift column of section 1 with the shrink predicted under it."),
        "b": Option("Towards zero: each step multiplies every weight by (1 - lr * lambda), a shrink that knows "
                    "nothing of w0", True,
                    "The decay is applied in the optimizer step, outside the gradient, and its only fixed point "
                    "is w = 0; to pull towards w0 you need w0 in the rule, as L2-SP's alpha/2 ||w - w0||^2 has. "
                    "Section 1's line under the table predicts its drift from lambda and the rates alone."),
        "c": Option("Towards w0, because Adam normalises the step so the pull cannot go far", False,
                    "That is about L2 in the loss, whose gradient Adam rescales. Decoupled decay is not rescaled by "
                    "Adam at all, and however far it goes, it goes towards zero."),
        "d": Option("Nowhere: with a BatchNorm after every convolution the weights' scale does not matter, so "
                    "decay has no effect", False,
                    "BatchNorm makes the outputs ignore the scale, but the decay still shrinks the weights (the drift "
                    "column, and the shrink predicted under the table), and nothing in it points at w0."),
    })


def decay_pulls_to(answer: str | EllipsisType) -> Feedback:
    """Explain: towards what AdamW's decoupled weight decay pulls the weights (multiple choice)."""
    return DECAY_QUESTION.check(answer)


SOLUTIONS: dict[str, object] = {"most_letters": "l2sp", "build_l2sp": build, "decay_pulls_to": "b"}
WRONG_ANSWERS: dict[str, object] = {"most_letters": "decay", "build_l2sp": _too_strong, "decay_pulls_to": "a"}
