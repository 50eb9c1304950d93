"""Lesson 03's drivers: train by a stage plan (freeze depth, probe, LP-FT, gradual unfreezing); the BatchNorm trap."""

from __future__ import annotations

from .. import data
from ..evaluation import evaluate
from ..freeze import changed, count_parameters, freeze_backbone, snapshot
from ..models import BLOCKS
from ..unfreezing import stage_plan, train_in_stages
from .experiments import run

__all__ = ["frozen_head_run", "staged_run"]


def staged_run(recipe_name: str, target: str, n: int, seed: int, steps: int = 100, lr: float = 3e-3, k: int = 0,
               batch_size: int = 64) -> dict:
    """Train a pretrained GlyphNet on ``n`` labels per class of ``target`` by a stage plan; score it on the test set.

    ``recipe_name`` names the plan (see :data:`ftlib.unfreezing.PLANS`). Returns the test ``accuracy``, the
    training ``seconds``, and the ``trainable`` parameters of the last stage.
    """
    train_set = data.few_shot(target, n, seed)
    stages = stage_plan(recipe_name, steps, lr, k)
    trained = run("fine-tune", train_set, seed,
                  train=lambda model: train_in_stages(model, train_set, stages, batch_size=batch_size, seed=seed))
    return {"accuracy": evaluate(trained.model, data.test_set(target)).accuracy, "seconds": trained.seconds,
            "trainable": count_parameters(trained.model, trainable_only=True)}


def frozen_head_run(target: str, n: int, seed: int, steps: int, lr: float, update_bn_stats: bool) -> dict:
    """Train only the head on a frozen backbone; ``update_bn_stats=True`` is the trap (BatchNorm statistics move).

    Returns the test ``accuracy`` and which backbone tensors ``changed`` out of how many (``tensors``).
    """
    before = {}

    def frozen(model) -> None:
        freeze_backbone(model, update_bn_stats=update_bn_stats)
        before.update(snapshot(model, BLOCKS))

    model = run("fine-tune", data.few_shot(target, n, seed), seed, steps, lr=lr, prepare=frozen).model
    return {"target": target, "accuracy": evaluate(model, data.test_set(target)).accuracy,
            "changed": changed(model, before), "tensors": len(before)}
