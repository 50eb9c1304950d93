"""Lesson 02's exercises: predict how far a too-high rate falls, explain why the training loss cannot choose the
rate, and read a rate off the range test, trained to see whether it is within 2 points of the validated choice on
validation digits."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import fmean
from types import EllipsisType

from ftlib.checks import MAX_RATE
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
from ftlib.course.lessons.experiments import Results
from ftlib.course.lessons.learning_rate import top_region

__all__ = ["HINTS", "READING", "SOLUTIONS", "TRAINING_LOSS_QUESTION", "WRONG_ANSWERS", "high_rate_drop", "hint",
           "range_test_rate", "solution", "training_loss_cannot_choose"]

READING = 2.0  # a rate read off the range-test plot lies within this factor of the seed's steepest fall


@exercise
def high_rate_drop(guess: float | EllipsisType, sweep: Results, high: float = 1e-1, good: float = 3e-3) -> Feedback:
    """Exercise 1 (predict): the learner's guess of the mean test accuracy at ``high`` minus that at ``good``, in
    points, against the lesson's sweep."""
    quantity = (f"the test accuracy at {high:.0e} minus that at {good:.0e}, in points (mean over the seeds; "
                f"negative if {high:.0e} is worse)")
    if not attempted(guess):
        return check_prediction(guess, 0.0, tolerance=5, quantity=quantity, why="")
    if not sweep.where(lr=high) or not sweep.where(lr=good):
        return cells_not_run(f"the sweep's runs at {high:.0e} and {good:.0e}")
    return check_prediction(
        guess, 100 * fmean(sweep.differences("lr", high, good)), tolerance=5, unit=" points", quantity=quantity,
        why=f"at {high:.0e} each step is so large that it overwrites the pretrained features: the network still "
            f"memorises its training digits (its training loss ends the lowest of those printed above), but digits "
            f"it has not seen are read worse. At {good:.0e} the features are adjusted, not replaced.")


TRAINING_LOSS_QUESTION = Question(
    "At 1e-01 the training loss ends far lower than at the chosen rate, yet the test accuracy is lower. Why can the "
    "training loss not choose the rate here?",
    [
        Option("It measures only the fit to the training digits, which a high rate can memorise.", True,
               "That is why the lesson chooses on validation digits the runs never train on, and reports on the "
               "test set: the validation curve has the inverted U that the training loss lacks."),
        Option("The training loss is too noisy to compare between the different rates.", False,
               "The printed losses differ by orders of magnitude: it is not noise. Their order itself is wrong: the "
               "lowest loss belongs to a rate that tests worse."),
        Option("At 1e-01 the loss exploded, so its final value could not be read at all.", False,
               "It did not explode: it ended the lowest of the printed losses. On a few dozen images a high rate "
               "drives the loss down, not up."),
        Option("A lower training loss always means a better model, so here the test set must be misleading.", False,
               "The test digits were never trained on, and the validation digits, drawn separately, show the same "
               "drop at high rates (the sweep plot). A lower loss on the training images means they are memorised "
               "better, not that new digits are read better."),
    ], seed="lesson02.training_loss_cannot_choose/2")


@exercise
def training_loss_cannot_choose(answer: str | EllipsisType) -> Feedback:
    """Exercise 2 (explain): the letter of the learner's answer to :data:`TRAINING_LOSS_QUESTION`."""
    return TRAINING_LOSS_QUESTION.check(answer)


@exercise
def range_test_rate(rate: float | EllipsisType, finetune: Callable[[float, int], dict], sweep: Results,
                    best: float, tests: Sequence, seed: int = 0) -> Feedback:
    """Exercise 3 (do): a rate read off the range-test plot (within :data:`READING` of seed ``seed``'s steepest
    fall, ``tests[seed].suggestion``), trained with ``finetune(rate, seed)``; its *validation* accuracy must be at
    most 2 points below that of the rate ``best`` chosen on validation (the sweep's run, same seed)."""
    quantity = f"your rate's validation accuracy minus the chosen rate's (seed {seed}), in points,"
    if not attempted(rate):
        return not_attempted("write the peak rate you read off the range-test plot")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= MAX_RATE:
        return tell(False, f"Your rate should be a number above 0 and at most {MAX_RATE:g}, e.g. 1e-3; got {rate!r}.")
    if len(tests) <= seed or not sweep.where(lr=best, seed=seed):
        return cells_not_run("the sweep or the range test")
    steepest = tests[seed].suggestion
    if not steepest / READING <= rate <= steepest * READING:
        where = "above" if rate > steepest else "below"
        too_high = rate > max(top_region(sweep, "lr"))  # past the sweep's good rates, towards the curve's end
        lowest = (" (towards the end of the curve, where the loss is lowest, 50 images are memorised)"
                  if too_high else "")
        return tell(False, f"Not yet: {rate:g} is not where the range-test curve falls most steeply; it lies "
                           f"{where} it{lowest}. Read the rate at the dot of seed {seed}'s curve, within a factor "
                           f"{READING:g}.")
    trained = finetune(rate, seed)
    chosen = sweep.where(lr=best, seed=seed)[0]["val_accuracy"]
    print(f"Trained at lr = {rate:g} (seed {seed}): validation {trained['val_accuracy']:.1%}, at the chosen "
          f"{best:g}: {chosen:.1%}; your rate's test accuracy, for the record: {trained['accuracy']:.1%}.")
    inside = min(top_region(sweep, "lr")) <= rate <= max(top_region(sweep, "lr"))
    hint = ("your reading is inside the sweep's top region; another seed's data may do better." if inside else
            "your reading lies outside the sweep's top region: on this little data the steepest fall is a first "
            "guess, not the answer.")
    return check_target(100 * (trained["val_accuracy"] - chosen), target=-2, quantity=quantity, unit=" points",
                        hint=hint)


HINTS: dict[str, tuple[str, str]] = {
    "high_rate_drop": (
        "A rate 33 times larger does not learn 33 times faster on 50 images: think of what large steps do to "
        "pretrained features.",
        "Once the sweep has run, subtract the mean test accuracy at 3e-3 from that at 1e-1 (negative if 1e-1 is "
        "worse)."),
    "training_loss_cannot_choose": (
        "Which images does the training loss measure, and which images does the test accuracy measure?",
        "Compare the three printed training losses with the test accuracies next to them: is their order the same?"),
    "range_test_rate": (
        "The range test suggests the rate where its curve falls most steeply: the dot on each seed's curve.",
        "Not the end of the curve, where the loss is lowest: there 50 images are memorised. Read the x value of "
        "seed 0's dot on the log axis: find the two gridlines around it and judge how far between them it sits "
        "(each decade has the same width)."),
}


SOLUTIONS: dict[str, object] = {"high_rate_drop": -10,
                                "training_loss_cannot_choose": TRAINING_LOSS_QUESTION.right_letter,
                                "range_test_rate": 0.002}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "high_rate_drop": [(0, "too high")],
    "training_loss_cannot_choose": [(TRAINING_LOSS_QUESTION.letter_of(2), "It did not explode")],
    "range_test_rate": [(0.1, "50 images are memorised"), (0.01, "falls most steeply")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
