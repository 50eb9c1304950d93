"""Lesson 02's exercises: predict how far a too-high rate falls, explain why the training loss cannot choose the
rate, and read a rate off the range-test plot (checked against the curve's steepest fall), then trained to report its
validation accuracy beside the rate chosen on validation."""

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
    exercise,
    not_attempted,
    tell,
)
from ftlib.course.lessons.experiments import Results
from ftlib.course.lessons.learning_rate import top_region

__all__ = ["HINTS", "READING", "SOLUTIONS", "TRAINING_LOSS_QUESTION", "WRONG_ANSWERS", "high_rate_drop", "hint",
           "range_test_rate", "solution", "training_loss_cannot_choose"]

READING = 1.4  # a rate read off the range-test plot lies within this factor of the seed's steepest fall


@exercise
def high_rate_drop(guess: float | EllipsisType, sweep: Results, best: float, high: float = 1e-1) -> Feedback:
    """Exercise 1 (predict): the learner's guess of the mean test accuracy at ``high`` minus that at ``best`` (the
    rate chosen on validation), in points, against the lesson's sweep. The check runs before the lesson prints the
    sweep's numbers: a miss is told its direction only, and a hit learns the measured value."""
    quantity = (f"the test accuracy at {high:.0e} minus that at the rate chosen on validation, in points (mean over "
                f"the seeds; negative if {high:.0e} is worse)")
    if not attempted(guess):
        return check_prediction(guess, 0.0, tolerance=5, quantity=quantity, why="")
    if not sweep.where(lr=high) or not sweep.where(lr=best):
        return cells_not_run(f"the sweep's runs at {high:.0e} and {best:.0e}")
    return check_prediction(
        guess, 100 * fmean(sweep.differences("lr", high, best)), tolerance=5, unit=" points", quantity=quantity,
        why=f"at {high:.0e} the network still fits its training digits (its training loss ends the lowest of the "
            "three printed below the sweep's plots), but digits it has not seen are read worse. What the large "
            "steps did to the pretrained features is measured next, with a linear probe.",
        low=f"{high:.0e} is a bad rate here, but not a collapse: the pretrained features still carry the network "
            "far above the 10% of chance; the drop is smaller than your guess.",
        high="a rate far above the best one does not learn faster on 50 images: its large steps fit the training "
             "digits and wear away what new digits are read with; expect a clearer drop than your guess.")


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
        Option("At 1e-01 the run had not converged yet: with more steps its test accuracy would catch up.", False,
               "Its training loss ended the lowest of the three printed: on its training digits it has gone further "
               "than any other rate. What it lacks shows only on digits it never trained on."),
        Option("A lower training loss always means a better model, so here the test set must be misleading.", False,
               "The test digits were never trained on, and the validation digits, drawn separately, show the same "
               "drop at high rates (the sweep plot)."),
    ], seed="lesson02.training_loss_cannot_choose/2")


@exercise
def training_loss_cannot_choose(answer: str | EllipsisType) -> Feedback:
    """Exercise 2 (explain): the letter of the learner's answer to :data:`TRAINING_LOSS_QUESTION`."""
    return TRAINING_LOSS_QUESTION.check(answer)


@exercise
def range_test_rate(rate: float | EllipsisType, finetune: Callable[[float, int], dict], validation: Results,
                    best: float, tests: Sequence, seed: int = 0) -> Feedback:
    """Exercise 3 (do): a rate read off the range-test plot: it passes within :data:`READING` of seed ``seed``'s
    steepest fall (``tests[seed].suggestion``; the check cannot tell a reading from a copy of it). A reading that
    passes is trained with ``finetune(rate, seed)``, and its validation accuracy is printed beside that of the rate
    ``best`` chosen on ``validation`` (the runs it was chosen on, same seed): a report, not a condition."""
    if not attempted(rate):
        return not_attempted("write the peak rate you read off the range-test plot")
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= MAX_RATE:
        return tell(False, f"Your rate should be a number above 0 and at most {MAX_RATE:g}, e.g. 1e-3; got {rate!r}.")
    if len(tests) <= seed or not validation.where(lr=best, seed=seed):
        return cells_not_run("the sweep or the range test")
    steepest = tests[seed].suggestion
    if not steepest / READING <= rate <= steepest * READING:
        where = "above" if rate > steepest else "below"
        too_high = rate > max(top_region(validation, "lr"))  # past the sweep's good rates, towards the curve's end
        lowest = (" (towards the end of the curve, where the loss is lowest, 50 images are memorised)"
                  if too_high else "")
        return tell(False, f"Not yet: {rate:g} is not where seed {seed}'s curve falls most steeply; it lies {where} "
                           f"the dot{lowest}. Read the dot's x value within a factor {READING:g}: the small ticks "
                           "between two gridlines mark 2, 3, ... 9 times the lower one.")
    trained = finetune(rate, seed)
    chosen = validation.where(lr=best, seed=seed)[0]
    print(f"Trained at lr = {rate:g} (seed {seed}): validation {trained['val_accuracy']:.1%}, "
          f"{100 * (trained['val_accuracy'] - chosen['val_accuracy']):+.1f} points against the rate chosen on "
          f"validation, {best:g} ({chosen['val_accuracy']:.1%}); test accuracy, for the record: "
          f"{trained['accuracy']:.1%} (the chosen rate: {chosen['accuracy']:.1%}).")
    return tell(True, f"Your rate {rate:g} is within a factor {READING:g} of seed {seed}'s steepest fall "
                      f"({steepest:.2g}). The line above says what that reading is worth on validation.")


HINTS: dict[str, tuple[str, str]] = {
    "high_rate_drop": (
        "A much larger rate does not learn proportionally faster on 50 images: think of what large steps can do to "
        "the pretrained features that new digits are read with.",
        "Large steps fit the 50 training digits very well (a low training loss), yet digits never trained on can be "
        "read worse. Expect a clear drop, well short of a collapse to chance."),
    "training_loss_cannot_choose": (
        "Which images does the training loss measure, and which images does the test accuracy measure?",
        "Compare the three printed training losses with the test accuracies next to them: is their order the same?"),
    "range_test_rate": (
        "The range test suggests the rate where its curve falls most steeply: the dot on each seed's curve.",
        "Not the end of the curve, where the loss is lowest: there 50 images are memorised. Read the x value of "
        "seed 0's dot on the log axis: find the two gridlines around it, then the small ticks between them (2, 3, "
        "... 9 times the lower gridline); each decade has the same width."),
}


SOLUTIONS: dict[str, object] = {"high_rate_drop": -10,
                                "training_loss_cannot_choose": TRAINING_LOSS_QUESTION.right_letter,
                                "range_test_rate": 0.0015}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "high_rate_drop": [(0, "too high")],
    "training_loss_cannot_choose": [(TRAINING_LOSS_QUESTION.letter_of(2), "gone further than any other rate")],
    "range_test_rate": [(0.1, "50 images are memorised"), (0.01, "falls most steeply"), (1e-3, "falls most steeply"),
                        (0.002, "falls most steeply")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
