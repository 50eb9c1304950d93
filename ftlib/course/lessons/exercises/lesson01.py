"""Lesson 01's exercises: predict fine-tuning's gain over scratch at N = 5, explain why a pretrained start wins with
few labels, and turn the pretrained model into a linear probe by freezing it."""

from __future__ import annotations

from collections.abc import Callable
from statistics import fmean
from types import EllipsisType

from torch import nn

from ftlib import data, freeze
from ftlib.course.lessons.exercises import Feedback, Option, Question, attempted, check_prediction, check_target
from ftlib.course.lessons.experiments import Results, get_method, make_model, run
from ftlib.evaluation import evaluate

__all__ = ["GAIN_METHOD", "SOLUTIONS", "WHY_PRETRAINING_WINS", "WRONG_ANSWERS", "gain_at_five",
           "probe_by_freezing", "why_pretraining_wins"]

GAIN_METHOD = "fine-tune, low backbone LR"  # the method whose gain over scratch exercise 1 predicts


def gain_at_five(guess: float | EllipsisType, curve: Results) -> Feedback:
    """Exercise 1 (predict): the learner's guess of :data:`GAIN_METHOD`'s mean gain over scratch at N = 5, in
    points, against the lesson's runs (``curve``, with both methods at ``n=5``)."""
    actual = 100 * fmean(curve.differences("method", GAIN_METHOD, "scratch", n=5)) if attempted(guess) else 0.0
    return check_prediction(
        guess, actual, tolerance=5, unit=" points",
        quantity="how many points fine-tuning (low backbone LR) beats scratch by at N = 5 (mean over the seeds)",
        why="with 50 labelled digits, scratch must learn strokes and curves from random weights; the pretrained "
            "backbone already computes such features (learned on letters), so the same 50 digits only have to "
            "adjust them and fit a new head. Section 4 shows the gap shrinking as N grows.")


WHY_PRETRAINING_WINS = Question(
    "At N = 5, fine-tuning beats scratch by many points, with the same network and the same 100 steps. Why?",
    {
        "a": Option("Fine-tuning trains for longer than scratch.", False,
                    "Every method takes the same 100 steps on the same images (section 3's table), and the compute "
                    "table shows about the same seconds per run: training time is not what differs."),
        "b": Option("Its starting weights already compute useful features (strokes, curves, junctions learned on "
                    "letters), so a few labels only adapt them; scratch must learn them from 50 images.", True,
                    "The linear probe shows it: with those features frozen and only a new head trained, it still "
                    "beats scratch at N = 5 (section 4). The gain fades as N grows, because with more labels "
                    "scratch can learn such features itself."),
        "c": Option("The fine-tuned model has more parameters to learn with.", False,
                    "The compute table shows the same trainable count for scratch and fine-tuning: it is the same "
                    "network. And the linear probe, which trains only its 1,290-number head, beats scratch too."),
        "d": Option("The pretrained model has already seen digits.", False,
                    "It was pretrained on 52 rendered letters only; digits were never in its data, and these are "
                    "handwritten, not rendered from fonts. What transfers is features, not the classes."),
    })


def why_pretraining_wins(answer: str | EllipsisType) -> Feedback:
    """Exercise 2 (explain): the letter of the learner's answer to :data:`WHY_PRETRAINING_WINS`."""
    return WHY_PRETRAINING_WINS.check(answer)


def probe_by_freezing(build: Callable[[nn.Module], object], curve: Results, seed: int = 0,
                      steps: int = 100) -> Feedback:
    """Exercise 3 (do): ``build(model)`` freezes parts of a pretrained model with a new head; it must leave only
    the head trainable. Then it trains exactly like plain fine-tuning (its rate, ``steps`` steps, N = 5 digits of
    ``seed``) and must beat scratch's test accuracy in that seed (from ``curve``) by at least 5 points."""
    target, quantity = 5, f"your probe's gain over scratch in test accuracy at N = 5, seed {seed},"
    if not callable(build) or not attempted(build):
        return check_target(None, target=target, quantity=quantity, unit=" points", hint="")
    model = make_model(get_method("fine-tune"), 10, seed)
    build(model)
    trainable, head = freeze.count_parameters(model, trainable_only=True), freeze.count_parameters(model.head)
    if trainable != head:
        if trainable == 0:
            why = ("Nothing trains: the new head starts from random weights, so it must learn; freeze only the "
                   "backbone.")
        elif trainable > head:
            why = (f"{trainable:,} parameters train, but a linear probe trains only the head's {head:,}: freeze "
                   f"every block except the head (see ftlib.freeze.freeze_backbone).")
        else:
            why = f"{trainable:,} parameters train, fewer than the head's {head:,}: leave the whole head trainable."
        print(why)
        return Feedback(False, why)
    trained = run("fine-tune", data.few_shot("mnist", 5, seed), seed, steps, model=model)
    accuracy = evaluate(trained.model, data.test_set("mnist")).accuracy
    scratch = curve.values(method="scratch", n=5, seed=seed)[0]
    print(f"Only the head trains ({head:,} parameters); after {steps} steps at plain fine-tuning's rate: test "
          f"{accuracy:.1%}, scratch {scratch:.1%} in the same seed. A probe fitted by gradient steps instead of "
          f"section 3's exact fit.")
    return check_target(100 * (accuracy - scratch), target=target, quantity=quantity, unit=" points",
                        hint="BatchNorm: freeze with ftlib.freeze (it keeps the running statistics) rather than "
                             "setting requires_grad by hand.")


def freeze_for_probe(model):
    freeze.freeze_backbone(model)


def freeze_everything(model):
    freeze.freeze(model, freeze.block_names(model))


SOLUTIONS: dict[str, object] = {"gain_at_five": 15, "why_pretraining_wins": "b", "probe_by_freezing": freeze_for_probe}
WRONG_ANSWERS: dict[str, object] = {"gain_at_five": 2, "why_pretraining_wins": "a",
                                    "probe_by_freezing": freeze_everything}
