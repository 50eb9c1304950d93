"""Lesson 07's drivers: linear probes on each block, and fine-tuning a sound or a flawed (narrow-source) checkpoint.

:func:`flaw_run` fine-tunes either checkpoint and tests on data with the variation the flawed source lacked, with
or without a remedy; :func:`probe_run` fits a linear probe on an intermediate block's features.
"""

from __future__ import annotations

from .. import augment, data
from ..evaluation import evaluate
from ..models import pretrained_start
from ..pretrain import checkpoint_path
from ..transfer import subset, truncate
from .experiments import get_method, run

__all__ = ["REINIT_LR", "REMEDIES", "SHIFTED_TEST", "flaw_run", "probe_run"]

REINIT_LR = 3e-3  # rate for re-initialised blocks, which must learn from nothing
REMEDIES = {  # remedy -> (fine-tuning target, augment?, blocks re-initialised)
    "none": ("upright_digits", False, ()),
    "diverse data": ("font_digits", False, ()),
    "augmentation": ("upright_digits", True, ()),
    "re-initialise block4": ("upright_digits", False, ("block4",)),
}
SHIFTED_TEST = "font_digits"  # rotated, sheared, thick, dim digits: the variation the narrow source lacked


def probe_run(target: str, n: int, seed: int, block: str, variant: str = "full", test_per_class: int = 100) -> dict:
    """A linear probe on the pooled features after ``block`` of a checkpoint, trained on ``n`` labels per class."""
    train_set = data.few_shot(target, n, seed)
    start = truncate(pretrained_start(train_set.num_classes, seed, checkpoint_path(variant)), block)
    model = run("linear probe", train_set, seed, model=start).model
    return {"accuracy": evaluate(model, subset(data.test_set(target), test_per_class)).accuracy}


def flaw_run(variant: str, remedy: str, seed: int, n: int = 5, steps: int = 100) -> dict:
    """Fine-tune checkpoint ``variant`` on ``n`` digits per class the way ``remedy`` says (see :data:`REMEDIES`).

    The backbone trains at the course's low rate ("fine-tune, low backbone LR"), re-initialised blocks at
    :data:`REINIT_LR`. Returns the accuracy on the shifted test set (``accuracy``, all 2,500 digits) and on upright
    digits like the fine-tuning data (``upright accuracy``, 100 per class).
    """
    if remedy not in REMEDIES:
        raise ValueError(f"unknown remedy {remedy!r}; choose one of {', '.join(REMEDIES)}")
    target, augmented, reinit = REMEDIES[remedy]
    method = get_method("fine-tune, low backbone LR")
    start = pretrained_start(len(data.DIGITS), seed, checkpoint_path(variant), reinit)
    model = run(method, data.few_shot(target, n, seed), seed, steps, model=start,
                lr={**method.lr, **dict.fromkeys(reinit, REINIT_LR)},
                augment=augment.random_affine(degrees=15) if augmented else None).model
    return {"accuracy": evaluate(model, data.test_set(SHIFTED_TEST)).accuracy,
            "upright accuracy": evaluate(model, subset(data.test_set("upright_digits"), 100)).accuracy}
