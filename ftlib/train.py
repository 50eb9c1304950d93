"""Training: seeding, device choice, one readable ``fit`` loop, ``evaluate``, and a linear probe."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .data import ImageSet
from .freeze import freeze_backbone, param_groups

DEFAULT_THREADS = 2
Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]
Batches = Iterator[tuple[torch.Tensor, torch.Tensor]]


def seed_everything(seed: int, threads: int | None = None) -> None:
    """Seed Python, NumPy and torch, and pin torch's CPU thread count (``$FTLIB_THREADS``, else 2).

    Results are bit-identical only for the same seed *and* the same thread count.
    """
    threads = threads or int(os.environ.get("FTLIB_THREADS", DEFAULT_THREADS))
    torch.set_num_threads(threads)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def get_device(name: str | None = None) -> torch.device:
    """``name`` (or ``$FTLIB_DEVICE``) if given, else CUDA, then Apple's MPS, then the CPU."""
    name = name or os.environ.get("FTLIB_DEVICE")
    if name:
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@dataclass
class History:
    """What ``fit`` measured: the training loss and rate at every step, and evaluations every few steps."""

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_loss: list[float] = field(default_factory=list)
    eval_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_accuracy(self) -> float:
        """The last evaluation's accuracy (NaN when ``fit`` had no evaluation data)."""
        return self.eval_accuracy[-1] if self.eval_accuracy else float("nan")


@dataclass(frozen=True)
class Metrics:
    loss: float
    accuracy: float


def _check_positive(name: str, value: float, integer: bool = False) -> None:
    kind = (int,) if integer else (int, float)
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ValueError(f"{name}={value!r} is not allowed: it must be a positive {'integer' if integer else 'number'}")


def _make_optimizer(name: str | Callable, groups: list[dict], weight_decay: float) -> torch.optim.Optimizer:
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


def _make_schedule(name: str | Callable, optimizer: torch.optim.Optimizer, steps: int):
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


def _shuffled_batches(data: ImageSet, batch_size: int, generator: torch.Generator) -> Batches:
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
    eval_data: ImageSet | None = None,
    eval_every: int | None = None,
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
    transforms each batch. With ``eval_data``, the model is evaluated every ``eval_every`` steps and after the
    last one.
    """
    _check_positive("steps", steps, integer=True)
    _check_positive("batch_size", batch_size, integer=True)
    for rate in lr.values() if isinstance(lr, dict) else [lr]:
        _check_positive("lr", rate)
    if eval_every is not None:
        _check_positive("eval_every", eval_every, integer=True)
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    optimizer = _make_optimizer(optimizer, param_groups(model, lr), weight_decay)
    scheduler = _make_schedule(schedule, optimizer, steps)
    generator = torch.Generator().manual_seed(seed)
    batches = _shuffled_batches(train, batch_size, generator) if isinstance(train, ImageSet) else train
    history, start = History(), time.perf_counter()

    for step in tqdm(range(1, steps + 1), disable=not progress, desc="fit", leave=False):
        x, y = next(batches)
        x, y = x.to(device), y.to(device)
        if augment is not None:
            x = augment(x, generator)

        model.train()
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        history.step.append(step)
        history.loss.append(loss.item())
        history.lr.append(optimizer.param_groups[-1]["lr"])
        scheduler.step()

        if eval_data is not None and (step == steps or (eval_every and step % eval_every == 0)):
            metrics = evaluate(model, eval_data, device=device)
            history.eval_step.append(step)
            history.eval_loss.append(metrics.loss)
            history.eval_accuracy.append(metrics.accuracy)
    history.seconds = time.perf_counter() - start
    return history


@torch.no_grad()
def evaluate(model: nn.Module, data: ImageSet, batch_size: int = 250,
             device: str | torch.device | None = None) -> Metrics:
    """Mean cross-entropy loss and accuracy of ``model`` on ``data``, in eval mode (the mode is restored)."""
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.to(device).eval()
    total_loss, correct = 0.0, 0
    for start in range(0, len(data), batch_size):
        x = data.images[start:start + batch_size].to(device)
        y = data.labels[start:start + batch_size].to(device)
        logits = model(x)
        total_loss += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    return Metrics(loss=total_loss / len(data), accuracy=correct / len(data))


@torch.no_grad()
def extract_features(model: nn.Module, images: torch.Tensor, upto: str = "block4",
                     batch_size: int = 1000) -> torch.Tensor:
    """Pooled features of a GlyphNet after block ``upto``, computed in eval mode, on the model's device."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    parts = [model.features(images[i:i + batch_size].to(device), upto) for i in range(0, len(images), batch_size)]
    model.train(was_training)
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
