"""Seeded sampling from a TinyLM, one character at a time."""

from __future__ import annotations

import torch
from torch import nn

from ..runtime import evaluating
from .tokenizer import decode, encode

__all__ = ["generate"]


@torch.no_grad()
def generate(model: nn.Module, prompts: str | list[str], new_chars: int, temperature: float = 1.0, seed: int = 0,
             stop: str | None = None) -> str | list[str]:
    """Continue each prompt by up to ``new_chars`` sampled characters; returns only the continuations.

    Each step feeds the last ``context`` characters and samples the next one from ``softmax(logits / T)``
    (``temperature=0`` takes the most likely one). A seeded generator makes the samples repeatable. Several
    prompts of equal length are sampled together as one batch. With ``stop``, sampling ends once every
    continuation contains it, and each is cut just before it. The model samples in eval mode on its own device
    (the generator lives there too) and gets its mode back.
    """
    single = isinstance(prompts, str)
    prompts = [prompts] if single else list(prompts)
    if temperature < 0 or new_chars < 1:
        raise ValueError(f"temperature={temperature} must be >= 0 and new_chars={new_chars} >= 1")
    if len({len(p) for p in prompts}) != 1 or not prompts[0]:
        raise ValueError("prompts sampled together must be non-empty and of equal length")
    device = next(model.parameters()).device
    ids = torch.stack([encode(p) for p in prompts]).to(device)
    generator = torch.Generator(device=device).manual_seed(seed)
    context, start = model.config.context, ids.shape[1]
    with evaluating(model):
        for _ in range(new_chars):
            logits = model(ids[:, -context:])[:, -1]
            if temperature == 0:
                token = logits.argmax(-1, keepdim=True)
            else:
                token = torch.multinomial(torch.softmax(logits / temperature, -1), 1, generator=generator)
            ids = torch.cat([ids, token], dim=1)
            if stop and all(stop in decode(row[start:]) for row in ids):
                break
    texts = [decode(row[start:]) for row in ids]
    texts = [t.split(stop)[0] if stop else t for t in texts]
    return texts[0] if single else texts
