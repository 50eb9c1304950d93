"""Lesson 06's exercises: predict the step where the validation loss turns, build an early-stopping rule that stops a
real run soon after its best, and say why the patience is chosen on validation, not on test."""

from __future__ import annotations

from types import EllipsisType

from ftlib import data
from ftlib.course.lessons import early_stopping as es
from ftlib.course.lessons.exercises import Feedback, Option, Question, attempted, check_prediction, check_target, tell
from ftlib.evaluation import evaluate
from ftlib.stopping import EarlyStopping, History

__all__ = ["PATIENCE_QUESTION", "SOLUTIONS", "WRONG_ANSWERS", "choose_patience_on", "stop_a_real_run",
           "turning_step"]


def turning_step(guess: float | EllipsisType, history: History) -> Feedback:
    """Predict, then run: the step at which seed 0's validation loss is lowest (where it turns round)."""
    low = min(range(len(history.val_loss)), key=lambda i: history.val_loss[i])
    return check_prediction(
        guess, history.eval_step[low], tolerance=10, unit=" steps",
        quantity="the step at which seed 0's validation loss stops falling and turns round",
        why="the network first learns what most labels agree on, so the loss on the validation digits falls; once "
            "the correctly labelled digits are fitted, the only way left to lower the training loss is to memorise "
            "the wrong labels, and each memorised wrong label makes the validation predictions worse.")


def stop_a_real_run(rule: EarlyStopping | EllipsisType, histories: list[History], seed: int = 1,
                    steps: int = 150) -> Feedback:
    """Do: ``rule`` stops a real run of seed 1 (the lesson's setting, about 1.5 s) by itself within half of the
    ``steps`` and restores the step with the lowest validation loss of the whole recorded run."""
    if not attempted(rule):
        return check_target(None, target=steps // 2, at_least=False, quantity="steps trained (while restoring the "
                            "step of the lowest validation loss of the whole run)", hint="")
    if not isinstance(rule, EarlyStopping):
        return tell(False, "Build the rule with stopping.EarlyStopping(monitor, patience=..., "
                    f"min_delta=...), not {type(rule).__name__}.")
    full = histories[seed] if seed < len(histories) else es.long_run(seed, 25, 0.3, 0.2, steps, 10,
                                                                      watch_test=False).history
    low = full.eval_step[min(range(len(full.val_loss)), key=lambda i: full.val_loss[i])]
    run = es.long_run(seed, 25, 0.3, 0.2, steps, 10, watch_test=False, early_stopping=rule)
    trained, best = run.history.stopped_step or steps, run.history.best_step
    accuracy = evaluate(run.model, data.test_set("mnist")).accuracy
    print(f"seed {seed}: your rule trained {trained} of {steps} steps and restored step {best} ({accuracy:.1%} on "
          f"the clean test digits); the whole run's lowest validation loss is at step {low}")
    if best != low:
        return tell(False, f"Not yet: the rule restored step {best}, not step {low}, where the validation "
                    "loss of the whole run is lowest. Look at: what it watches (the validation "
                    "loss) and min_delta (a large one ignores real improvements).")
    return check_target(trained, target=steps // 2, at_least=False, quantity="steps trained",
                        hint="each evaluation of patience costs 10 more steps after the best, and with the best "
                             "weights restored it buys nothing on this curve (section 5's table): a smaller "
                             "patience.")


PATIENCE_QUESTION = Question(
    "Why is the patience (and the score the rule watches) chosen on validation data, never on the test set?", {
        "a": Option("Because the validation set is the better measure of accuracy", False,
                    "Here it is the worse one: 50 digits with noisy labels against 2,500 clean test digits. It is "
                    "used because choosing on it leaves the test set untouched, not because it measures better."),
        "b": Option("Because a rule picked for its test score makes that score part of the choice: it is then "
                    "an optimistic estimate, not a measure of accuracy on new data", True,
                    "The oracle of section 3 is that bias at its largest: it picks the step by its test accuracy "
                    "and no project can reach its score. Choose on validation (or earlier runs); the test set "
                    "only scores the choice, once."),
        "c": Option("Because the test accuracy does not change with the patience anyway", False,
                    "It can: watching the validation accuracy, section 5's table gives a lower mean at patience 1 "
                    "than at 2. Where it does not change, choosing on test would still bias the next choice."),
        "d": Option("Looking at the test set is fine if each patience is scored only once", False,
                    "Scoring several patiences once each and keeping the best is choosing on test: the maximum of "
                    "several noisy scores is biased upwards, like the oracle."),
    })


def choose_patience_on(answer: str | EllipsisType) -> Feedback:
    """Explain: why the patience is chosen on validation, not on test (multiple choice)."""
    return PATIENCE_QUESTION.check(answer)


SOLUTIONS: dict[str, object] = {"turning_step": 30, "stop_a_real_run": EarlyStopping("val_loss", patience=2),
                                "choose_patience_on": "b"}
WRONG_ANSWERS: dict[str, object] = {"turning_step": 120, "stop_a_real_run": EarlyStopping("val_loss", patience=5),
                                    "choose_patience_on": "c"}
