"""When transfer fails: how far a target lies from the source, and feature extraction from an intermediate block.

* :func:`task_distance`: how far a target's images are from the source task, seen through the pretrained
  model's features (a Fréchet distance between the two feature clouds, as in FID).
* :func:`adapt_batchnorm`: AdaBN (Li et al. 2016), BatchNorm statistics re-estimated on the target's images.
* :func:`truncate`: a model that stops after an intermediate block, for a linear probe on that block's features.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from . import data
from .models import BLOCKS, CHANNELS, GlyphNet
from .probe import extract_features

__all__ = ["adapt_batchnorm", "frechet_distance", "subset", "task_distance", "truncate"]


def subset(images: data.ImageSet, per_class: int) -> data.ImageSet:
    """The first ``per_class`` images of every class of ``images`` (a smaller, still balanced test set)."""
    rows = torch.cat([torch.nonzero(images.labels == c).flatten()[:per_class] for c in range(images.num_classes)])
    return data.ImageSet(images.images[rows], images.labels[rows], images.classes, images.name)


@torch.no_grad()
def adapt_batchnorm(model: nn.Module, images: torch.Tensor, batch_size: int = 500) -> nn.Module:
    """AdaBN (Li et al. 2016): replace every BatchNorm's running mean and variance by those of ``images``.

    The weights stay as they are; only the statistics that normalise each channel move from the source task's
    to the target's (no labels needed). Returns ``model``, changed in place, in the mode it was in.
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in norms]
    was_training = model.training
    device = next(model.parameters()).device
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the batches below
    model.train()
    for i in range(0, len(images), batch_size):
        model(images[i:i + batch_size].to(device))
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
    return model


def frechet_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Fréchet distance between Gaussians fitted to two sets of feature vectors (rows): 0 for equal clouds.

    ``|mean_a - mean_b|² + tr(C_a + C_b - 2 (C_a^½ C_b C_a^½)^½)``, computed in float64.
    """
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(f"need two (n, d) feature sets with the same d and n >= 2, got {tuple(a.shape)} "
                         f"and {tuple(b.shape)}")
    a, b = a.double(), b.double()
    cov_a, cov_b = torch.cov(a.T), torch.cov(b.T)
    values, vectors = torch.linalg.eigh(cov_a)
    root_a = vectors @ torch.diag(values.clamp_min(0).sqrt()) @ vectors.T
    cross = torch.linalg.eigvalsh(root_a @ cov_b @ root_a).clamp_min(0).sqrt().sum()
    return float((a.mean(0) - b.mean(0)).square().sum() + cov_a.trace() + cov_b.trace() - 2 * cross)


def task_distance(model: nn.Module, source: data.ImageSet, target: data.ImageSet, upto: str = "block4") -> float:
    """How far ``target``'s images lie from ``source``'s in ``model``'s pooled features after block ``upto``."""
    return frechet_distance(extract_features(model, source.images, upto), extract_features(model, target.images, upto))


def truncate(model: GlyphNet, upto: str) -> GlyphNet:
    """A copy of ``model`` that stops after block ``upto``, with a fresh head that reads that block's features.

    The later blocks become identities, so :func:`ftlib.train.linear_probe` (feature extraction) and
    :func:`ftlib.train.evaluate` work on it unchanged.
    """
    if upto not in BLOCKS:
        raise ValueError(f"unknown block {upto!r}; choose one of {', '.join(BLOCKS)}")
    cut = copy.deepcopy(model)
    for name in BLOCKS[BLOCKS.index(upto) + 1:]:
        setattr(cut, name, nn.Identity())
    cut.head = nn.Linear(CHANNELS[BLOCKS.index(upto)], model.num_classes)
    return cut
