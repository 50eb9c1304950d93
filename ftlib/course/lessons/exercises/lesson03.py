"""Lesson 03's exercises: how deep to freeze on the far target (predict), freeze two blocks yourself (do), and the
BatchNorm trap (explain).

* :func:`far_depth`: the learner predicts, before the sweep runs, how many blocks to freeze on gratings; the check
  reads the sweep.
* :func:`freeze_first_two`: the learner writes ``build(model)`` that freezes block1 and block2 with
  ``ftlib.freeze``; the check counts the trainable parameters and compares what the two blocks compute on a fixed
  batch with the pretrained blocks, in train mode before training and in eval mode after it (about 1 s of
  fine-tuning on the near target).
* :data:`BATCHNORM_TRAP`: why the "frozen" backbone of section 4 lost accuracy on textures.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from copy import deepcopy
from types import EllipsisType

import torch
from torch import nn

from ftlib import data
from ftlib.course.lessons.exercises import (
    Coach,
    Feedback,
    Option,
    Question,
    attempted,
    cells_not_run,
    check_target,
    exercise,
    not_attempted,
    tell,
)
from ftlib.course.lessons.experiments import Results, get_method, make_model, run
from ftlib.evaluation import evaluate
from ftlib.freeze import changed, count_parameters, freeze, snapshot
from ftlib.models import BLOCKS

__all__ = ["BATCHNORM_TRAP", "HINTS", "SOLUTIONS", "TARGET_ACCURACY", "WRONG_ANSWERS", "batchnorm_trap", "build",
           "far_depth", "freeze_first_two", "hint", "no_running_stats", "solution", "weights_only"]

TARGET_ACCURACY = 94.0  # test accuracy (%) that block1 + block2 frozen must reach on font_digits, N = 10, seed 0
_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


@exercise
def far_depth(guess: int | EllipsisType, sweep: Results, far: str, chosen: int) -> Feedback:
    """Compare the learner's ``guess`` of how many blocks to freeze on ``far`` with the depth ``chosen`` on
    validation (the lesson's ``best_k[far]``, read from the tuning table; never a depth picked on the test scores).

    The chosen depth is right. A shallower guess passes too, told that it is close but not the chosen depth: the
    lesson's claim 1 compares every deeper freeze with the better of the depths up to the chosen one, so it treats
    them together. A deeper guess fails and is told neither the chosen k nor a direction.
    """
    quantity = f"how many blocks (0-{len(BLOCKS)}) to freeze on {far}"
    if not attempted(guess):
        return tell(None, f"Exercise not attempted yet: write your prediction of {quantity} in "
                    f"`guess_far_k` (the cell before the sweep) in place of `...`, run that cell, "
                    f"then this one.")
    ks = sorted(sweep.where(target=far).unique("k"))
    if not ks:
        return cells_not_run(f"the sweep on {far}")
    if not isinstance(guess, numbers.Integral) or isinstance(guess, bool) or guess not in ks:
        return tell(False, f"Your prediction should be a whole number of blocks from {ks[0]} to {ks[-1]} "
                    f"(an int such as 2), got {guess!r}.")
    if isinstance(chosen, bool) or chosen not in ks:
        raise ValueError(f"chosen must be the depth chosen on validation, one of {ks}, got {chosen!r}")
    mean = {k: 100 * sweep.mean(target=far, k=k) for k in ks}
    if guess > chosen:
        return tell(False, f"Not quite: freezing {guess} blocks scores {mean[guess]:.1f}% on {far} (test, mean over "
                           f"the seeds), not the depth validation chose. Read the plot above again: which blocks' "
                           f"features serve {far}?")
    measured = ", ".join(f"k={k} {mean[k]:.1f}%" for k in ks)
    verdict = (f"Right: k = {guess} is the depth chosen on validation." if guess == chosen else
               f"Close, but validation chose k = {chosen}, not {guess}. Your guess still passes: the claims cell "
               f"compares every deeper freeze with the better of the depths up to k = {chosen}, treating them "
               f"together, and checks that each block frozen beyond them costs accuracy.")
    why = ("the deeper blocks of GlyphNet learned features of letter strokes, and gratings need other features, so "
           "those blocks must adapt. A likely reason the first block can stay frozen (a hypothesis, not tested "
           "here): it computes small local patterns such as edges, which gratings have too. On a far target freeze "
           "little, and compare with scratch.")
    return tell(True, f"{verdict} Test accuracy on {far} (mean over seeds): {measured}. Why: {why}")


@exercise
def freeze_first_two(build: Callable[[nn.Module], object] | EllipsisType, target: str = "font_digits", n: int = 10,
                     steps: int = 60, lr: float = 3e-3, seed: int = 0) -> Feedback:
    """Run the learner's ``build(model)`` on a pretrained GlyphNet, fine-tune it on ``target`` and check it.

    It passes when exactly block1 and block2 are frozen (trainable parameters as in the lesson's k = 2 row), they
    compute the pretrained function on a fixed batch in train mode (so BatchNorm does not normalise with batch
    statistics) and still in eval mode after ``steps`` steps, and the test accuracy reaches :data:`TARGET_ACCURACY`.
    """
    quantity = f"test accuracy on {target} (N = {n}, seed {seed}, {steps} steps)"
    if not attempted(build):
        return not_attempted("write the body of build(model)")
    if not callable(build):
        return tell(False, f"build should be a function of the model, got {build!r}.")
    train_set = data.few_shot(target, n, seed)
    model = make_model(get_method("fine-tune"), train_set.num_classes, seed)
    expected = sum(count_parameters(getattr(model, name)) for name in (*BLOCKS[2:], "head"))
    batch = data.test_set(target).images[:64]
    pretrained = _first_two(model, batch, training=False)
    before = snapshot(model, BLOCKS[:2])
    try:
        build(model)
    except Exception as error:  # the learner's code: any mistake becomes one line of feedback
        return tell(False, f"Not yet: build(model) raised {type(error).__name__}: {str(error)[:160]}")
    trainable = count_parameters(model, trainable_only=True)
    if trainable != expected:
        frozen = [name for name, block in model.named_children()
                  if not any(p.requires_grad for p in block.parameters())]
        return tell(False, f"Not yet: {trainable:,} parameters are trainable, but with block1 and block2 "
                    f"frozen {expected:,} should be (block3, block4 and the head; the k = 2 row of "
                    f"the table). Frozen now: {', '.join(frozen) or 'nothing'}. Freeze them by "
                    f"name: freeze(model, [...]) with the names in models.BLOCKS.")
    if not torch.equal(_first_two(model, batch, training=True), pretrained):
        return tell(False, f"Not yet: the trainable count is right ({trainable:,}), but in train mode block1 and "
                    "block2 compute other features than the pretrained ones on the same images: their BatchNorm "
                    "layers normalise with each batch's statistics (the trap this lesson shows), so the head "
                    "would train on features it never sees at test time. requires_grad alone freezes the "
                    "weights, not BatchNorm; ftlib.freeze keeps the frozen blocks' BatchNorm layers in eval mode.")
    trained = run("fine-tune", train_set, seed, steps, model=model, lr=lr)
    if not torch.equal(_first_two(trained.model, batch, training=False), pretrained):
        # a counter that no output depends on is left out of the names
        moved = [name for name in changed(trained.model, before) if not name.endswith("num_batches_tracked")]
        stats_only = moved and all(name.split(".")[-1] in _BN_STATS for name in moved)
        what = ("their BatchNorm running statistics moved" if stats_only else "some of their weights were trained")
        return tell(False, f"Not yet: the trainable count is right ({trainable:,}), but after training block1 and "
                    f"block2 compute other features at test time ({len(moved)} tensors changed"
                    f"{', e.g. ' + moved[0] if moved else ''}): {what}.")
    accuracy = 100 * evaluate(trained.model, data.test_set(target)).accuracy
    print(f"block1 and block2 frozen: {trainable:,} trainable parameters; on the same images they compute the "
          f"pretrained features while training and after it; trained {steps} steps in {trained.seconds:.1f} s.")
    return check_target(accuracy, target=TARGET_ACCURACY, quantity=quantity, unit="%",
                        hint="the rate and steps are the lesson's; check that only block1 and block2 are frozen.")


BATCHNORM_TRAP = Question(
    "With update_bn_stats=True, no weight of the frozen backbone moved, yet on textures the head scored lower than "
    "with ftlib.freeze. Why?",
    [
        Option("Its running statistics became the target's, and the features they normalise serve worse.", True,
               "The running statistics followed the batches of the new target: the 'frozen' backbone now "
               "normalises with the target's statistics instead of the pretrained ones, another function. The AdaBN "
               "arm normalises with the target's statistics too, without a train/test mismatch, and also scored "
               "below frozen statistics in every seed; the trap is not resolved behind it (the 'moving minus AdaBN' "
               "lines): normalising with the target's statistics is what costs here. Keep them frozen "
               "(ftlib.freeze) unless you adapt them on purpose, and check that on validation data."),
        Option("The head trained on batch-statistic features but was tested on running-statistic ones.", False,
               "That mismatch is real in the trap run: in train mode each batch is normalised with its own "
               "statistics. But the AdaBN arm has no such mismatch (its statistics are re-estimated once and fixed "
               "before the head trains), and the trap is not resolved behind it on either far target (the 'moving "
               "minus AdaBN' lines): the mismatch is not the cost these runs can see. Ask which statistics the "
               "backbone normalises with at test time."),
        Option("The two runs trained the head differently: other batches, another rate or more steps.", False,
               "Both runs draw the same batches for the same steps, and each head trains at the rate chosen for it "
               "on validation (the table printed above), so a worse schedule is not the cause. Look at which "
               "backbone tensors changed."),
        Option("Textures need other BatchNorm scales and shifts, which the frozen layers could not learn.", False,
               "Both runs froze every BatchNorm scale and shift (gamma and beta) alike, so a need for other ones "
               "would cost both runs, not the trap run more. Look at which backbone tensors changed, and what they "
               "are."),
    ], seed="lesson03.batchnorm_trap/9")


@exercise
def batchnorm_trap(answer: str | EllipsisType) -> Feedback:
    """The explain exercise: why the weights-only freeze costs accuracy on textures."""
    return BATCHNORM_TRAP.check(answer)


def _first_two(model: nn.Module, images: torch.Tensor, training: bool) -> torch.Tensor:
    """What block1 and block2 of ``model`` compute on ``images`` in train or eval mode (on a copy: the model's
    BatchNorm statistics are left as they were)."""
    copy = deepcopy(model).train(training)
    with torch.no_grad():
        for name in BLOCKS[:2]:
            images = getattr(copy, name)(images)
    return images


def build(model):
    freeze(model, ["block1", "block2"])


def weights_only(model):
    for block in (model.block1, model.block2):
        for p in block.parameters():
            p.requires_grad_(False)


def no_running_stats(model):
    """Weights frozen, and BatchNorm told not to track statistics: they stay put, but it normalises every training
    batch with its own statistics."""
    weights_only(model)
    for block in (model.block1, model.block2):
        for m in block.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.track_running_stats = False


HINTS: dict[str, tuple[str, str]] = {
    "far_depth": (
        "Gratings are stripes, not strokes: which of the pretrained blocks compute features general enough for "
        "them?",
        "Which features do stripes share with strokes, and which do they not? Count the blocks that compute the "
        "shared ones."),
    "freeze_first_two": (
        "ftlib.freeze's freeze(model, names) freezes blocks by name; the names are in models.BLOCKS.",
        "Setting requires_grad_(False) by hand gets the parameter count right but lets BatchNorm's running "
        "statistics move; freeze keeps the frozen blocks' BatchNorm layers in eval mode."),
    "batchnorm_trap": (
        "Read the printed lines: which tensors of the frozen backbone changed, and what are they?",
        "Those tensors are not weights, yet they decide how the backbone normalises its features at test time. The "
        "'moving minus AdaBN' lines tell you whether a head trained on one normalisation and tested on another is "
        "to blame."),
}
SOLUTIONS: dict[str, object] = {"far_depth": 1, "freeze_first_two": build,
                                "batchnorm_trap": BATCHNORM_TRAP.right_letter}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "far_depth": [(3, "further behind the best depth")],
    "freeze_first_two": [(weights_only, "normalise with each batch's statistics"),
                         (no_running_stats, "normalise with each batch's statistics")],
    "batchnorm_trap": [(BATCHNORM_TRAP.letter_of(1), "the mismatch is not the cost"),
                       (BATCHNORM_TRAP.letter_of(3), "not the trap run more")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
