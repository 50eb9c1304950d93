"""Fine-tuning the pretrained TinyLM on chat text, in full or with LoRA adapters on the attention projections."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator

from torch import nn

from ..lora import add_lora_to_linears
from ..runtime import seed_rngs
from ..schedules import warmup_cosine_schedule
from ..stopping import History
from ..train import fit
from . import corpus

__all__ = ["ATTENTION", "finetune"]

ATTENTION = ("q", "k", "v", "o")  # the attention projections of every block: where LoRA adapters go


def finetune(base: nn.Module, text: str | Iterator, method: str, steps: int, lr: float, seed: int, batch_size: int = 16,
             rank: int = 8, alpha: float = 16.0, evaluate: Callable[[nn.Module], dict] | None = None,
             every: int | None = None) -> tuple[nn.Module, History]:
    """A copy of ``base`` trained on random windows of ``text``; ``base`` itself is left unchanged.

    ``text`` may also be an endless iterator of ``(inputs, targets)`` batches (e.g.
    :func:`ftlib.lm.chat.dialogue_batches`: whole dialogues from their start); then ``batch_size`` is its own.

    ``method="full"`` trains every weight; ``method="lora"`` freezes them all and trains rank-``rank`` adapters
    on the attention projections. The seed fixes the adapters' start and the order of the windows.

    Trained by :func:`ftlib.train.fit`: AdamW (weight decay 0.01), gradients clipped to norm 1, ``min(10, steps //
    10)`` warm-up steps then cosine. ``evaluate(model)`` runs every ``every`` steps and after the last (its
    results in ``history.evals[step]``). The copy (and its adapters) stays on ``base``'s device and ends in eval
    mode.
    """
    if method not in ("full", "lora"):
        raise ValueError(f"method={method!r} is not allowed: choose 'full' or 'lora'")
    model = copy.deepcopy(base)
    seed_rngs(seed)
    if method == "lora":
        add_lora_to_linears(model, ATTENTION, rank, alpha)
    batches = corpus.batches(text, batch_size, model.config.context, seed) if isinstance(text, str) else text
    schedule = warmup_cosine_schedule(min(10, steps // 10))
    history = fit(model, batches, steps, lr=lr, weight_decay=0.01, schedule=schedule, clip_grad_norm=1.0,
                  evaluate=evaluate, eval_every=every, device=next(model.parameters()).device)
    return model.eval(), history
