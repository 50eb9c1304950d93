"""Lesson 07's exercises: predict the gain of transfer on the far target, probe an earlier block, and explain why the
flawed checkpoint fails only once the data shifts.

* :func:`predict_far_gain` (*predict, then run*): the learner writes down, before the ladder runs, how many points
  the best transfer arm gains over scratch on the farthest target; the check compares it with the ladder's gains.
* :func:`probe_earlier_block` (*do*): the learner writes the rule that picks the block a linear probe should read,
  given a ``score`` that fits a probe on a cut (:func:`ftlib.transfer.truncate`) and returns its validation
  accuracy; the check runs the learner's rule on three targets, where three different blocks win, so neither a block
  written down from the lesson's table nor a choice between two blocks passes, and it scores the network the rule
  returns (its own weights), never a cut it scored before.
* :data:`FLAW_QUESTION` / :func:`explain_flaw` (*explain*): why the flawed checkpoint is fine on upright digits and
  loses on varied ones.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable, Sequence
from statistics import fmean
from types import EllipsisType

from torch import nn

from ftlib import data, models, transfer
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
from ftlib.course.lessons.experiments import run
from ftlib.course.pretrain import checkpoint_path
from ftlib.evaluation import evaluate
from ftlib.models import BLOCKS, GlyphNet, pretrained_start

__all__ = ["FLAW_QUESTION", "HINTS", "PROBE_TARGETS", "SOLUTIONS", "WRONG_ANSWERS", "explain_flaw", "hint",
           "predict_far_gain", "probe_earlier_block", "solution"]

PROBE_TARGETS = ("gratings", "font_digits", "textures")  # on validation block 2, block 4 and block 3 win
_PROBE_N, _PROBE_VAL, _PROBE_SEED = 5, 50, 0  # 5 shots per class, 50 held out per class, split 0


@exercise
def predict_far_gain(guess: float | EllipsisType, gains: Sequence[float]) -> Feedback:
    """Compare the learner's ``guess`` (points, the transfer arm chosen on validation minus scratch on the far
    target) with the mean of the ladder's per-seed ``gains`` (fractions).

    The sign is what the exercise asks for: a guess of 0 ("transfer makes no difference") never passes, and a
    guess on the other side of zero from the measured mean misses whatever the tolerance."""
    quantity = "the gain of the chosen transfer arm over scratch on the farthest target, in points"
    if not attempted(guess):
        return check_prediction(guess, 0.0, tolerance=5, quantity=quantity, why="")
    if not gains:
        return cells_not_run("the ladder's gains")
    measured = 100 * fmean(gains)
    numeric = isinstance(guess, (int, float)) and not isinstance(guess, bool)
    if numeric and guess == 0:
        return tell(False, "Not yet: 0 says transfer makes no difference, which is not a prediction of its sign. "
                           "Does the pretrained start help or hurt on the far target? Look again at the distance "
                           "line and commit to a side.")
    if numeric and measured != 0 and (guess > 0) != (measured > 0):
        side = "high" if measured < 0 else "low"
        return tell(False, f"Not yet: your prediction of {guess:g} points is too {side}, whatever the tolerance: "
                           "it is on the other side of zero. Is the pretrained start worth anything on the far "
                           "target? Look again at the distance line and try another number.")
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
def probe_earlier_block(build: Callable[[nn.Module, Callable[[nn.Module], float]], nn.Module] | EllipsisType
                        ) -> Feedback:
    """Run the learner's rule ``build(model, score)`` on each of :data:`PROBE_TARGETS`: ``model`` is the pretrained
    GlyphNet with a new 10-class head, ``score(cut)`` fits a linear probe on ``cut`` from 5 images per class and
    returns its accuracy (%) on 500 held-out validation images (never the test set). The rule passes where, on
    every target, the network it returns, scored itself, does as well on validation as the best block's cut. The
    feedback names where the rule fell short, never the rule. About 10 seconds."""
    if not attempted(build):
        return not_attempted("write build(model, score), returning the network the probe should read,")
    if not callable(build):
        return tell(False, f"build should be a function of the model and score, got {build!r}.")
    if not _takes_two_arguments(build):
        return tell(False, "build should take two arguments, the model and score: def build(model, score): ...")
    lines, missed = [], []
    for target in PROBE_TARGETS:
        score = _validation_score(target)
        best = max(score(transfer.truncate(_start(), block)) for block in BLOCKS)
        try:
            cut = build(_start(), score)
        except TypeError as error:  # the signature is right (checked above): the error is inside the rule
            return tell(False, f"build(model, score) raised TypeError: {str(error).splitlines()[0]}")
        if not isinstance(cut, GlyphNet):
            return tell(False, f"build(model, score) should return the network the probe reads, got {_short(cut)}: "
                               "return a cut copy (transfer.truncate returns a new GlyphNet).")
        try:
            yours = score(cut)
        except RuntimeError as error:  # e.g. blocks removed by hand, the head left at block 4's width
            return tell(False, f"The probe could not read your network ({str(error).splitlines()[0]}): cut it "
                               "with transfer.truncate(model, 'blockN'), which also gives the head that block's "
                               "width.")
        lines.append(f"{target}: your cut {yours:.1f}% on validation")
        if yours < best:
            missed.append(target)
    print("; ".join(lines))
    if missed:
        return tell(False, f"Not yet: on {', '.join(missed)} another block's probe scores higher on validation than "
                           "the network your rule returned.")
    return tell(True, "Target met: your rule picks, on each target, a block whose probe scores best on validation. "
                      "Compare the blocks it picked with the table below: the far target's is not block 4.")


def _takes_two_arguments(function: Callable) -> bool:
    """Whether ``function(model, score)`` binds: its signature, read without calling it (a callable whose signature
    cannot be read gets the benefit of the doubt)."""
    try:
        inspect.signature(function).bind(None, None)
    except TypeError:
        return False
    except ValueError:
        return True
    return True


def _start() -> GlyphNet:
    """The pretrained GlyphNet with a new 10-class head (the same one on every call)."""
    return pretrained_start(10, _PROBE_SEED, checkpoint_path("full"))


def _validation_score(target: str) -> Callable[[nn.Module], float]:
    """``score(cut)``: a linear probe fitted on ``cut`` from the exercise's training split of ``target``, its
    validation accuracy in percent (each network scored once per check: it is recognised by its structure and the
    values of every weight and statistic but the head's, which the probe refits)."""
    train, val = data.few_shot_split(target, _PROBE_N, _PROBE_VAL, _PROBE_SEED)
    done: dict[tuple, float] = {}

    def score(cut: nn.Module) -> float:
        if not isinstance(cut, GlyphNet):
            raise TypeError(f"score takes a GlyphNet, got {_short(cut)}")
        key = _fingerprint(cut)
        if key not in done:
            done[key] = 100 * evaluate(run("linear probe", train, _PROBE_SEED, model=cut).model, val).accuracy
        return done[key]

    return score


def _fingerprint(cut: GlyphNet) -> tuple:
    """What makes a probe on ``cut`` score what it scores: its head's width, each block's kind and a digest of every
    tensor outside the head (a cut with changed weights is a new network, scored anew)."""
    digest = hashlib.sha1()
    for name, tensor in cut.state_dict().items():
        if not name.startswith("head."):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return (cut.head.in_features, *(type(getattr(cut, b)).__name__ for b in BLOCKS), digest.hexdigest())


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
               "the features are what differs."),
        Option("It has fewer parameters than the sound checkpoint, so it cannot fit varied digits as well.", False,
               "Both checkpoints are the same network, with the same number of parameters, built by the same "
               "command (section 4). And on upright digits it keeps up with the sound one."),
        Option("Its features were sound; fine-tuning from a fresh head distorted them for varied digits.", False,
               "If fine-tuning had distorted good features, the linear probe, which leaves them untouched, would "
               "not lose: yet the flawed checkpoint's probe trails the sound one's about as much as fine-tuning "
               "does (the two tables)."),
        Option("It was fine-tuned too briefly: more steps would close the gap.", False,
               "More steps on upright digits fit upright digits better; they show nothing rotated or bold. The "
               "linear probe, fitted to convergence, loses about as much as fine-tuning: training longer cannot add "
               "what the data never shows."),
    ], seed="lesson07.explain_flaw")


@exercise
def explain_flaw(answer: str | EllipsisType) -> Feedback:
    """Feedback on the learner's letter for :data:`FLAW_QUESTION`."""
    return FLAW_QUESTION.check(answer)


def build(model, score):
    return max((transfer.truncate(model, block) for block in models.BLOCKS), key=score)


def _always_block2(model, score):
    return transfer.truncate(model, "block2")


def _keep_block4(model, score):
    return model


def _best_of_two(model, score):  # lazy: the two blocks the lesson's table shows winning
    return max((transfer.truncate(model, block) for block in ("block2", "block4")), key=score)


def _best_cut_emptied(model, score):  # the best cut scored, then a network with every weight zeroed returned
    best = build(model, score)
    for tensor in best.state_dict().values():
        tensor.zero_()
    return best


HINTS: dict[str, tuple[str, str]] = {
    "predict_far_gain": (
        "The distance line ranks the targets by how far they are from the letters. What is a pretrained start worth "
        "on the farthest one?",
        "Features tuned to bright strokes carry little of what faint stripes need: the gain may be below zero."),
    "probe_earlier_block": (
        "transfer.truncate(model, 'blockN') returns a copy that stops after block N, and score(cut) says how well a "
        "probe on it does on validation. The check runs your rule on three targets.",
        "Only score(cut) knows which target the check is running: a rule that never asks it returns the same cut "
        "on every target, and the targets are not all served by one block."),
    "explain_flaw": (
        "What differed between the two checkpoints: the network, the fine-tuning data, or the pretraining data?",
        "The linear probe cannot change the features, yet it loses about as much as fine-tuning: where is the flaw?"),
}
SOLUTIONS: dict[str, object] = {"predict_far_gain": -5, "probe_earlier_block": build,
                                "explain_flaw": FLAW_QUESTION.right_letter}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "predict_far_gain": [(20, "too high"), (0, "not a prediction of its sign")],
    "probe_earlier_block": [(_keep_block4, "another block's probe scores higher"),
                            (_always_block2, "another block's probe scores higher"),
                            (_best_of_two, "on textures another block's probe scores higher"),
                            (_best_cut_emptied, "another block's probe scores higher")],
    "explain_flaw": [(FLAW_QUESTION.letter_of(3), "training longer"),
                     (FLAW_QUESTION.letter_of(2), "leaves them untouched"),
                     (FLAW_QUESTION.letter_of(1), "same number of parameters")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
