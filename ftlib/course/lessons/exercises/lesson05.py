"""Lesson 05's exercises: predict which strength of L2-SP costs the validation digits the most, build a gentle L2-SP
penalty that keeps more letters than the strength validation chose (beyond the seeds' noise) for at most a point of
validation digits, and say towards what AdamW's decoupled weight decay pulls."""

from __future__ import annotations

import functools
import math
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
           "costliest_l2sp", "decay_pulls_to", "hint", "solution"]

SEEDS = (20, 21, 22)  # the do exercise fine-tunes these seeds, which the lesson never prints, with and without
# the learner's penalty: an answer copied from a printed trace is judged on fresh draws
MAX_COST = 1.0  # points of validation digits the penalty may cost, mean over SEEDS
MIN_MOVE = 0.5  # "gentle": the backbone keeps at least half of no penalty's drift in every seed


def _strength(guess: object) -> float | None:
    """A guessed strength as a float, or None if it is not a number."""
    if isinstance(guess, bool) or not isinstance(guess, (int, float, str)):
        return None
    try:
        return float(guess)
    except ValueError:
        return None


@exercise
def costliest_l2sp(guess: float | EllipsisType, trace: Results) -> Feedback:
    """Predict, then read the trace: at the trace's rate (no penalty's chosen rate), which strength of L2-SP's grid
    costs the validation digits the most (the lowest mean validation accuracy over the table's seeds)."""
    if not attempted(guess):
        return tell(None, "Exercise not attempted yet: in the cell before the trace, write the L2-SP strength you "
                    f"expect to cost the validation digits the most at lr {_rate():g} (a number of the grid, e.g. "
                    "0.01) in place of `...`, then run the cells again.")
    runs = trace.where(penalty="l2sp")
    if not runs:
        return cells_not_run("the cell that reads the trace from the tuning table")
    grid = runs.unique("alpha")
    alpha = _strength(guess)
    if alpha is None or not any(math.isclose(alpha, a) for a in grid):
        return tell(False, f"{guess!r} is not a strength of L2-SP's grid: write one of "
                    f"{', '.join(f'{a:g}' for a in grid)}.")
    alpha = next(a for a in grid if math.isclose(alpha, a))
    digits = {a: runs.mean("val_accuracy", alpha=a) for a in grid}
    costliest = sorted(grid, key=digits.get)[0]  # the answer, read from the trace (never a choice of setting)
    if alpha != costliest:
        strongest = grid[-1]
        nudge = (" The strongest pull is not the costliest: read the validation column of every L2-SP row."
                 if alpha == strongest else " Read the validation column of every L2-SP row.")
        return tell(False, f"Not this time: at alpha {alpha:g} the validation digits are {digits[alpha]:.1%}, and "
                           f"another strength costs more.{nudge}")
    return tell(True, f"Right: at lr {_rate():g}, alpha {alpha:g} scores {digits[alpha]:.1%} on the validation "
                      f"digits, against {digits[grid[0]]:.1%} at the weakest ({grid[0]:g}) and "
                      f"{digits[grid[-1]]:.1%} at the strongest ({grid[-1]:g}): at this rate the cost is not "
                      "monotone in the strength. Why is not tested here (one conjecture: a weak pull leaves the "
                      "backbone free to fit the digits, the strongest leaves the new head on the pretrained "
                      "features, and a middle one sits between), and the shape is this rate's: the lines under the "
                      "trace print L2-SP's strengths at a 10x higher rate too; compare the two.")


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


def _chosen(model: nn.Module) -> L2SP:
    """The strength section 1 prints, chosen on validation in the tuning table: what the learner's must beat."""
    return L2SP(model, alpha=tuning.load().chosen("05 L2-SP")["alpha"])


def _budget_line(model: nn.Module) -> L2SP:
    """A lazy answer: the strength section 2 prints as the strongest within a point of validation digits."""
    return L2SP(model, alpha=0.01)


def _rate() -> float:
    """The lesson's rate: the one chosen on validation for no penalty in the tuning table."""
    return tuning.load().chosen("05 no penalty")["lr"]


@functools.cache
def _measured(build: Callable[[nn.Module], object] | None, seed: int = 0) -> tuple[float, float, float]:
    """Validation digits accuracy, letters kept (as fine-tuned) and the backbone's drift ``||w - w0||`` after
    section 1's fine-tuning of ``seed`` (5 digits per class, 100 steps at no penalty's chosen rate) under
    ``build(model)``'s penalty (None: no penalty); the letters are validation letters, never the test ones."""
    train_set, val_set = data.few_shot_split("mnist", 5, wr.N_VAL, seed)
    prepare = None if build is None else (lambda model: {"penalty": build(model)})
    model = run("fine-tune", train_set, seed, 100, lr=_rate(), prepare=prepare).model
    head, _, _ = wr._source()
    return (evaluate(model, val_set).accuracy, retention(model, head, wr.validation_letters()),
            drift(model, _pretrained()))


@functools.cache
def _pretrained() -> dict[str, torch.Tensor]:
    """The shipped model's weights, w0: what drift is measured from."""
    return starting_point(load_pretrained())


@exercise
def build_l2sp(build: Callable[[nn.Module], object] | EllipsisType) -> Feedback:
    """Do: ``build(model)`` returns a gentle L2-SP penalty; fine-tuned with it in each of :data:`SEEDS` (about 2 s a
    seed), beside no penalty and L2-SP at the strength chosen on validation (section 1), the validation digits must
    lose at most :data:`MAX_COST` points on average against no penalty, the backbone must keep at least
    :data:`MIN_MOVE` of no penalty's drift in every seed (gentle), and the letters kept (on fresh validation letters,
    never the test letters the lesson reports) must beat the chosen
    strength's in every seed *and* by more than the seeds' noise: the mean gain outside its 95% interval
    (:func:`ftlib.stats.verdict`). Neither printed choice passes: the chosen strength gains nothing over itself,
    and section 2's strength within the budget nearly halves the backbone's movement."""
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
    chosen = tuning.load().chosen("05 L2-SP")["alpha"]
    cost, gain, moved = [], [], []
    for seed in SEEDS:
        (val_free, _, drift_free), (_, kept_chosen, _) = _measured(None, seed), _measured(_chosen, seed)
        val, kept, drifted = _measured(build, seed)
        cost.append(100 * (val_free - val))
        gain.append(100 * (kept - kept_chosen))
        moved.append(drifted / drift_free)
    mean_cost = fmean(cost)
    mean_gain, half, word = stats.verdict(gain)
    print(f"alpha={penalty.alpha:g}, seeds {', '.join(map(str, SEEDS))}: validation digits minus no penalty "
          f"{', '.join(f'{-c:+.1f}' for c in cost)} points (mean {-mean_cost:+.2f}; the least allowed: "
          f"-{MAX_COST:g}); drift {', '.join(f'{m:.0%}' for m in moved)} of no penalty's (the least allowed: "
          f"{MIN_MOVE:.0%}); validation letters kept minus L2-SP {chosen:g} (section 1's choice) "
          f"{', '.join(f'{g:+.1f}' for g in gain)} points (mean {mean_gain:+.1f} ± {half:.1f}, 95% interval: "
          f"{word})")
    if not reached(mean_cost, MAX_COST, at_least=False):
        return tell(False, f"Not yet: the digits lose {mean_cost:.2f} points on validation on average (at most "
                           f"{MAX_COST:g}). Look at: a weaker strength.")
    if min(moved) < MIN_MOVE:
        return tell(False, f"Not yet: in seed {SEEDS[moved.index(min(moved))]} the backbone moved only "
                           f"{min(moved):.1%} of no penalty's drift (at least {MIN_MOVE:.0%} in every seed): a pull "
                           "this strong holds the backbone too close to w0 to be gentle (at the extreme, a linear "
                           "probe, lesson 03). Look at: a smaller strength.")
    if min(gain) <= 0:
        return tell(False, f"Not yet: the letters kept do not rise over L2-SP {chosen:g} in every seed "
                           f"({sum(g > 0 for g in gain)} of {len(gain)}): the pull is too weak to hold more of the "
                           "backbone; try a larger strength.")
    if word != "helps":
        return tell(False, f"Not yet: the letters kept rise by {mean_gain:.1f} points over L2-SP {chosen:g} on "
                           f"average, but the 95% interval over the seeds ({half:.1f}) reaches zero: a gain this "
                           "small is noise next to the seeds' spread; try a larger strength.")
    return tell(True, f"Target met: more letters kept than L2-SP {chosen:g} in every seed (mean {mean_gain:+.1f} ± "
                      f"{half:.1f} points, outside the noise), with the validation digits {-mean_cost:+.2f} points "
                      f"on average against no penalty (the least allowed: -{MAX_COST:g}) and the backbone still "
                      f"moving (at least {min(moved):.0%} of no penalty's drift).")


DECAY_QUESTION = Question(
    "The runs used AdamW with a large weight_decay (decoupled weight decay). Towards what does it pull the "
    "backbone, and why?", [
        Option("Towards zero: each step multiplies every weight by (1 - lr * lambda), whatever w0 is", True,
               "The decay is applied in the optimizer step, outside the gradient, and its only fixed point is "
               "w = 0; to pull towards w0 you need w0 in the rule, as L2-SP's alpha/2 ||w - w0||^2 has. The line "
               "under the table predicts its drift from lambda and the rates alone."),
        Option("Towards w0: each step moves every weight by lr * lambda * (w0 - w), back to its start", False,
               "That rule is L2-SP's pull, and fine-tuning starting at w0 is not being pulled back to it. Write "
               "one step of AdamW's decay as an update of w and ask at which w it would stop moving the weight: "
               "is w0 in that rule?"),
        Option("Towards the digits' optimum: it scales the data's step by (1 - lr * lambda), a smaller rate", False,
               "Damping the steps would slow the march towards the digits' optimum, not change where it ends. "
               "Decoupled decay is a separate term applied outside Adam's step: write its update of w and find "
               "the point where it stops."),
        Option("Nowhere: BatchNorm divides out the scale, so (1 - lr * lambda) * W acts as W does", False,
               "BatchNorm makes the outputs ignore the scale of the weights before it, but the decay still moves "
               "them (section 3's drift), and section 4 measures what that does to the function. Write one decay "
               "step as an update of w: where would it stop?"),
    ], seed="lesson05.decay_pulls_to")


@exercise
def decay_pulls_to(answer: str | EllipsisType) -> Feedback:
    """Explain: towards what AdamW's decoupled weight decay pulls the weights (multiple choice)."""
    return DECAY_QUESTION.check(answer)


HINTS: dict[str, tuple[str, str]] = {
    "costliest_l2sp": (
        "Think of the two ends of the grid: what does a very weak pull leave the backbone free to do, and what does "
        "a very strong one leave for the digits to learn?",
        "Lesson 03 measured how well a frozen backbone with a new head reads the digits. Is the strongest pull "
        "necessarily the costliest?"),
    "build_l2sp": (
        "Read the L2-SP rows of the trace: the letters kept and the drift of each strength. Which strengths of the "
        "grid keep at least half of no penalty's drift, and which keep more letters than section 1's choice?",
        "No strength of the grid does both by a clear margin: try one between two of them and read the three "
        "numbers the check prints, seed by seed."),
    "decay_pulls_to": (
        "Write one step of decoupled weight decay as an update of w. At which w would it stop moving the weight?",
        "Does w0 appear anywhere in that rule? Compare with L2-SP's penalty alpha/2 ||w - w0||^2."),
}
SOLUTIONS: dict[str, object] = {"costliest_l2sp": 0.1, "build_l2sp": build,
                                "decay_pulls_to": DECAY_QUESTION.right_letter}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "costliest_l2sp": [(1000, "strongest pull is not the costliest"), (0.001, "another strength costs more")],
    "build_l2sp": [(_too_strong, "lose"), (_too_weak, "do not rise"), (_frozen, "linear probe"),
                   (_chosen, "do not rise"), (_budget_line, "gentle")],
    "decay_pulls_to": [(DECAY_QUESTION.letter_of(1), "is w0 in that rule?")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
