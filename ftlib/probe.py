"""Feature extraction: pooled features of a frozen backbone, and a linear probe (a logistic-regression head) on them."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageSet
from .freeze import freeze_backbone
from .runtime import evaluating

__all__ = ["extract_features", "linear_probe"]


@torch.no_grad()
def extract_features(model: nn.Module, images: torch.Tensor, upto: str = "block4",
                     batch_size: int = 1000) -> torch.Tensor:
    """Pooled features of a GlyphNet after block ``upto``, computed in eval mode, on the model's device."""
    device = next(model.parameters()).device
    with evaluating(model):
        parts = [model.features(images[i:i + batch_size].to(device), upto) for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


def linear_probe(model: nn.Module, train: ImageSet, weight_decay: float = 1e-3, max_iter: int = 100) -> nn.Module:
    """Fit only the head of ``model`` on frozen features (feature extraction), and return the model.

    The backbone is frozen; its features are standardised and a logistic-regression head is fitted with
    L-BFGS (full batch, deterministic), then the standardisation is folded into ``model.head``.
    """
    freeze_backbone(model)
    features = extract_features(model, train.images)
    mean, std = features.mean(0), features.std(0, unbiased=False) + 1e-6
    z = (features - mean) / std
    labels = train.labels.to(z.device)
    head = nn.Linear(z.shape[1], model.head.out_features).to(z.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(z), labels) + weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        model.head.weight.copy_(head.weight / std)
        model.head.bias.copy_(head.bias - (head.weight * (mean / std)).sum(1))
    return model
