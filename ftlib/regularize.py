"""Weight regularisation for fine-tuning: L2 towards zero, L2-SP towards the pretrained weights, drift and retention.

L2-SP (Li, Grandvalet & Davoine, 2018) penalises the distance to the *starting point* w0 instead of the distance to
zero: ``alpha/2 * ||w - w0||^2`` over the pretrained backbone, plus ``beta/2 * ||w_head||^2`` over the new head (which
has no pretrained value to return to). Both penalties plug into ``fit(penalty=...)``: they are added to the loss, so
under Adam or AdamW their gradient is normalised like the data's. That is *L2 regularisation*, not weight decay:
decoupled weight decay (Loshchilov & Hutter, 2019) shrinks the weights in the optimizer step instead
(``fit(optimizer="adamw", weight_decay=...)``).

Drift: :func:`drift` is the Euclidean distance from w0; :func:`layer_drift` is the change of each layer's weights
relative to their size, optionally of their *direction* only (``scale_free``), which is what a layer followed by
BatchNorm computes with. Retention: :func:`retention` puts the source head back and scores the source task, with the
source task's BatchNorm statistics re-estimated (:func:`recalibrate_batchnorm`) when given source images.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageSet
from .evaluation import evaluate
from .transfer import adapt_batchnorm

__all__ = ["L2Penalty", "L2SP", "drift", "layer_drift", "output_change", "recalibrate_batchnorm", "retention",
           "source_probe", "starting_point"]


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


def layer_drift(model: nn.Module, start: dict[str, torch.Tensor], scale_free: bool = False) -> dict[str, float]:
    """Per backbone layer (every weight with 2 or more dimensions): ``||W - W0|| / ||W0||``.

    With ``scale_free``, the same for the directions ``W/||W||`` and ``W0/||W0||``: a layer followed by BatchNorm
    computes the same function at any scale of its weights, so only this part of its change shows in the outputs.
    """
    changes = {}
    for name, weight in _backbone_weights(model).items():
        if weight.dim() < 2:
            continue
        now, then = weight.detach(), start[name].to(weight.device)
        if scale_free:
            now, then = now / now.norm(), then / then.norm()
        changes[name] = float((now - then).norm() / then.norm())
    return changes


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int = 260) -> nn.Module:
    """Re-estimate every BatchNorm's running statistics on ``images`` (in place; weights untouched), and return it.

    The statistics become the plain average over ``images``' batches (AdaBN's re-estimate,
    :func:`ftlib.transfer.adapt_batchnorm`); the model ends in eval mode.
    """
    return adapt_batchnorm(model, images, batch_size).eval()


def source_probe(model: nn.Module, source_head: nn.Linear, source_images: torch.Tensor | None = None) -> nn.Module:
    """A copy of ``model`` with the original source head put back (``model`` untouched), in eval mode.

    With ``source_images`` (source-task images, not the test ones), the copy's BatchNorm statistics are re-estimated
    on them: what it has lost then is lost in the weights, not in the statistics.
    """
    probe = copy.deepcopy(model)
    probe.head = copy.deepcopy(source_head).to(next(model.parameters()).device)
    if source_images is not None:
        recalibrate_batchnorm(probe, source_images)
    return probe.eval()


def retention(model: nn.Module, source_head: nn.Linear, source_test: ImageSet,
              source_images: torch.Tensor | None = None) -> float:
    """Source-task accuracy of ``model``'s backbone with the original source head put back (model untouched).

    With ``source_images``, the BatchNorm statistics are first re-estimated on them (see :func:`source_probe`).
    """
    return evaluate(source_probe(model, source_head, source_images), source_test).accuracy


@torch.no_grad()
def output_change(outputs: torch.Tensor, reference: torch.Tensor) -> float:
    """How far one model's predictions moved from a reference's, on the same inputs: the mean KL divergence
    ``KL(reference || outputs)`` of their softmax distributions (nats; 0 for the same predictions).

    ``outputs`` and ``reference`` are logits of shape (examples, classes), e.g. from a model and from its start.
    """
    if outputs.shape != reference.shape:
        raise ValueError(f"outputs of shape {tuple(outputs.shape)} and reference {tuple(reference.shape)} differ")
    return F.kl_div(F.log_softmax(outputs, 1), F.log_softmax(reference.to(outputs.device), 1), log_target=True,
                    reduction="batchmean").item()
