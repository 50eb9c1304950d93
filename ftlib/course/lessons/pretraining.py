"""Lesson 01's live compute: scratch and fine-tuning race on a few digits for a chosen number of steps.

The lesson's own experiments run through :mod:`ftlib.course.lessons.experiments`; this module only holds what its live
slider trains: both methods on the same N digits per class, for the same number of steps, scored on a fixed
subset of the test digits so that one move takes about 2 s on 2 cores.
"""

from __future__ import annotations

from ftlib import data
from ftlib.course.lessons.experiments import run
from ftlib.evaluation import evaluate

__all__ = ["LIVE_METHODS", "LIVE_TEST_EVERY", "live_test_set", "race", "race_accuracies"]

LIVE_METHODS = ("scratch", "fine-tune, low backbone LR")  # the two methods the live slider trains
LIVE_TEST_EVERY = 5  # the live slider scores every 5th test digit: 500 of 2,500, 50 per class


def live_test_set() -> data.ImageSet:
    """Every :data:`LIVE_TEST_EVERY`-th digit of the fixed MNIST test set (the set is sorted by class, so each
    class keeps the same share): a smaller test set for quick live runs."""
    full = data.test_set("mnist")
    rows = slice(None, None, LIVE_TEST_EVERY)
    return data.ImageSet(full.images[rows], full.labels[rows], full.classes, full.name)


def race_accuracies(steps: int, n: int = 5, seed: int = 0) -> dict[str, float]:
    """Accuracy on :func:`live_test_set` of each of :data:`LIVE_METHODS` after ``steps`` steps on ``n`` digits per
    class (split ``seed``): the same digits, the same steps, the methods' own rates."""
    train_set, test = data.few_shot("mnist", n, seed), live_test_set()
    return {m: evaluate(run(m, train_set, seed, steps).model, test).accuracy for m in LIVE_METHODS}


def race(steps: int, n: int = 5, seed: int = 0) -> None:
    """The live slider's compute: train scratch and fine-tuning (low backbone LR) for ``steps`` steps (see
    :func:`race_accuracies`) and print their accuracies and the gap.

    The first printed line names ``steps`` as a slider shows it; both methods take the same steps and see the same
    digits, so what separates them is only where they start.
    """
    accuracy = race_accuracies(steps, n, seed)
    test = len(data.test_set("mnist")) // LIVE_TEST_EVERY
    print(f"{steps} training steps for each method, on N = {n} digits per class (seed {seed}), "
          f"scored on {test} test digits:")
    for method, value in accuracy.items():
        print(f"  {method:<28} {value:.1%}")
    gap = 100 * (accuracy[LIVE_METHODS[1]] - accuracy[LIVE_METHODS[0]])
    print(f"  fine-tuning minus scratch: {gap:+.1f} points after the same {steps} steps")
