"""Scoring a model on a labelled set: mean loss and accuracy, and the confusion matrix (eval mode, restored)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageSet
from .runtime import evaluating

__all__ = ["Metrics", "confusion_matrix", "evaluate"]


@dataclass(frozen=True)
class Metrics:
    loss: float
    accuracy: float


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSet, batch_size: int = 250,
             device: str | torch.device | None = None) -> Metrics:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``, in eval mode (the mode is restored)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    total_loss, correct = 0.0, 0
    with evaluating(model.to(device)):
        for start in range(0, len(data), batch_size):
            x = data.images[start:start + batch_size].to(device)
            y = data.labels[start:start + batch_size].to(device)
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    return Metrics(loss=total_loss / len(data), accuracy=correct / len(data))


@torch.no_grad()
def confusion_matrix(model: nn.Module, data: ImageSet, batch_size: int = 250) -> torch.Tensor:
    """Counts of ``model``'s predictions on ``data`` (in eval mode; the mode is restored): row = true class,
    column = predicted class."""
    device = next(model.parameters()).device
    with evaluating(model):
        predicted = torch.cat([model(data.images[i:i + batch_size].to(device)).argmax(1).cpu()
                               for i in range(0, len(data), batch_size)])
    k = data.num_classes
    return torch.bincount(data.labels * k + predicted, minlength=k * k).reshape(k, k)
