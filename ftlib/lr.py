"""Choosing a learning rate: the range test as fastai's ``lr_find`` runs it (an exponential ramp of the rate,
the smoothed training loss, a stop when it explodes). Smith (2017), who introduced the test, ramped the rate
linearly over a few epochs and read accuracy; this variant needs no held-out data and gives one rate.

Per-block ("discriminative") rates need nothing new: pass a dict to ``fit(lr=...)``, see
:func:`ftlib.freeze.param_groups`. Schedules are ``fit(schedule=...)``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .checks import check_positive
from .data import ImageSet
from .runtime import get_device
from .train import make_optimizer, shuffled_batches

__all__ = ["RangeTest", "range_test"]


@dataclass
class RangeTest:
    """What :func:`range_test` measured: one rate per step, the raw and smoothed losses, and its suggestion."""

    lrs: list[float]
    losses: list[float]  # exponentially smoothed (and bias-corrected), the curve to read
    raw_losses: list[float]
    diverged: bool  # True when the run stopped because the loss exploded, False when it reached ``end``

    @property
    def min_loss_lr(self) -> float:
        """The rate at which the smoothed loss was lowest."""
        return self.lrs[self.losses.index(min(self.losses))]

    @property
    def suggestion(self) -> float:
        """The suggested rate: where the smoothed loss fell fastest (per step, so per factor of rate), before
        its lowest point. Unlike "a tenth of the rate at the lowest loss", it still works when the loss on a
        tiny training set keeps falling to the end and never explodes."""
        lowest = self.losses.index(min(self.losses))
        if lowest < 2:
            raise ValueError("the loss fell for fewer than 2 steps: start the range test at a lower rate")
        falls = [self.losses[k - 1] - self.losses[k + 1] for k in range(1, lowest)]
        return self.lrs[1 + falls.index(max(falls))]


def range_test(model: nn.Module, train: ImageSet, *, start: float = 1e-6, end: float = 1.0, steps: int = 100,
               batch_size: int = 64, optimizer: str | Callable = "adamw", smooth: float = 0.8,
               diverge: float = 4.0, seed: int = 0, restore: bool = True,
               device: str | torch.device | None = None) -> RangeTest:
    """Train ``model`` for at most ``steps`` steps while the rate rises geometrically from ``start`` to ``end``.

    Step ``k`` uses ``start * (end / start) ** (k / (steps - 1))``. The run stops early once the smoothed loss
    exceeds ``diverge`` times its lowest value so far, or is not finite. ``smooth`` is the weight of the past in
    the exponential moving average of the loss. With ``restore=True`` (the default) the model's weights and
    BatchNorm statistics are put back as they were afterwards; with ``restore=False`` the model keeps the
    weights of the last step, which are usually ruined.
    """
    check_positive("steps", steps, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    check_positive("start", start)
    if not (isinstance(end, (int, float)) and end > start):
        raise ValueError(f"end={end!r} is not allowed: it must be a number above start={start!r}")
    if steps < 2:
        raise ValueError(f"steps={steps!r} is not allowed: a range test needs at least 2 steps")
    if not 0 <= smooth < 1:
        raise ValueError(f"smooth={smooth!r} is not allowed: choose a weight from 0 (no smoothing) up to below 1")
    if not diverge > 1:
        raise ValueError(f"diverge={diverge!r} is not allowed: it must be above 1 (a multiple of the lowest loss)")
    device = torch.device(device) if device is not None else get_device()
    saved = copy.deepcopy(model.state_dict()) if restore else None
    model.to(device).train()
    opt = make_optimizer(optimizer, [{"params": [p for p in model.parameters() if p.requires_grad], "lr": start}],
                          weight_decay=0.0)
    batches = shuffled_batches(train, batch_size, torch.Generator().manual_seed(seed))
    result, average, best = RangeTest([], [], [], diverged=False), 0.0, math.inf
    for k in range(steps):
        rate = start * (end / start) ** (k / (steps - 1))
        for group in opt.param_groups:
            group["lr"] = rate
        x, y = next(batches)
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        average = smooth * average + (1 - smooth) * loss.item()
        smoothed = average / (1 - smooth ** (k + 1))
        result.lrs.append(rate)
        result.raw_losses.append(loss.item())
        result.losses.append(smoothed)
        best = min(best, smoothed)
        if not math.isfinite(smoothed) or smoothed > diverge * best:
            result.diverged = True
            break
    if saved is not None:
        model.load_state_dict(saved)
    return result

