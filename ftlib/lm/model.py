"""TinyLM: a decoder-only transformer (nanoGPT-style) with rotary position embeddings, read top to bottom.

Tokens -> embedding -> ``layers`` x [LayerNorm -> causal self-attention -> add, LayerNorm -> MLP -> add]
-> LayerNorm -> logits through the (tied) embedding matrix. Positions enter only through RoPE, which rotates
queries and keys by an angle proportional to their position, so attention scores depend on the *distance*
between two tokens. Nothing in the model fixes the sequence length: ``context`` is only the length it was
trained on, ``position_scale`` (1 by default) multiplies the positions RoPE sees, and ``rope_scale`` (None by
default: all 1) multiplies each pair's rotation frequency on its own (how "by parts" scalings set them).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .tokenizer import VOCAB_SIZE

__all__ = ["Attention", "Block", "Config", "TinyLM", "apply_rope", "rope_angles"]


@dataclass(frozen=True)
class Config:
    """The shape of a TinyLM."""

    vocab_size: int = VOCAB_SIZE
    layers: int = 4
    dim: int = 128
    heads: int = 4
    context: int = 64  # the sequence length it is trained on
    rope_base: float = 10000.0

    def as_dict(self) -> dict:
        return asdict(self)


def rope_angles(positions: torch.Tensor, head_dim: int, base: float) -> torch.Tensor:
    """Rotation angles (positions x head_dim/2): position p turns pair i by ``p * base**(-2i/head_dim)``."""
    frequencies = base ** (-torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim)
    return positions.float()[:, None] * frequencies[None, :]


def apply_rope(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each consecutive pair of features of ``x`` (..., T, head_dim) by ``angles`` (T, head_dim/2)."""
    even, odd = x[..., 0::2], x[..., 1::2]
    cos, sin = angles.cos(), angles.sin()
    return torch.stack((even * cos - odd * sin, even * sin + odd * cos), dim=-1).flatten(-2)


class Attention(nn.Module):
    """Causal multi-head self-attention; ``q``, ``k``, ``v``, ``o`` are plain ``nn.Linear`` (LoRA targets)."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        if config.dim % config.heads:
            raise ValueError(f"dim={config.dim} must be divisible by heads={config.heads}")
        self.heads = config.heads
        self.q, self.k, self.v, self.o = (nn.Linear(config.dim, config.dim, bias=False) for _ in range(4))

    def forward(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        batch, length, dim = x.shape
        split = lambda t: t.view(batch, length, self.heads, dim // self.heads).transpose(1, 2)  # (B, heads, T, hd)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        q, k = apply_rope(q, angles), apply_rope(k, angles)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # token t attends to tokens 0..t only
        return self.o(out.transpose(1, 2).reshape(batch, length, dim))


class Block(nn.Module):
    """Pre-norm transformer block: attention and a 4x MLP, each added back to the residual stream."""

    def __init__(self, config: Config) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(config.dim), nn.LayerNorm(config.dim)
        self.attn = Attention(config)
        self.mlp = nn.Sequential(nn.Linear(config.dim, 4 * config.dim), nn.GELU(),
                                 nn.Linear(4 * config.dim, config.dim))

    def forward(self, x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), angles)
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    """A character-level decoder-only transformer; ``forward`` maps token ids (B, T) to logits (B, T, vocab)."""

    def __init__(self, config: Config | None = None) -> None:
        super().__init__()
        self.config = config or Config()
        self.position_scale = 1.0
        self.rope_scale: torch.Tensor | None = None  # one factor per rotated pair (head_dim/2), or None
        self.embed = nn.Embedding(self.config.vocab_size, self.config.dim)
        self.blocks = nn.ModuleList(Block(self.config) for _ in range(self.config.layers))
        self.norm = nn.LayerNorm(self.config.dim)
        for name, p in self.named_parameters():  # GPT-2's init: small normal weights, zero biases
            if p.dim() == 2:
                nn.init.normal_(p, std=0.02)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        positions = torch.arange(ids.shape[1], device=ids.device) * self.position_scale
        angles = rope_angles(positions, self.config.dim // self.config.heads, self.config.rope_base).to(ids.device)
        if self.rope_scale is not None:
            angles = angles * self.rope_scale.to(ids.device)
        x = self.embed(ids)
        for block in self.blocks:
            x = block(x, angles)
        return self.norm(x) @ self.embed.weight.T  # tied: the output layer reuses the embedding matrix
