"""Lesson 11's drivers: the recipe fine-tuned and from scratch over seeds, and exports checked against the models."""

from __future__ import annotations

from pathlib import Path

import torch

from .. import export, recipe
from ..data import ImageSet
from .experiments import Results

__all__ = ["compare_runs", "export_agreement"]


def compare_runs(folder: str | Path, backbone: str, seeds: int, **options) -> tuple[dict, Results]:
    """The recipe fine-tuned and from scratch on ``folder`` for seeds 0 .. ``seeds - 1``.

    Returns every :class:`ftlib.recipe.RecipeResult` by ``(method, seed)`` and their test accuracies (with the
    fine-tuned runs' linear-probe baseline as a third method). ``options`` go to :func:`ftlib.recipe.finetune`.
    """
    runs, results = {}, Results()
    for seed in range(seeds):
        for method, pretrained in [("fine-tune", True), ("scratch", False)]:
            runs[method, seed] = run = recipe.finetune(folder, backbone, seed=seed, pretrained=pretrained, **options)
            results.append({"method": method, "seed": seed, "data": "example", "accuracy": run.test.accuracy})
        results.append({"method": "linear probe", "seed": seed, "data": "example",
                        "accuracy": runs["fine-tune", seed].probe_accuracy})
    return runs, results


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
