"""Lesson 09's drivers: fine-tune the TinyLM on the self-chat dialogues (in full or with LoRA), score it over the
steps on held-out dialogues and prose, and show the scores as a table and as curves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import torch
from torch import nn

from ..freeze import count_parameters
from ..lm import chat, corpus
from ..lm.finetune import finetune
from .experiments import Results

__all__ = ["EVAL_CHARS", "ChatFinetuning", "plot_over_steps", "score_table"]

EVAL_CHARS = 3072  # characters of the validation dialogues and of the held-out prose scored at every check


@dataclass
class ChatFinetuning:
    """The lesson's setting: the base model, the chat data, and how both methods fine-tune and sample.

    ``lr`` gives each method ("full", "lora") its rate. On creation the base model is scored once
    (``base_losses``); every :meth:`run` keeps its fine-tuned model in ``models`` and its scores by step in
    ``curves``, both by ``(method, seed)``.
    """

    base: nn.Module
    train_text: str
    val_text: str
    answer_mask: torch.Tensor
    steps: int
    lr: dict[str, float]
    batch_size: int
    rank: int
    temperature: float
    eval_chars: int = EVAL_CHARS
    models: dict[tuple[str, int], nn.Module] = field(default_factory=dict, init=False)
    curves: dict[tuple[str, int], dict[int, dict]] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        end = self.eval_chars + 1
        self.chat_eval, self.answers_eval = self.val_text[:end], self.answer_mask[:end]
        self.prose_eval = corpus.split_text()[1][:end]
        self.base_losses = self.losses(self.base)

    def losses(self, lm: nn.Module) -> dict[str, float]:
        """Bits per character on the validation dialogues, on their answers, and on held-out prose."""
        return chat.losses(lm, self.chat_eval, self.answers_eval, self.prose_eval)

    def run(self, method: str, seed: int) -> dict:
        """Fine-tune the base model by ``method``, scored every ``steps // 4`` steps; a record for ``run_grid``.

        The record holds the last scores, the ``format`` rate of sampled replies, the training ``seconds`` and the
        ``trainable`` parameters.
        """
        lm, history = finetune(self.base, self.train_text, method, self.steps, self.lr[method], seed,
                               batch_size=self.batch_size, rank=self.rank, evaluate=self.losses, every=self.steps // 4)
        self.models[method, seed], self.curves[method, seed] = lm, {0: self.base_losses, **history.evals}
        in_turn = chat.format_rate(lm, self.val_text, temperature=self.temperature)
        return {**history.evals[self.steps], "format": in_turn, "seconds": history.seconds,
                "trainable": count_parameters(lm, trainable_only=True)}

    def mean_at(self, method: str, step: int, key: str) -> float:
        """The mean over the seeds run of score ``key`` of ``method`` at ``step``."""
        seeds = sorted(s for m, s in self.curves if m == method)
        return sum(self.curves[method, s][step][key] for s in seeds) / len(seeds)


def score_table(before: Results, results: Results, names: dict[str, str]) -> str:
    """One line per method (base model, full, LoRA): trainable weights, the three losses, format rate, seconds.

    Each score is the mean ± std over the seeds; ``names`` maps "base", "full", "lora" to the lesson's labels.
    """
    lines = [f"{'':<18}{'trainable':>10}{'chat':>14}{'answers':>14}{'prose':>14}{'format':>10}{'seconds':>10}"]
    for method, rows in (("base", before), ("full", results), ("lora", results)):
        cells = "".join(f"{rows.mean(k, method=method):>8.2f} ± {rows.std(k, method=method):.2f}"
                        for k in ("chat", "answer", "prose"))
        seconds = f"{rows.mean('seconds', method=method):.1f} s" if method != "base" else "-"
        lines.append(f"{names[method]:<18}{rows.values('trainable', method=method)[0]:>10,}{cells}"
                     f"{rows.mean('format', method=method):>10.1%}{seconds:>10}")
    return "\n".join(lines)


def plot_over_steps(study: ChatFinetuning, step: int, names: dict[str, str]) -> None:
    """The chat loss and the prose loss of both methods at every checked step (mean over seeds), ``step`` marked."""
    checked = sorted(study.curves["full", 0])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in zip(axes, ("chat", "prose"), ("chat loss (validation dialogues)",
                                                       "prose loss (held-out docs): forgetting")):
        for method in ("full", "lora"):
            ax.plot(checked, [study.mean_at(method, s, key) for s in checked], marker="o", label=names[method])
        ax.axvline(step, color="gray", linestyle="--", label=f"step {step}")
        ax.set(xlabel="fine-tuning step", ylabel="bits per character", title=title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    plt.show()
