"""When transfer fails (lesson 07): task distance, linear probes on each block, and a flawed pretrained model.

* :func:`task_distance`: how far a target's images are from the source task, seen through the pretrained
  model's features (a Fréchet distance between the two feature clouds, as in FID).
* :func:`truncate` and :func:`probe_run`: feature extraction from an intermediate block.
* :func:`start_from` and :func:`flaw_run`: fine-tune the sound or the flawed (narrow-source) checkpoint and
  test on data with the variation the flawed source lacked, with or without a remedy.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch
from torch import nn

from . import augment, data
from .models import BLOCKS, CHANNELS, GlyphNet, load_pretrained, replace_head
from .pretrain import checkpoint_path
from .train import evaluate, extract_features, fit, linear_probe, seed_everything

FINE_TUNE_LR = {"backbone": 3e-4, "head": 3e-3}  # the course's "fine-tune, low backbone LR"
REINIT_LR = 3e-3  # rate for re-initialised blocks, which must learn from nothing
REMEDIES = {  # remedy -> (fine-tuning target, augment?, blocks re-initialised)
    "none": ("upright_digits", False, ()),
    "diverse data": ("font_digits", False, ()),
    "augmentation": ("upright_digits", True, ()),
    "re-initialise block4": ("upright_digits", False, ("block4",)),
}
SHIFTED_TEST = "font_digits"  # rotated, sheared, thick, dim digits: the variation the narrow source lacked


def subset(images: data.ImageSet, per_class: int) -> data.ImageSet:
    """The first ``per_class`` images of every class of ``images`` (a smaller, still balanced test set)."""
    rows = torch.cat([torch.nonzero(images.labels == c).flatten()[:per_class] for c in range(images.num_classes)])
    return data.ImageSet(images.images[rows], images.labels[rows], images.classes, images.name)


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


@functools.lru_cache(maxsize=4)
def _backbone(path: str) -> GlyphNet:
    return load_pretrained(path=path)


def start_from(path: str | Path, num_classes: int, seed: int, reinit: tuple[str, ...] = ()) -> GlyphNet:
    """A copy of the checkpoint at ``path`` with a fresh head (and freshly initialised ``reinit`` blocks), seeded.

    The checkpoint is loaded (once per process) before seeding, so the same seed gives the same model every time.
    """
    unknown = [b for b in reinit if b not in BLOCKS]
    if unknown:
        raise ValueError(f"unknown block(s) {unknown} to re-initialise; choose from {', '.join(BLOCKS)}")
    backbone = _backbone(str(path))
    seed_everything(seed)
    model = replace_head(copy.deepcopy(backbone), num_classes)
    fresh = GlyphNet(num_classes)
    for name in reinit:
        getattr(model, name).load_state_dict(getattr(fresh, name).state_dict())
    return model


def probe_run(target: str, n: int, seed: int, block: str, variant: str = "full", test_per_class: int = 100) -> dict:
    """A linear probe on the pooled features after ``block`` of a checkpoint, trained on ``n`` labels per class."""
    model = truncate(start_from(checkpoint_path(variant), len(data.test_set(target).classes), seed), block)
    linear_probe(model, data.few_shot(target, n, seed))
    return {"accuracy": evaluate(model, subset(data.test_set(target), test_per_class)).accuracy}


def flaw_run(variant: str, remedy: str, seed: int, n: int = 5, steps: int = 100) -> dict:
    """Fine-tune checkpoint ``variant`` on ``n`` digits per class the way ``remedy`` says (see :data:`REMEDIES`).

    Returns the accuracy on the shifted test set (``accuracy``, all 2,500 digits) and on upright digits like the
    fine-tuning data (``upright accuracy``, 100 per class).
    """
    if remedy not in REMEDIES:
        raise ValueError(f"unknown remedy {remedy!r}; choose one of {', '.join(REMEDIES)}")
    target, augmented, reinit = REMEDIES[remedy]
    model = start_from(checkpoint_path(variant), len(data.DIGITS), seed, reinit)
    fit(model, data.few_shot(target, n, seed), steps, lr={**FINE_TUNE_LR, **dict.fromkeys(reinit, REINIT_LR)},
        augment=augment.random_affine(degrees=15) if augmented else None, seed=seed)
    return {"accuracy": evaluate(model, data.test_set(SHIFTED_TEST)).accuracy,
            "upright accuracy": evaluate(model, subset(data.test_set("upright_digits"), 100)).accuracy}
