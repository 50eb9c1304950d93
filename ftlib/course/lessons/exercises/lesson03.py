"""Lesson 03's exercises: how deep to freeze on the far target (predict), freeze two blocks yourself (do), and the
BatchNorm trap (explain).

* :func:`far_depth`: the learner predicts, before the sweep runs, how many blocks to freeze on gratings; the check
  reads the sweep.
* :func:`freeze_first_two`: the learner writes ``build(model)`` that freezes block1 and block2 with
  ``ftlib.freeze``; the check counts the trainable parameters, fine-tunes the model on the near target (about 1 s)
  and checks that the frozen blocks, BatchNorm statistics included, did not change.
* :data:`BATCHNORM_TRAP`: why the "frozen" backbone of section 4 lost accuracy on textures.
"""

from __future__ import annotations

from collections.abc import Callable
from types import EllipsisType

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
           "far_depth", "freeze_first_two", "hint", "solution", "weights_only"]

TARGET_ACCURACY = 94.0  # test accuracy (%) that block1 + block2 frozen must reach on font_digits, N = 10, seed 0
_BN_STATS = ("running_mean", "running_var", "num_batches_tracked")


@exercise
def far_depth(guess: int | EllipsisType, sweep: Results, far: str = "gratings") -> Feedback:
    """Compare the learner's ``guess`` of how many blocks to freeze on ``far`` with the sweep's results.

    A guess passes when its mean accuracy is within the seed-to-seed spread of the best k's (differences smaller
    than that are not resolved by the seeds). A miss is not told the best k.
    """
    quantity = f"how many blocks (0-{len(BLOCKS)}) to freeze on {far}"
    if not attempted(guess):
        return tell(None, f"Exercise not attempted yet: write your prediction of {quantity} in "
                    f"`guess_far_k` (the cell before the sweep) in place of `...`, run that cell, "
                    f"then this one.")
    ks = sorted(sweep.where(target=far).unique("k"))
    if not ks:
        return cells_not_run(f"the sweep on {far}")
    if isinstance(guess, bool) or guess not in ks:
        return tell(False, f"Your prediction should be a whole number of blocks from {ks[0]} to {ks[-1]}, "
                    f"got {guess!r}.")
    mean = {k: 100 * sweep.mean(target=far, k=k) for k in ks}
    std = {k: 100 * sweep.std(target=far, k=k) for k in ks}
    best = max(ks, key=mean.get)
    behind = mean[best] - mean[guess]
    spread = max(std[best], std[guess])
    if behind > spread:
        side = "fewer" if guess > best else "more"
        return tell(False, f"Not quite: k = {guess} is further behind the best depth than the seed-to-seed spread "
                           f"({spread:.1f} points); the best freezes {side} blocks. Read the plot above again.")
    measured = ", ".join(f"k={k} {mean[k]:.1f}%" for k in ks)
    verdict = (f"Right: k = {guess} has the best mean accuracy." if guess == best else
               f"Close enough: k = {guess} is {behind:.1f} points behind the best, k = {best}, within the "
               f"seed-to-seed spread ({spread:.1f} points): the seeds do not separate them.")
    why = ("the deeper blocks of GlyphNet are tuned to strokes, and gratings need other features, so they must "
           "adapt: on a far target freeze little (the first block's edge detectors are general enough), and "
           "compare with scratch.")
    return tell(True, f"{verdict} Measured on {far} (mean over seeds): {measured}. Why: {why}")


@exercise
def freeze_first_two(build: Callable[[nn.Module], object] | EllipsisType, target: str = "font_digits", n: int = 10,
                     steps: int = 60, lr: float = 3e-3, seed: int = 0) -> Feedback:
    """Run the learner's ``build(model)`` on a pretrained GlyphNet, fine-tune it on ``target`` and check it.

    It passes when exactly block1 and block2 are frozen (trainable parameters as in the lesson's k = 2 row), their
    weights *and* BatchNorm statistics are unchanged after ``steps`` steps, and the test accuracy reaches
    :data:`TARGET_ACCURACY`.
    """
    quantity = f"test accuracy on {target} (N = {n}, seed {seed}, {steps} steps)"
    if not attempted(build):
        return not_attempted("write the body of build(model)")
    if not callable(build):
        return tell(False, f"build should be a function of the model, got {build!r}.")
    train_set = data.few_shot(target, n, seed)
    model = make_model(get_method("fine-tune"), train_set.num_classes, seed)
    expected = sum(count_parameters(getattr(model, name)) for name in (*BLOCKS[2:], "head"))
    before = snapshot(model, BLOCKS[:2])
    build(model)
    trainable = count_parameters(model, trainable_only=True)
    if trainable != expected:
        frozen = [name for name, block in model.named_children()
                  if not any(p.requires_grad for p in block.parameters())]
        return tell(False, f"Not yet: {trainable:,} parameters are trainable, but with block1 and block2 "
                    f"frozen {expected:,} should be (block3, block4 and the head; the k = 2 row of "
                    f"the table). Frozen now: {', '.join(frozen) or 'nothing'}. Freeze them by "
                    f"name: freeze(model, [...]) with the names in models.BLOCKS.")
    trained = run("fine-tune", train_set, seed, steps, model=model, lr=lr)
    # a counter that no output depends on: a freeze that keeps the statistics still (momentum 0) is right
    moved = [name for name in changed(trained.model, before) if not name.endswith("num_batches_tracked")]
    if moved:
        stats_only = all(name.split(".")[-1] in _BN_STATS for name in moved)
        what = ("their BatchNorm running statistics moved (the trap this lesson shows): requires_grad alone freezes "
                "the weights, not the statistics; ftlib.freeze keeps the frozen blocks' BatchNorm layers in eval mode"
                if stats_only else "some of their weights were trained")
        return tell(False, f"Not yet: the trainable count is right ({trainable:,}), but block1 and block2 "
                    f"changed during training ({len(moved)} tensors, e.g. {moved[0]}): {what}.")
    accuracy = 100 * evaluate(trained.model, data.test_set(target)).accuracy
    print(f"block1 and block2 frozen: {trainable:,} trainable parameters, their weights and BatchNorm statistics "
          f"unchanged; trained {steps} steps in {trained.seconds:.1f} s.")
    return check_target(accuracy, target=TARGET_ACCURACY, quantity=quantity, unit="%",
                        hint="the rate and steps are the lesson's; check that only block1 and block2 are frozen.")


BATCHNORM_TRAP = Question(
    "With update_bn_stats=True, no weight of the frozen backbone moved, yet on textures the head scored lower than "
    "with ftlib.freeze. Why?",
    [
        Option("In train mode BatchNorm overwrote its running statistics, so the backbone changed.", True,
               "The running statistics followed the batches of the new target: the 'frozen' backbone became "
               "another function. Keep them frozen (ftlib.freeze) unless you adapt them on purpose, as AdaBN does, "
               "and check that on validation data."),
        Option("Some frozen weights still got small updates through the head's gradients.", False,
               "requires_grad=False stops every update of a weight: the printed lines list the backbone tensors "
               "that changed, and they are only running_mean, running_var and num_batches_tracked."),
        Option("The two runs trained the head differently: other batches, another rate or more steps.", False,
               "Both runs use the same seed, batches, rate and steps; only update_bn_stats differs, so the gap "
               "comes from the BatchNorm statistics alone."),
        Option("Updating BatchNorm statistics always hurts, so it must never be done.", False,
               "Read the per-target lines: on another target moving the statistics need not hurt, and fastai's "
               "train_bn and AdaBN adapt them on purpose for a shifted target. The mistake is the silent change, "
               "not the adaptation."),
    ], seed="lesson03.batchnorm_trap/3")


@exercise
def batchnorm_trap(answer: str | EllipsisType) -> Feedback:
    """The explain exercise: why the weights-only freeze costs accuracy on textures."""
    return BATCHNORM_TRAP.check(answer)


def build(model):
    freeze(model, ["block1", "block2"])


def weights_only(model):
    for block in (model.block1, model.block2):
        for p in block.parameters():
            p.requires_grad_(False)


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
        "Those tensors are not weights, yet they decide how the backbone normalises its features at test time."),
}
SOLUTIONS: dict[str, object] = {"far_depth": 1, "freeze_first_two": build,
                                "batchnorm_trap": BATCHNORM_TRAP.right_letter}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "far_depth": [(3, "further behind the best depth")],
    "freeze_first_two": [(weights_only, "BatchNorm running statistics moved")],
    "batchnorm_trap": [(BATCHNORM_TRAP.letter_of(1), "requires_grad=False stops every update")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
