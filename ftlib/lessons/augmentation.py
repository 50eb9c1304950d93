"""Lesson 04's drivers: a preview of each augmentation, runs with and without augmentation, and the 6/9 trap."""

from __future__ import annotations

import matplotlib.pyplot as plt
import torch

from .. import augment, data
from ..evaluation import confusion_matrix
from . import plots
from .experiments import run

__all__ = ["augmented_run", "on_six_nine", "preview", "swapped"]


def preview(digits: torch.Tensor, strength: float) -> None:
    """Show ``digits`` under each augmentation of the catalogue and the v2 pipeline, at ``strength``."""
    single = {name: augment.per_image(t) for name, t in augment.catalogue(strength).items()}
    rows = {"original": lambda x, g: x, **single, "v2 pipeline": augment.per_image(augment.pipeline(strength))}
    grid = torch.cat([fn(digits, torch.Generator().manual_seed(0)) for fn in rows.values()])
    names = [name if k == 0 else "" for name in rows for k in range(len(digits))]
    degrees, shift, scale = augment.affine_ranges(strength)
    print(f"strength = {strength}: rotation ±{degrees:g}°, shift ±{100 * shift:.0f}%, "
          f"scale {scale[0]:.2f}-{scale[1]:.2f}")
    plots.show_images(grid, count=len(grid), columns=len(digits), labels=names,
                      title=f"Six training digits under each augmentation (strength {strength})")
    plt.show()


def augmented_run(method: str, strength: float, seed: int, n: int, steps: int, turn: bool = False) -> dict:
    """Train ``method`` on ``n`` digits per class with the standard augmentation at ``strength`` (0: none).

    ``turn`` also turns half of the images upside down (a 180° turn). Returns the test ``accuracy``, the
    ``confusion`` matrix on the test digits, and the training ``seconds``.
    """
    parts = [augment.standard(strength)] if strength else []
    if turn:
        parts.append(augment.random_flip(horizontal=True, vertical=True, p=0.5))
    trained = run(method, data.few_shot("mnist", n, seed), seed, steps,
                  augment=augment.compose(*parts) if parts else None)
    test = data.test_set("mnist")
    confusion = confusion_matrix(trained.model, test)
    return {"accuracy": confusion.trace().item() / len(test), "confusion": confusion,
            "seconds": trained.history.seconds}


def _six_nine_count(confusion: torch.Tensor) -> int:
    return int(confusion[6].sum() + confusion[9].sum())


def on_six_nine(confusion: torch.Tensor) -> float:
    """The share of the test 6s and 9s that are read correctly."""
    return (confusion[6, 6] + confusion[9, 9]).item() / _six_nine_count(confusion)


def swapped(confusion: torch.Tensor) -> float:
    """The share of the test 6s and 9s read as the other one."""
    return (confusion[6, 9] + confusion[9, 6]).item() / _six_nine_count(confusion)
