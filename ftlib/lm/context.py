"""Reading past the training context: loss by position, RoPE scaling methods, a short fine-tune at a longer context,
and a recall task whose answer lies far back in the text.

A TinyLM is trained on ``context`` characters, but nothing in it fixes the length it reads: RoPE turns each query
and key by an angle proportional to its position. The methods differ in the positions RoPE sees at length ``L``:

* ``"naive"``: positions 0..L-1 as they are (extrapolation: angles the model never saw in training);
* ``"pi"``: position interpolation, positions times ``context / L``, so they stay inside the trained range;
* ``"base"``: a larger RoPE base (``BASE_FACTOR`` times), so every pair of features turns more slowly.
"""

from __future__ import annotations

import copy
import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import evaluating
from .finetune import finetune
from .tokenizer import encode
from .train import LMHistory, char_bits

__all__ = ["BASE_FACTOR", "EXTENSIONS", "extend", "position_bits", "recall_bits", "recall_task", "scaled"]

EXTENSIONS = ("naive", "pi", "base")  # the ways to set a model up to read past its training context
BASE_FACTOR = 8.0  # how much larger the RoPE base of the "base" method is


def scaled(model: nn.Module, method: str, length: int) -> nn.Module:
    """A copy of ``model`` set up by ``method`` (see the module docstring) to read ``length`` characters.

    The copy's ``config.context`` becomes ``length`` (the window a fine-tune trains on); ``model`` is unchanged.
    """
    if method not in EXTENSIONS:
        raise ValueError(f"method={method!r} is not allowed: choose one of {', '.join(EXTENSIONS)}")
    if length < 1:
        raise ValueError(f"length={length} must be positive")
    trained, out = model.config.context, copy.deepcopy(model)
    rope_base = model.config.rope_base * (BASE_FACTOR if method == "base" else 1.0)
    out.config = dataclasses.replace(model.config, context=length, rope_base=rope_base)
    out.position_scale = min(1.0, trained / length) if method == "pi" else 1.0
    return out


def position_bits(model: nn.Module, text: str | torch.Tensor, length: int) -> torch.Tensor:
    """Mean loss in bits at each position 0..length-1, over consecutive windows of ``length`` characters of ``text``.

    Entry ``i`` is the surprise at the ``i + 2``-th character of a window, predicted from the ``i + 1`` before it.
    Scored as :func:`ftlib.lm.train.char_bits` scores: in eval mode (the mode is restored), on the model's device.
    """
    bits = char_bits(model, text, length)
    return bits.view(-1, length).mean(0)


def extend(model: nn.Module, method: str, length: int, text: str, steps: int, lr: float, seed: int,
           batch_size: int = 4) -> tuple[nn.Module, LMHistory]:
    """Set ``model`` up with ``method`` at ``length`` and fine-tune all its weights on windows of that length."""
    return finetune(scaled(model, method, length), text, "full", steps, lr, seed, batch_size=batch_size)


def recall_task(text: str, passage: int, gap: int, count: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two batches of ``count`` sequences: ``P + G + P`` (repeated) and ``Q + G + P`` (fresh), as token ids.

    ``P`` and ``Q`` are unrelated passages of ``passage`` characters of ``text`` and ``G`` is ``gap`` characters
    of filler, all at seeded random places, so the last ``P`` starts ``passage + gap`` characters after the first.
    A model that can use its context predicts the last ``P`` better in the repeated sequences.
    """
    if passage < 1 or gap < 0 or count < 1:
        raise ValueError(f"passage={passage} and count={count} must be positive and gap={gap} >= 0")
    tokens = encode(text) if isinstance(text, str) else text
    generator = torch.Generator().manual_seed(seed)
    starts = torch.randint(len(tokens) - max(passage, gap), (count, 3), generator=generator).tolist()
    piece = lambda s, n: tokens[s:s + n]
    repeated = torch.stack([torch.cat([piece(p, passage), piece(g, gap), piece(p, passage)]) for p, g, _ in starts])
    fresh = torch.stack([torch.cat([piece(q, passage), piece(g, gap), piece(p, passage)]) for p, g, q in starts])
    return repeated, fresh


@torch.no_grad()
def recall_bits(model: nn.Module, sequences: torch.Tensor, passage: int) -> float:
    """Mean bits on the last ``passage - 1`` characters of ``sequences`` (its first character cannot be recalled).

    The model reads in eval mode on its own device and gets its mode back.
    """
    sequences = sequences.to(next(model.parameters()).device)
    with evaluating(model):
        logits = model(sequences[:, :-1])[:, -(passage - 1):]
    targets = sequences[:, -(passage - 1):]
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten()).item() / torch.log(torch.tensor(2.0)).item()
