"""Lesson 08's drivers: LoRA adapters on GlyphNet trained like the other methods, their cost, merging and switching."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import torch
from torch import nn

from .. import checkpoint, data, lora
from ..evaluation import evaluate
from ..freeze import count_parameters
from . import plots
from .experiments import Results, get_method, make_model, run

__all__ = ["METHOD", "lora_run", "merge_round_trip", "plot_accuracy_vs_parameters", "print_costs", "show_rank",
           "switch_adapters", "train_lora"]

METHOD = "fine-tune"  # the pretrained GlyphNet with a new head; LoRA then freezes its backbone


def train_lora(target: str, n: int, rank: int, seed: int, *, blocks: list[str], alpha: float, steps: int,
               lr: float) -> tuple[nn.Module, float]:
    """The pretrained GlyphNet with a new head and rank-``rank`` adapters on ``blocks``, trained on ``n`` labels per
    class of ``target``; returns the model and the seconds it took."""
    def adapt(model: nn.Module) -> None:
        lora.add_lora(model, blocks, rank=rank, alpha=alpha)

    trained = run(METHOD, data.few_shot(target, n, seed), seed, steps, lr=lr, prepare=adapt)
    return trained.model, trained.seconds


def lora_run(target: str, n: int, rank: int, seed: int, *, keep: dict, **settings) -> dict:
    """:func:`train_lora` as a grid point: its test accuracy, seconds and trainable parameters.

    The trained model is kept in ``keep[target, n, rank, seed]`` for later sections.
    """
    model, seconds = train_lora(target, n, rank, seed, **settings)
    keep[target, n, rank, seed] = model
    return {"method": f"LoRA r={rank}", "accuracy": evaluate(model, data.test_set(target)).accuracy,
            "seconds": seconds, "trainable": count_parameters(model, trainable_only=True)}


def _point(results: Results, method: str, n: int) -> tuple[int, float, float]:
    at = results.where(method=method, n=n)
    return at.values("trainable")[0], 100 * at.mean(), 100 * at.std()


def plot_accuracy_vs_parameters(results: Results, ns: list[int], ranks: list[int]) -> None:
    """Test accuracy against trainable parameters: LoRA at each rank, the linear probe and full fine-tuning."""
    fig, axes = plt.subplots(1, len(ns), figsize=(11, 4))
    for ax, n in zip(axes, ns):
        xs, means, stds = zip(*(_point(results, f"LoRA r={r}", n) for r in ranks))
        ax.errorbar(xs, means, stds, marker="o", capsize=3, label="LoRA, rank r")
        for x, mean, r in zip(xs, means, ranks):
            ax.annotate(f"r={r}", (x, mean), textcoords="offset points", xytext=(4, -12), fontsize=8)
        for method, marker in (("linear probe", "s"), ("fine-tune", "D")):
            x, mean, std = _point(results, method, n)
            ax.errorbar([x], [mean], [std], marker=marker, capsize=3, linestyle="none", label=method)
        ax.set(xscale="log", xlabel="trainable parameters (log scale)", ylabel="test accuracy (%)",
               title=f"N = {n} labelled digits per class")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def print_costs(results: Results, full_count: int, folder: Path, blocks: list[str], alpha: float) -> None:
    """One line per method: trainable parameters (and their share of full fine-tuning's), seconds, file per task."""
    fine_tune = get_method(METHOD)
    full_file = checkpoint.save_checkpoint(make_model(fine_tune, 10, 0), folder / "full.safetensors", {})
    print(f"{'method':<16}{'trainable':>11}{'of full FT':>12}{'seconds per run':>17}{'file per task':>15}")
    for method in results.unique("method"):
        trainable, seconds = results.values("trainable", method=method)[0], results.mean("seconds", method=method)
        if method.startswith("LoRA"):
            rank = results.values("rank", method=method)[0]
            model = lora.add_lora(make_model(fine_tune, 10, 0), blocks, rank, alpha)
            size = lora.save_adapter(model, folder / f"{method}.safetensors").stat().st_size
        else:
            size = full_file.stat().st_size if method == "fine-tune" else 0
        stored = f"{size // 1024} KB" if size else "head only"
        print(f"{method:<16}{trainable:>11,}{trainable / full_count:>12.1%}{seconds:>15.1f} s{stored:>15}")


@torch.no_grad()
def merge_round_trip(model: nn.Module, images: torch.Tensor) -> dict:
    """Merge the adapters, unmerge them again, and say what changed: the logits, the predictions, the weights."""
    base_weights = {name: p.clone() for name, p in model.named_parameters() if name.endswith("base.weight")}
    unmerged = model(images)
    lora.merge(model)
    merged = model(images)
    lora.unmerge(model)
    restored = max((p - base_weights[name]).abs().max().item() for name, p in model.named_parameters()
                   if name in base_weights)
    return {"logits agree": torch.allclose(merged, unmerged, atol=1e-4, rtol=0),
            "same predictions": int((merged.argmax(1) == unmerged.argmax(1)).sum()), "restored": restored}


def switch_adapters(shared: nn.Module, files: dict[str, Path], trained: dict[str, tuple[nn.Module, data.ImageSet]],
                    order: tuple[str, ...]) -> list[bool]:
    """Load each task's adapter file into ``shared`` in ``order``; per switch, whether it scores as its own model."""
    matches = []
    for task in order:
        lora.load_adapter(shared, files[task])
        model, test = trained[task]
        accuracy = evaluate(shared, test).accuracy
        matches.append(accuracy == evaluate(model, test).accuracy)
        print(f"{task:>6} adapter ({files[task].stat().st_size // 1024} KB) loaded: {shared.num_classes} classes, "
              f"{accuracy:.1%} on its test set, same as the model it was trained in: {matches[-1]}")
    return matches


def show_rank(results: Results, rank: int, *, ns: list[int], full_count: int) -> None:
    """LoRA at ``rank`` beside the linear probe and full fine-tuning at each N: a line per N and bar charts."""
    lora_name = f"LoRA r={rank}"
    trainable = results.values("trainable", method=lora_name)[0]
    print(f"rank = {rank}: {trainable:,} trainable parameters, {trainable / full_count:.1%} of full fine-tuning's")
    fig, axes = plt.subplots(1, len(ns), figsize=(11, 3.5))
    for ax, n in zip(axes, ns):
        accuracy = {m: results.mean(method=m, n=n) for m in ("linear probe", lora_name, "fine-tune")}
        print(f"  N = {n}: LoRA {accuracy[lora_name]:.1%}, linear probe {accuracy['linear probe']:.1%}, "
              f"full fine-tuning {accuracy['fine-tune']:.1%}")
        shown = [r for r in results.where(n=n) if r["method"] in ("linear probe", lora_name, "fine-tune")]
        plots.plot_bars(Results(shown), ax=ax, title=f"N = {n} labels per class")
    fig.tight_layout()
    plt.show()
