"""LoRA (Hu et al. 2021): a frozen weight W plus a trainable low-rank update, ``W + (alpha / r) · B·A``.

``A`` (r x inputs) starts random and ``B`` (outputs x r) starts at zero, so a fresh adapter changes nothing.
Only ``A`` and ``B`` train: ``r · (inputs + outputs)`` numbers instead of ``inputs · outputs``. For a convolution,
``A`` is a convolution with the base's kernel, stride and padding into ``r`` channels, and ``B`` a 1x1 convolution
back to the outputs, so ``B·A`` has the shape of the base kernel. After training, :func:`merge` folds ``B·A`` into
``W`` (no extra cost at inference) and :func:`unmerge` takes it out again.

On GlyphNet, :func:`add_lora` freezes the whole backbone, BatchNorm included: its running statistics and its
scale and shift stay as pretrained (in eval mode BatchNorm is a fixed per-channel scale and shift, and training
its statistics would change the backbone that several adapters share). The new head trains in full. An adapter
file holds every trainable tensor (the ``A``/``B`` pairs and the head), never the backbone.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from .freeze import freeze_backbone
from .models import BLOCKS, replace_head
from .runtime import model_device

__all__ = ["LoRAConv2d", "LoRALayer", "LoRALinear", "adapter_state", "add_lora", "add_lora_layers",
           "add_lora_to_linears", "load_adapter", "lora_layers", "merge", "multiply_adds", "save_adapter", "unmerge"]

_META_KEY = "ftlib_lora"


class LoRALayer(nn.Module):
    """A frozen ``base`` layer plus the low-rank update ``scale · B·A`` with ``scale = alpha / rank``."""

    def __init__(self, base: nn.Linear | nn.Conv2d, rank: int, alpha: float, a_shape: tuple[int, ...]) -> None:
        super().__init__()
        if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank={rank!r} is not allowed: it must be a positive integer")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha <= 0:
            raise ValueError(f"alpha={alpha!r} is not allowed: it must be a positive number")
        self.base, self.rank, self.alpha, self.scale, self.merged = base, rank, float(alpha), alpha / rank, False
        base.requires_grad_(False)
        like = {"device": base.weight.device, "dtype": base.weight.dtype}
        self.lora_A = nn.Parameter(torch.empty(rank, *a_shape, **like))
        self.lora_B = nn.Parameter(torch.zeros(base.weight.shape[0], rank, **like))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))  # the init nn.Linear and nn.Conv2d use (as peft)

    def delta_weight(self) -> torch.Tensor:
        """``scale · B·A`` in the shape of the base weight."""
        return (self.scale * self.lora_B @ self.lora_A.flatten(1)).view(self.base.weight.shape)

    @torch.no_grad()
    def merge(self) -> None:
        """Add ``scale · B·A`` into the base weight; the layer then costs what the base layer costs."""
        if not self.merged:
            self.base.weight += self.delta_weight()
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Subtract ``scale · B·A`` from the base weight again (exact up to float rounding)."""
        if self.merged:
            self.base.weight -= self.delta_weight()
            self.merged = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base(x)
        return out if self.merged else out + self.scale * self.low_rank(x)

    def extra_repr(self) -> str:
        return f"rank={self.rank}, alpha={self.alpha:g}, merged={self.merged}"


class LoRALinear(LoRALayer):
    """LoRA for ``nn.Linear``: ``A`` is (rank, in_features), ``B`` is (out_features, rank)."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float) -> None:
        super().__init__(base, rank, alpha, (base.in_features,))

    def low_rank(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.lora_A), self.lora_B)


class LoRAConv2d(LoRALayer):
    """LoRA for ``nn.Conv2d``: ``A`` is a conv into ``rank`` channels with the base's kernel, ``B`` a 1x1 conv."""

    def __init__(self, base: nn.Conv2d, rank: int, alpha: float) -> None:
        if base.groups != 1 or base.padding_mode != "zeros":
            raise ValueError(f"LoRA here supports convolutions with groups=1 and zero padding, not {base}")
        super().__init__(base, rank, alpha, (base.in_channels, *base.kernel_size))

    def low_rank(self, x: torch.Tensor) -> torch.Tensor:
        b = self.base
        hidden = F.conv2d(x, self.lora_A, None, b.stride, b.padding, b.dilation)
        return F.conv2d(hidden, self.lora_B[:, :, None, None])


def add_lora_layers(module: nn.Module, rank: int, alpha: float) -> nn.Module:
    """Replace every ``nn.Linear`` and ``nn.Conv2d`` inside ``module`` (in place) by its LoRA wrapper."""
    for name, child in module.named_children():
        if isinstance(child, nn.Linear):
            setattr(module, name, LoRALinear(child, rank, alpha))
        elif isinstance(child, nn.Conv2d):
            setattr(module, name, LoRAConv2d(child, rank, alpha))
        elif not isinstance(child, LoRALayer):
            add_lora_layers(child, rank, alpha)
    return module


def add_lora(model: nn.Module, blocks: str | list[str] | tuple[str, ...] = BLOCKS, rank: int = 4,
             alpha: float = 8.0) -> nn.Module:
    """Freeze GlyphNet's backbone (BatchNorm included) and give the layers of ``blocks`` LoRA adapters.

    The head stays trainable: it is new for the task, so it trains in full. Returns ``model``.
    """
    blocks = [blocks] if isinstance(blocks, str) else list(blocks)
    unknown = [b for b in blocks if b not in BLOCKS]
    if unknown or not blocks:
        raise ValueError(f"cannot add LoRA to block(s) {unknown or blocks}: choose among {', '.join(BLOCKS)} "
                         "(the head is new for the task and trains in full)")
    freeze_backbone(model)
    for name in blocks:
        add_lora_layers(getattr(model, name), rank, alpha)
    return model


def add_lora_to_linears(model: nn.Module, names: str | list[str] | tuple[str, ...], rank: int = 8,
                        alpha: float = 16.0) -> nn.Module:
    """Freeze all of ``model`` and give every ``nn.Linear`` whose attribute name is in ``names`` a LoRA adapter.

    For any model, e.g. a transformer's attention projections: ``add_lora_to_linears(lm, ["q", "k", "v", "o"])``.
    Only the adapters train. Returns ``model``.
    """
    names = [names] if isinstance(names, str) else list(names)
    targets = [(parent, name) for parent in model.modules() for name, child in parent.named_children()
               if name in names and isinstance(child, nn.Linear)]
    missing = sorted(set(names) - {name for _, name in targets})
    if missing or not names:
        linears = sorted({n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, nn.Linear)})
        raise ValueError(f"no nn.Linear named {missing or names} in this model; its linear layers are named "
                         f"{', '.join(linears)}")
    model.requires_grad_(False)
    for parent, name in targets:
        setattr(parent, name, LoRALinear(getattr(parent, name), rank, alpha))
    return model


def lora_layers(model: nn.Module) -> list[LoRALayer]:
    """Every LoRA layer inside ``model``."""
    return [m for m in model.modules() if isinstance(m, LoRALayer)]


def merge(model: nn.Module) -> nn.Module:
    """Fold every adapter of ``model`` into its base weight."""
    for layer in lora_layers(model):
        layer.merge()
    return model


def unmerge(model: nn.Module) -> nn.Module:
    """Take every adapter of ``model`` out of its base weight again."""
    for layer in lora_layers(model):
        layer.unmerge()
    return model


def adapter_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The adapter: every trainable tensor of ``model`` (the LoRA matrices and the head), by name."""
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def _layer_settings(model: nn.Module) -> dict[str, list]:
    layers = lora_layers(model)
    return {"rank": sorted({m.rank for m in layers}), "alpha": sorted({m.alpha for m in layers})}


def save_adapter(model: nn.Module, path: str | Path) -> Path:
    """Write only the adapter of ``model`` (see :func:`adapter_state`) to ``path`` as safetensors."""
    if not lora_layers(model):
        raise ValueError("this model has no LoRA layers: call add_lora() first")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {name: p.detach().cpu().contiguous() for name, p in adapter_state(model).items()}
    save_file(state, path, metadata={_META_KEY: json.dumps(_layer_settings(model))})
    return path


def load_adapter(model: nn.Module, path: str | Path) -> nn.Module:
    """Load an adapter saved by :func:`save_adapter` into ``model``, a GlyphNet with the same LoRA layers.

    The backbone is untouched, so one backbone can switch between tasks. A head of another size is replaced
    by one of the file's size first. The model must not be merged.
    """
    if any(m.merged for m in lora_layers(model)):
        raise ValueError("the model's adapters are merged into its weights: call unmerge() before loading another")
    with safe_open(str(path), "pt") as handle:
        settings = json.loads((handle.metadata() or {}).get(_META_KEY, "null"))
    if settings != _layer_settings(model):
        raise ValueError(f"adapter {path} was made with LoRA {settings}, but this model has {_layer_settings(model)}")
    state = load_file(path)
    if "head.weight" in state and state["head.weight"].shape != model.head.weight.shape:
        replace_head(model, state["head.weight"].shape[0])
    expected = adapter_state(model)
    wrong = sorted(k for k in set(state) & set(expected) if state[k].shape != expected[k].shape)
    if set(state) != set(expected) or wrong:
        raise ValueError(f"adapter {path} does not fit this model: missing {sorted(set(expected) - set(state))}, "
                         f"unexpected {sorted(set(state) - set(expected))}, wrong shapes {wrong}")
    with torch.no_grad():
        for name, tensor in state.items():
            expected[name].copy_(tensor)
    return model


@torch.no_grad()
def multiply_adds(model: nn.Module, images: torch.Tensor) -> tuple[int, int]:
    """Multiply-adds per image in ``model``'s adapted layers: ``(base, extra)``, the frozen weights' and the adapters'.

    One forward pass over ``images`` records, with hooks, how many output positions each adapted layer computes
    (1 for a linear layer on a vector). ``extra`` is what an unmerged model pays on top of a merged one.
    """
    positions = {}
    hooks = [m.register_forward_hook(lambda m, i, out: positions.__setitem__(m, out[0, 0].numel()))
             for m in lora_layers(model)]
    try:
        model(images.to(model_device(model)))
    finally:
        for hook in hooks:
            hook.remove()
    base = sum(n * m.base.weight.numel() for m, n in positions.items())
    extra = sum(n * (m.lora_A.numel() + m.lora_B.numel()) for m, n in positions.items())
    return base, extra
