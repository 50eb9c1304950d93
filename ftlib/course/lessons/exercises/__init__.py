"""Exercises that check themselves: predict then run, do, and explain (multiple choice).

Each exercise cell starts with a placeholder, ``...`` (Python's Ellipsis). An untouched cell prints what to do and
returns a :class:`Feedback` whose ``passed`` is ``None``: it never raises and never changes a lesson's claims, so a
lesson with every exercise unattempted still runs headless. A learner replaces the ``...`` and runs the cell again;
the check prints plain-word feedback (what was expected, what to look at) and returns the same :class:`Feedback`,
which the tests use to run every solution and a typical wrong answer through their checks.

Three kinds, one function each:

* :func:`check_prediction`: *predict, then run*. A number written down before the result is shown, compared with
  the measured value within a stated tolerance, then one sentence on why it came out that way.
* :func:`check_target`: *do*. The learner builds something with ``ftlib``; the lesson's own code trains or evaluates
  it and passes the measured value here, with the target it must reach and a hint for when it does not.
* :class:`Question`: *explain*. A multiple-choice question whose wrong options are the usual misconceptions, each
  with its own feedback.

Each lesson's exercises live in ``ftlib.course.lessons.exercises.lessonNN``: one check per exercise, plus ``SOLUTIONS``
and ``WRONG_ANSWERS`` (exercise name -> answer) that the tests run through the checks. A lesson shows each solution
in a collapsed markdown cell right after the exercise; :func:`solution_text` is the text that cell must contain.
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass
from types import EllipsisType, FunctionType

__all__ = ["Feedback", "Option", "Question", "attempted", "check_prediction", "check_target", "solution_text",
           "tell"]


@dataclass(frozen=True)
class Feedback:
    """The outcome of one check: ``passed`` is True, False, or None (not attempted yet), with the words shown."""

    passed: bool | None
    message: str

    def __str__(self) -> str:
        return self.message

    def _ipython_display_(self) -> None:
        """Nothing: every check prints its words already, so a cell that ends with a check shows them once."""


def _does_nothing():
    ...


def attempted(answer: object) -> bool:
    """Whether the learner has replaced the exercise's placeholder: ``...``, or a function whose body is only
    ``...`` or ``pass`` (as a *do* exercise hands it out)."""
    if answer is Ellipsis:
        return False
    return not (isinstance(answer, FunctionType) and answer.__code__.co_code == _does_nothing.__code__.co_code)


def tell(passed: bool | None, message: str) -> Feedback:
    """Print ``message`` for the learner and return it as a :class:`Feedback` (``passed``: True, False or None)."""
    print(message)
    return Feedback(passed, message)


def _told(feedback: Feedback) -> Feedback:
    return tell(feedback.passed, feedback.message)


def _not_attempted(what_to_do: str) -> Feedback:
    return tell(None, f"Exercise not attempted yet: {what_to_do}")


def check_prediction(prediction: float | EllipsisType, actual: float, *, tolerance: float, quantity: str,
                     why: str, unit: str = "") -> Feedback:
    """Compare a number the learner predicted with the measured ``actual``; within ``tolerance`` it passes.

    ``quantity`` names what was predicted ("the gain over scratch at N=5, in points"); ``why`` is the sentence that
    explains the result, shown whatever the prediction was. Unattempted (``...``), the result stays hidden.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be 0 or more, got {tolerance!r}")
    if not attempted(prediction):
        return _not_attempted(f"write your prediction of {quantity} in place of `...`, then run this cell again.")
    if isinstance(prediction, bool) or not isinstance(prediction, (int, float)):
        return _told(Feedback(False, f"Your prediction should be a number ({quantity}), got {prediction!r}."))
    miss = prediction - actual
    measured = f"measured {actual:.1f}{unit}, you predicted {prediction:.1f}{unit}"
    if abs(miss) <= tolerance:
        verdict = f"Close: {measured} (within {tolerance:g}{unit})."
    else:
        side = "high" if miss > 0 else "low"
        verdict = f"Off by {abs(miss):.1f}{unit} ({side}): {measured}; within {tolerance:g}{unit} counts as close."
    return _told(Feedback(abs(miss) <= tolerance, f"{verdict} Why: {why}"))


def check_target(value: float | None, *, target: float, quantity: str, hint: str, at_least: bool = True,
                 unit: str = "") -> Feedback:
    """Whether what the learner built reaches ``target`` (``value >= target``, or ``<=`` with ``at_least=False``).

    ``value`` is what the lesson's code measured on the learner's build, ``None`` when nothing was built yet;
    ``hint`` says what to look at when it falls short.
    """
    if value is None:
        return _not_attempted(f"build it in place of `...`, then run this cell again (target: {quantity} "
                              f"{'at least' if at_least else 'at most'} {target:g}{unit}).")
    reached = value >= target if at_least else value <= target
    bound = "at least" if at_least else "at most"
    if reached:
        return _told(Feedback(True, f"Target met: {quantity} is {value:.1f}{unit} ({bound} {target:g}{unit})."))
    return _told(Feedback(False, f"Not yet: {quantity} is {value:.1f}{unit}, the target is {bound} "
                                 f"{target:g}{unit}. Look at: {hint}"))


@dataclass(frozen=True)
class Option:
    """One answer of a :class:`Question`: its text, whether it is right, and the feedback a learner gets for it."""

    text: str
    correct: bool
    feedback: str


@dataclass(frozen=True)
class Question:
    """A multiple-choice question; ``options`` maps a letter to an :class:`Option`, exactly one of them correct."""

    prompt: str
    options: Mapping[str, Option]

    def __post_init__(self) -> None:
        right = [letter for letter, option in self.options.items() if option.correct]
        if len(right) != 1:
            raise ValueError(f"a question needs exactly one correct option, got {len(right)}: {self.prompt!r}")

    def __str__(self) -> str:
        lines = [self.prompt] + [f"  ({letter}) {option.text}" for letter, option in self.options.items()]
        return "\n".join(lines)

    def check(self, answer: str | EllipsisType) -> Feedback:
        """Feedback for the learner's letter (case and spaces ignored); the question itself when unattempted."""
        letters = ", ".join(self.options)
        if not attempted(answer):
            print(self)
            return _not_attempted(f"put the letter of your answer ({letters}) in place of `...`, then run again.")
        chosen = self.options.get(str(answer).strip().lower())
        if chosen is None:
            return _told(Feedback(False, f"{answer!r} is not one of the options: answer with one of {letters}."))
        verdict = "Right." if chosen.correct else "Not quite."
        return _told(Feedback(chosen.correct, f"{verdict} {chosen.feedback}"))


def solution_text(answer: object) -> str:
    """How a solution appears in its lesson: a function's source (as the learner would write it), else ``repr``."""
    if isinstance(answer, FunctionType):
        return textwrap.dedent(inspect.getsource(answer)).strip()
    return repr(answer)
