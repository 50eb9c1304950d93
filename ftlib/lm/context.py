"""Reading past the training context: loss by position, RoPE scaling methods, a short fine-tune at a longer
context.

A TinyLM is trained on ``context`` characters, but nothing in it fixes the length it reads: RoPE turns each query
and key by an angle proportional to its position. The methods differ in the positions RoPE sees at length ``L``:

* ``"naive"``: positions 0..L-1 as they are (extrapolation: angles the model never saw in training);
* ``"pi"``: position interpolation, positions times ``context / L``, so they stay inside the trained range;
* ``"base"``: a larger RoPE base, so every pair of features turns more slowly, by the "NTK-aware" factor
  (:func:`ntk_base_factor`);
* ``"parts"``: RoPE "by parts" (YaRN's NTK-by-parts, Peng et al. 2023): a pair that turns many times inside the
  trained context keeps its frequency, a pair that turns less than once there is interpolated like PI, and the
  pairs between are blended (:func:`parts_factors`);
* ``"truncated"``: Giraffe's truncated basis (Pal et al. 2023): a pair that turns at least once inside the trained
  context keeps its frequency, a slower one is set to one slow shared frequency or, slower still, to 0 (no rotation:
  equally visible at every distance) (:func:`truncated_factors`).
"""

from __future__ import annotations

import copy
import dataclasses
import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..runtime import evaluating
from ..stopping import History
from .bits import char_bits
from .finetune import finetune
from .model import Config
from .tokenizer import encode

__all__ = ["EXTENSIONS", "LENGTH_FREE", "PARTS_RAMP", "TRUNCATION", "extend", "ntk_base_factor", "parts_factors",
           "position_bits", "scaled", "sliding_bits", "truncated_factors", "wavelengths"]

EXTENSIONS = ("naive", "pi", "base", "parts", "truncated")  # the ways to set a model up to read past its context
LENGTH_FREE = ("naive", "truncated")  # the methods whose setting does not depend on the length read
# "parts": a pair that turns at least PARTS_RAMP[1] times inside the trained context keeps its frequency, one that
# turns at most PARTS_RAMP[0] times is interpolated fully (YaRN's alpha and beta; fixed a priori, not tuned here)
PARTS_RAMP = (1.0, 2.0)
# "truncated": Giraffe's code (abacusai/Long-Context, models/interpolate.py) keeps a frequency at or above
# b = 2 pi / context, sets one between b / 8 and b to rho = b / 16, and one below b / 8 to 0
TRUNCATION = {"below": 8.0, "rho": 16.0}


def wavelengths(config: Config) -> torch.Tensor:
    """How many positions each rotated pair of a head takes to turn once: ``2 pi / frequency``, fastest first."""
    head_dim = config.dim // config.heads
    return 2 * math.pi * config.rope_base ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)


def parts_factors(config: Config, length: int, ramp: tuple[float, float] = PARTS_RAMP) -> torch.Tensor:
    """The factor on each pair's frequency that RoPE by parts uses to read ``length`` characters.

    With ``turns = config.context / wavelength`` (how often the pair turns inside the trained context) and
    ``s = length / config.context``: 1 (unchanged) where ``turns >= ramp[1]``, ``1 / s`` (as PI) where
    ``turns <= ramp[0]``, and a linear blend of the two in between. Never stretches (``length <= context``: all 1).
    """
    low, high = ramp
    if not 0 < low < high:
        raise ValueError(f"ramp={ramp} must hold two increasing positive numbers")
    turns = config.context / wavelengths(config)
    keep = ((turns - low) / (high - low)).clamp(0.0, 1.0)  # 1: keep the frequency, 0: interpolate it
    squeeze = min(1.0, config.context / length)
    return keep + (1 - keep) * squeeze


def truncated_factors(config: Config) -> torch.Tensor:
    """The factor on each pair's frequency in Giraffe's truncated basis (any length: it does not depend on one).

    With ``b = 2 pi / config.context`` (one turn inside the trained context): a frequency ``>= b`` is kept (factor
    1), one in ``[b / TRUNCATION["below"], b)`` becomes ``rho = b / TRUNCATION["rho"]``, a slower one becomes 0.
    """
    frequencies = 2 * math.pi / wavelengths(config)
    b = 2 * math.pi / config.context
    rho = b / TRUNCATION["rho"]
    kept = torch.where(frequencies >= b, frequencies, torch.where(frequencies >= b / TRUNCATION["below"], rho, 0.0))
    return kept / frequencies


def ntk_base_factor(config: Config, length: int) -> float:
    """The "NTK-aware" factor on RoPE's base for reading ``length`` characters: ``s ** (d / (d - 2))``, with
    ``s = length / context`` and ``d`` a head's dimension (bloc97 2023, in YaRN's section 3.1). It leaves the
    fastest pair as it is and slows the slowest exactly as PI does (by ``s``); 1 where ``length <= context``."""
    head_dim = config.dim // config.heads
    return max(1.0, length / config.context) ** (head_dim / (head_dim - 2))


def scaled(model: nn.Module, method: str, length: int, pretrained: Config | None = None) -> nn.Module:
    """A copy of ``model`` set up by ``method`` (see the module docstring) to read ``length`` characters.

    ``pretrained`` is the configuration the model was pretrained with (its context and RoPE base); by default
    ``model.config``, and then ``model`` must be unscaled (``position_scale`` 1 and no ``rope_scale``), as a pretrained
    TinyLM is. Give it to set up a model that was already scaled and fine-tuned for another length: Giraffe's
    evaluation-time scale (a model fine-tuned to read 256 characters, read at 512 with the scale for 512).

    The copy's ``config.context`` becomes ``length`` (the window a fine-tune trains on); ``model`` is unchanged.
    """
    if method not in EXTENSIONS:
        raise ValueError(f"method={method!r} is not allowed: choose one of {', '.join(EXTENSIONS)}")
    if length < 1:
        raise ValueError(f"length={length} must be positive")
    pretrained = pretrained or model.config
    out = copy.deepcopy(model)
    factor = ntk_base_factor(pretrained, length) if method == "base" else 1.0
    out.config = dataclasses.replace(model.config, context=length, rope_base=pretrained.rope_base * factor)
    out.position_scale = min(1.0, pretrained.context / length) if method == "pi" else 1.0
    out.rope_scale = {"parts": lambda: parts_factors(pretrained, length),
                      "truncated": lambda: truncated_factors(pretrained)}.get(method, lambda: None)()
    return out


def position_bits(model: nn.Module, text: str | torch.Tensor, length: int) -> torch.Tensor:
    """Mean loss in bits at each position 0..length-1, over consecutive windows of ``length`` characters of ``text``.

    Entry ``i`` is the surprise at the ``i + 2``-th character of a window, predicted from the ``i + 1`` before it.
    Scored as :func:`ftlib.lm.bits.char_bits` scores: in eval mode (the mode is restored), on the model's device.
    """
    bits = char_bits(model, text, length)
    return bits.view(-1, length).mean(0)


@torch.no_grad()
def sliding_bits(model: nn.Module, text: str | torch.Tensor, length: int, reach: int | None = None,
                 stride: int = 8) -> torch.Tensor:
    """Loss in bits at each position 0..length-1, laid out as :func:`position_bits` lays it out, for a model that
    reads only the last ``reach`` characters (default: its trained context) through a window sliding by ``stride``.

    Positions below ``reach`` are scored as :func:`position_bits` scores them (the whole window fits); every later
    prediction reads between ``reach - stride + 1`` and ``reach`` characters. This is the truncation baseline that a
    model reading the whole window must beat. In eval mode (the mode is restored), on the model's device.
    """
    reach = reach or model.config.context
    if not 1 <= stride <= reach < length or (length - reach) % stride:
        raise ValueError(f"stride={stride} must lie in 1..reach={reach}, reach below length={length}, "
                         f"and stride must divide length - reach")
    tokens = (encode(text) if isinstance(text, str) else text).to(next(model.parameters()).device)
    windows = (len(tokens) - 1) // length
    bits = position_bits(model, tokens, length).clone()
    ends = torch.arange(reach + stride, length + 1, stride)  # each row predicts positions end - stride .. end - 1
    firsts = (ends[:, None] - reach + length * torch.arange(windows)[None, :]).flatten()  # by end, then by window
    rows = tokens[firsts.to(tokens.device)[:, None] + torch.arange(reach + 1, device=tokens.device)]
    with evaluating(model):
        logits = torch.cat([model(rows[i:i + 256, :-1])[:, -stride:] for i in range(0, len(rows), 256)])
    nats = F.cross_entropy(logits.flatten(0, 1), rows[:, -stride:].flatten(), reduction="none")
    bits[reach:] = (nats / math.log(2)).view(len(ends), windows, stride).mean(1).flatten()
    return bits


def extend(model: nn.Module, method: str, length: int, text: str | torch.Tensor, steps: int, lr: float, seed: int,
           batch_size: int = 4, evaluate: Callable[[nn.Module], dict] | None = None,
           every: int | None = None) -> tuple[nn.Module, History]:
    """Set ``model`` up with ``method`` at ``length`` and fine-tune all its weights on windows of that length.

    ``evaluate`` and ``every`` go to :func:`ftlib.lm.finetune.finetune` (checks along the way, in
    ``history.evals``).
    """
    return finetune(scaled(model, method, length), text, "full", steps, lr, seed, batch_size=batch_size,
                    evaluate=evaluate, every=every)
