"""Lesson 07's exercises: predict the gain of transfer on the far target, probe an earlier block, and explain why the
flawed checkpoint fails only once the data shifts.

* :func:`predict_far_gain` (*predict, then run*): the learner writes down, before the ladder runs, how many points
  the best transfer arm gains over scratch on the farthest target; the check compares it with the ladder's gains.
* :func:`probe_earlier_block` (*do*): the learner cuts the pretrained network after a block of their choice
  (:func:`ftlib.transfer.truncate`); the check fits a linear probe on its features and on block 4's, on 5 gratings
  per class, and scores both on 500 held-out validation gratings (never the test set).
* :data:`FLAW_QUESTION` / :func:`explain_flaw` (*explain*): why the flawed checkpoint is fine on upright digits and
  loses on varied ones.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from statistics import fmean
from types import EllipsisType

from torch import nn

from ftlib import data, transfer
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
from ftlib.course.lessons.experiments import run
from ftlib.course.pretrain import checkpoint_path
from ftlib.evaluation import evaluate
from ftlib.models import GlyphNet, pretrained_start

__all__ = ["FLAW_QUESTION", "HINTS", "PROBE_LEAD", "SOLUTIONS", "WRONG_ANSWERS", "explain_flaw", "hint",
           "predict_far_gain", "probe_earlier_block", "solution"]

PROBE_LEAD = 3.0  # points a probe on the learner's cut must gain over block 4's probe, on validation gratings
_PROBE_TARGET, _PROBE_N, _PROBE_VAL, _PROBE_SEED = "gratings", 5, 50, 0  # 5 shots per class, 50 held out per class


@exercise
def predict_far_gain(guess: float | EllipsisType, gains: Sequence[float]) -> Feedback:
    """Compare the learner's ``guess`` (points, best transfer arm minus scratch on the far target) with the mean
    of the ladder's per-seed ``gains`` (fractions, as ``experiments.gain_over_scratch`` returns them).

    When every seed's gain has the same sign, a guess on the other side of zero (or at zero) misses whatever the
    tolerance: the sign is what the exercise asks for."""
    quantity = "the gain of the best transfer arm over scratch on the farthest target, in points"
    if not attempted(guess):
        return check_prediction(guess, 0.0, tolerance=5, quantity=quantity, why="")
    if not gains:
        return cells_not_run("the ladder's gains")
    measured = 100 * fmean(gains)
    numeric = isinstance(guess, (int, float)) and not isinstance(guess, bool)
    if numeric and (all(g < 0 for g in gains) and guess >= 0 or all(g > 0 for g in gains) and guess <= 0):
        side = "high" if all(g < 0 for g in gains) else "low"
        return tell(False, f"Not yet: your prediction of {guess:g} points is too {side}, whatever the tolerance: "
                           "every seed's gain has the same sign, and yours has not. Is the pretrained start worth "
                           "anything on the far target? Look again at the distance line and try another number.")
    if measured < 0:
        why = ("the letter features are tuned to bright strokes on a dark background; on faint, noisy stripes they "
               "carry little of what the angle needs, so every transfer arm starts from features it must first "
               "unlearn, while scratch learns the stripes directly. The sign is what distance predicts: the farther "
               "the target, the less the pretrained start is worth, down to less than nothing.")
    else:
        why = ("on this far target the pretrained start still pays, or nearly breaks even: the distance predicts "
               "a smaller gain than on the near target, not necessarily a loss. Compare with the near target's "
               "line above.")
    return check_prediction(guess, measured, tolerance=5, unit=" points", quantity=quantity, why=why)


@exercise
def probe_earlier_block(build: Callable[[nn.Module], nn.Module] | EllipsisType) -> Feedback:
    """Fit a linear probe on ``build(model)`` (``model``: the pretrained GlyphNet with a new 10-class head) and on
    the full model (block 4's features), on 5 gratings per class; the target is a lead of :data:`PROBE_LEAD` points
    on 500 held-out validation gratings. Takes about a second."""
    quantity, hint = "the probe's lead over block4's probe", (
        "the probe reads the pooled features of the last block you keep. Cut earlier with "
        "transfer.truncate(model, 'blockN'): block1's 16 features are too few and too plain, block4's too specific "
        "to letters.")
    if not attempted(build):
        return not_attempted("write build(model), returning the network the probe reads,")
    if not callable(build):
        return tell(False, f"build should be a function of the model, got {build!r}.")
    train, val = data.few_shot_split(_PROBE_TARGET, _PROBE_N, _PROBE_VAL, _PROBE_SEED)
    start = lambda: pretrained_start(train.num_classes, _PROBE_SEED, checkpoint_path("full"))  # noqa: E731
    cut = build(start())
    if not isinstance(cut, GlyphNet):
        return tell(False, f"build(model) should return the network the probe reads, got {_short(cut)}: return the "
                           "cut copy (transfer.truncate returns a new GlyphNet).")
    try:
        yours = 100 * evaluate(run("linear probe", train, _PROBE_SEED, model=cut).model, val).accuracy
    except RuntimeError as error:  # e.g. blocks removed by hand, the head left at block 4's width
        return tell(False, f"The probe could not read your network ({str(error).splitlines()[0]}): cut it with "
                           "transfer.truncate(model, 'blockN'), which also gives the head that block's width.")
    block4 = 100 * evaluate(run("linear probe", train, _PROBE_SEED, model=transfer.truncate(start(), "block4")).model,
                            val).accuracy
    scores = {"yours": yours, "block4": block4}
    print(f"validation accuracy on {len(val)} held-out gratings: your cut {scores['yours']:.1f}%, "
          f"block4 {scores['block4']:.1f}%")
    return check_target(scores["yours"] - scores["block4"], target=PROBE_LEAD, quantity=quantity, hint=hint,
                        unit=" points")


def _short(value: object) -> str:
    """``repr(value)``, cut to its first line (a module's repr runs over many)."""
    text = repr(value).splitlines()[0]
    return text if len(text) <= 60 else text[:57] + "..."


FLAW_QUESTION = Question(
    "Both checkpoints were fine-tuned on the very same upright digits. Why does the flawed one score about as well "
    "as the sound one on upright test digits, yet lower on varied (rotated, bold, dim) digits?",
    [
        Option("Its letters lacked that variation, so its features never learned to ignore it.", True,
               "Its blind spot was inherited: on data like its fine-tuning set it looks fine, and the gap opens "
               "only under the shift. The linear probe, which cannot change the features, loses about as much: "
               "the features are what differs. Augmentation, which adds rotation, recovers part."),
        Option("It has fewer parameters than the sound checkpoint, so it cannot fit varied digits as well.", False,
               "Same network, same recipe, same pretraining steps: only its source letters differed (the "
               "metadata line). And on upright digits it keeps up with the sound one."),
        Option("Its features were sound; fine-tuning from a fresh head distorted them for varied digits.", False,
               "If fine-tuning had distorted good features, the linear probe, which leaves them untouched, would "
               "not lose: yet the flawed checkpoint's probe trails the sound one's about as much as fine-tuning "
               "does (the two tables). The flaw was in the features before fine-tuning began."),
        Option("It was fine-tuned too briefly: more steps would close the gap.", False,
               "More steps on upright digits fit upright digits better; they show nothing rotated or bold. The "
               "linear probe, fitted to convergence, loses about as much as fine-tuning: training longer cannot add "
               "what the data never shows."),
    ], seed="lesson07.explain_flaw")


@exercise
def explain_flaw(answer: str | EllipsisType) -> Feedback:
    """Feedback on the learner's letter for :data:`FLAW_QUESTION`."""
    return FLAW_QUESTION.check(answer)


def build(model):
    return transfer.truncate(model, "block2")


def _keep_block4(model):
    return model


HINTS: dict[str, tuple[str, str]] = {
    "predict_far_gain": (
        "The distance line ranks the targets by how far they are from the letters. What is a pretrained start worth "
        "on the farthest one?",
        "Features tuned to bright strokes carry little of what faint stripes need: the gain may be below zero."),
    "probe_earlier_block": (
        "transfer.truncate(model, 'blockN') returns a copy that stops after block N: return it.",
        "Block 1's features are too few and too plain, block 4's too specific to letters: try a block in between."),
    "explain_flaw": (
        "What differed between the two checkpoints: the network, the fine-tuning data, or the pretraining data?",
        "The linear probe cannot change the features, yet it loses about as much as fine-tuning: where is the flaw?"),
}
SOLUTIONS: dict[str, object] = {"predict_far_gain": -5, "probe_earlier_block": build,
                                "explain_flaw": FLAW_QUESTION.right_letter}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "predict_far_gain": [(20, "too high"), (0, "every seed's gain has the same sign")],
    "probe_earlier_block": [(_keep_block4, "transfer.truncate(model, 'blockN')")],
    "explain_flaw": [(FLAW_QUESTION.letter_of(3), "training longer"),
                     (FLAW_QUESTION.letter_of(2), "before fine-tuning began")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
