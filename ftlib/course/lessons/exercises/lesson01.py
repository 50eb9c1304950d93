"""Lesson 01's exercises: predict fine-tuning's gain over scratch at N = 5, explain why a pretrained start wins with
few labels, and turn the pretrained model into a linear probe by freezing it."""

from __future__ import annotations

from collections.abc import Callable
from statistics import fmean
from types import EllipsisType

from torch import nn

from ftlib import data, freeze
from ftlib.course.lessons import tuning
from ftlib.course.lessons.exercises import (
    Coach,
    Feedback,
    Option,
    Question,
    attempted,
    cells_not_run,
    check_prediction,
    check_target,
    exercise,
    not_attempted,
    tell,
)
from ftlib.course.lessons.experiments import Results, get_method, make_model, run
from ftlib.evaluation import evaluate

__all__ = ["GAIN_METHOD", "HINTS", "PROBE_RATE_ARM", "SOLUTIONS", "WHY_PRETRAINING_WINS", "WRONG_ANSWERS",
           "gain_at_five", "hint", "probe_by_freezing", "solution", "why_pretraining_wins"]

GAIN_METHOD = "fine-tune, low backbone LR"  # the method whose gain over scratch exercise 1 predicts
PROBE_RATE_ARM = "01 fine-tune, N=5"  # the tuning table's arm whose chosen rate trains exercise 3's probe
_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


@exercise
def gain_at_five(guess: float | EllipsisType, curve: Results) -> Feedback:
    """Exercise 1 (predict): the learner's guess of :data:`GAIN_METHOD`'s mean gain over scratch at N = 5, in
    points, against the lesson's runs (``curve``, with both methods at ``n=5``)."""
    quantity = "how many points fine-tuning (low backbone LR) beats scratch by at N = 5 (mean over the seeds)"
    if not attempted(guess):
        return check_prediction(guess, 0.0, tolerance=5, quantity=quantity, why="")
    if not curve.where(method=GAIN_METHOD, n=5) or not curve.where(method="scratch", n=5):
        return cells_not_run("the curve's runs at N = 5")
    actual = 100 * fmean(curve.differences("method", GAIN_METHOD, "scratch", n=5))
    return check_prediction(
        guess, actual, tolerance=5, unit=" points", quantity=quantity,
        why="with 50 labelled digits, scratch must learn strokes and curves from random weights; the pretrained "
            "backbone already computes such features (learned on letters), so the same 50 digits only have to "
            "adjust them and fit a new head. The curve shows the gap shrinking as N grows.")


WHY_PRETRAINING_WINS = Question(
    "At N = 5, fine-tuning beats scratch by many points, with the same network and the same steps. Why?",
    [
        Option("Its starting weights already compute useful features; a few labels only adapt them.", True,
               "The linear probe shows it: with those features frozen and only a new head trained, it still beats "
               "scratch at N = 5. The gain fades as N grows, because with more labels scratch can learn such "
               "features itself."),
        Option("Fine-tuning trains for longer than scratch does, so it has more time to fit the 50 images.", False,
               "Every method takes the same steps on the same images, and the compute table shows about the same "
               "seconds per run: training time is not what differs."),
        Option("The fine-tuned model has more parameters to learn with than scratch has.", False,
               "The compute table shows the same trainable count for scratch and fine-tuning: it is the same "
               "network. And the linear probe, which trains only its new head, beats scratch too."),
        Option("The pretrained model has already seen digits during its pretraining.", False,
               "It was pretrained on rendered letters only; digits were never in its data, and these are "
               "handwritten, not rendered from fonts. What transfers is features, not the classes."),
    ], seed="lesson01.why_pretraining_wins/1")


@exercise
def why_pretraining_wins(answer: str | EllipsisType) -> Feedback:
    """Exercise 2 (explain): the letter of the learner's answer to :data:`WHY_PRETRAINING_WINS`."""
    return WHY_PRETRAINING_WINS.check(answer)


@exercise
def probe_by_freezing(build: Callable[[nn.Module], object] | EllipsisType, curve: Results, seed: int = 0,
                      steps: int = 100, lr: float | None = None) -> Feedback:
    """Exercise 3 (do): ``build(model)`` freezes parts of a pretrained model with a new head; it must leave only
    the head trainable and the backbone's BatchNorm statistics fixed. Then it trains exactly like plain fine-tuning
    (``lr``, default plain fine-tuning's rate chosen on validation at N = 5 in the tuning table; ``steps`` steps,
    N = 5 digits of ``seed``) and must beat scratch's test accuracy in that seed (from ``curve``) by at least 5
    points."""
    target, quantity = 5, f"your probe's gain over scratch in test accuracy at N = 5, seed {seed},"
    if not attempted(build):
        return not_attempted("write the body of freeze_for_probe(model)")
    if not callable(build):
        return tell(False, f"freeze_for_probe should be a function of the model, got {build!r}.")
    if not curve.where(method="scratch", n=5, seed=seed):
        return cells_not_run(f"scratch's run at N = 5, seed {seed}")
    model = make_model(get_method("fine-tune"), 10, seed)
    backbone = [name for name in freeze.block_names(model) if name != "head"]
    before = freeze.snapshot(model, backbone)
    build(model)
    trainable, head = freeze.count_parameters(model, trainable_only=True), freeze.count_parameters(model.head)
    if trainable != head:
        if trainable == 0:
            why = "Nothing trains: the new head starts from random weights, so it must learn; freeze only the backbone."
        elif trainable > head:
            why = (f"{trainable:,} parameters train, but a linear probe trains only the head's {head:,}: freeze "
                   f"every block except the head.")
        else:
            why = f"{trainable:,} parameters train, fewer than the head's {head:,}: leave the whole head trainable."
        return tell(False, f"Not yet: {why}")
    lr = tuning.load().options(PROBE_RATE_ARM)["lr"] if lr is None else lr
    trained = run("fine-tune", data.few_shot("mnist", 5, seed), seed, steps, model=model, lr=lr)
    # a counter that no output depends on: a freeze that keeps the statistics still (momentum 0) is right
    moved = [name for name in freeze.changed(trained.model, before) if not name.endswith("num_batches_tracked")]
    if moved:
        stats_only = all(name.split(".")[-1] in _BN_STATS for name in moved)
        what = ("only the BatchNorm running statistics moved: requires_grad alone freezes the weights, not the "
                "statistics, so the features the head learned on are not the ones it is tested on"
                if stats_only else "some of its weights were trained")
        return tell(False, f"Not yet: the trainable count is right ({head:,}, the head), but the backbone changed "
                           f"during training ({len(moved)} tensors, e.g. {moved[0]}): {what}.")
    accuracy = evaluate(trained.model, data.test_set("mnist")).accuracy
    scratch = curve.values(method="scratch", n=5, seed=seed)[0]
    print(f"Only the head trains ({head:,} parameters) and the backbone, BatchNorm statistics included, is unchanged; "
          f"after {steps} steps at plain fine-tuning's rate ({lr:g}): test {accuracy:.1%}, scratch {scratch:.1%} in "
          f"the same seed. A probe fitted by gradient steps instead of the lesson's exact fit.")
    return check_target(100 * (accuracy - scratch), target=target, quantity=quantity, unit=" points",
                        hint="the rate and steps are plain fine-tuning's; check what your function freezes.")


HINTS: dict[str, tuple[str, str]] = {
    "gain_at_five": (
        "Think of what each method starts from: scratch from random weights, fine-tuning from features learned on "
        "letters. With only 5 digits per class, which start matters more?",
        "Once the table has run, read the two N = 5 means (scratch and fine-tune, low backbone LR) and take their "
        "difference, in points."),
    "why_pretraining_wins": (
        "Rule out what the tables above show to be equal between the methods: steps, seconds, trainable parameters.",
        "What does the linear probe, which trains only a new head on frozen features, tell you about those features?"),
    "probe_by_freezing": (
        "ftlib.freeze has a function that freezes every block of a model except its head.",
        "Setting requires_grad by hand freezes the weights but not BatchNorm's running statistics; ftlib.freeze keeps "
        "the frozen blocks' BatchNorm layers in eval mode."),
}


def freeze_for_probe(model):
    freeze.freeze_backbone(model)


def freeze_everything(model):
    freeze.freeze(model, freeze.block_names(model))


def weights_only_probe(model):
    for name, block in model.named_children():
        if name != "head":
            block.requires_grad_(False)


SOLUTIONS: dict[str, object] = {"gain_at_five": 15, "why_pretraining_wins": WHY_PRETRAINING_WINS.right_letter,
                                "probe_by_freezing": freeze_for_probe}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "gain_at_five": [(2, "too low")],
    "why_pretraining_wins": [(WHY_PRETRAINING_WINS.letter_of(1), "same steps")],
    "probe_by_freezing": [(freeze_everything, "Nothing trains"), (weights_only_probe, "BatchNorm running statistics")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
