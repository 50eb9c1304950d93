"""Scoring a TinyLM in bits: the loss on each character of a text, and its mean, bits per character.

(TinyLM trains with :func:`ftlib.train.fit`, the library's one training loop.)
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import evaluating
from .tokenizer import encode

__all__ = ["bits_per_char", "char_bits"]


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
