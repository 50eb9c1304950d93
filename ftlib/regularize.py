"""Weight regularisation for fine-tuning: L2 towards zero, L2-SP towards the pretrained weights, drift and retention.

L2-SP (Li, Grandvalet & Davoine, 2018) penalises the distance to the *starting point* w0 instead of the distance to
zero: ``alpha/2 * ||w - w0||^2`` over the pretrained backbone, plus ``beta/2 * ||w_head||^2`` over the new head (which
has no pretrained value to return to). Both penalties plug into ``fit(penalty=...)``.
"""

from __future__ import annotations

import copy
import functools

import torch
from torch import nn

from . import data
from .data import ImageSet
from .experiments import get_method, make_model
from .models import load_pretrained
from .train import evaluate, fit


def _backbone(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if not n.startswith("head.")}


def _head(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if n.startswith("head.") and n.endswith("weight")}


def _check_strength(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name}={value!r} is not allowed: a penalty strength is a number >= 0")


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the backbone's weights (w0), to measure drift from or to pull towards."""
    return {n: p.detach().clone() for n, p in _backbone(model).items()}


class L2Penalty:
    """``alpha/2 * ||w||^2`` over the backbone and ``beta/2 * ||w_head||^2``: classic weight decay, towards zero."""

    def __init__(self, alpha: float, beta: float = 0.0) -> None:
        _check_strength("alpha", alpha)
        _check_strength("beta", beta)
        self.alpha, self.beta = alpha, beta

    def _anchor(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(weight)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        body = sum((w - self._anchor(n, w)).square().sum() for n, w in _backbone(model).items())
        head = sum(w.square().sum() for w in _head(model).values())
        return 0.5 * self.alpha * body + 0.5 * self.beta * head


class L2SP(L2Penalty):
    """``alpha/2 * ||w - w0||^2`` over the backbone (w0: its weights now) and ``beta/2 * ||w_head||^2``."""

    def __init__(self, model: nn.Module, alpha: float, beta: float = 0.0) -> None:
        super().__init__(alpha, beta)
        self.start = snapshot(model)

    def _anchor(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        return self.start[name].to(weight.device)


def drift(model: nn.Module, start: dict[str, torch.Tensor]) -> float:
    """How far the backbone moved: the Euclidean norm ``||w - w0||`` over all backbone weights."""
    total = sum((p.detach() - start[n].to(p.device)).square().sum() for n, p in _backbone(model).items())
    return float(torch.as_tensor(total).sqrt())


def retention(model: nn.Module, source_head: nn.Linear, source_test: ImageSet) -> float:
    """Source-task accuracy of ``model``'s backbone with the original source head put back (model untouched)."""
    probe = copy.deepcopy(model)
    probe.head = copy.deepcopy(source_head).to(next(model.parameters()).device)
    return evaluate(probe, source_test).accuracy


PENALTIES = ("none", "l2", "l2sp")
HEAD_DECAY = 1e-3  # beta: the new head is pulled towards zero with this strength in both penalties


@functools.cache
def _source() -> tuple[nn.Linear, ImageSet]:
    """The shipped model's letters head, and every 4th fixed test letter (25 per class) to measure retention."""
    test = data.test_set("letters")
    return load_pretrained().head, ImageSet(test.images[::4], test.labels[::4], test.classes, "letters (1 in 4)")


def regularized_run(penalty: str, alpha: float, lr: float, seed: int, n: int = 5, steps: int = 100,
                    target: str = "mnist") -> dict:
    """Fine-tune the shipped model on ``n`` labels per class of ``target`` under a penalty, and measure it.

    ``penalty`` is ``"none"``, ``"l2"`` (towards zero) or ``"l2sp"`` (towards the pretrained weights), with strength
    ``alpha`` on the backbone. Returns target test ``accuracy``, backbone ``drift`` ``||w - w0||``, and
    ``retention``: letters accuracy with the original letters head put back.
    """
    if penalty not in PENALTIES:
        raise ValueError(f"unknown penalty {penalty!r}; choose one of {', '.join(PENALTIES)}")
    model = make_model(get_method("fine-tune"), len(data.test_set(target).classes), seed)
    start = snapshot(model)
    rule = {"none": lambda: None, "l2": lambda: L2Penalty(alpha, HEAD_DECAY),
            "l2sp": lambda: L2SP(model, alpha, HEAD_DECAY)}[penalty]()
    fit(model, data.few_shot(target, n, seed), steps, lr=lr, penalty=rule, seed=seed)
    head, letters = _source()
    return {"accuracy": evaluate(model, data.test_set(target)).accuracy, "drift": drift(model, start),
            "retention": retention(model, head, letters)}
