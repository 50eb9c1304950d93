"""Training: the library's one training loop, ``fit`` (image classifiers and language models alike: any optimizer and
schedule, per-block rates, augmentation, a penalty, gradient clipping, evaluations, early stopping), and the
optimizer and schedule factories it uses."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .checks import check_positive, check_rate, check_seed
from .data import ImageSet
from .evaluation import evaluate as evaluate_set
from .freeze import param_groups
from .runtime import evaluating, get_device
from .schedules import make_schedule
from .stopping import EarlyStopping, History

__all__ = ["Augment", "Batch", "Batches", "Loss", "NonFiniteLoss", "cross_entropy_loss", "fit", "make_optimizer",
           "shuffled_batches"]


Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


Batch = tuple[torch.Tensor, torch.Tensor]  # (inputs, targets): images and labels, or token windows and next tokens


Batches = Iterator[Batch]


Loss = Callable[[nn.Module, Batch], torch.Tensor]


def cross_entropy_loss(model: nn.Module, batch: Batch) -> torch.Tensor:
    """The mean cross-entropy of ``model(inputs)`` against ``targets``, over the last dimension of the logits.

    One label per image for a classifier (logits ``(B, classes)``), one next token per position for a language
    model (logits ``(B, T, vocab)`` against targets ``(B, T)``): the loss ``fit`` minimises unless given another.
    """
    inputs, targets = batch
    return F.cross_entropy(model(inputs).flatten(0, -2), targets.flatten())


class NonFiniteLoss(ArithmeticError):
    """Training stopped because the loss became NaN or infinite (the model keeps its last finite weights)."""


def make_optimizer(name: str | Callable, groups: list[dict], weight_decay: float) -> torch.optim.Optimizer:
    """``"adamw"``, ``"adam"``, ``"sgd"`` (momentum 0.9) over parameter ``groups``, or ``name(groups)`` if callable."""
    if callable(name):
        return name(groups)
    optimizers = {
        "adamw": lambda: torch.optim.AdamW(groups, weight_decay=weight_decay),
        "adam": lambda: torch.optim.Adam(groups, weight_decay=weight_decay),
        "sgd": lambda: torch.optim.SGD(groups, momentum=0.9, weight_decay=weight_decay),
    }
    if name not in optimizers:
        raise ValueError(f"unknown optimizer {name!r}; choose one of {sorted(optimizers)} or pass a callable")
    return optimizers[name]()


def shuffled_batches(data: ImageSet, batch_size: int, generator: torch.Generator) -> Batches:
    """Mini-batches drawn without replacement, epoch after epoch, each epoch in a fresh seeded order."""
    batch_size = min(batch_size, len(data))
    while True:
        order = torch.randperm(len(data), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            yield data.images[index], data.labels[index]


def fit(
    model: nn.Module,
    train: ImageSet | Batches,
    steps: int,
    *,
    lr: float | dict[str, float] = 1e-3,
    batch_size: int = 64,
    optimizer: str | Callable = "adamw",
    weight_decay: float = 0.0,
    schedule: str | Callable = "onecycle",
    loss: Loss = cross_entropy_loss,
    augment: Augment | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    clip_grad_norm: float | None = None,
    eval_data: ImageSet | None = None,
    val_data: ImageSet | None = None,
    evaluate: Callable[[nn.Module], dict] | None = None,
    eval_every: int | None = None,
    early_stopping: EarlyStopping | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> History:
    """Train ``model`` for ``steps`` mini-batch steps, and return its :class:`History`.

    ``train`` is an :class:`ImageSet` (batches of ``batch_size`` are drawn from it without replacement, epoch
    after epoch, in an order fixed by ``seed``) or an iterator of ``(inputs, targets)`` batches (an endless
    stream such as :func:`ftlib.data.letter_batches`, or a language model's token windows from
    :func:`ftlib.lm.corpus.batches`). ``loss(model, batch)`` is the loss to minimise, by default
    :func:`cross_entropy_loss` (a classifier's, or a language model's next-token loss).

    ``lr`` is one rate or a dict of per-block rates (see :func:`ftlib.freeze.param_groups`); frozen parameters
    are not trained. ``optimizer`` is ``"adamw"``, ``"adam"``, ``"sgd"`` (momentum 0.9) or a callable taking
    parameter groups (whose rates come from ``lr``); ``schedule`` is ``"onecycle"``, ``"cosine"``,
    ``"constant"`` or a callable ``(optimizer, steps)`` such as :func:`ftlib.schedules.warmup_cosine_schedule`.
    ``augment`` (``(images, generator) -> images``) transforms each batch. ``penalty(model)``, if given, is added
    to the loss that is minimised (e.g. :class:`ftlib.regularize.L2SP`); the history records the loss alone.
    With ``clip_grad_norm``, the gradients of the trainable parameters are scaled down to at most that norm
    (all together) before each step.

    Each step runs, in this order: next batch, augment, forward and loss, ``zero_grad``, backward, clipping,
    optimizer step, schedule step. With ``eval_data`` or ``val_data``, the model is evaluated on them every
    ``eval_every`` steps and after the last one; ``evaluate(model)``, if given, runs at the same steps in eval
    mode (the mode is restored) and what it returns goes to ``history.evals[step]``. The model comes back in
    train mode.

    ``early_stopping`` (an :class:`EarlyStopping`, which needs ``val_data`` and ``eval_every``) ends training
    once the validation score stops improving and, by default, restores the best weights. An interrupt
    (Ctrl+C, ``KeyboardInterrupt``) ends training too: with early stopping the model keeps the best weights seen,
    and the interrupt is raised again (so that a grid of runs stops too), carrying the history so far as its
    ``history`` attribute.

    Every rate must be finite and at most :data:`MAX_RATE` (checked before the first step, in the optimizer's
    parameter groups too); a loss that becomes NaN or infinite stops training with :class:`NonFiniteLoss`
    before that step changes the weights. ``history.seconds`` is the wall-clock time of the training steps:
    evaluations (and early stopping's checks after them) are not counted.
    """
    check_positive("steps", steps, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    for name, rate in lr.items() if isinstance(lr, dict) else [("lr", lr)]:
        check_rate(name if name == "lr" else f"lr[{name!r}]", rate)
    if clip_grad_norm is not None:
        check_positive("clip_grad_norm", clip_grad_norm)
    if eval_every is not None:
        check_positive("eval_every", eval_every, integer=True)
    if early_stopping is not None and (val_data is None or eval_every is None):
        raise ValueError("early_stopping needs val_data (carved from the labelled data) and eval_every")
    check_seed(seed)
    device = get_device(device)
    model.to(device)
    optimizer = make_optimizer(optimizer, param_groups(model, lr), weight_decay)
    for i, group in enumerate(optimizer.param_groups):
        check_rate(f"the rate of parameter group {group.get('name', i)!r}", group["lr"])
    scheduler = make_schedule(schedule, optimizer, steps)
    trainable = [p for p in model.parameters() if p.requires_grad]  # clipped together, in the model's order
    generator = torch.Generator().manual_seed(seed)
    batches = shuffled_batches(train, batch_size, generator) if isinstance(train, ImageSet) else train
    history, start = History(), time.perf_counter()
    best_weights = None

    try:
        for step in tqdm(range(1, steps + 1), disable=not progress, desc="fit", leave=False):
            x, y = next(batches)
            x, y = x.to(device), y.to(device)
            if augment is not None:
                x = augment(x, generator)

            model.train()
            data_loss = loss(model, (x, y))
            objective = data_loss if penalty is None else data_loss + penalty(model)
            value = data_loss.item()
            if not (math.isfinite(value) and (penalty is None or math.isfinite(objective.item()))):
                raise NonFiniteLoss(f"the training loss became {value} at step {step} (rate "
                                    f"{optimizer.param_groups[-1]['lr']:.3g}): lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            if clip_grad_norm is not None:
                nn.utils.clip_grad_norm_(trainable, clip_grad_norm)
            optimizer.step()
            history.step.append(step)
            history.loss.append(value)
            history.lr.append(optimizer.param_groups[-1]["lr"])
            scheduler.step()

            if step == steps or (eval_every and step % eval_every == 0):
                pause, stop = time.perf_counter(), False
                _record_evaluations(model, history, step, eval_data, val_data, evaluate, device)
                if early_stopping is not None:  # the rule reads the validation curve recorded so far
                    best, stop_index = early_stopping.check(getattr(history, early_stopping.monitor))
                    history.best_step = history.eval_step[best]
                    if best == len(history.eval_step) - 1 and early_stopping.restore_best:
                        best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    if stop_index is not None:
                        history.stopped_step, stop = step, True
                start += time.perf_counter() - pause  # evaluations do not count as training time
                if stop:
                    break
    except KeyboardInterrupt as interrupt:
        history.interrupted, history.stopped_step = True, len(history.step)
        interrupt.history = history
        raise
    finally:
        history.seconds = time.perf_counter() - start
        if best_weights is not None:
            model.load_state_dict(best_weights)
    return history


def _record_evaluations(model: nn.Module, history: History, step: int, eval_data: ImageSet | None,
                        val_data: ImageSet | None, evaluate: Callable[[nn.Module], dict] | None,
                        device: torch.device) -> None:
    """Evaluate on the sets that were given, and with ``evaluate``, and record the scores at ``step``."""
    if eval_data is None and val_data is None and evaluate is None:
        return
    scores = {"eval": eval_data, "val": val_data}
    scores = {name: evaluate_set(model, part, device=device) for name, part in scores.items() if part is not None}
    if evaluate is not None:
        with evaluating(model):
            history.evals[step] = evaluate(model)
    history.eval_step.append(step)  # recorded only once every score is in, so an interrupt leaves no half row
    for name, metrics in scores.items():
        getattr(history, f"{name}_loss").append(metrics.loss)
        getattr(history, f"{name}_accuracy").append(metrics.accuracy)
