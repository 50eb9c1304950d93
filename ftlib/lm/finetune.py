"""Fine-tuning the pretrained TinyLM on chat text, in full or with LoRA adapters on the attention projections."""

from __future__ import annotations

import copy
from collections.abc import Callable

from torch import nn

from ..lora import add_lora_to_linears
from ..runtime import seed_rngs
from . import corpus
from .train import LMHistory, train

__all__ = ["ATTENTION", "finetune"]

ATTENTION = ("q", "k", "v", "o")  # the attention projections of every block: where LoRA adapters go


def finetune(base: nn.Module, text: str, method: str, steps: int, lr: float, seed: int, batch_size: int = 16,
             rank: int = 8, alpha: float = 16.0, evaluate: Callable[[nn.Module], dict] | None = None,
             every: int = 0) -> tuple[nn.Module, LMHistory]:
    """A copy of ``base`` trained on random windows of ``text``; ``base`` itself is left unchanged.

    ``method="full"`` trains every weight; ``method="lora"`` freezes them all and trains rank-``rank`` adapters
    on the attention projections. The seed fixes the adapters' start and the order of the windows.
    ``evaluate`` and ``every`` are passed to :func:`ftlib.lm.train.train`. The copy (and its adapters) stays on
    ``base``'s device and ends in eval mode.
    """
    if method not in ("full", "lora"):
        raise ValueError(f"method={method!r} is not allowed: choose 'full' or 'lora'")
    model = copy.deepcopy(base)
    seed_rngs(seed)
    if method == "lora":
        add_lora_to_linears(model, ATTENTION, rank, alpha)
    batches = corpus.batches(text, batch_size, model.config.context, seed)
    return model, train(model, batches, steps, lr, warmup=min(10, steps // 10), evaluate=evaluate, every=every)
