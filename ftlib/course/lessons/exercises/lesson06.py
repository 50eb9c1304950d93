"""Lesson 06's exercises: predict the step where the validation loss turns, build an early-stopping rule that stops a
real run soon after its best validation accuracy, and say why the patience is chosen on validation, not on test."""

from __future__ import annotations

import numbers
from types import EllipsisType

from ftlib import data
from ftlib.course.lessons import early_stopping as es
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
    reached,
    tell,
)
from ftlib.evaluation import evaluate
from ftlib.stopping import MONITORS, EarlyStopping, History, stopping_point

__all__ = ["HINTS", "LOSS_TOLERANCE", "PATIENCE_QUESTION", "SOLUTIONS", "TOO_EARLY", "TOO_LATE", "WRONG_ANSWERS",
           "choose_patience_on", "hint", "solution", "stop_a_real_run", "turning_step"]


LOSS_TOLERANCE = 0.01  # evaluated steps whose validation loss is this close to the lowest count as the turn
TOO_EARLY = ("the first evaluations still fit what most labels agree on: the validation loss falls for a while "
             "before the wrong labels start to be memorised.")  # the check runs before the curves are shown
TOO_LATE = ("the run makes 24 passes over its training digits, and what most labels agree on is fitted within the "
            "first few of them.")


@exercise
def turning_step(guess: float | EllipsisType, history: History) -> Feedback:
    """Predict, then run: the step at which seed 0's validation loss turns round. Any evaluated step whose loss is
    within :data:`LOSS_TOLERANCE` of the lowest counts (on a flat bottom two steps can look the same), and a guess
    passes within 5 steps of one of them."""
    quantity = "the step at which seed 0's validation loss stops falling and turns round"
    if not attempted(guess) or isinstance(guess, bool) or not isinstance(guess, numbers.Real):
        return check_prediction(guess, 0.0, tolerance=5, quantity=quantity, why="")
    if not history.val_loss:
        return cells_not_run("seed 0's recorded validation loss")
    lowest = min(history.val_loss)
    bottom = [s for s, loss in zip(history.eval_step, history.val_loss) if loss - lowest <= LOSS_TOLERANCE]
    nearest = min(bottom, key=lambda s: abs(guess - s))
    if not reached(abs(guess - nearest), 5, at_least=False):  # a miss: check_prediction tells its side, once
        return check_prediction(guess, nearest, tolerance=5, unit=" steps", quantity=quantity, why="",
                                low=TOO_EARLY, high=TOO_LATE)
    low = history.eval_step[history.val_loss.index(lowest)]
    return tell(True, f"Close: the validation loss is lowest at step {low} ({lowest:.3f}); every evaluated step "
                      f"within {LOSS_TOLERANCE} of it counts ({', '.join(map(str, bottom))}), and you predicted "
                      f"{guess:g}. Why: the network first learns what most labels agree on, so the loss on the "
                      "validation digits falls; once the correctly labelled digits are fitted, the only way left to "
                      "lower the training loss is to memorise the wrong labels, and each memorised wrong label makes "
                      "the validation predictions worse.")


@exercise
def stop_a_real_run(rule: EarlyStopping | EllipsisType, histories: list[History], seed: int = 0) -> Feedback:
    """Do: ``rule`` stops a real run of seed 0 (the lesson's setting, a few seconds) by itself, watching the bumpy
    validation accuracy, restores (``restore_best``) the first step with the highest validation accuracy of the whole
    recorded run, and trains no more steps than the least patient rule that still restores it. The patience is
    chosen in hindsight, on the whole validation curve of one seed: it practises reading the rule, not choosing it.
    The rule's run is as long as the recorded runs (``histories``), so the target and the run are the same run."""
    if not attempted(rule):
        return not_attempted("build the rule, stopping.EarlyStopping(...),")
    if not isinstance(rule, EarlyStopping):
        return tell(False, "Build the rule with stopping.EarlyStopping(monitor, patience=..., "
                    f"min_delta=...), not {type(rule).__name__}.")
    if not rule.restore_best:
        return tell(False, "Not yet: your rule has restore_best=False, so it would keep the weights of the step "
                           "where it stops, not those of its best step. Let it restore the best.")
    if rule.monitor != "val_accuracy":
        return tell(False, f"Not yet: your rule watches {rule.monitor}; the step to restore is the one with the "
                           "highest validation accuracy, so watch val_accuracy.")
    if rule.direction != "max":
        return tell(False, f"Not yet: your rule has mode={rule.mode!r}, so it counts a LOWER validation accuracy as "
                           "better. Leave mode='auto' (or 'max'): a higher accuracy is better.")
    if not histories:
        return cells_not_run("the recorded runs (histories)")
    lr, steps = es.rate(), len(histories[0].step)
    full = histories[seed] if seed < len(histories) else es.long_run(seed, 25, 0.3, 0.2, steps, 10, lr,
                                                                      watch_test=False).history
    scores = full.val_accuracy
    top = full.eval_step[max(range(len(scores)), key=lambda i: (scores[i], -i))]  # the first of the highest
    finds = (stopping_point(scores, p, 0.0, MONITORS["val_accuracy"]) for p in range(1, len(full.eval_step) + 1))
    fewest = next(full.eval_step[stop] if stop is not None else len(full.step)  # the least patient rule that does
                  for best, stop in finds if full.eval_step[best] == top)
    run = es.long_run(seed, 25, 0.3, 0.2, steps, 10, lr, watch_test=False, early_stopping=rule)
    trained, best = run.history.stopped_step or steps, run.history.best_step
    accuracy = evaluate(run.model, data.test_set("mnist")).accuracy
    print(f"seed {seed}: your rule trained {trained} of {steps} steps and restored step {best} ({accuracy:.1%} on "
          f"the clean test digits); the whole run's highest validation accuracy is first reached at step {top}")
    if best != top:
        return tell(False, f"Not yet: the rule restored step {best}, not the first step with the highest "
                    "validation accuracy of the whole run: it stopped before it got there. Look at: the patience "
                    "(too little stops on a plateau) and min_delta (a large one ignores real improvements).")
    if trained > fewest:
        return tell(False, f"Not yet: your rule trained {trained} steps, {trained - top} after the step it restores; "
                    "a less patient rule still restores that step and trains fewer. Look at: each evaluation of "
                    "patience trains more steps after the best, and with the best weights restored it buys nothing "
                    "more on this curve.")
    return tell(True, f"Right: it restores the run's highest validation accuracy (step {top}) and stops "
                      f"{trained - top} steps after it, as early as any patience can on this curve without stopping "
                      "on a plateau.")


PATIENCE_QUESTION = Question(
    "This lesson fixes the patience and the score the rule watches on purpose. A project that chose them would "
    "choose them on validation data, never on the test set: why?", [
        Option("A rule picked for its test score makes that score an optimistic one", True,
               "The oracle is that bias at its largest: it picks the step by its test accuracy and no project can "
               "reach its score. Choose on validation (or earlier runs); the test set only scores the choice, "
               "once."),
        Option("Because the validation set is the better measure of accuracy here", False,
               "Here it is the worse one: few digits with noisy labels against many clean test digits. It is used "
               "because choosing on it leaves the test set untouched, not because it measures better."),
        Option("Because the test accuracy does not change with the patience anyway", False,
               "It can: compare the test accuracies of the patiences in the tables of section 6 below. And where "
               "it does not change, choosing on test would still bias the next choice."),
        Option("Looking at the test set is fine if each patience is scored only once", False,
               "How often each patience is scored does not matter: comparing them on test and keeping one is "
               "still a choice made on the test set, so that set no longer scores a choice it took no part in."),
    ], seed="lesson06.choose_patience_on")


@exercise
def choose_patience_on(answer: str | EllipsisType) -> Feedback:
    """Explain: why the patience is chosen on validation, not on test (multiple choice)."""
    return PATIENCE_QUESTION.check(answer)


HINTS: dict[str, tuple[str, str]] = {
    "turning_step": (
        "The network first learns what most labels agree on; then the only way left to lower the training loss is "
        "to memorise the wrong labels. Which comes first, and how soon?",
        "About 6 steps of batch 32 make one pass over the 200 training digits: fitting what most labels agree on "
        "takes a few passes, not most of the 24 (the plot under the check shows the answer)."),
    "stop_a_real_run": (
        "Watch the validation accuracy and keep the best weights (restore_best); what is left to choose is the "
        "patience.",
        "Walk seed 0's validation accuracy (printed above the exercise) from the left: how many evaluations does "
        "it stay without a new best before it reaches its highest value? Patience must outlast that plateau."),
    "choose_patience_on": (
        "What happens to a score once it has been used to pick the best of several options?",
        "The oracle picks the step by its test accuracy: why can no project reach its score?"),
}
SOLUTIONS: dict[str, object] = {"turning_step": 30, "stop_a_real_run": EarlyStopping("val_accuracy", patience=2),
                                "choose_patience_on": PATIENCE_QUESTION.right_letter}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "turning_step": [(120, "too high"), (10, "too low")],
    "stop_a_real_run": [(EarlyStopping("val_accuracy", patience=5), "more steps after the best"),
                        (EarlyStopping("val_accuracy", patience=1), "stopped before it got there"),
                        (EarlyStopping("val_loss", patience=1), "watch val_accuracy"),
                        (EarlyStopping("val_accuracy", patience=2, restore_best=False), "restore_best=False"),
                        (EarlyStopping("val_accuracy", patience=2, mode="min"), "mode='min'")],
    "choose_patience_on": [(PATIENCE_QUESTION.letter_of(2), "compare the test accuracies")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
