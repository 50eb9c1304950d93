"""Lesson 02's driver: one fine-tuning run at a given peak rate and schedule, scored on the test digits."""

from __future__ import annotations

from .. import data
from .experiments import run

__all__ = ["rate_run"]


def rate_run(lr: float | dict[str, float], seed: int, *, n: int, steps: int, method: str = "fine-tune",
             schedule: str = "onecycle", label: str = "") -> dict:
    """Train ``method`` on ``n`` digits per class (split ``seed``) at peak rate ``lr`` under ``schedule``.

    Returns the test ``accuracy`` after the last step, the ``history``, and the ``method``, ``schedule`` and a
    ``label`` for tables (by default "one rate, <lr>").
    """
    trained = run(method, data.few_shot("mnist", n, seed), seed, steps, lr=lr, schedule=schedule,
                  eval_data=data.test_set("mnist"))
    return {"accuracy": trained.history.final_accuracy, "history": trained.history, "method": method,
            "schedule": schedule, "label": label or f"one rate, {lr}"}
