"""Lesson 10's exercises: predict the unchanged model's loss past its training context, explain why squeezing the
fast RoPE pairs hurts, and choose which pairs to leave alone when reading 4x further (RoPE by parts, by hand).
"""

from __future__ import annotations

import operator
from types import EllipsisType

import torch
from torch import nn

from ftlib.course.lessons.exercises import (
    Coach,
    Feedback,
    Option,
    Question,
    attempted,
    check_prediction,
    check_target,
    exercise,
    not_attempted,
    tell,
)
from ftlib.lm import context

__all__ = ["HINTS", "KEEP_TARGET", "PI_FAST_PAIRS", "SOLUTIONS", "WRONG_ANSWERS", "hint", "keep_fast_pairs",
           "naive_loss", "solution", "split_scaled", "why_pi_hurts"]

KEEP_TARGET = 2.35  # bpc past the trained context, reading 4x as far, that a by-hand split must reach (at most):
# keeping the 5 pairs that turn inside 64 characters gives 2.33, squeezing the fifth (keep = 4) 2.39


@exercise
def naive_loss(guess: float | EllipsisType, study, naive: torch.Tensor) -> Feedback:
    """Predict the unchanged model's mean loss (bpc) at positions trained..longest-1 when it reads ``longest``.

    ``study`` is the lesson's ``ContextExtension``; ``naive`` the base model's loss by position.
    """
    if not attempted(guess):
        return check_prediction(guess, 0.0, tolerance=0.4, quantity="the unchanged model's mean loss past its "
                                "trained context, in bpc", why="")
    inside, window = study.beyond(naive, study.trained), study.beyond(study.window, study.longest)
    return check_prediction(
        guess, study.beyond(naive, study.longest), tolerance=0.4, unit=" bpc",
        low="past its trained length the model meets rotation angles it never saw: is it helped, or confused?",
        high="the model still reads each window's first 64 characters as it was trained to; worse past them is not "
             "the same as guessing blindly among 96 characters (6.6 bpc).",
        quantity=f"the unchanged model's mean loss at positions {study.trained}-{study.longest - 1} when it reads "
                 f"{study.longest} characters, in bpc",
        why=f"inside its {study.trained} characters it averages {inside:.2f} bpc, and reading only the last "
            f"{study.trained} it gets {window:.2f} bpc further in; reading the whole window, RoPE turns queries and "
            "keys by angles the model never saw past its training length, and that confusion spreads "
            "through every later layer: reading more makes it worse, not better.")


PI_FAST_PAIRS = Question(
    "Position interpolation (PI) with no fine-tune is worse than leaving the positions alone, even inside the "
    "trained context. Why?",
    [
        Option("The fast pairs tell neighbours apart; squeezed, near distances get other angles.", True,
               "The wavelengths show it: the fastest pairs turn several times inside the trained context, so no "
               "angle was new to them past its end. PI slows them anyway, which hurts at every position; by parts "
               "keeps the three fastest as they are and squeezes the slow pairs as PI does."),
        Option("PI turns every pair by larger angles than the model ever saw during its pretraining.", False,
               "It is the other way round: PI multiplies every position by the trained over the new length, so "
               "every angle is smaller and stays inside the trained range: no angle is new to the model."),
        Option("PI is the right method; it only needs a fine-tune to adapt to it.", False,
               "A fine-tune helps every method, and a long one lets PI catch up on retrieval (section 4), but that "
               "does not say why PI, untrained, is worse even inside the trained context; on prose it still trails "
               "the unscaled control at every check of the short fine-tune."),
        Option("The fast pairs carry what lies far back; squeezed, the model loses the distant text.", False,
               "The fast pairs turn once every 6 to 63 characters (the wavelengths), so they cannot say how far "
               "back something lies: that is the slow pairs' job. And PI hurts inside the first 64 characters too, "
               "where there is no distant text to lose."),
    ], seed="lesson10.pi_fast_pairs")  # the options' order (the seed kept when the check was renamed)


@exercise
def why_pi_hurts(answer: str | EllipsisType) -> Feedback:
    """Explain: why position interpolation hurts a character model (see :data:`PI_FAST_PAIRS`)."""
    return PI_FAST_PAIRS.check(answer)


def split_scaled(base: nn.Module, keep: int, length: int) -> nn.Module:
    """A copy of ``base`` reading ``length`` characters whose ``keep`` fastest rotated pairs keep their frequency
    and whose other pairs are squeezed as position interpolation squeezes them (``context / length``)."""
    out = context.scaled(base, "naive", length)
    pairs = len(context.wavelengths(base.config))
    out.rope_scale = torch.tensor([1.0] * keep + [base.config.context / length] * (pairs - keep))
    return out


def _whole_number(value: object) -> int | None:
    """``value`` as an int when it is a whole number (an int, or an integer NumPy or 0-d torch value, e.g. a count
    summed from the wavelengths); None otherwise (a bool, a float, a string)."""
    if isinstance(value, bool) or (isinstance(value, torch.Tensor) and value.dtype == torch.bool):
        return None
    try:
        return operator.index(value)
    except TypeError:
        return None


@exercise
def keep_fast_pairs(keep: int | EllipsisType, base: nn.Module, study) -> Feedback:
    """Do: how many of a head's fastest rotated pairs to leave alone (the rest squeezed as PI does), so that the
    base model, untrained, reads ``study.longest`` characters with at most :data:`KEEP_TARGET` bpc past position
    ``study.trained``."""
    if not attempted(keep):
        return not_attempted("write how many pairs keep their frequency")
    whole = _whole_number(keep)
    if whole is None or whole < 0:
        return tell(False, f"keep should be a whole number of pairs, 0 or more, got {keep!r}.")
    keep = whole
    pairs = len(context.wavelengths(base.config))
    quantity = f"the loss at positions {study.trained}-{study.longest - 1} of {study.longest}-character windows"
    if keep > pairs:
        return tell(False, f"keep should be a whole number of pairs from 0 to {pairs}, got {keep!r}.")
    bits = study.curve(split_scaled(base, keep, study.longest))
    waves = context.wavelengths(base.config)
    print(f"keep = {keep}: the fastest {keep} pairs keep their frequency (wavelengths up to "
          f"{waves[keep - 1].item() if keep else 0:,.0f} characters), the other {pairs - keep} turn "
          f"{study.longest // study.trained}x more slowly; loss at positions 0-{study.trained - 1}: "
          f"{study.beyond(bits, study.trained):.2f} bpc")
    squeezed_fast = "you squeeze pairs that already turn at least once inside the trained context (the wavelengths " \
                    "above): slowed down, they no longer tell neighbouring characters apart as in training"
    kept_slow = "you keep pairs that turn less than once inside the trained context: past it they reach angles the " \
                "model never saw, as the naive model does"
    return check_target(study.beyond(bits, study.longest), target=KEEP_TARGET, quantity=quantity, unit=" bpc",
                        at_least=False, hint=kept_slow if (waves[:keep] > study.trained).any() else squeezed_fast)


HINTS: dict[str, tuple[str, str]] = {
    "naive_loss": (
        "Does reading more characters than it was trained on help a model whose positions turn by angles it never "
        "saw?",
        "Compare with the model's loss inside its trained context, which the lesson prints: past it, is the loss "
        "higher or lower?"),
    "why_pi_hurts": (
        "Look at the wavelengths: how many times does the fastest pair turn inside the trained context?",
        "A pair that has already turned through every angle meets nothing new past the context; what does slowing "
        "it down do to the angle between neighbours?"),
    "keep_fast_pairs": (
        "By position 64, what has a pair that turns many times inside the trained context already seen?",
        "A pair turns at least once inside the trained context when its wavelength is shorter than it: read the "
        "wavelengths printed in section 2."),
}
SOLUTIONS: dict[str, object] = {"naive_loss": 3.5, "why_pi_hurts": PI_FAST_PAIRS.right_letter, "keep_fast_pairs": 5}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "naive_loss": [(2.0, "too low")],
    "why_pi_hurts": [(PI_FAST_PAIRS.letter_of(1), "It is the other way round"),
                      (PI_FAST_PAIRS.letter_of(3), "that is the slow pairs' job")],
    "keep_fast_pairs": [(0, "you squeeze pairs that already turn"), (4, "you squeeze pairs that already turn"),
                        (6, "angles the model never saw"), (5.0, "whole number")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
