"""Lesson 03's drivers: train by a stage plan (freeze depth, probe, LP-FT, gradual unfreezing); the BatchNorm trap.

:func:`depth_run` freezes the first k blocks; with all of them frozen it fits the head exactly (the linear probe),
so k = 4 is not a head under-trained by a few gradient steps. :func:`warm_up` pays the one-off start-up costs
before any timed run. :func:`live_depth` is the live slider's run: one freeze depth, trained for real.
"""

from __future__ import annotations

import matplotlib.pyplot as plt

from ftlib import data
from ftlib.course.lessons.experiments import run, split, validation_scores
from ftlib.evaluation import evaluate
from ftlib.freeze import changed, count_parameters, freeze_backbone, snapshot
from ftlib.models import BLOCKS, GlyphNet
from ftlib.unfreezing import stage_plan, train_in_stages

__all__ = ["depth_run", "frozen_head_run", "live_depth", "plan_work", "staged_run", "warm_up"]


def staged_run(recipe_name: str, target: str, n: int, seed: int, steps: int = 100, lr: float = 3e-3, k: int = 0,
               batch_size: int = 64, n_val: int = 0) -> dict:
    """Train a pretrained GlyphNet on ``n`` labels per class of ``target`` by a stage plan; score it on the test set.

    ``recipe_name`` names the plan (see :data:`ftlib.unfreezing.PLANS`). Returns the test ``accuracy``, the
    training ``seconds``, and the ``trainable`` parameters of the last stage; with ``n_val > 0`` also the
    ``val_accuracy`` and ``val_loss`` on ``n_val`` held-out labels per class (the training set is the same).
    """
    train_set, val_set = split(target, n, n_val, seed)
    stages = stage_plan(recipe_name, steps, lr, k)
    trained = run("fine-tune", train_set, seed,
                  train=lambda model: train_in_stages(model, train_set, stages, batch_size=batch_size, seed=seed))
    return {"accuracy": evaluate(trained.model, data.test_set(target)).accuracy, "seconds": trained.seconds,
            "trainable": count_parameters(trained.model, trainable_only=True),
            **validation_scores(trained.model, val_set)}


def depth_run(target: str, k: int, n: int, seed: int, steps: int = 100, lr: float = 3e-3, n_val: int = 0) -> dict:
    """Freeze the first ``k`` blocks and fine-tune the rest (:func:`staged_run`); ``k = 4``: the linear probe.

    With the whole backbone frozen only the head is left, and the exact probe fits it better than ``steps``
    gradient steps would. The record's ``how`` says which was run.
    """
    probe = k == len(BLOCKS)
    record = staged_run("linear probe" if probe else "freeze first k", target, n, seed, steps, lr, 0 if probe else k,
                        n_val=n_val)
    return {**record, "how": "linear probe" if probe else f"{steps} steps"}


def plan_work(recipe_name: str, steps: int) -> str:
    """What a stage plan trains, in words: ``"exact fit + 60 steps"``, ``"5 stages x 12 steps"``."""
    stages = stage_plan(recipe_name, steps)
    if len(stages) > 2 and len({s.steps for s in stages}) == 1:
        return f"{len(stages)} stages x {stages[0].steps} steps"
    return " + ".join("exact fit" if s.probe else f"{s.steps} steps" for s in stages)


def warm_up() -> None:
    """One short staged run that is not timed, so that no timed run pays the one-off costs of the first one."""
    staged_run("freeze first k", "font_digits", 1, 0, steps=5)


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


def live_depth(k: int, target: str = "font_digits", n: int = 10, steps: int = 60, lr: float = 3e-3,
               seed: int = 0) -> None:
    """Freeze the first ``k`` blocks and fine-tune the rest on ``target`` for real (:func:`depth_run`, about 1 s);
    print the trainable parameters, the seconds and the test accuracy, and draw which blocks trained."""
    record = depth_run(target, k, n, seed, steps, lr)
    print(f"k = {k} blocks frozen ({', '.join(BLOCKS[:k]) or 'none'}): {record['trainable']:,} trainable "
          f"parameters, trained ({record['how']}) in {record['seconds']:.1f} s")
    print(f"{target} test accuracy {record['accuracy']:.1%} (N = {n}, seed {seed}, the lesson's settings)")
    sizes = {name: count_parameters(block) for name, block in GlyphNet(10).named_children()}
    fig, ax = plt.subplots(figsize=(6, 2.2))
    colors = ["lightgray" if name in BLOCKS[:k] else "tab:blue" for name in sizes]
    ax.barh(list(sizes), list(sizes.values()), color=colors)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("parameters (log scale); gray: frozen, blue: trained")
    ax.set_title(f"k = {k}: {record['accuracy']:.1%} on {target}")
    fig.tight_layout()
    plt.show()
