"""Lesson 10's drivers: loss by position before and after a short fine-tune at a longer context, the tables of
bits past the training context, the recall table, and the lesson's plots.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import torch
from torch import nn

from ..lm import context

__all__ = ["ContextExtension", "plot_before_after", "plot_loss_by_position", "recall_scores", "recall_table",
           "smooth"]


@dataclass
class ContextExtension:
    """The lesson's setting: the base model, the evaluation text, the lengths read, and the long fine-tune.

    ``lengths`` are 1x, 2x, ... the trained context; the last (``longest``) is the window curves are scored on
    and fine-tunes train on. Every :meth:`extend_run` keeps its model's curve in ``after`` by ``(method, seed)``,
    and the seed-0 models in ``tuned`` by method.
    """

    base: nn.Module
    evaluation: str
    lengths: tuple[int, ...]
    train_text: str
    steps: int
    lr: float
    batch_size: int
    after: dict[tuple[str, int], torch.Tensor] = field(default_factory=dict, init=False)
    tuned: dict[str, nn.Module] = field(default_factory=dict, init=False)

    @property
    def trained(self) -> int:
        """The context the base model was trained on."""
        return self.base.config.context

    @property
    def longest(self) -> int:
        return self.lengths[-1]

    def curve(self, lm: nn.Module) -> torch.Tensor:
        """Loss (bpc) at each position 0..longest-1, over windows of ``longest`` characters of the evaluation text."""
        return context.position_bits(lm, self.evaluation, self.longest)

    def beyond(self, bits: torch.Tensor, n: int) -> float:
        """Mean loss at positions trained..n-1 (reading n characters), or at positions 0..trained-1 for n = trained."""
        return (bits[self.trained:n] if n > self.trained else bits[:self.trained]).mean().item()

    def extend_run(self, method: str, seed: int) -> dict:
        """Extend the base model by ``method`` and fine-tune it; the mean loss past the trained context per length.

        The record (for ``run_grid``) holds ``x2``, ``x4``, ... (and ``x1``, inside the context) and ``seconds``.
        """
        lm, history = context.extend(self.base, method, self.longest, self.train_text, self.steps, self.lr, seed,
                                     self.batch_size)
        self.after[method, seed] = self.curve(lm)
        self.tuned.update({method: lm} if seed == 0 else {})
        bits = {f"x{n // self.trained}": self.beyond(self.after[method, seed], n) for n in self.lengths}
        return bits | {"seconds": history.seconds}

    def mean_after(self, method: str) -> torch.Tensor:
        """The curve after fine-tuning by ``method``, averaged over the seeds run."""
        return torch.stack([self.after[method, s] for s in sorted(s for m, s in self.after if m == method)]).mean(0)

    def table(self, rows: dict[str, list[str]], names: dict[str, str]) -> str:
        """One line per method (``names`` labels them) with its cells under each length's positions."""
        heads = [f"{self.trained}-{n - 1} ({n // self.trained}x)" if n > self.trained else f"0-{n - 1} (1x)"
                 for n in self.lengths]
        lines = [f"{'':<26}" + "".join(f"{h:>18}" for h in heads)]
        lines += [f"{names[m]:<26}" + "".join(f"{c:>18}" for c in cells) for m, cells in rows.items()]
        return "\n".join(lines)


def smooth(bits: torch.Tensor, width: int = 8) -> torch.Tensor:
    """A moving average, so the curves are readable (position noise is large with 32 windows)."""
    return torch.nn.functional.avg_pool1d(bits[None, None], width, 1)[0, 0]


def plot_loss_by_position(study: ContextExtension, bits: torch.Tensor, short: float) -> None:
    """The smoothed loss by position of an unchanged model, its mean inside the context, and each length marked."""
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.plot(range(7, study.longest), smooth(bits), label="TinyLM, positions as they are")
    ax.axhline(short, color="gray", linewidth=1,
               label=f"its mean loss at positions 0-{study.trained - 1}: {short:.2f} bpc")
    for n in study.lengths:
        ax.axvline(n - 1, color="gray", linestyle="--", linewidth=1)
        ax.text(n - 4, 5.7, f"{n // study.trained}x", ha="right")
    ax.set(xlabel="position in the window", ylabel="bits per character (smoothed)", ylim=(1.5, 6),
           title="No change to the model: loss by position")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left")
    plt.show()


def plot_before_after(study: ContextExtension, before: dict[str, torch.Tensor], names: dict[str, str],
                      short: float, length: int) -> None:
    """One panel per method: loss by position up to ``length`` before (dashed) and after fine-tuning (seed mean)."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), sharey=True)
    for ax, m in zip(axes, names):
        ax.plot(range(7, length), smooth(before[m][:length]), "--", label="before fine-tuning")
        ax.plot(range(7, length), smooth(study.mean_after(m)[:length]),
                label=f"after {study.steps} steps at {study.longest}")
        ax.axhline(short, color="gray", linewidth=1, label=f"base at {study.trained}: {short:.2f} bpc")
        ax.axvline(study.trained, color="gray", linestyle="--", linewidth=1)
        ax.set(title=names[m], xlabel="position in the window", ylim=(1.5, 6), xlim=(0, study.longest))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("bits per character (smoothed)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def recall_scores(readers: dict[str, tuple[nn.Module, tuple[torch.Tensor, torch.Tensor]]],
                  passage: int) -> dict[str, dict[str, float]]:
    """For each reader ``(model, (repeated, fresh))``: bits on the passage's second copy, ``seen`` before or ``fresh``.

    ``gain`` is how much the first copy helps: fresh minus seen.
    """
    scores = {}
    for name, (lm, (repeated, fresh)) in readers.items():
        seen, new = context.recall_bits(lm, repeated, passage), context.recall_bits(lm, fresh, passage)
        scores[name] = {"seen": seen, "fresh": new, "gain": new - seen}
    return scores


def recall_table(scores: dict[str, dict[str, float]]) -> str:
    """One line per reader of :func:`recall_scores`."""
    return "\n".join(f"{name:<30}: seen before {s['seen']:.2f} bpc, fresh {s['fresh']:.2f} bpc, "
                     f"gain {s['gain']:+.2f} bpc" for name, s in scores.items())
