"""GlyphNet: the course's small CNN with named blocks, its head swap, and the shipped pretrained weights."""

from __future__ import annotations

import copy
import functools
from pathlib import Path

import torch
from torch import nn

from . import checkpoint
from .paths import WEIGHTS_DIR

__all__ = ["BLOCKS", "CHANNELS", "FEATURE_DIM", "GlyphNet", "PRETRAINED", "conv_block", "load_pretrained",
           "loaded_checkpoint", "pooled_features", "pretrained_start", "replace_head"]

BLOCKS = ("block1", "block2", "block3", "block4")
CHANNELS = (16, 32, 64, 128)
FEATURE_DIM = CHANNELS[-1]
PRETRAINED = WEIGHTS_DIR / "glyphnet_letters.safetensors"  # package data: a wheel has it too


def conv_block(in_channels: int, out_channels: int, pool: bool) -> nn.Sequential:
    """3x3 convolution, BatchNorm, ReLU, and a 2x2 max-pool when ``pool`` is true."""
    layers = [nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels),
              nn.ReLU(inplace=True)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers)


class GlyphNet(nn.Module):
    """Four conv blocks (16/32/64/128 channels, 28x28 -> 3x3), global average pooling, and a linear head.

    The backbone (``block1`` ... ``block4``) has about 98k parameters. ``features`` gives the 128 pooled
    features that the head reads; ``head`` is the only task-specific layer. Weights and activations use the
    channels-last memory layout, which made training on the CPU twice as fast here (same numbers, other order).
    """

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 2:
            raise ValueError(f"num_classes={num_classes!r}: a classifier needs an integer of at least 2")
        channels = (1, *CHANNELS)
        for i, name in enumerate(BLOCKS):
            self.add_module(name, conv_block(channels[i], channels[i + 1], pool=i < len(BLOCKS) - 1))
        self.head = nn.Linear(FEATURE_DIM, num_classes)
        self.to(memory_format=torch.channels_last)

    def features(self, x: torch.Tensor, upto: str = BLOCKS[-1]) -> torch.Tensor:
        """Pooled features after block ``upto`` (the last block by default): shape (batch, channels)."""
        return pooled_features(self, x.contiguous(memory_format=torch.channels_last), upto)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    @property
    def num_classes(self) -> int:
        return self.head.out_features


def pooled_features(model: nn.Module, x: torch.Tensor, upto: str, blocks: tuple[str, ...] = BLOCKS) -> torch.Tensor:
    """Run ``x`` through ``model``'s ``blocks`` in order, stop after ``upto``, and average over space: (batch, C)."""
    if upto not in blocks:
        raise ValueError(f"unknown block {upto!r}; choose one of {', '.join(blocks)}")
    for name in blocks:
        x = getattr(model, name)(x)
        if name == upto:
            break
    return x.mean(dim=(2, 3))


def replace_head(model: GlyphNet, num_classes: int) -> GlyphNet:
    """Give ``model`` a new, freshly initialised head for ``num_classes`` classes (in place), and return it."""
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r}: a classifier needs an integer of at least 2")
    device = model.head.weight.device
    model.head = nn.Linear(FEATURE_DIM, num_classes).to(device)
    return model


@functools.lru_cache(maxsize=4)
def loaded_checkpoint(path: str) -> GlyphNet:
    """The GlyphNet checkpoint at ``path``, read once per process (``loaded_checkpoint.cache_clear()`` forgets it).

    Callers copy it (see :func:`pretrained_start`); never train the returned model itself.
    """
    return load_pretrained(path=path)


def pretrained_start(num_classes: int, seed: int | None, path: str | Path = PRETRAINED,
                     reinit: tuple[str, ...] = ()) -> GlyphNet:
    """A copy of the checkpoint at ``path`` with a fresh head (and freshly initialised ``reinit`` blocks).

    The checkpoint is read once per process and *before* seeding, so that loading draws no random numbers between
    the seed and the new head: the same ``seed`` gives the same model on the first call and every later one
    (``None``: torch's current random state).
    """
    from .runtime import seed_rngs

    unknown = [b for b in reinit if b not in BLOCKS]
    if unknown:
        raise ValueError(f"unknown block(s) {unknown} to re-initialise; choose from {', '.join(BLOCKS)}")
    checkpoint = loaded_checkpoint(str(path))
    if seed is not None:
        seed_rngs(seed)  # seeds only: a library call leaves the thread count alone
    model = replace_head(copy.deepcopy(checkpoint), num_classes)
    fresh = GlyphNet(num_classes) if reinit else None
    for name in reinit:
        getattr(model, name).load_state_dict(getattr(fresh, name).state_dict())
    return model


def load_pretrained(num_classes: int | None = None, path: str | Path = PRETRAINED) -> GlyphNet:
    """GlyphNet with the shipped letters weights; with ``num_classes``, its head is replaced by a fresh one."""
    meta = checkpoint.read_metadata(path)
    model = GlyphNet(int(meta["num_classes"]))
    checkpoint.load_weights(model, path)
    if num_classes is not None:
        replace_head(model, num_classes)
    return model

