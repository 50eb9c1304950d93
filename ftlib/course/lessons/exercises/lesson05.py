"""Lesson 05's exercises: predict which penalty keeps the most letters at the same validation cost, build an L2-SP
penalty whose strength keeps more letters (beyond the seeds' noise) for at most a point of validation digits, and
say towards what AdamW's decoupled weight decay pulls."""

from __future__ import annotations

import functools
from collections.abc import Callable
from statistics import fmean
from types import EllipsisType

import torch
from torch import nn

from ftlib import data, stats
from ftlib.course.lessons import tuning
from ftlib.course.lessons import weight_regularization as wr
from ftlib.course.lessons.exercises import (
    Coach,
    Feedback,
    Option,
    Question,
    attempted,
    cells_not_run,
    exercise,
    not_attempted,
    reached,
    tell,
)
from ftlib.course.lessons.experiments import Results, run
from ftlib.evaluation import evaluate
from ftlib.models import load_pretrained
from ftlib.regularize import L2SP, drift, retention, starting_point

__all__ = ["DECAY_QUESTION", "HINTS", "MAX_COST", "MIN_MOVE", "SEEDS", "SOLUTIONS", "WRONG_ANSWERS", "build_l2sp",
           "decay_pulls_to", "hint", "most_letters", "solution"]

_CHOICES = ("decay", "l2", "l2sp")
SEEDS = (20, 21, 22)  # the do exercise fine-tunes these seeds, which the lesson never prints, with and without
# the learner's penalty: an answer copied from a printed trace is judged on fresh draws
MAX_COST = 1.0  # points of validation digits the penalty may cost, mean over SEEDS
MIN_MOVE = 0.25  # "gentle": the backbone still moves, at least this share of no penalty's drift in every seed


@exercise
def most_letters(guess: str | EllipsisType, trace: Results, free: Results, budget: float) -> Feedback:
    """Predict, then read the trace: which of ``"decay"``, ``"l2"`` or ``"l2sp"`` keeps the most letters (as
    fine-tuned, mean over the table's seeds) at its strongest strength whose validation digits stay within
    ``budget`` points of no penalty's (:func:`~ftlib.course.lessons.weight_regularization.affordable`)."""
    if not attempted(guess):
        return tell(None, "Exercise not attempted yet: in the cell before the trace, write which penalty you "
                    "expect to keep the most letters (\"decay\", \"l2\" or \"l2sp\") in place of `...`, then run "
                    "the cells again.")
    if isinstance(guess, str):  # "L2-SP", " l2sp " and "L2SP" name the same penalty
        guess = guess.strip().lower().replace("-", "")
    if guess not in _CHOICES:
        return tell(False, f"{guess!r} is not one of the choices: write \"decay\", \"l2\" or \"l2sp\".")
    if any(not trace.where(penalty=p) for p in _CHOICES) or not free:
        return cells_not_run("the cell that reads the trace from the tuning table")
    if isinstance(budget, bool) or not isinstance(budget, (int, float)) or budget < 0:
        return tell(False, f"budget={budget!r} is not allowed: it is the points of validation digits a penalty may "
                    "cost, a number >= 0 (the parameters cell sets 1.0).")
    at_budget = wr.affordable(trace, free, budget)
    kept = {p: fmean(at_budget.gains[p]) for p in _CHOICES if p in at_budget.gains}
    if len(kept) < 2:
        return tell(False, f"At budget={budget:g} fewer than two penalties have a strength that costs the validation "
                    "digits so little, so there is nothing to compare: use a larger budget (1.0).")
    best = sorted(kept, key=kept.get)[-1]  # the answer, from letters kept (never a choice of setting)
    if guess != best:
        return tell(False, f"Not this time: {wr.NAMES[guess]} keeps fewer letters than another penalty at the "
                           "same validation cost. Read the lines under the trace.")
    measured = ", ".join(f"{wr.NAMES[p]} {100 * kept[p]:+.1f} points" for p in kept)
    why = ("Why: only L2-SP pulls towards the pretrained weights w0, where the letters were learned; weight decay "
           "and L2 in the loss pull towards zero, which is no closer to the letters than wherever the digits take "
           "the backbone.")
    return tell(True, f"Right. Letters kept minus no penalty, mean over the table's seeds: {measured}. {why}")


def build(model):
    return L2SP(model, alpha=0.003)


def _too_strong(model: nn.Module) -> L2SP:
    """A typical wrong answer: a middle strength, which costs digits."""
    return L2SP(model, alpha=0.1)


def _frozen(model: nn.Module) -> L2SP:
    """A lazy answer: a pull so strong that the backbone barely moves (nearly a linear probe, lesson 03)."""
    return L2SP(model, alpha=10.0)


def _too_weak(model: nn.Module) -> L2SP:
    """A lazy answer: no pull at all."""
    return L2SP(model, alpha=0.0)


def _rate() -> float:
    """The lesson's rate: the one chosen on validation for no penalty in the tuning table."""
    return tuning.load().chosen("05 no penalty")["lr"]


@functools.cache
def _measured(build: Callable[[nn.Module], object] | None, seed: int = 0) -> tuple[float, float, float]:
    """Validation digits accuracy, letters kept (as fine-tuned) and the backbone's drift ``||w - w0||`` after
    section 1's fine-tuning of ``seed`` (5 digits per class, 100 steps at no penalty's chosen rate) under
    ``build(model)``'s penalty (None: no penalty)."""
    train_set, val_set = data.few_shot_split("mnist", 5, wr.N_VAL, seed)
    prepare = None if build is None else (lambda model: {"penalty": build(model)})
    model = run("fine-tune", train_set, seed, 100, lr=_rate(), prepare=prepare).model
    head, letters, _ = wr._source()
    return evaluate(model, val_set).accuracy, retention(model, head, letters), drift(model, _pretrained())


@functools.cache
def _pretrained() -> dict[str, torch.Tensor]:
    """The shipped model's weights, w0: what drift is measured from."""
    return starting_point(load_pretrained())


@exercise
def build_l2sp(build: Callable[[nn.Module], object] | EllipsisType) -> Feedback:
    """Do: ``build(model)`` returns an L2-SP penalty; fine-tuned with it in each of :data:`SEEDS` (about 2 s a
    seed), the validation digits must lose at most :data:`MAX_COST` points on average, the backbone must still
    move (a drift of at least :data:`MIN_MOVE` of no penalty's, in every seed: gentle, not a frozen backbone), and
    the letters kept must rise in every seed *and* by more than the seeds' noise: the mean gain outside its 95%
    interval (:func:`ftlib.stats.verdict`), so that a gain a re-draw of the seeds could erase does not pass."""
    if not attempted(build):
        return not_attempted("write build(model), returning L2SP(model, alpha=<your strength>),")
    if not callable(build):
        return tell(False, "Write a function `def build(model): return L2SP(model, alpha=...)`.")
    model = load_pretrained()
    penalty = build(model)
    if not isinstance(penalty, L2SP):
        return tell(False, f"build(model) returned {type(penalty).__name__}, not an L2SP: the pull must be "
                    "towards the pretrained weights (regularize.L2SP(model, alpha=...)).")
    start = starting_point(model)
    if set(penalty.start) != set(start) or any(not torch.equal(penalty.start[n], w) for n, w in start.items()):
        return tell(False, "Not yet: the penalty's anchor w0 is not the weights of the `model` build was given "
                    "(it was built on another network): write L2SP(model, alpha=...) with that very `model`, so "
                    "that it pulls towards the pretrained weights being fine-tuned.")
    cost, gain, moved = [], [], []
    for seed in SEEDS:
        (val_free, kept_free, drift_free), (val, kept, drifted) = _measured(None, seed), _measured(build, seed)
        cost.append(100 * (val_free - val))
        gain.append(100 * (kept - kept_free))
        moved.append(drifted / drift_free)
    mean_cost = fmean(cost)
    mean_gain, half, word = stats.verdict(gain)
    print(f"alpha={penalty.alpha:g}, against no penalty in seeds {', '.join(map(str, SEEDS))}: validation digits "
          f"{', '.join(f'{-c:+.1f}' for c in cost)} points (mean {-mean_cost:+.2f}; the least allowed: "
          f"-{MAX_COST:g}); letters "
          f"kept {', '.join(f'{g:+.1f}' for g in gain)} points (mean {mean_gain:+.1f} ± {half:.1f}, 95% interval: "
          f"{word}); drift {', '.join(f'{m:.0%}' for m in moved)} of no penalty's (the least allowed: "
          f"{MIN_MOVE:.0%})")
    if not reached(mean_cost, MAX_COST, at_least=False):
        return tell(False, f"Not yet: the digits lose {mean_cost:.2f} points on validation on average (at most "
                           f"{MAX_COST:g}): a pull of this strength holds the backbone away from where "
                           "the 5 digits per class need it. Look at: a weaker strength.")
    if min(moved) < MIN_MOVE:
        return tell(False, f"Not yet: in seed {SEEDS[moved.index(min(moved))]} the backbone moved only "
                           f"{min(moved):.1%} of no penalty's drift (at least {MIN_MOVE:.0%} in every seed): a pull "
                           "this strong nearly freezes the backbone, a linear probe (lesson 03), not a gentle L2-SP. "
                           "Look at: a smaller strength.")
    if min(gain) <= 0:
        return tell(False, f"Not yet: the letters kept do not rise in every seed ({sum(g > 0 for g in gain)} of "
                           f"{len(gain)}): the pull is too weak to hold the backbone; try a larger strength.")
    if word != "helps":
        return tell(False, f"Not yet: the letters kept rise by {mean_gain:.1f} points on average, but the 95% "
                           f"interval over the seeds ({half:.1f}) reaches zero: a gain this small is noise next to "
                           "the seeds' spread; try a larger strength.")
    return tell(True, f"Target met: more letters kept in every seed (mean {mean_gain:+.1f} ± {half:.1f} points, "
                      f"outside the noise), with the validation digits {-mean_cost:+.2f} points on average (the "
                      f"least allowed: -{MAX_COST:g}) and the backbone still moving (at least {min(moved):.0%} of no "
                      "penalty's drift).")


DECAY_QUESTION = Question(
    "The runs used AdamW with a large weight_decay (decoupled weight decay). Towards what does it pull the "
    "backbone, and why?", [
        Option("Towards zero: each step shrinks every weight by (1 - lr * lambda), blind to w0", True,
               "The decay is applied in the optimizer step, outside the gradient, and its only fixed point is "
               "w = 0; to pull towards w0 you need w0 in the rule, as L2-SP's alpha/2 ||w - w0||^2 has. The line "
               "under the table predicts its drift from lambda and the rates alone."),
        Option("Towards the pretrained weights w0, because fine-tuning starts from them", False,
               "Starting at w0 is not being pulled back to it. Write one decay step as an update of w and ask at "
               "which w it would stop moving the weight: is w0 in that rule?"),
        Option("Towards w0, because Adam normalises each step so that the pull cannot go far from it", False,
               "That is about L2 in the loss, whose gradient Adam rescales. Decoupled decay is applied outside "
               "Adam's rescaling: write its update of w and find the point where it stops."),
        Option("Nowhere: BatchNorm makes the weights' scale irrelevant, so decay does nothing", False,
               "BatchNorm makes the outputs ignore the scale of the weights before it, but the decay still moves "
               "them (section 3's drift), and section 4 measures what that does to the function. Write one decay "
               "step as an update of w: where would it stop?"),
    ], seed="lesson05.decay_pulls_to")


@exercise
def decay_pulls_to(answer: str | EllipsisType) -> Feedback:
    """Explain: towards what AdamW's decoupled weight decay pulls the weights (multiple choice)."""
    return DECAY_QUESTION.check(answer)


HINTS: dict[str, tuple[str, str]] = {
    "most_letters": (
        "The letters were learned at the pretrained weights w0. Towards which point does each penalty pull?",
        "Write down, for each penalty, the point its pull stops at, and ask which of those points still reads "
        "letters."),
    "build_l2sp": (
        "Read the L2-SP rows of the trace: the digits, the letters kept and the drift of each strength. Gentle "
        "means the backbone still moves: which strengths leave it a real part of no penalty's drift?",
        "Try a strength and read the three numbers the check prints, seed by seed: too weak and the letters' gain "
        "is noise; in the middle the digits pay; very strong and the backbone barely moves (a linear probe)."),
    "decay_pulls_to": (
        "Write one step of decoupled weight decay as an update of w. At which w would it stop moving the weight?",
        "Does w0 appear anywhere in that rule? Compare with L2-SP's penalty alpha/2 ||w - w0||^2."),
}
SOLUTIONS: dict[str, object] = {"most_letters": "l2sp", "build_l2sp": build,
                                "decay_pulls_to": DECAY_QUESTION.right_letter}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "most_letters": [("decay", "keeps fewer letters")],
    "build_l2sp": [(_too_strong, "lose"), (_too_weak, "do not rise in every seed"), (_frozen, "linear probe")],
    "decay_pulls_to": [(DECAY_QUESTION.letter_of(1), "is w0 in that rule?")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
