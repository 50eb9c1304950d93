"""Weight regularisation for fine-tuning: L2 towards zero, L2-SP towards the pretrained weights, drift and retention.

L2-SP (Li, Grandvalet & Davoine, 2018) penalises the distance to the *starting point* w0 instead of the distance to
zero: ``alpha/2 * ||w - w0||^2`` over the pretrained backbone, plus ``beta/2 * ||w_head||^2`` over the new head (which
has no pretrained value to return to). Both penalties plug into ``fit(penalty=...)``.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from .data import ImageSet
from .evaluation import evaluate

__all__ = ["L2Penalty", "L2SP", "drift", "retention", "starting_point"]


def _backbone_weights(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if not n.startswith("head.")}


def _head(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: p for n, p in model.named_parameters() if n.startswith("head.") and n.endswith("weight")}


def _check_strength(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name}={value!r} is not allowed: a penalty strength is a number >= 0")


def starting_point(model: nn.Module) -> dict[str, torch.Tensor]:
    """A detached copy of the backbone's weights (w0), to measure drift from or to pull towards."""
    return {n: p.detach().clone() for n, p in _backbone_weights(model).items()}


class L2Penalty:
    """``alpha/2 * ||w||^2`` over the backbone and ``beta/2 * ||w_head||^2``: classic weight decay, towards zero."""

    def __init__(self, alpha: float, beta: float = 0.0) -> None:
        _check_strength("alpha", alpha)
        _check_strength("beta", beta)
        self.alpha, self.beta = alpha, beta

    def _anchor(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        return torch.zeros_like(weight)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        body = sum((w - self._anchor(n, w)).square().sum() for n, w in _backbone_weights(model).items())
        head = sum(w.square().sum() for w in _head(model).values())
        return 0.5 * self.alpha * body + 0.5 * self.beta * head


class L2SP(L2Penalty):
    """``alpha/2 * ||w - w0||^2`` over the backbone (w0: its weights now) and ``beta/2 * ||w_head||^2``."""

    def __init__(self, model: nn.Module, alpha: float, beta: float = 0.0) -> None:
        super().__init__(alpha, beta)
        self.start = starting_point(model)

    def _anchor(self, name: str, weight: torch.Tensor) -> torch.Tensor:
        return self.start[name].to(weight.device)


def drift(model: nn.Module, start: dict[str, torch.Tensor]) -> float:
    """How far the backbone moved: the Euclidean norm ``||w - w0||`` over all backbone weights."""
    total = sum((p.detach() - start[n].to(p.device)).square().sum() for n, p in _backbone_weights(model).items())
    return float(torch.as_tensor(total).sqrt())


def retention(model: nn.Module, source_head: nn.Linear, source_test: ImageSet) -> float:
    """Source-task accuracy of ``model``'s backbone with the original source head put back (model untouched)."""
    probe = copy.deepcopy(model)
    probe.head = copy.deepcopy(source_head).to(next(model.parameters()).device)
    return evaluate(probe, source_test).accuracy
