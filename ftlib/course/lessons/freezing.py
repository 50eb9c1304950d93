"""Lesson 03's drivers: train by a stage plan (freeze depth, probe, LP-FT, gradual unfreezing); the BatchNorm trap.

:func:`depth_run` freezes the first k blocks; with all of them frozen it fits the head exactly (the linear probe),
so k = 4 is not a head under-trained by a few gradient steps. The lesson runs every arm at its rate chosen on
validation in the tuning table (:func:`~ftlib.course.lessons.tuning.run_arms`), picks the freeze depth on the
table's validation scores (:func:`chosen_depth`) and runs the stage plans in turns (:func:`run_interleaved`), so
their seconds (wall clock) and ``cpu_seconds`` (processor time) compare.
:func:`warm_up` pays the one-off start-up costs before any timed run. :func:`frozen_head_run` trains the head alone
on a frozen backbone whose BatchNorm statistics are frozen, moving (the trap) or re-estimated (AdaBN).
:func:`live_labels` is the live slider's run: the near target's full fine-tuning and probe at another number of
labels, trained for real.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import matplotlib.pyplot as plt

from ftlib import data
from ftlib.course.lessons import tuning
from ftlib.course.lessons.experiments import run, split, validation_scores
from ftlib.course.lessons.records import Results, choose
from ftlib.course.lessons.workers import independent
from ftlib.evaluation import evaluate
from ftlib.freeze import changed, count_parameters, freeze_backbone, snapshot
from ftlib.models import BLOCKS
from ftlib.transfer import adapt_batchnorm
from ftlib.unfreezing import stage_plan, train_in_stages

__all__ = ["BN_MODES", "chosen_depth", "depth_key", "depth_run", "frozen_head_run", "live_labels", "plan_work",
           "run_interleaved", "staged_run", "trap_key", "warm_up"]


@independent
def staged_run(recipe_name: str, target: str, n: int, seed: int, steps: int = 100, lr: float = 3e-3, k: int = 0,
               batch_size: int = 64, n_val: int = 0) -> dict:
    """Train a pretrained GlyphNet on ``n`` labels per class of ``target`` by a stage plan; score it on the test set.

    ``recipe_name`` names the plan (see :data:`ftlib.unfreezing.PLANS`). Returns the test ``accuracy``, the
    training ``seconds`` (wall clock) and ``cpu_seconds`` (processor time of this process, all its threads: less
    sensitive to what else the machine runs), and the ``trainable`` parameters of the last stage; with
    ``n_val > 0`` also the ``val_accuracy`` and ``val_loss`` on ``n_val`` held-out labels per class (the training
    set is the same).
    """
    train_set, val_set = split(target, n, n_val, seed)
    stages = stage_plan(recipe_name, steps, lr, k)
    cpu_start = time.process_time()
    trained = run("fine-tune", train_set, seed,
                  train=lambda model: train_in_stages(model, train_set, stages, batch_size=batch_size, seed=seed))
    cpu_seconds = time.process_time() - cpu_start
    return {"accuracy": evaluate(trained.model, data.test_set(target)).accuracy, "seconds": trained.seconds,
            "cpu_seconds": cpu_seconds, "trainable": count_parameters(trained.model, trainable_only=True),
            **validation_scores(trained.model, val_set)}


@independent
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


BN_MODES = ("frozen", "moving", "AdaBN")  # the BatchNorm statistics of a frozen backbone in section 4


@independent
def frozen_head_run(target: str, n: int, seed: int, steps: int, lr: float, bn: str = "frozen",
                    n_val: int = 0) -> dict:
    """Train only the head on a frozen backbone whose BatchNorm statistics are ``bn``: ``"frozen"`` (the pretrained
    ones, :func:`~ftlib.freeze.freeze_backbone`), ``"moving"`` (the trap: they follow the training batches) or
    ``"AdaBN"`` (re-estimated once on the training images, :func:`~ftlib.transfer.adapt_batchnorm`, then frozen).

    Returns the test ``accuracy`` and which backbone tensors ``changed`` during training out of how many
    (``tensors``); with ``n_val > 0`` also ``val_accuracy`` and ``val_loss`` on ``n_val`` held-out labels per class.
    """
    if bn not in BN_MODES:
        raise ValueError(f"bn must be one of {BN_MODES}, got {bn!r}")
    train_set, val_set = split(target, n, n_val, seed)
    before = {}

    def frozen(model) -> None:
        if bn == "AdaBN":
            adapt_batchnorm(model, train_set.images)
        freeze_backbone(model, update_bn_stats=bn == "moving")
        before.update(snapshot(model, BLOCKS))

    model = run("fine-tune", train_set, seed, steps, lr=lr, prepare=frozen).model
    return {"target": target, "accuracy": evaluate(model, data.test_set(target)).accuracy,
            "changed": changed(model, before), "tensors": len(before), **validation_scores(model, val_set)}


def trap_key(bn: str, target: str) -> str:
    """The tuning table's arm of section 4: the head on a frozen backbone with BatchNorm statistics ``bn``."""
    return f"03 head only, BN {bn}, {target}"


def depth_key(k: int, target: str) -> str:
    """The tuning table's arm that freezes the first ``k`` blocks on ``target``: ``"03 freeze k=2, gratings"``."""
    return f"03 freeze k={k}, {target}"


def chosen_depth(table: tuning.Table, target: str, ks: Iterable[int]) -> int:
    """The freeze depth chosen on validation for ``target``: the course's one rule
    (:func:`~ftlib.course.lessons.records.choose`) over the table's stored validation runs of each depth arm at its
    chosen rate (the same on every machine; the test set is never read)."""
    stored = Results({**r, "k": k} for k in ks for r in table.records(depth_key(k, target)))
    return choose(stored, "k")


def run_interleaved(arms: dict[str, str], seeds: Iterable[int], table: tuning.Table, field: str = "arm",
                    **changes) -> Results:
    """Each arm of ``arms`` (``{name: key}``) at its chosen setting on ``seeds``, the arms taking turns seed by seed
    (seed 0 of every arm, then seed 1, ...), so that a change in the machine's load falls on every arm alike; each
    record's ``field`` holds the arm's name. Every run trains now (its seconds are the point), never read back from
    the table. On a shared machine the wall-clock ``seconds`` still vary with the load; the ``cpu_seconds`` of
    :func:`staged_run` (processor time) vary less."""
    return Results({**r, field: name} for seed in seeds for name, key in arms.items()
                   for r in tuning.run_chosen(key, [seed], table, live=True, **changes))


def live_labels(n: int, target: str, table: tuning.Table, steps: int = 60, seed: int = 0) -> None:
    """The live slider's run: fine-tune everything (k = 0) and fit the probe (k = 4) on ``n`` labels per class of
    ``target`` for real, each at its rate chosen on validation at the table's N; print the value of ``n`` first,
    then both test accuracies, and draw them."""
    names = {"fine-tune (k = 0)": depth_key(0, target), f"probe (k = {len(BLOCKS)})": depth_key(len(BLOCKS), target)}
    tuned_at = table.arm(names["fine-tune (k = 0)"]).fixed["n"]
    print(f"N = {n} labels per class of {target} (seed {seed}; each arm at its rate chosen at N = {tuned_at})")
    runs = {name: tuning.run_chosen(key, [seed], table, live=True, n=n, steps=steps)[0]
            for name, key in names.items()}
    for name, record in runs.items():
        rate = f"lr {record['lr']:g}" if "lr" in record else "exact fit"
        print(f"  {name:<18} {rate:<10} test accuracy {record['accuracy']:.1%}, trained in {record['seconds']:.1f} s")
    fig, ax = plt.subplots(figsize=(6, 2.2))
    ax.barh(list(runs), [100 * r["accuracy"] for r in runs.values()], color=["tab:blue", "tab:orange"])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"{target} test accuracy (%)")
    ax.set_title(f"N = {n} labels per class")
    fig.tight_layout()
    plt.show()
