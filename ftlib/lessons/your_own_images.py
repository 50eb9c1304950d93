"""Lesson 11's drivers: the recipe fine-tuned (backbone factor chosen on validation, from a fresh head and LP-FT)
and from scratch over seeds, a probe on random features, paired comparisons on the test images, early stopping
replayed with less patience, and exports checked against the models."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .. import backbones, export, recipe
from ..data import ImageSet
from ..evaluation import evaluate
from ..probe import linear_probe
from ..stopping import History, stopping_point
from ..transfer import adapt_batchnorm
from .experiments import Results

__all__ = ["compare_runs", "export_agreement", "kept", "paired", "random_probe", "replay_patience", "sign_test_z"]


def kept(history: History) -> tuple[float, float]:
    """The validation loss and accuracy at the evaluation whose weights early stopping kept."""
    i = history.eval_step.index(history.best_step)
    return history.val_loss[i], history.val_accuracy[i]


def compare_runs(folder: str | Path, backbone: str, seeds: int, factors: tuple[float, ...] = (0.3, 1.0),
                 **options) -> tuple[dict, Results, Results]:
    """The recipe on ``folder`` for seeds 0 .. ``seeds - 1``: fine-tuned, LP-FT, and from scratch.

    In each seed the backbone factor is chosen among ``factors`` by the validation loss of the kept weights (the
    test set is not looked at); LP-FT runs at the chosen factor. Returns the runs by ``(method, seed)``, their
    test accuracies (with the linear-probe baseline as a method), and the validation scores of every factor tried.
    ``options`` go to :func:`ftlib.recipe.finetune`.
    """
    runs, results, choices = {}, Results(), Results()
    for seed in range(seeds):
        tried = {f: recipe.finetune(folder, backbone, seed=seed, backbone_factor=f, **options) for f in factors}
        for f, run in tried.items():
            choices.append({"seed": seed, "factor": f, "val loss": kept(run.history)[0],
                            "accuracy": kept(run.history)[1]})
        chosen = min(factors, key=lambda f: kept(tried[f].history)[0])
        runs["fine-tune", seed] = tried[chosen]
        runs["LP-FT", seed] = recipe.finetune(folder, backbone, seed=seed, backbone_factor=chosen, lp_ft=True,
                                              **options)
        runs["scratch", seed] = recipe.finetune(folder, backbone, seed=seed, pretrained=False, **options)
        for method in ("fine-tune", "LP-FT", "scratch"):
            run = runs[method, seed]
            results.append({"method": method, "seed": seed, "data": "example", "accuracy": run.test.accuracy,
                            "val accuracy": kept(run.history)[1], "factor": chosen})
        results.append({"method": "linear probe", "seed": seed, "data": "example",
                        "accuracy": runs["fine-tune", seed].probe_accuracy})
    return runs, results, choices


def random_probe(run: recipe.RecipeResult, seed: int) -> float:
    """Test accuracy of the recipe's linear probe (AdaBN included) on a *randomly initialised* backbone, on the
    same split as ``run``: what the letters' features add over features that learnt nothing."""
    train, test = run.splits["train"], run.splits["test"]
    model = backbones.build(run.backbone, train.num_classes, seed, pretrained=False)
    return evaluate(linear_probe(adapt_batchnorm(model, train.images), train), test).accuracy


@torch.no_grad()
def paired(first: torch.nn.Module, second: torch.nn.Module, test: ImageSet) -> tuple[int, int]:
    """On the same test images: how many ``first`` gets right and ``second`` wrong, and the other way round."""
    right = []
    for model in (first, second):
        model.eval()
        right.append(model(test.images).argmax(1) == test.labels)
    return int((right[0] & ~right[1]).sum()), int((right[1] & ~right[0]).sum())


def sign_test_z(only_first: int, only_second: int) -> float:
    """McNemar's statistic as a z score: (b - c) / sqrt(b + c); about 2 or more means the lead is resolved."""
    return (only_first - only_second) / math.sqrt(max(1, only_first + only_second))


def replay_patience(history: History, patience: int) -> tuple[int, float]:
    """Early stopping with ``patience`` replayed on a recorded validation-loss curve (the same run up to the stop):
    the step it stops at and the validation loss of the weights it would keep."""
    best, stop = stopping_point(history.val_loss, patience)
    end = history.eval_step[stop] if stop is not None else len(history.step)
    return end, history.val_loss[best]


def export_agreement(models: list[torch.nn.Module], images: ImageSet, files: list[Path], backbone: str,
                     folder: str | Path) -> tuple[list[int], list[float]]:
    """Export each model to ``folder/seed<i>/``, predict ``files`` from the export, and compare with the model.

    Returns, per model, how many files the reloaded export labels as the in-memory model does, and the largest
    difference between their probabilities.
    """
    agree, gaps = [], []
    for seed, model in enumerate(models):
        model.eval()
        path = export.save(model, f"{folder}/seed{seed}/model.safetensors", backbone, images.classes)
        predictions = export.predict(path, files)
        with torch.no_grad():
            in_memory = torch.softmax(model(images.images), 1)
        agree.append(sum(p.label == images.classes[i] for p, i in zip(predictions, in_memory.argmax(1).tolist())))
        gaps.append((torch.tensor([p.probability for p in predictions]) - in_memory.max(1).values).abs().max().item())
    return agree, gaps
