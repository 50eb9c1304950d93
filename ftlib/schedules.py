"""Learning-rate schedules as plain factors of the base rate, one function per shape (for ``LambdaLR``)."""

from __future__ import annotations

import math

__all__ = ["warmup_cosine"]


def warmup_cosine(step: int, steps: int, warmup: int) -> float:
    """The learning-rate factor at ``step`` (0-based) of ``steps``: linear warm-up, then a cosine down to 0.

    During the first ``warmup`` steps the factor climbs ``1/warmup, 2/warmup, ..., 1``; from step ``warmup`` it
    follows half a cosine from 1 to 0 at step ``steps``. With ``warmup=0`` it is the cosine alone.
    """
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup)))
