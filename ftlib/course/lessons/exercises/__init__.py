"""Exercises that coach: predict then run, do, and explain (multiple choice), each with two hints and a solution.

The API follows Kaggle's learntools: each lesson's module (``ftlib.course.lessons.exercises.lessonNN``, imported in
the lesson as ``exercises``) has one **check** per exercise, named after the exercise, plus

* ``exercises.hint("name")``: the exercise's next hint (each exercise has exactly two, shown one at a time;
  ``exercises.hint("name", 2)`` shows the second again);
* ``exercises.solution("name")``: the folded solution, as the collapsed cell under the exercise shows it.

A check that fails prints how to ask for them. An exercise cell starts with a placeholder: the literal ``...``
(Python's Ellipsis), or a function whose body is only ``...``. Untouched, a check prints what to do and returns a
:class:`Feedback` whose ``passed`` is ``None``: it never raises and never changes a lesson's claims. Placeholders are
told apart by their *source*: a learner who writes ``None`` or ``lambda m: None`` has attempted, and gets the
wrong-answer feedback. When a cell calls a check before the lesson's earlier cells have run (a restarted kernel),
the ``NameError`` is replaced by one line, :data:`NOT_RUN` (see :func:`watch_for_missing_cells`); a check that gets
an empty result says the same (:func:`cells_not_run`).

Three kinds, one function each:

* :func:`check_prediction`: *predict, then run*. A number written down before the result is shown, compared with
  the measured value within a stated tolerance (the edge included); the sentence on why it came out that way is
  shown once the prediction is close.
* :func:`check_target`: *do*. The learner builds something with ``ftlib``; the lesson's own code trains or evaluates
  it and passes the measured value here, with the target it must reach (the edge included) and what to look at.
* :class:`Question`: *explain*. A multiple-choice question whose wrong options are the usual misconceptions, each
  with its own feedback; the options are shuffled by a fixed seed per question, so that across the course the right
  one has no favoured letter.

Feedback never states the answer before the learner has it: a missed prediction is told its side, not the measured
value; a wrong option is told why it is wrong, not which one is right. Numbers that describe a lesson's results come
from the arguments the notebook passes, never typed into the feedback.

Each lesson module also holds ``HINTS`` (exercise name -> its two hints), ``SOLUTIONS`` (name -> the answer) and
``WRONG_ANSWERS`` (name -> a list of ``(answer, words its feedback must contain)``) that the tests run through the
checks. :func:`solution_text` is the text the collapsed solution cell must contain.
"""

from __future__ import annotations

import ast
import functools
import inspect
import math
import numbers
import random
import textwrap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import EllipsisType, FunctionType

__all__ = ["NOT_RUN", "Coach", "Feedback", "Option", "Question", "attempted", "cells_not_run", "check_prediction",
           "check_target", "exercise", "not_attempted", "reached", "solution_text", "tell", "watch_for_missing_cells"]

NOT_RUN = "The cells above have not run yet: run them first (Run > Run All Above), then this cell again."
_EDGE = 1e-9  # relative and absolute slack at a tolerance's or a target's edge (float rounding, not leniency)


@dataclass(frozen=True)
class Feedback:
    """The outcome of one check: ``passed`` is True, False, or None (not attempted yet, or the cells above have not
    run: :attr:`not_run`), with the words shown."""

    passed: bool | None
    message: str

    @property
    def not_run(self) -> bool:
        """Whether the check could not run because the lesson's earlier cells have not."""
        return self.passed is None and self.message.startswith(NOT_RUN)

    def __str__(self) -> str:
        return self.message

    def _ipython_display_(self) -> None:
        """Nothing: every check prints its words already, so a cell that ends with a check shows them once."""


def _does_nothing():
    ...


_ELLIPSIS_LAMBDA = (lambda *args: ...).__code__  # noqa: E731


def _body_is_ellipsis(function: FunctionType) -> bool:
    """Whether ``function``'s source body is only ``...`` (comments aside); by its bytecode when there is no source."""
    code = function.__code__
    if function.__name__ == "<lambda>":
        return code.co_code == _ELLIPSIS_LAMBDA.co_code and code.co_consts == _ELLIPSIS_LAMBDA.co_consts
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError):
        return code.co_code == _does_nothing.__code__.co_code
    node = tree.body[0] if tree.body else None
    if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return False
    return all(isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant) and s.value.value is Ellipsis
               for s in node.body)


def attempted(answer: object) -> bool:
    """Whether the learner has replaced the exercise's placeholder: the literal ``...``, or a function whose body
    in the source is only ``...`` (as a *do* exercise hands it out). ``None``, ``pass`` or ``lambda m: None`` are
    answers (wrong ones), not placeholders."""
    if answer is Ellipsis:
        return False
    return not (isinstance(answer, FunctionType) and _body_is_ellipsis(answer))


def tell(passed: bool | None, message: str) -> Feedback:
    """Print ``message`` for the learner and return it as a :class:`Feedback` (``passed``: True, False or None)."""
    print(message)
    return Feedback(passed, message)


def _not_attempted(what_to_do: str) -> Feedback:
    return tell(None, f"Exercise not attempted yet: {what_to_do}")


def cells_not_run(missing: str) -> Feedback:
    """The outcome when the lesson state a check needs (``missing``, e.g. "the sweep") is absent or empty."""
    return tell(None, f"{NOT_RUN} ({missing} is missing.)")


def reached(value: float, bound: float, *, at_least: bool) -> bool:
    """``value >= bound`` (or ``<=``), the edge included up to float rounding (``math.isclose``)."""
    if math.isclose(value, bound, rel_tol=_EDGE, abs_tol=_EDGE):
        return True
    return value > bound if at_least else value < bound


def _shown(value: float, bound: float, digits: int = 1) -> str:
    """``value`` with enough decimals that it does not read as ``bound`` unless it is (up to float rounding)."""
    while digits < 6 and not math.isclose(value, bound, rel_tol=_EDGE, abs_tol=_EDGE) \
            and f"{value:.{digits}f}" == f"{bound:.{digits}f}":
        digits += 1
    return f"{value:.{digits}f}"


def check_prediction(prediction: float | EllipsisType, actual: float, *, tolerance: float, quantity: str,
                     why: str, unit: str = "", low: str = "", high: str = "",
                     retry: str = "Look again at the results above and try another number.") -> Feedback:
    """Compare a number the learner predicted (any real number, NumPy's included; not a bool) with the measured
    ``actual``; within ``tolerance`` (edge included) it passes, and then the measured value and ``why`` (the sentence
    that explains it) are shown. A miss is told its
    side only: the measured value stays for the hints and the solution. ``low`` and ``high``, if given, say in
    which direction to think again after a guess too low or too high (for a check that runs before the result is
    shown, instead of pointing at the results above); otherwise ``retry`` says what to do next."""
    if tolerance < 0:
        raise ValueError(f"tolerance must be 0 or more, got {tolerance!r}")
    if not attempted(prediction):
        return _not_attempted(f"write your prediction of {quantity} in place of `...`, then run this cell again.")
    if isinstance(prediction, bool) or not isinstance(prediction, numbers.Real) or not math.isfinite(prediction):
        return tell(False, f"Your prediction should be a finite number ({quantity}), got {prediction!r}.")
    miss = prediction - actual
    if reached(abs(miss), tolerance, at_least=False):
        return tell(True, f"Close: measured {actual:.1f}{unit}, you predicted {prediction:g}{unit} (within "
                          f"{tolerance:g}{unit}). Why: {why}")
    side, direction = ("high", high) if miss > 0 else ("low", low)
    off = f"more than {tolerance:g}{unit} off, " if tolerance else ""  # an exact check has no margin to name
    if direction:
        return tell(False, f"Not yet: your prediction of {prediction:g}{unit} is {off}too {side}: {direction} Try "
                           "another number.")
    by = f", by more than {tolerance:g}{unit}" if tolerance else ""
    return tell(False, f"Not yet: your prediction of {prediction:g}{unit} is too {side}{by}. {retry}")


def check_target(value: float, *, target: float, quantity: str, hint: str, at_least: bool = True,
                 unit: str = "") -> Feedback:
    """Whether what the learner built reaches ``target`` (``value >= target``, or ``<=`` with ``at_least=False``;
    the edge included). ``value`` is what the lesson's code measured on the learner's build; ``hint`` says what to
    look at when it falls short."""
    bound = "at least" if at_least else "at most"
    shown = _shown(value, target)
    if reached(value, target, at_least=at_least):
        return tell(True, f"Target met: {quantity} is {shown}{unit} ({bound} {target:g}{unit}).")
    return tell(False, f"Not yet: {quantity} is {shown}{unit}, the target is {bound} {target:g}{unit}. "
                       f"Look at: {hint}")


def not_attempted(what_to_build: str) -> Feedback:
    """The untouched *do* exercise: what to build in place of ``...``."""
    return _not_attempted(f"{what_to_build} in place of `...`, then run this cell again.")


@dataclass(frozen=True)
class Option:
    """One answer of a :class:`Question`: its text, whether it is right, and the feedback a learner gets for it."""

    text: str
    correct: bool
    feedback: str


@dataclass(frozen=True)
class Question:
    """A multiple-choice question with exactly one correct option among ``choices``, lettered a, b, ... after a
    shuffle fixed by ``seed`` (the question's name), so the right letter is set by no author's habit."""

    prompt: str
    choices: Sequence[Option]
    seed: str
    options: Mapping[str, Option] = field(init=False)

    def __post_init__(self) -> None:
        right = [option for option in self.choices if option.correct]
        if len(right) != 1:
            raise ValueError(f"a question needs exactly one correct option, got {len(right)}: {self.prompt!r}")
        order = list(self.choices)
        random.Random(self.seed).shuffle(order)
        object.__setattr__(self, "options", {"abcdefgh"[i]: option for i, option in enumerate(order)})

    @property
    def right_letter(self) -> str:
        """The letter of the correct option after the shuffle."""
        return next(letter for letter, option in self.options.items() if option.correct)

    def letter_of(self, choice: int) -> str:
        """The letter that the ``choice``-th option (as written in ``choices``) got in the shuffle."""
        return next(letter for letter, option in self.options.items() if option is self.choices[choice])

    def __str__(self) -> str:
        lines = [self.prompt] + [f"  ({letter}) {option.text}" for letter, option in self.options.items()]
        return "\n".join(lines)

    def check(self, answer: str | EllipsisType) -> Feedback:
        """Feedback for the learner's letter (case and spaces ignored); the question itself when unattempted. A
        wrong letter gets its own option's feedback, which never names the right one."""
        letters = ", ".join(self.options)
        if not attempted(answer):
            print(self)
            return _not_attempted(f"put the letter of your answer ({letters}) in place of `...`, then run again.")
        chosen = self.options.get(str(answer).strip().lower()) if isinstance(answer, str) else None
        if chosen is None:
            return tell(False, f"{answer!r} is not one of the options: answer with one of {letters}, as a string "
                               "(e.g. \"a\").")
        verdict = "Right." if chosen.correct else "Not quite."
        return tell(chosen.correct, f"{verdict} {chosen.feedback}")


def solution_text(answer: object) -> str:
    """How a solution appears in its lesson: a function's source (as the learner would write it), else ``repr``."""
    if isinstance(answer, FunctionType):
        return textwrap.dedent(inspect.getsource(answer)).strip()
    return repr(answer)


class Coach:
    """One lesson's hints and solutions: :meth:`hint` shows an exercise's two hints one at a time,
    :meth:`solution` its folded solution."""

    def __init__(self, hints: Mapping[str, Sequence[str]], solutions: Mapping[str, object]) -> None:
        if set(hints) != set(solutions):
            raise ValueError(f"hints and solutions must name the same exercises, got {sorted(hints)} and "
                             f"{sorted(solutions)}")
        for name, tiers in hints.items():
            if len(tiers) != 2:
                raise ValueError(f"exercise {name!r} needs exactly 2 hints, got {len(tiers)}")
        self.hints, self.solutions = hints, solutions
        self._shown: dict[str, int] = {}

    def _known(self, name: str) -> None:
        if name not in self.hints:
            raise ValueError(f"no exercise named {name!r}: choose one of {', '.join(self.hints)}")

    def hint(self, name: str, n: int | None = None) -> str:
        """Print and return hint ``n`` (1 or 2) of exercise ``name``; without ``n`` the next one not yet shown."""
        self._known(name)
        tiers = self.hints[name]
        if n is None:
            n = min(self._shown.get(name, 0) + 1, len(tiers))
        if n not in range(1, len(tiers) + 1):
            raise ValueError(f"n must be 1 or {len(tiers)}, got {n!r}")
        self._shown[name] = max(self._shown.get(name, 0), n)
        more = (f" (exercises.hint({name!r}) again for hint {n + 1})" if n < len(tiers)
                else f" (that was the last; exercises.solution({name!r}) shows the answer)")
        message = f"Hint {n} of {len(tiers)}{more}: {tiers[n - 1]}"
        print(message)
        return message

    def solution(self, name: str) -> str:
        """Print and return the solution of exercise ``name``, as its folded cell shows it."""
        self._known(name)
        message = f"Solution of {name}:\n{solution_text(self.solutions[name])}"
        print(message)
        return message


def exercise(check: Callable[..., Feedback]) -> Callable[..., Feedback]:
    """Make ``check`` (named after its exercise) coach: a failed check ends by pointing at its hints."""

    @functools.wraps(check)
    def coached(*args, **kwargs) -> Feedback:
        feedback = check(*args, **kwargs)
        if feedback.passed is not False:
            return feedback
        stuck = (f"Stuck? exercises.hint({check.__name__!r}) gives a hint (two in all), "
                 f"exercises.solution({check.__name__!r}) the answer.")
        print(stuck)
        return Feedback(False, f"{feedback.message}\n{stuck}")

    return coached


def _missing_cells(shell, etype, value, tb, tb_offset=None):
    """IPython's handler for a NameError: in a cell that calls an exercise check, one line instead of a traceback."""
    last = tb
    while last is not None and last.tb_next is not None:
        last = last.tb_next
    frame = last.tb_frame if last is not None else None
    if frame is not None and frame.f_code.co_name == "<module>" and "exercises" in frame.f_code.co_names:
        # the failing statement of the cell names ``exercises`` (IPython compiles a cell's last line on its own)
        print(f"{NOT_RUN} ({value}: if you wrote that name yourself, check its spelling.)")
        return None
    return shell.showtraceback((etype, value, tb), tb_offset=tb_offset)


def watch_for_missing_cells(shell=None) -> bool:
    """Let ``shell`` (the running IPython, by default) answer a NameError in a cell that calls an exercise check
    with :data:`NOT_RUN` instead of a traceback; any other error shows as usual. Whether a shell was found."""
    if shell is None:
        try:
            from IPython import get_ipython
        except ImportError:
            return False
        shell = get_ipython()
    if shell is None:
        return False
    shell.set_custom_exc((NameError,), _missing_cells)
    return True


watch_for_missing_cells()
