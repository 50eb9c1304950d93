"""Training and scoring a TinyLM: one short AdamW loop with a cosine schedule, and bits per character."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .tokenizer import encode


@dataclass
class LMHistory:
    """The training loss (bits per character) at every step, the evaluations by step, and the seconds it took."""

    loss: list[float] = field(default_factory=list)
    evals: dict[int, dict] = field(default_factory=dict)
    seconds: float = 0.0


def cosine_schedule(step: int, steps: int, warmup: int) -> float:
    """The learning-rate factor at ``step``: linear warm-up over ``warmup`` steps, then a cosine down to 0."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def train(model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], steps: int, lr: float,
          warmup: int = 0, weight_decay: float = 0.01, evaluate: Callable[[nn.Module], dict] | None = None,
          every: int = 0, progress: bool = False) -> LMHistory:
    """Train the parameters of ``model`` that require gradients on ``steps`` batches (next-character loss).

    AdamW, gradients clipped to norm 1, warm-up then cosine decay. ``evaluate(model)`` runs after every
    ``every`` steps and after the last; its results go to ``history.evals[step]`` (its seconds are not
    counted). The model ends in eval mode.
    """
    if steps < 1 or lr <= 0:
        raise ValueError(f"steps={steps} and lr={lr} must both be positive")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: cosine_schedule(s, steps, warmup))
    history, start = LMHistory(), time.perf_counter()
    for step, (x, y) in zip(tqdm(range(1, steps + 1), disable=not progress, desc="steps", leave=False), batches):
        model.train()
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        history.loss.append(loss.item() / math.log(2))
        if evaluate and (step == steps or (every and step % every == 0)):
            pause = time.perf_counter()
            history.evals[step] = evaluate(model.eval())
            start += time.perf_counter() - pause
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


@torch.no_grad()
def char_bits(model: nn.Module, text: str | torch.Tensor, context: int, batch_size: int = 64) -> torch.Tensor:
    """The loss in bits on each character of ``text`` after the first, cut into windows of ``context``.

    Entry ``i`` is the surprise at character ``i + 1``, predicted from the characters before it in its window
    (consecutive windows of ``context`` characters; the tail that does not fill a window is left out).
    """
    tokens = encode(text) if isinstance(text, str) else text
    windows = (len(tokens) - 1) // context
    if windows < 1:
        raise ValueError(f"the text has {len(tokens)} tokens; it needs more than context={context}")
    used = windows * context
    x, y = tokens[:used].view(windows, context), tokens[1:used + 1].view(windows, context)
    model.eval()
    nats = torch.cat([F.cross_entropy(model(x[i:i + batch_size]).flatten(0, 1), y[i:i + batch_size].flatten(),
                                      reduction="none") for i in range(0, windows, batch_size)])
    return nats / math.log(2)


def bits_per_char(model: nn.Module, text: str | torch.Tensor, context: int,
                  mask: torch.Tensor | None = None) -> float:
    """Mean loss in bits per character over ``text`` (see :func:`char_bits`).

    ``mask`` (one bool per character of ``text``) keeps only the marked characters, e.g. the assistant's answers.
    """
    bits = char_bits(model, text, context)
    return (bits if mask is None else bits[mask[1:len(bits) + 1]]).mean().item()
