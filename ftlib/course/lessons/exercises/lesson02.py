"""Lesson 02's exercises: predict how far a too-high rate falls, explain why the training loss cannot choose the
rate, and read a rate off the range test, trained to see whether it is within 2 points of the validated choice."""

from __future__ import annotations

from collections.abc import Callable
from statistics import fmean
from types import EllipsisType

from ftlib.checks import MAX_RATE
from ftlib.course.lessons.exercises import Feedback, Option, Question, attempted, check_prediction, check_target
from ftlib.course.lessons.experiments import Results
from ftlib.course.lessons.learning_rate import top_region

__all__ = ["SOLUTIONS", "TRAINING_LOSS_QUESTION", "WRONG_ANSWERS", "high_rate_drop", "range_test_rate",
           "training_loss_cannot_choose"]


def high_rate_drop(guess: float | EllipsisType, sweep: Results, high: float = 1e-1, good: float = 3e-3) -> Feedback:
    """Exercise 1 (predict): the learner's guess of the mean test accuracy at ``high`` minus that at ``good``, in
    points, against the lesson's sweep."""
    actual = 100 * fmean(sweep.differences("lr", high, good)) if attempted(guess) else 0.0
    return check_prediction(
        guess, actual, tolerance=5, unit=" points",
        quantity=f"the test accuracy at {high:.0e} minus that at {good:.0e}, in points (mean over the seeds; "
                 f"negative if {high:.0e} is worse)",
        why=f"at {high:.0e} each step is so large that it overwrites the pretrained features: the network still "
            f"memorises its 50 digits (its training loss ends the lowest of the three printed above), but digits "
            f"it has not seen are read worse. At {good:.0e} the features are adjusted, not replaced.")


TRAINING_LOSS_QUESTION = Question(
    "At 1e-01 the training loss ends far lower than at the chosen rate, yet the test accuracy is lower. Why can the "
    "training loss not choose the rate here?",
    {
        "a": Option("The training loss is too noisy to compare between rates.", False,
                    "The printed losses (seed 0, mean of the last 10 steps) differ by orders of magnitude: it is not "
                    "noise. Their order itself is wrong: the lowest loss belongs to a rate that tests worse."),
        "b": Option("At 1e-01 the loss exploded, so it could not be read.", False,
                    "It did not explode: it ended the lowest of the three printed losses. On 50 images a high rate "
                    "drives the loss down, not up."),
        "c": Option("The training loss measures the fit to the 50 training digits only: a high rate memorises "
                    "them while damaging the pretrained features, which only held-out digits reveal.", True,
                    "That is why the lesson chooses on 100 validation digits the runs never train on, and reports "
                    "on the test set: the validation curve has the inverted U that the training loss lacks."),
        "d": Option("A lower training loss always means a better model; the test set is what misleads here.", False,
                    "The 2,500 test digits were never trained on, and the validation digits, drawn separately, show "
                    "the same drop at high rates (the sweep plot). A lower loss on 50 images means they are "
                    "memorised better, not that new digits are read better."),
    })


def training_loss_cannot_choose(answer: str | EllipsisType) -> Feedback:
    """Exercise 2 (explain): the letter of the learner's answer to :data:`TRAINING_LOSS_QUESTION`."""
    return TRAINING_LOSS_QUESTION.check(answer)


def range_test_rate(rate: float | EllipsisType, finetune: Callable[[float, int], dict], sweep: Results,
                    best: float, seed: int = 0) -> Feedback:
    """Exercise 3 (do): train ``finetune(rate, seed)`` at the rate the learner read off the range-test plot; its
    test accuracy must be within 2 points of the rate ``best`` chosen on validation (the sweep's run, same seed)."""
    quantity = f"your rate's test accuracy minus the chosen {best:g}'s (seed {seed})"
    if not attempted(rate):
        message = (f"Exercise not attempted yet: write the peak rate you read off the range-test plot in place of "
                   f"`...`, then run this cell again (target: at most 2 points below the test accuracy of the rate "
                   f"chosen on validation, {best:g}, in seed {seed}).")
        print(message)
        return Feedback(None, message)
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= MAX_RATE:
        message = f"Your rate should be a number above 0 and at most {MAX_RATE:g}, e.g. 1e-3; got {rate!r}."
        print(message)
        return Feedback(False, message)
    trained = finetune(rate, seed)
    chosen = sweep.values(lr=best, seed=seed)[0]
    print(f"Trained at lr = {rate:g} (seed {seed}): validation {trained['val_accuracy']:.1%}, test "
          f"{trained['accuracy']:.1%}; at the chosen {best:g}: test {chosen:.1%}.")
    top = top_region(sweep, "lr")
    if rate > max(top):
        hint = ("your rate lies above the sweep's top region. On the range-test plot the loss keeps falling to the "
                "very end, where 50 images are memorised, so the lowest loss points far too high: read the rate "
                "where the curve falls most steeply instead.")
    elif rate < min(top):
        hint = ("your rate lies below the sweep's top region: at the left of the range-test plot the loss is still "
                "flat, and 80 steps at such a rate hardly move the model. Move right, to where the curve falls "
                "steeply.")
    else:
        hint = "your rate is inside the top region; another seed's data or a rate nearer the middle may do better."
    return check_target(100 * (trained["accuracy"] - chosen), target=-2, quantity=quantity, unit=" points", hint=hint)


SOLUTIONS: dict[str, object] = {"high_rate_drop": -10, "training_loss_cannot_choose": "c", "range_test_rate": 0.002}
WRONG_ANSWERS: dict[str, object] = {"high_rate_drop": 0, "training_loss_cannot_choose": "b", "range_test_rate": 0.1}
