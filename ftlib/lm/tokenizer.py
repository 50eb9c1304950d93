"""A character-level tokenizer: 96 tokens, the newline and the printable ASCII characters 32-126."""

from __future__ import annotations

import unicodedata

import numpy as np
import torch

__all__ = ["VOCAB", "VOCAB_SIZE", "clean", "decode", "encode"]

VOCAB = "\n" + "".join(chr(c) for c in range(32, 127))
VOCAB_SIZE = len(VOCAB)  # 96
_IDS = np.full(256, -1, dtype=np.int64)
_IDS[np.frombuffer(VOCAB.encode("ascii"), dtype=np.uint8)] = np.arange(VOCAB_SIZE)


def clean(text: str) -> str:
    """``text`` reduced to the vocabulary: tabs become 4 spaces, accents are dropped, other characters go."""
    text = unicodedata.normalize("NFKD", text.replace("\t", "    ").replace("\r\n", "\n"))
    return "".join(c for c in text if c in VOCAB)


def encode(text: str) -> torch.Tensor:
    """Token ids (int64) of ``text``; a character outside the 96 is a ``ValueError`` (see :func:`clean`)."""
    raw = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    ids = _IDS[raw]
    if len(raw) != len(text) or (ids < 0).any():
        bad = sorted({c for c in text if c not in VOCAB})
        raise ValueError(f"characters {bad} are not in the vocabulary (newline and ASCII 32-126); "
                         "pass the text through tokenizer.clean() first")
    return torch.from_numpy(ids)


def decode(ids: torch.Tensor | list[int]) -> str:
    """The text of token ids."""
    return "".join(VOCAB[i] for i in torch.as_tensor(ids).tolist())
