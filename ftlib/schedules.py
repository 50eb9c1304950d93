"""Learning-rate schedules: the named schedules ``fit`` builds, warm-up then cosine (the language models'), and
the factor of the base rate that it applies at each step."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

__all__ = ["make_schedule", "warmup_constant_schedule", "warmup_cosine", "warmup_cosine_schedule"]


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """The learning-rate factor at ``step`` (0-based) of ``steps``: linear warm-up, then a cosine down to 0.

    During the first ``warmup`` steps the factor climbs ``1/warmup, 2/warmup, ..., 1``; from step ``warmup`` it
    follows half a cosine from 1 to 0 at step ``steps``. With ``warmup=0`` it is the cosine alone.
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))


def warmup_cosine_schedule(warmup: int) -> Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LambdaLR]:
    """A schedule for ``fit(schedule=...)``: ``warmup`` steps of linear warm-up, then a cosine down to 0
    (:func:`warmup_cosine`), the same factor on every parameter group."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup={warmup!r} is not allowed: it must be a whole number of steps >= 0")

    def schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: warmup_cosine(s, steps, warmup))

    return schedule


def warmup_constant_schedule(warmup: int) -> Callable[[torch.optim.Optimizer, int], torch.optim.lr_scheduler.LambdaLR]:
    """A schedule for ``fit(schedule=...)``: ``warmup`` steps of linear warm-up, then the full rate to the end."""
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 1:
        raise ValueError(f"warmup={warmup!r} is not allowed: it must be a whole number of steps >= 1")

    def schedule(optimizer: torch.optim.Optimizer, steps: int) -> torch.optim.lr_scheduler.LambdaLR:
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup))

    return schedule


def make_schedule(name: str | Callable, optimizer: torch.optim.Optimizer, steps: int):
    """``"onecycle"`` (peak at 25%), ``"cosine"`` or ``"constant"`` over ``steps``, or ``name(optimizer, steps)``."""
    if callable(name):
        return name(optimizer, steps)
    peaks = [g["lr"] for g in optimizer.param_groups]
    schedules = {
        "constant": lambda: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 1.0),
        "cosine": lambda: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, steps),
        "onecycle": lambda: torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=peaks, total_steps=steps,
                                                                pct_start=0.25),
    }
    if name not in schedules:
        raise ValueError(f"unknown schedule {name!r}; choose one of {sorted(schedules)} or pass a callable")
    return schedules[name]()
