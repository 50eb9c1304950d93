"""Choose what trains: freeze and unfreeze blocks by name, count parameters, and give blocks their own rates.

A frozen block gets no gradient *and* its BatchNorm layers keep using (and keep) their running statistics,
even while the rest of the model is in train mode. Without that second part, a "frozen" backbone still
changes: BatchNorm in train mode normalises with the batch's statistics and overwrites its running ones.
"""

from __future__ import annotations

from torch import nn

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
    train mode still normalises with batch statistics and overwrites its running ones.
    """
    for _, block in _blocks(model, names):
        for p in block.parameters():
            p.requires_grad_(False)
        if update_bn_stats:
            continue
        for m in block.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and not hasattr(m, _BN_HOOKS):
                setattr(m, _BN_HOOKS, m.register_forward_pre_hook(_keep_eval))
                m.eval()
    return model


def unfreeze(model: nn.Module, names: str | list[str] | tuple[str, ...] | None = None) -> nn.Module:
    """Make the named blocks (all blocks when ``names`` is None) trainable again, BatchNorm included."""
    for _, block in _blocks(model, block_names(model) if names is None else names):
        for p in block.parameters():
            p.requires_grad_(True)
        for m in block.modules():
            if hasattr(m, _BN_HOOKS):
                getattr(m, _BN_HOOKS).remove()
                delattr(m, _BN_HOOKS)
                m.train(model.training)
    return model


def freeze_backbone(model: nn.Module) -> nn.Module:
    """Freeze every block except the head."""
    return freeze(model, [n for n in block_names(model) if n != "head"])


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
