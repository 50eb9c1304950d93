"""Experiments: the standard ways to train on a target, one ``run`` helper, a grid runner, and summaries over seeds.

``run`` is the one shape of a lesson's experiment: a model for a method (random weights, or the shipped checkpoint
with a new head), an optional ``prepare`` step (freeze, add adapters, build a penalty), training (``fit``, a linear
probe, or a lesson's own ``train``), and the timing. Every lesson driver calls it.
"""

from __future__ import annotations

import itertools
import math
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from torch import nn

from ftlib import data
from ftlib.course.lessons.records import Results, check_record, choose
from ftlib.course.lessons.workers import independent, run_calls
from ftlib.evaluation import evaluate
from ftlib.freeze import count_parameters
from ftlib.models import GlyphNet, pretrained_start
from ftlib.probe import linear_probe
from ftlib.runtime import seed_everything
from ftlib.stopping import History
from ftlib.train import fit

__all__ = ["METHODS", "Method", "Results", "Trained", "choose", "gain_over_scratch", "gains", "get_method",
           "labels_to_reach", "make_model", "plot_differences", "run", "run_grid", "split", "transfer_run",
           "validation_scores"]


@dataclass(frozen=True)
class Method:
    """One way to get a classifier for a target: from scratch, by a linear probe, or by fine-tuning.

    ``lr`` is a single rate or per-block rates (``{"backbone": ..., "head": ...}``); it is ignored by the probe.
    """

    name: str
    pretrained: bool
    probe: bool = False
    lr: float | dict[str, float] = 1e-3


METHODS = {
    m.name: m
    for m in (
        Method("scratch", pretrained=False, lr=1e-2),
        Method("linear probe", pretrained=True, probe=True),
        Method("fine-tune", pretrained=True, lr=1e-3),
        Method("fine-tune, low backbone LR", pretrained=True, lr={"backbone": 3e-4, "head": 3e-3}),
    )
}


def get_method(name: str) -> Method:
    """The standard :class:`Method` called ``name``."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
    return METHODS[name]


def make_model(method: Method, num_classes: int, seed: int) -> GlyphNet:
    """A fresh model for ``method``: random weights, or a copy of the shipped checkpoint with a new head.

    The same seed gives the same model on the first call and every later one (see
    :func:`ftlib.models.pretrained_start`).
    """
    seed_everything(seed)  # a lesson's runs are pinned to its thread count: same seed, same numbers
    return pretrained_start(num_classes, seed) if method.pretrained else GlyphNet(num_classes)


@dataclass
class Trained:
    """What :func:`run` gives back: the trained model, its history (None for a probe), and the seconds it took."""

    model: nn.Module
    history: History | None
    seconds: float


def run(method: Method | str, train_set: data.ImageSet, seed: int, steps: int = 100, *,
        model: nn.Module | None = None, prepare: Callable[[nn.Module], dict | None] | None = None,
        train: Callable[[nn.Module], History | None] | None = None, **fit_options) -> Trained:
    """Train a model on ``train_set`` the way ``method`` says: the one shape of every lesson's experiment.

    The model is ``make_model(method, ...)`` unless one is given (e.g. another checkpoint's start).
    ``prepare(model)`` runs before training (freeze blocks, add adapters, ...) and may return extra ``fit``
    options (e.g. a penalty that needs the model). The method's probe fits the head exactly; otherwise
    ``train(model)`` if given, else ``fit(model, train_set, steps, lr=method.lr, seed=seed, **fit_options)``
    (``fit_options`` may set ``lr`` and any other ``fit`` argument). ``seconds`` counts from the model's creation.
    """
    method = get_method(method) if isinstance(method, str) else method
    start = time.perf_counter()
    model = model if model is not None else make_model(method, train_set.num_classes, seed)
    extra = prepare(model) if prepare else None  # e.g. a penalty that needs the model
    fit_options = {"lr": method.lr, **fit_options, **(extra or {})}
    history = None  # a probe is fitted exactly: no history
    if method.probe:
        linear_probe(model, train_set)
    elif train is not None:
        history = train(model)
    else:
        history = fit(model, train_set, steps, seed=seed, **fit_options)
    return Trained(model, history, time.perf_counter() - start)


@independent
def transfer_run(method: str, target: str, n: int, seed: int, steps: int = 100, n_val: int = 0,
                 **fit_options) -> dict:
    """Train ``method`` on ``n`` labels per class of ``target`` (split ``seed``) and score it on the test set.

    ``n_val > 0`` also scores it on ``n_val`` more labels per class (:func:`validation_scores`): the training set is
    the same either way. ``seconds`` is the run's wall-clock time, ``cpu_seconds`` its processor time (this process,
    all its threads: less sensitive to what else the machine runs). ``fit_options`` go to :func:`run` (e.g.
    ``lr=3e-2`` instead of the method's rate).
    """
    train_set, val_set = split(target, n, n_val, seed)
    cpu_start = time.process_time()
    trained = run(method, train_set, seed, steps, **fit_options)
    cpu_seconds = time.process_time() - cpu_start
    return {"accuracy": evaluate(trained.model, data.test_set(target)).accuracy, "seconds": trained.seconds,
            "cpu_seconds": cpu_seconds, "trainable": count_parameters(trained.model, trainable_only=True),
            **validation_scores(trained.model, val_set)}


def split(target: str, n: int, n_val: int, seed: int) -> tuple[data.ImageSet, data.ImageSet | None]:
    """``(train, validation)``: ``few_shot(target, n, seed)`` and, for ``n_val > 0``, ``n_val`` more labels per class
    held out from the same pool (else ``None``). The training set does not depend on ``n_val``."""
    if n_val:
        return data.few_shot_split(target, n, n_val, seed)
    return data.few_shot(target, n, seed), None


def validation_scores(model: nn.Module, val_set: data.ImageSet | None) -> dict:
    """``{"val_accuracy", "val_loss"}`` of ``model`` on ``val_set`` (what the choose rule reads); ``{}`` for none."""
    if val_set is None:
        return {}
    scores = evaluate(model, val_set)
    return {"val_accuracy": scores.accuracy, "val_loss": scores.loss}


def gain_over_scratch(results: Results, transfer: Iterable[str], **where) -> list[float]:
    """Per seed: the accuracy of the best of the ``transfer`` methods minus that of ``scratch``.

    ``where`` picks one setting (e.g. ``n=5``); the list follows the seeds in ``results``. With one method this is
    that method's gain. With several, each seed's winner is picked *after* seeing its test score, so the figure
    is biased upwards (the maximum of noisy scores beats each of them on average): report one method's gain
    (:func:`gains`) when the number is a claim.
    """
    transfer = list(transfer)
    gains = []
    for seed in results.where(**where).unique("seed"):
        best = max(results.values(method=m, seed=seed, **where)[0] for m in transfer)
        gains.append(best - results.values(method="scratch", seed=seed, **where)[0])
    return gains


def gains(results: Results, field: str, base, over: str, values: Iterable | None = None) -> Results:
    """Per value of ``field`` (``values``, or every value, ``base`` included), value of ``over`` and seed: the
    accuracy minus that at ``field = base`` in the same seed, as records with a ``gain``.

    E.g. ``gains(curve, "method", "scratch", "n", ["linear probe"])`` gives the probe's gain over scratch at every
    N, seed by seed; ``gains(sweep, "k", 0, "target")`` the change from k = 0 on every target.
    """
    records = Results()
    for value in results.unique(field) if values is None else values:
        for group in results.where(**{field: value}).unique(over):
            differences = results.differences(field, value, base, **{over: group})
            seeds = results.where(**{field: value, over: group}).unique("seed")
            records += [{field: value, over: group, "seed": s, "gain": d} for s, d in zip(seeds, differences)]
    return records


def labels_to_reach(results: Results, method: str, accuracy: float, x: str = "n") -> float:
    """The ``x`` (labels per class) at which ``method``'s mean accuracy reaches ``accuracy``.

    Read off the mean curve by linear interpolation in log ``x`` between the two measured points around it;
    ``math.inf`` when the curve stays below ``accuracy`` at every measured ``x``.
    """
    xs = sorted(results.where(method=method).unique(x))
    means = [results.mean(method=method, **{x: v}) for v in xs]
    if means[0] >= accuracy:
        return xs[0]
    for (x0, m0), (x1, m1) in zip(zip(xs, means), zip(xs[1:], means[1:])):
        if m0 < accuracy <= m1:
            share = (accuracy - m0) / (m1 - m0)
            return math.exp(math.log(x0) + share * (math.log(x1) - math.log(x0)))
    return math.inf


def plot_differences(differences: dict[str, list[float]], ax=None, title: str = "",
                     xlabel: str = "difference in test accuracy (points)"):
    """One row per comparison: each seed's difference (a dot) and their mean (a bar), in points, around zero.

    A plot of differences keeps a 1-point effect visible, where bars of accuracy on a 0-100 axis hide it.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.55 * len(differences) + 1.3))
    names = list(differences)
    for row, name in enumerate(names):
        values = [100 * d for d in differences[name]]
        mean = statistics.fmean(values)
        ax.barh(row, mean, height=0.6, color="C0" if mean >= 0 else "C3", alpha=0.35)
        ax.plot(values, [row] * len(values), "ko", ms=4, label="one seed" if row == 0 else None)
        ax.annotate(f"{mean:+.1f}", (mean, row), xytext=(0, 9), textcoords="offset points", ha="center", fontsize=8)
    ax.axvline(0, color="gray", lw=1)
    ax.set_yticks(range(len(names)), names)
    ax.set_ylim(len(names) - 0.4, -0.6)
    ax.set(xlabel=xlabel, title=title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    return ax


def run_grid(run: Callable[..., dict], progress: bool = False, **axes: Iterable) -> Results:
    """Call ``run(**point)`` for every point of the grid spanned by ``axes`` and collect the records.

    An interrupt (Ctrl+C) stops the grid; the ``KeyboardInterrupt`` carries the finished runs as ``.results``.
    Each record holds the point's coordinates plus what ``run`` returned, under the names of
    :data:`~ftlib.course.lessons.records.MEASURES` (checked: a misnamed measure is an error), e.g.
    ``run_grid(transfer_run, method=["scratch"], target=["mnist"], n=[1, 5], seed=range(3))``. The runs are
    independent, so they share the cores (:func:`~ftlib.course.lessons.workers.run_calls`): same records, same order.
    """
    from tqdm.auto import tqdm

    names = list(axes)
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValueError(f"axis {name}={values!r} is not a list of values: give e.g. {name}=[{values!r}]")
    points = list(itertools.product(*(list(v) for v in axes.values())))
    empty = [name for name, values in zip(names, map(list, axes.values())) if not values] if not points else []
    if empty:
        raise ValueError(f"axis {empty[0]} has no values: the grid would run nothing; give at least one")
    coordinates = [dict(zip(names, point)) for point in points]
    bar = tqdm(total=len(points), disable=not progress, desc="runs", leave=False)
    try:
        records = run_calls([(run, coords) for coords in coordinates], progress=lambda: bar.update())
    except KeyboardInterrupt as interrupt:  # stop the grid, and keep the runs that finished
        interrupt.results = Results({**coords, **check_record(record, coordinates=coords)}
                                    for coords, record in zip(coordinates, interrupt.results))
        raise
    finally:
        bar.close()
    return Results({**coords, **check_record(record, coordinates=coords)}
                   for coords, record in zip(coordinates, records))
