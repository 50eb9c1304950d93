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

from ..runtime import evaluating
from ..schedules import warmup_cosine
from .tokenizer import encode

__all__ = ["LMHistory", "bits_per_char", "char_bits", "train"]


@dataclass
class LMHistory:
    """The training loss (bits per character) at every step, the evaluations by step, and the seconds it took."""

    loss: list[float] = field(default_factory=list)
    evals: dict[int, dict] = field(default_factory=dict)
    seconds: float = 0.0


def train(model: nn.Module, batches: Iterator[tuple[torch.Tensor, torch.Tensor]], steps: int, lr: float,
          warmup: int = 0, weight_decay: float = 0.01, evaluate: Callable[[nn.Module], dict] | None = None,
          every: int = 0, progress: bool = False) -> LMHistory:
    """Train the parameters of ``model`` that require gradients on ``steps`` batches (next-character loss).

    AdamW, gradients clipped to norm 1, warm-up then cosine decay (:func:`ftlib.schedules.warmup_cosine`).
    Batches move to the model's device. ``evaluate(model)`` runs in eval mode after every ``every`` steps and
    after the last; its results go to ``history.evals[step]`` (its seconds are not counted). Whatever mode the
    model came in, it trains in train mode and ends in eval mode, ready to be scored or sampled.
    """
    if steps < 1 or lr <= 0:
        raise ValueError(f"steps={steps} and lr={lr} must both be positive")
    trainable = [p for p in model.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError("the model has no trainable parameters")
    optimizer = torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, steps, warmup))
    history, start, device = LMHistory(), time.perf_counter(), next(model.parameters()).device
    for step, (x, y) in zip(tqdm(range(1, steps + 1), disable=not progress, desc="steps", leave=False), batches):
        model.train()
        x, y = x.to(device), y.to(device)
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        schedule.step()
        history.loss.append(loss.item() / math.log(2))
        if evaluate and (step == steps or (every and step % every == 0)):
            pause = time.perf_counter()
            with evaluating(model):
                history.evals[step] = evaluate(model)
            start += time.perf_counter() - pause
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


@torch.no_grad()
def char_bits(model: nn.Module, text: str | torch.Tensor, context: int, batch_size: int = 64) -> torch.Tensor:
    """The loss in bits on each character of ``text`` after the first, cut into windows of ``context``.

    Entry ``i`` is the surprise at character ``i + 1``, predicted from the characters before it in its window
    (consecutive windows of ``context`` characters; the tail that does not fill a window is left out). The model
    runs in eval mode on its own device and gets its mode back; the result lies on that device.
    """
    tokens = (encode(text) if isinstance(text, str) else text).to(next(model.parameters()).device)
    windows = (len(tokens) - 1) // context
    if windows < 1:
        raise ValueError(f"the text has {len(tokens)} tokens; it needs more than context={context}")
    used = windows * context
    x, y = tokens[:used].view(windows, context), tokens[1:used + 1].view(windows, context)
    with evaluating(model):
        nats = torch.cat([F.cross_entropy(model(x[i:i + batch_size]).flatten(0, 1), y[i:i + batch_size].flatten(),
                                          reduction="none") for i in range(0, windows, batch_size)])
    return nats / math.log(2)


def bits_per_char(model: nn.Module, text: str | torch.Tensor, context: int,
                  mask: torch.Tensor | None = None) -> float:
    """Mean loss in bits per character over ``text`` (see :func:`char_bits`).

    ``mask`` (one bool per character of ``text``) keeps only the marked characters, e.g. the assistant's answers.
    """
    bits = char_bits(model, text, context)
    return (bits if mask is None else bits[mask[1:len(bits) + 1].to(bits.device)]).mean().item()
