"""Training in stages, each with its own set of trainable blocks: freeze depth, gradual unfreezing and LP-FT.

A stage plan is a list of :class:`Stage`. Each stage freezes every block it does not name (BatchNorm included, see
:mod:`ftlib.freeze`) and then runs :func:`ftlib.train.fit` with a fresh optimizer and schedule, or fits the
head exactly with :func:`ftlib.train.linear_probe`.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from . import data
from .freeze import block_names, freeze, unfreeze
from .models import BLOCKS
from .probe import linear_probe
from .stopping import History
from .train import fit

__all__ = ["PLANS", "Stage", "stage_plan", "train_in_stages"]

PLANS = ("freeze first k", "linear probe", "LP-FT", "gradual unfreezing")  # "freeze first k" with k=0 fine-tunes all


@dataclass(frozen=True)
class Stage:
    """Train only the ``trainable`` blocks for ``steps`` steps at ``lr``; ``probe=True`` fits the head exactly."""

    trainable: tuple[str, ...]
    steps: int = 0
    lr: float | dict[str, float] = 3e-3
    probe: bool = False

    def __post_init__(self) -> None:
        if self.probe and self.trainable != ("head",):
            raise ValueError(f"a probe stage trains only the head, not {self.trainable}")
        if not self.probe and (isinstance(self.steps, bool) or not isinstance(self.steps, int) or self.steps < 1):
            raise ValueError(f"steps={self.steps!r} is not allowed: a training stage needs a positive integer")


def train_in_stages(model: nn.Module, train_set: data.ImageSet, stages: list[Stage], *, batch_size: int = 64,
                    seed: int = 0) -> list[History | None]:
    """Run ``stages`` in order on ``model``; return each stage's :class:`History` (None for a probe stage).

    Each stage starts a fresh optimizer and learning-rate schedule; stage ``i`` draws its batches with seed
    ``seed + i``. The model ends with the last stage's blocks trainable and the others frozen.
    """
    histories = []
    for i, stage in enumerate(stages):
        freeze(model, block_names(model))
        unfreeze(model, stage.trainable)  # also rejects a block name the model does not have
        if stage.probe:
            linear_probe(model, train_set)
            histories.append(None)
        else:
            histories.append(fit(model, train_set, stage.steps, lr=stage.lr, batch_size=batch_size, seed=seed + i))
    return histories


def stage_plan(name: str, steps: int, lr: float = 3e-3, k: int = 0) -> list[Stage]:
    """The stages of a named plan with ``steps`` training steps in all (see ``PLANS``).

    ``"freeze first k"`` trains all but the first ``k`` blocks; ``"LP-FT"`` fits a linear probe, then
    fine-tunes everything; ``"gradual unfreezing"`` (ULMFiT) trains the head, then unfreezes one more block
    from the top in each of the following stages, splitting ``steps`` evenly.
    """
    everything = (*BLOCKS, "head")
    if name not in PLANS:
        raise ValueError(f"unknown stage plan {name!r}; choose one of {', '.join(PLANS)}")
    if isinstance(k, bool) or not isinstance(k, int) or not 0 <= k <= len(BLOCKS):
        raise ValueError(f"k={k!r} is not allowed: freeze from 0 to {len(BLOCKS)} blocks")
    if name == "freeze first k":
        return [Stage(everything[k:], steps, lr)]
    if name == "linear probe":
        return [Stage(("head",), probe=True)]
    if name == "LP-FT":
        return [Stage(("head",), probe=True), Stage(everything, steps, lr)]
    per_stage = steps // len(everything)
    return [Stage(everything[len(BLOCKS) - i:], per_stage, lr) for i in range(len(everything))]
