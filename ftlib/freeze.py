"""Choose what trains: freeze and unfreeze blocks by name, count parameters, and give blocks their own rates.

A frozen block gets no gradient *and* its BatchNorm layers keep using (and keep) their running statistics,
even while the rest of the model is in train mode. Without that second part, a "frozen" backbone still
changes: BatchNorm in train mode normalises with the batch's statistics and overwrites its running ones.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["block_names", "changed", "count_parameters", "freeze", "freeze_backbone", "param_groups", "snapshot",
           "unfreeze"]

_BN_HOOKS = "_ftlib_bn_hooks"


def block_names(model: nn.Module) -> tuple[str, ...]:
    """The names of ``model``'s top-level blocks (for GlyphNet: block1 ... block4 and head)."""
    return tuple(name for name, _ in model.named_children())


def _blocks(model: nn.Module, names: str | list[str] | tuple[str, ...]) -> list[tuple[str, nn.Module]]:
    names = [names] if isinstance(names, str) else list(names)
    known = dict(model.named_children())
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown block name(s) {unknown}; this model's blocks are {', '.join(known)}")
    return [(n, known[n]) for n in names]


def _keep_eval(module: nn.Module, _inputs) -> None:
    module.eval()


def freeze(model: nn.Module, names: str | list[str] | tuple[str, ...], update_bn_stats: bool = False) -> nn.Module:
    """Freeze the named blocks of ``model``: no gradients, and BatchNorm keeps its running statistics.

    ``update_bn_stats=True`` reproduces the common mistake of freezing only the weights, so that BatchNorm in
    train mode still normalises with batch statistics and overwrites its running ones (on a block frozen
    properly before, it undoes that protection).
    """
    for _, block in _blocks(model, names):
        for p in block.parameters():
            p.requires_grad_(False)
        for m in block.modules():
            if not isinstance(m, nn.modules.batchnorm._BatchNorm):
                continue
            if update_bn_stats:
                _release(m, model.training)
            elif not hasattr(m, _BN_HOOKS):
                setattr(m, _BN_HOOKS, m.register_forward_pre_hook(_keep_eval))
                m.eval()
    return model


def _release(module: nn.Module, training: bool) -> None:
    """Remove the hook that keeps a frozen BatchNorm layer in eval mode, and give it the model's mode."""
    if hasattr(module, _BN_HOOKS):
        getattr(module, _BN_HOOKS).remove()
        delattr(module, _BN_HOOKS)
    module.train(training)


def unfreeze(model: nn.Module, names: str | list[str] | tuple[str, ...] | None = None) -> nn.Module:
    """Make the named blocks (all blocks when ``names`` is None) trainable again, BatchNorm included."""
    for _, block in _blocks(model, block_names(model) if names is None else names):
        for p in block.parameters():
            p.requires_grad_(True)
        for m in block.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                _release(m, model.training)
    return model


def freeze_backbone(model: nn.Module, update_bn_stats: bool = False) -> nn.Module:
    """Freeze every block except the head (``update_bn_stats`` as in :func:`freeze`)."""
    return freeze(model, [n for n in block_names(model) if n != "head"], update_bn_stats)


def snapshot(model: nn.Module, names: str | list[str] | tuple[str, ...]) -> dict[str, torch.Tensor]:
    """Copies of every tensor in the named blocks' state: weights *and* BatchNorm buffers (running statistics)."""
    return {f"{n}.{key}": value.detach().clone() for n, block in _blocks(model, names)
            for key, value in block.state_dict().items()}


def changed(model: nn.Module, before: dict[str, torch.Tensor]) -> list[str]:
    """The names of the tensors in a :func:`snapshot` whose values in ``model`` now differ (compared exactly)."""
    now = model.state_dict()
    return [key for key, value in before.items() if not torch.equal(now[key].to(value.device), value)]


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    """The number of parameters in ``model`` (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def param_groups(model: nn.Module, lr: float | dict[str, float]) -> list[dict]:
    """Optimizer parameter groups with one learning rate per block ("discriminative" learning rates).

    ``lr`` is one rate for everything, or a dict from block names to rates, where ``"backbone"`` stands for every
    block but the head, e.g. ``{"backbone": 3e-4, "head": 3e-3}``. Frozen parameters are left out; every
    trainable block must get a rate.
    """
    names = block_names(model)
    rates = {n: lr for n in names} if not isinstance(lr, dict) else {}
    if isinstance(lr, dict):
        for key, value in lr.items():
            if key == "backbone":
                rates.update({n: value for n in names if n != "head" and n not in lr})
            elif key in names:
                rates[key] = value
            else:
                raise ValueError(f"unknown block name {key!r} in learning rates; use 'backbone' or one of {names}")
    for name, value in rates.items():
        if not isinstance(value, (int, float)) or value <= 0:
            raise ValueError(f"learning rate {value!r} for {name!r} must be a positive number")
    groups = []
    for name, block in model.named_children():
        params = [p for p in block.parameters() if p.requires_grad]
        if not params:
            continue
        if name not in rates:
            raise ValueError(f"trainable block {name!r} has no learning rate; given {sorted(lr)}")
        groups.append({"params": params, "lr": float(rates[name]), "name": name})
    if not groups:
        raise ValueError("the model has no trainable parameters: unfreeze a block before training")
    return groups
