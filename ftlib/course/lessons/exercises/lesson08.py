"""Lesson 08's exercises: count an adapter's numbers, explain why B starts at zero, and fit adapters into a budget.

* :func:`predict_adapter_size` (*predict, then run*): the trainable numbers of a rank-4 adapter on block 4's
  convolution, written down before the lesson prints them; the check builds the adapter and counts.
* :data:`ZERO_B_QUESTION` / :func:`explain_zero_b` (*explain*): what would become of the adapters if ``A`` started
  at zero like ``B`` (why ``A`` starts random).
* :func:`fit_the_budget` (*do*): the learner attaches adapters (``ftlib.lora.add_lora``) so that at most
  :data:`BUDGET` numbers train, head included; the check trains the model like the lesson's LoRA (at the rate the
  tuning table chose for :data:`LORA_ARM`) and scores it on 100 held-out validation gratings (never the test set)
  against :data:`TARGET`.
"""

from __future__ import annotations

from collections.abc import Callable
from types import EllipsisType

from torch import nn

from ftlib import data, lora
from ftlib.course.lessons import tuning
from ftlib.course.lessons.adapters import METHOD
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
from ftlib.course.lessons.experiments import get_method, make_model, run
from ftlib.evaluation import evaluate
from ftlib.freeze import count_parameters
from ftlib.models import load_pretrained

__all__ = ["BUDGET", "HINTS", "LORA_ARM", "SOLUTIONS", "TARGET", "WRONG_ANSWERS", "ZERO_B_QUESTION",
           "explain_zero_b", "fit_the_budget", "hint", "predict_adapter_size", "solution"]

BUDGET = 2500  # trainable numbers allowed, the new head's 1,290 included
TARGET = 72.0  # validation accuracy (%) on held-out gratings that the budgeted model must reach
_TASK, _N, _N_VAL, _SEED = "gratings", 20, 10, 0  # the lesson's 20 labels per class, and 10 more held out
LORA_ARM = "08 LoRA r=1, gratings"  # the tuning table's arm whose chosen rate the budgeted model trains at


@exercise
def predict_adapter_size(guess: int | EllipsisType) -> Feedback:
    """Compare ``guess`` with the trainable numbers (A and B) of a rank-4 adapter on block 4's convolution."""
    if not attempted(guess):
        return check_prediction(guess, 0.0, tolerance=0, quantity="the trainable numbers of the adapter", why="")
    conv = load_pretrained().block4[0]
    layer = lora.LoRAConv2d(conv, rank=4, alpha=8.0)
    actual = layer.lora_A.numel() + layer.lora_B.numel()
    if isinstance(guess, (int, float)) and not isinstance(guess, bool) and guess != actual \
            and guess == 4 * (conv.in_channels + conv.out_channels):
        return tell(False, "Not yet: that counts the channels only. A is a 3x3 convolution: each of its filters "
                           "reads a 3x3 patch of every input channel.")
    return check_prediction(
        guess, actual, tolerance=0,
        quantity="the trainable numbers of a rank-4 adapter on block4's convolution",
        why=f"A is a 3x3 convolution from {conv.in_channels} channels into r = 4: each of its 4 filters reads a "
            f"3x3 patch of {conv.in_channels} channels, {conv.in_channels * 9} inputs, so A has "
            f"{layer.lora_A.numel():,} numbers; B maps those 4 channels back to {conv.out_channels}: "
            f"{layer.lora_B.numel():,}. That is r (inputs + outputs) = 4 x ({conv.in_channels * 9} + "
            f"{conv.out_channels}) = {actual:,}, against {conv.weight.numel():,} in the frozen weight. For a "
            f"convolution the inputs are channels x 3 x 3: forgetting the kernel gives 4 x "
            f"({conv.in_channels} + {conv.out_channels}) = {4 * (conv.in_channels + conv.out_channels)}.")


ZERO_B_QUESTION = Question(
    "Suppose add_lora started A at zero as well as B, and you trained the adapted model as this lesson does. What "
    "would become of the adapters?",
    [
        Option("They would never leave zero: the gradient of each matrix has the other as a factor.", True,
               "dL/dB contains A x and dL/dA contains B: with both at zero both gradients are exactly zero, at "
               "every step and any rate, so only the new head learns (the head-only control). With A random, B "
               "moves at the first step, and A follows once B is no longer zero."),
        Option("They would never leave zero: the optimizer's weight decay holds them there.", False,
               "They would stay at zero, but not because of weight decay: the lesson trains with none (fit's "
               "weight_decay is 0), and decay only shrinks a weight in proportion to its size, it cannot hold one "
               "that gets a gradient. Look at the gradients themselves: what does dL/dB contain?"),
        Option("They would train as now, only slower at first while their product grows from zero.", False,
               "They would not train at all: the gradient of B contains A x and that of A contains B, both exactly "
               "zero, so no step ever moves either. It is not a slow start but none."),
        Option("They would train, but A's rows would stay equal, so the adapter would act as rank 1.", False,
               "Equal rows come from equal but non-zero starts. Here the gradients themselves are zero: dL/dB "
               "contains A x and dL/dA contains B, so A and B never leave zero at all."),
    ], seed="lesson08.explain_zero_b")


@exercise
def explain_zero_b(answer: str | EllipsisType) -> Feedback:
    """Feedback on the learner's letter for :data:`ZERO_B_QUESTION`."""
    return ZERO_B_QUESTION.check(answer)


@exercise
def fit_the_budget(build: Callable[[nn.Module], object] | EllipsisType, lr: float | None = None,
                   steps: int = 100) -> Feedback:
    """Call ``build(model)`` on the pretrained GlyphNet with a new 10-class head (it attaches adapters in place);
    if at most :data:`BUDGET` numbers train, train it like the lesson's LoRA (rate ``lr``, default the tuning
    table's for LoRA r=1 on gratings; ``steps`` steps) on 20 gratings per class and score it on 100 held-out ones.
    About 2 seconds."""
    quantity = f"validation accuracy (within {BUDGET:,} trainable numbers)"
    hint = ("where the adapters sit matters as much as their rank: which blocks' features must change for a target "
            "as far from the letters as the gratings (lesson 07)? Count what each choice costs before you raise "
            "the rank.")
    if not attempted(build):
        return not_attempted("write build(model), attaching adapters in place,")
    if not callable(build):
        return tell(False, f"build should be a function of the model, got {build!r}.")
    model = make_model(get_method(METHOD), 10, _SEED)
    build(model)
    if not any(isinstance(layer, lora.LoRALayer) for layer in model.modules()):
        return tell(False, "No adapter found: build(model) should call lora.add_lora(model, blocks, rank=..., "
                           "alpha=8.0), which wraps each named block's convolution and freezes the backbone. As it "
                           f"is, every one of the model's {count_parameters(model, trainable_only=True):,} numbers "
                           "would train.")
    trainable = count_parameters(model, trainable_only=True)
    print(f"trainable numbers: {trainable:,} (head {count_parameters(model.head, trainable_only=True):,}), "
          f"budget {BUDGET:,}")
    if trainable > BUDGET:
        sizes = ", ".join(f"{name}: {conv.in_channels} -> {conv.out_channels} channels"
                          for name in ("block3", "block4") for conv in [load_pretrained().get_submodule(name)[0]])
        return tell(False, f"Over budget: {trainable:,} numbers train, the budget is {BUDGET:,}. Count each adapted "
                           f"convolution as r x (inputs x 3 x 3 + outputs) ({sizes}), plus the head's "
                           f"{count_parameters(model.head):,}; lower the rank or adapt fewer blocks.")
    lr = tuning.load().options(LORA_ARM)["lr"] if lr is None else lr
    train, val = data.few_shot_split(_TASK, _N, _N_VAL, _SEED)
    trained = run(METHOD, train, _SEED, steps, model=model, lr=lr).model
    print(f"trained {steps} steps at {lr:g} on {len(train):,} gratings; scored on {len(val)} held-out ones")
    return check_target(100 * evaluate(trained, val).accuracy, target=TARGET, quantity=quantity, hint=hint, unit="%")


def build(model):
    lora.add_lora(model, ["block3", "block4"], rank=1, alpha=8.0)


def _rank_four(model):
    lora.add_lora(model, ["block3", "block4"], rank=4, alpha=8.0)


def _no_adapter(model):
    return model


HINTS: dict[str, tuple[str, str]] = {
    "predict_adapter_size": (
        "A maps the convolution's inputs into r channels, B maps r channels back to its outputs: count each.",
        "For a 3x3 convolution each of A's r filters reads a 3x3 patch of every input channel: r x (inputs x 3 x 3 "
        "+ outputs)."),
    "explain_zero_b": (
        "Write the update as B (A x): which factors does the gradient of B contain, and which the gradient of A?",
        "If both started at zero, what would the first step change?"),
    "fit_the_budget": (
        "Count first: the head alone takes 1,290 numbers, and each adapted convolution r x (inputs x 3 x 3 + "
        "outputs). A rank-1 adapter is already cheap.",
        "Where the adapters sit matters as much as their rank: the far gratings need block 3's features changed "
        "too."),
}
SOLUTIONS: dict[str, object] = {"predict_adapter_size": 2816, "explain_zero_b": ZERO_B_QUESTION.right_letter,
                                "fit_the_budget": build}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "predict_adapter_size": [(768, "counts the channels only")],
    "explain_zero_b": [(ZERO_B_QUESTION.letter_of(1), "not because of weight decay"),
                       (ZERO_B_QUESTION.letter_of(2), "not a slow start"),
                       (ZERO_B_QUESTION.letter_of(3), "Equal rows come from")],
    "fit_the_budget": [(_rank_four, "Over budget"), (_no_adapter, "No adapter found")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
