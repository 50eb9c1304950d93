"""Choosing among settings on validation data: the one rule that the recipe and the course share.

The best validation accuracy wins; ties (equal to 9 decimals) go to the lower validation loss, then to the setting
listed first, the most conservative one (each grid lists it first). A setting whose scores are NaN or infinite (a
diverged run) ranks last. Test scores are never an input.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["best"]


def best(scores: Sequence[tuple[float, float]]) -> int:
    """The position of the chosen setting among ``scores``: one ``(validation accuracy, validation loss)`` per
    setting, in the grid's order, the most conservative first (give a loss of 0 where none was measured)."""
    if not scores:
        raise ValueError("scores=[] is not allowed: give one (validation accuracy, validation loss) per setting")

    def rank(position: int) -> tuple:
        accuracy, loss = scores[position]
        finite = math.isfinite(accuracy) and math.isfinite(loss)  # a diverged setting ranks last, never first
        return (not finite, -round(accuracy, 9) if finite else 0.0, loss if finite else 0.0, position)

    return min(range(len(scores)), key=rank)
