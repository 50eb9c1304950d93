"""Training: seeding, device choice, one readable ``fit`` loop with early stopping, ``evaluate``, and a linear probe."""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import ImageSet
from .freeze import freeze_backbone, param_groups
from .runtime import evaluating

DEFAULT_THREADS = 2
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


class SettingError(ValueError):
    """A setting (argument, command-line flag or environment variable) that is not allowed; the message names it."""


MAX_SEED = 2**63 - 1  # torch.manual_seed takes any int below 2**64; 2**63 - 1 also fits every generator


def named(name: str, value) -> str:
    """``name=value`` for an argument, ``--flag value`` for a command-line flag (a name that starts with ``-``)."""
    return f"{name} {value!r}" if name.startswith("-") else f"{name}={value!r}"


def check_seed(seed: int, name: str = "seed") -> int:
    """``seed`` if it is an integer in [0, 2**63 - 1], else a :class:`SettingError` naming ``name``."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise SettingError(f"{named(name, seed)} is not allowed: choose an integer from 0 to 2**63 - 1")
    return seed


def thread_count(threads: int | None = None, default: int | None = DEFAULT_THREADS,
                 flag: str = "threads") -> int | None:
    """The thread count to use: ``threads`` if given, else ``$FTLIB_THREADS`` if set, else ``default``.

    A value that is not a positive integer is a :class:`SettingError` naming ``flag`` or ``FTLIB_THREADS``.
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise SettingError(f"{named(flag, threads)} is not allowed: choose a positive integer (e.g. 2)")
        return threads
    text = os.environ.get("FTLIB_THREADS", "").strip()
    if not text:
        return default
    if not text.isdigit() or int(text) < 1:
        raise SettingError(f"FTLIB_THREADS={text!r} is not allowed: set it to a positive integer (e.g. 2) or unset it")
    return int(text)


def pin_threads(threads: int | None = None, default: int | None = DEFAULT_THREADS, flag: str = "threads") -> int:
    """Pin torch's CPU thread count to :func:`thread_count` (``threads``, else ``$FTLIB_THREADS``, else
    ``default``; ``None``: leave torch's count, every core, as it is) and return the count in use."""
    count = thread_count(threads, default, flag)
    if count is not None:
        torch.set_num_threads(count)
    return torch.get_num_threads()


def seed_rngs(seed: int) -> None:
    """Seed Python, NumPy and torch (nothing else changes; library code that draws weights calls this)."""
    check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_everything(seed: int, threads: int | None = None) -> None:
    """The lessons' reproducibility call: :func:`seed_rngs` and :func:`pin_threads` (``threads``, else
    ``$FTLIB_THREADS``, else 2) for the whole process.

    Results are bit-identical only for the same seed *and* the same thread count. Library functions that only
    need seeded weights call :func:`seed_rngs`, so the command line keeps the machine's cores.
    """
    seed_rngs(seed)
    pin_threads(threads)


DEVICES = ("cpu", "cuda", "mps")


def get_device(name: str | None = None, flag: str = "device") -> torch.device:
    """``name`` (or ``$FTLIB_DEVICE``) if given, else the CPU: a GPU only when asked for, so lessons give the same
    numbers everywhere.

    An unknown name, or a GPU that this machine lacks, is a :class:`SettingError` naming ``flag`` (or
    ``FTLIB_DEVICE``).
    """
    source = flag
    if name is None or name == "":
        name, source = os.environ.get("FTLIB_DEVICE", "").strip(), "FTLIB_DEVICE"
    if not name:
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in DEVICES:
        raise SettingError(f"{named(source, name)} is not allowed: choose one of {', '.join(DEVICES)} (e.g. cuda:0)")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available[device.type]:
        raise SettingError(f"{named(source, name)}: this machine has no {device.type.upper()} device that torch can "
                           "use; choose cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SettingError(f"{named(source, name)}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return device


@dataclass
class History:
    """What ``fit`` measured: the training loss and rate at every step, and evaluations every few steps.

    ``eval_step`` lists the evaluated steps; ``eval_*`` hold the scores on ``eval_data`` and ``val_*`` those on
    ``val_data`` at those steps. With early stopping, ``best_step`` is the evaluated step with the best monitored
    score and ``stopped_step`` the step where the rule stopped training; after an interrupt, ``interrupted`` is
    true and ``stopped_step`` is the last step recorded. ``stopped_step`` is None when every step ran.
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    best_step: int | None = None
    stopped_step: int | None = None
    interrupted: bool = False
    seconds: float = 0.0

    @property
    def final_accuracy(self) -> float:
        """The last evaluation's accuracy (NaN when ``fit`` had no evaluation data)."""
        return self.eval_accuracy[-1] if self.eval_accuracy else float("nan")


@dataclass(frozen=True)
class Metrics:
    loss: float
    accuracy: float


MONITORS = {"val_loss": "min", "val_accuracy": "max"}  # what early stopping can watch, and which way is better


@dataclass(frozen=True)
class EarlyStopping:
    """Stop training once the monitored validation score has not improved for ``patience`` evaluations.

    An evaluation improves on the best so far only if it is better by more than ``min_delta``. ``mode`` is
    ``"min"`` or ``"max"``; ``"auto"`` takes it from ``monitor`` (lower loss, higher accuracy). With
    ``restore_best``, the model ends with the weights it had at the best evaluation (an exact copy).
    """

    monitor: str = "val_loss"
    patience: int = 3
    min_delta: float = 0.0
    mode: str = "auto"
    restore_best: bool = True

    def __post_init__(self) -> None:
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor={self.monitor!r} is not allowed: choose one of {sorted(MONITORS)}")
        if self.mode not in ("auto", "min", "max"):
            raise ValueError(f"mode={self.mode!r} is not allowed: choose 'auto', 'min' or 'max'")
        _check_rule(self.patience, self.min_delta)

    @property
    def direction(self) -> str:
        """``"min"`` or ``"max"``: which way the monitored score gets better."""
        return MONITORS[self.monitor] if self.mode == "auto" else self.mode

    def check(self, scores: Sequence[float]) -> tuple[int, int | None]:
        """:func:`stopping_point` with this rule's settings, on the scores recorded so far."""
        return stopping_point(scores, self.patience, self.min_delta, self.direction)


def _check_rule(patience: int, min_delta: float) -> None:
    check_positive("patience", patience, integer=True)
    if isinstance(min_delta, bool) or not isinstance(min_delta, (int, float)) or min_delta < 0:
        raise ValueError(f"min_delta={min_delta!r} is not allowed: it must be a number >= 0")


def stopping_point(scores: Sequence[float], patience: int, min_delta: float = 0.0,
                   mode: str = "min") -> tuple[int, int | None]:
    """The early-stopping rule on a curve of validation scores (one per evaluation): ``(best, stop)`` indices.

    Walks the curve in order: a score is a new best if it beats the best so far by more than ``min_delta``
    (lower for ``mode="min"``, higher for ``"max"``); training stops at the first evaluation that comes
    ``patience`` evaluations after the best (``stop`` is None if that never happens). The curve is read only
    up to the stop, so ``fit`` (which applies the rule after every evaluation) and a replay of its recorded
    curve agree.
    """
    _check_rule(patience, min_delta)
    if mode not in ("min", "max"):
        raise ValueError(f"mode={mode!r} is not allowed: choose 'min' or 'max'")
    if len(scores) == 0:
        raise ValueError("scores is empty: the rule needs at least one evaluation")
    sign = 1 if mode == "min" else -1
    best = 0
    for i, score in enumerate(scores):
        if sign * score < sign * scores[best] - min_delta:
            best = i
        if i - best >= patience:
            return best, i
    return best, None


def check_positive(name: str, value: float, integer: bool = False) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a finite positive number (an integer if
    ``integer``)."""
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not (value > 0 and math.isfinite(value)):
        raise SettingError(f"{name}={value!r} is not allowed: it must be a positive "
                           f"{'integer' if integer else 'finite number'}")


MAX_RATE = 10.0  # no optimizer here trains with a larger learning rate; anything above is a typo or an overflow


def check_rate(name: str, value: float) -> None:
    """Raise a ``ValueError`` naming ``name`` unless ``value`` is a learning rate in (0, MAX_RATE]."""
    check_positive(name, value)
    if value > MAX_RATE:
        raise SettingError(f"{name}={value!r} is not allowed: a learning rate must be at most {MAX_RATE:g}")


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
    augment: Augment | None = None,
    penalty: Callable[[nn.Module], torch.Tensor] | None = None,
    eval_data: ImageSet | None = None,
    eval_every: int | None = None,
    val_data: ImageSet | None = None,
    early_stopping: EarlyStopping | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> History:
    """Train ``model`` for ``steps`` mini-batch steps, and return its :class:`History`.

    ``train`` is an :class:`ImageSet` (batches of ``batch_size`` are drawn from it without replacement, epoch
    after epoch, in an order fixed by ``seed``) or an iterator of ``(images, labels)`` batches (an endless
    stream such as :func:`ftlib.data.letter_batches`).

    ``lr`` is one rate or a dict of per-block rates (see :func:`ftlib.freeze.param_groups`); frozen parameters
    are not trained. ``optimizer`` is ``"adamw"``, ``"adam"``, ``"sgd"`` (momentum 0.9) or a callable taking
    parameter groups (whose rates come from ``lr``); ``schedule`` is ``"onecycle"``, ``"cosine"``,
    ``"constant"`` or a callable ``(optimizer, steps)``. ``augment`` (``(images, generator) -> images``)
    transforms each batch. ``penalty(model)``, if given, is added to the loss that is minimised (e.g.
    :class:`ftlib.regularize.L2SP`); the history records the data loss alone. With ``eval_data`` or
    ``val_data``, the model is evaluated on them every ``eval_every`` steps and after the last one.

    ``early_stopping`` (an :class:`EarlyStopping`, which needs ``val_data`` and ``eval_every``) ends training
    once the validation score stops improving and, by default, restores the best weights. An interrupt
    (Ctrl+C, ``KeyboardInterrupt``) ends training too: with early stopping the model keeps the best weights seen,
    and the interrupt is raised again (so that a grid of runs stops too), carrying the history so far as its
    ``history`` attribute.

    Every rate must be finite and at most :data:`MAX_RATE` (checked before the first step, in the optimizer's
    parameter groups too); a loss that becomes NaN or infinite stops training with :class:`NonFiniteLoss`
    before that step changes the weights.
    """
    check_positive("steps", steps, integer=True)
    check_positive("batch_size", batch_size, integer=True)
    for name, rate in lr.items() if isinstance(lr, dict) else [("lr", lr)]:
        check_rate(name if name == "lr" else f"lr[{name!r}]", rate)
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
            loss = F.cross_entropy(model(x), y)
            objective = loss if penalty is None else loss + penalty(model)
            value = loss.item()
            if not (math.isfinite(value) and (penalty is None or math.isfinite(objective.item()))):
                raise NonFiniteLoss(f"the training loss became {value} at step {step} (rate "
                                    f"{optimizer.param_groups[-1]['lr']:.3g}): lower the learning rate")
            optimizer.zero_grad(set_to_none=True)
            objective.backward()
            optimizer.step()
            history.step.append(step)
            history.loss.append(value)
            history.lr.append(optimizer.param_groups[-1]["lr"])
            scheduler.step()

            if step == steps or (eval_every and step % eval_every == 0):
                _record_evaluations(model, history, step, eval_data, val_data, device)
                if early_stopping is not None:  # the rule reads the validation curve recorded so far
                    best, stop = early_stopping.check(getattr(history, early_stopping.monitor))
                    history.best_step = history.eval_step[best]
                    if best == len(history.eval_step) - 1 and early_stopping.restore_best:
                        best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
                    if stop is not None:
                        history.stopped_step = step
                        break
    except KeyboardInterrupt as interrupt:
        history.interrupted, history.stopped_step = True, len(history.step)
        interrupt.history = history
        raise
    finally:
        if best_weights is not None:
            model.load_state_dict(best_weights)
        history.seconds = time.perf_counter() - start
    return history


def _record_evaluations(model: nn.Module, history: History, step: int, eval_data: ImageSet | None,
                        val_data: ImageSet | None, device: torch.device) -> None:
    """Evaluate on the evaluation and validation sets that were given, and record the scores at ``step``."""
    if eval_data is None and val_data is None:
        return
    scores = {"eval": eval_data, "val": val_data}
    scores = {name: evaluate(model, part, device=device) for name, part in scores.items() if part is not None}
    history.eval_step.append(step)  # recorded only once every score is in, so an interrupt leaves no half row
    for name, metrics in scores.items():
        getattr(history, f"{name}_loss").append(metrics.loss)
        getattr(history, f"{name}_accuracy").append(metrics.accuracy)


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSet, batch_size: int = 250,
             device: str | torch.device | None = None) -> Metrics:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``, in eval mode (the mode is restored)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    total_loss, correct = 0.0, 0
    with evaluating(model.to(device)):
        for start in range(0, len(data), batch_size):
            x = data.images[start:start + batch_size].to(device)
            y = data.labels[start:start + batch_size].to(device)
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            correct += (logits.argmax(1) == y).sum().item()
    return Metrics(loss=total_loss / len(data), accuracy=correct / len(data))


@torch.no_grad()
def confusion_matrix(model: nn.Module, data: ImageSet, batch_size: int = 250) -> torch.Tensor:
    """Counts of ``model``'s predictions on ``data`` (in eval mode; the mode is restored): row = true class,
    column = predicted class."""
    device = next(model.parameters()).device
    with evaluating(model):
        predicted = torch.cat([model(data.images[i:i + batch_size].to(device)).argmax(1).cpu()
                               for i in range(0, len(data), batch_size)])
    k = data.num_classes
    return torch.bincount(data.labels * k + predicted, minlength=k * k).reshape(k, k)


@torch.no_grad()
def extract_features(model: nn.Module, images: torch.Tensor, upto: str = "block4",
                     batch_size: int = 1000) -> torch.Tensor:
    """Pooled features of a GlyphNet after block ``upto``, computed in eval mode, on the model's device."""
    device = next(model.parameters()).device
    with evaluating(model):
        parts = [model.features(images[i:i + batch_size].to(device), upto) for i in range(0, len(images), batch_size)]
    return torch.cat(parts)


def linear_probe(model: nn.Module, train: ImageSet, weight_decay: float = 1e-3, max_iter: int = 100) -> nn.Module:
    """Fit only the head of ``model`` on frozen features (feature extraction), and return the model.

    The backbone is frozen; its features are standardised and a logistic-regression head is fitted with
    L-BFGS (full batch, deterministic), then the standardisation is folded into ``model.head``.
    """
    freeze_backbone(model)
    features = extract_features(model, train.images)
    mean, std = features.mean(0), features.std(0, unbiased=False) + 1e-6
    z = (features - mean) / std
    labels = train.labels.to(z.device)
    head = nn.Linear(z.shape[1], model.head.out_features).to(z.device)
    nn.init.zeros_(head.weight)
    nn.init.zeros_(head.bias)
    optimizer = torch.optim.LBFGS(head.parameters(), lr=1, max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(head(z), labels) + weight_decay * head.weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        model.head.weight.copy_(head.weight / std)
        model.head.bias.copy_(head.bias - (head.weight * (mean / std)).sum(1))
    return model
