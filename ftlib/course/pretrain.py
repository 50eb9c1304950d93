"""Pretraining: build the shipped letters checkpoints, bit for bit, from a seed.

Two variants ship: ``"full"`` (``ftlib/weights/glyphnet_letters.*``, package data: the library's and the course's
pretrained model) and ``"narrow"``
(``data/glyphnet_narrow.*``, lesson 07's deliberately flawed model: the same recipe on letters that are always
upright, thin-stroked and at full contrast, see :data:`ftlib.data.NARROW`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ftlib import checkpoint, data
from ftlib.course.versions import warn_if_different
from ftlib.evaluation import evaluate
from ftlib.freeze import count_parameters
from ftlib.models import BLOCKS, CHANNELS, PRETRAINED, GlyphNet
from ftlib.paths import DATA_DIR
from ftlib.runtime import seed_everything
from ftlib.train import fit

__all__ = ["FINGERPRINT_STEPS", "SETTINGS", "VARIANTS", "checkpoint_path", "fingerprint", "pretrain",
           "weights_sha256"]

SETTINGS = {"steps": 3000, "batch_size": 128, "lr": 3e-3, "weight_decay": 5e-4, "seed": 0, "threads": 2}
VARIANTS = {"full": data.FULL, "narrow": data.NARROW}  # how the source letters vary in each variant
FINGERPRINT_STEPS = 100  # the metadata records the weights' hash after this many steps of the recipe


class _Reached(Exception):
    """Raised by :func:`_fingerprinted` to stop a run once its fingerprint is taken."""


def weights_sha256(model: nn.Module) -> str:
    """The SHA-256 of every tensor of ``model``'s state dict (names, shapes, dtypes and bytes, in its order)."""
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()


def _fingerprinted(batches: Iterator, model: nn.Module, taken: dict, stop: bool) -> Iterator:
    """``batches``, but when the batch after :data:`FINGERPRINT_STEPS` is asked for (that many steps are done),
    the model's :func:`weights_sha256` goes to ``taken["sha256"]`` (and, with ``stop``, the run stops)."""
    for step, batch in enumerate(batches):
        if step == FINGERPRINT_STEPS:
            taken["sha256"] = weights_sha256(model)
            if stop:
                raise _Reached
        yield batch


def checkpoint_path(variant: str = "full") -> Path:
    """Where the checkpoint of ``variant`` ships: ``ftlib/weights/glyphnet_letters`` (full, package data) or
    ``data/glyphnet_<variant>``."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return PRETRAINED if variant == "full" else DATA_DIR / f"glyphnet_{variant}.safetensors"


def pretrain(path: str | Path | None = None, steps: int = SETTINGS["steps"], seed: int = SETTINGS["seed"],
             threads: int = SETTINGS["threads"], progress: bool = True, variant: str = "full") -> dict:
    """Pretrain GlyphNet on the 52-letter source task and save it (weights + metadata) to ``path``.

    Each step sees a fresh batch of rendered letters (AdamW, one-cycle schedule). ``variant`` picks how the
    letters vary (a key of :data:`VARIANTS`); ``path`` defaults to :func:`checkpoint_path` of the variant. With
    the same seed, steps and thread count, on the same torch build, the file is bit-identical to the one that
    ships in ``data/``. Returns the metadata, which includes the accuracy on the fixed letters test set (always
    the full variation); a variant other than ``"full"`` also records its name and what its source lacks.
    """
    default = checkpoint_path(variant)  # also rejects an unknown variant
    if path is None and (steps, seed, threads) != (SETTINGS["steps"], SETTINGS["seed"], SETTINGS["threads"]):
        raise ValueError(f"steps={steps}, seed={seed}, threads={threads} differ from the recipe's: give a path, "
                         f"so that the shipped {default} (which the lessons use) is not replaced")
    path = default if path is None else path
    warn_if_different("the shipped checkpoints")  # bit-identical rebuilds need the same torch build
    taken = {}
    model, history = _train(variant, steps, seed, threads, taken, stop=False, progress=progress)
    accuracy = evaluate(model, data.test_set("letters")).accuracy
    metadata = {
        "architecture": "GlyphNet",
        "blocks": list(BLOCKS),
        "channels": list(CHANNELS),
        "num_classes": len(data.LETTERS),
        "classes": "".join(data.LETTERS),
        "source_task": "letters: 52 Latin letters rendered from matplotlib's fonts with seeded degradations",
        "parameters": count_parameters(model),
        "seed": seed,
        "steps": steps,
        "batch_size": SETTINGS["batch_size"],
        "optimizer": f"AdamW lr={SETTINGS['lr']} weight_decay={SETTINGS['weight_decay']}, one-cycle",
        "threads": threads,
        "torch": torch.__version__.split("+")[0],
        "final_train_loss": round(sum(history.loss[-50:]) / len(history.loss[-50:]), 4),
        "test_accuracy": round(accuracy, 4),
        "test_set": f"{len(data.test_set('letters'))} fixed letters (100 per class)",
        "fingerprint": {"steps": FINGERPRINT_STEPS, "sha256": taken.get("sha256"),
                        "what": "weights_sha256 after that many steps of this run (a quick check of the recipe)"},
    }
    if variant != "full":  # the full variant's metadata stays as it was, so its rebuild stays bit-identical
        metadata["variant"] = variant
        metadata["source_lacks"] = data.NARROW_LACKS
        metadata["source_task"] = f"letters as in the full variant, but without {data.NARROW_LACKS}"
    checkpoint.save_checkpoint(model, path, metadata)
    return metadata


def _train(variant: str, steps: int, seed: int, threads: int, taken: dict, stop: bool, progress: bool = False):
    """The recipe's training run: the seeded model and its History, the fingerprint taken on the way (see
    :func:`_fingerprinted`)."""
    seed_everything(seed, threads)
    model = GlyphNet(len(data.LETTERS))
    batches = _fingerprinted(data.letter_batches(SETTINGS["batch_size"], seed, VARIANTS[variant]), model, taken, stop)
    history = fit(model, batches, steps, lr=SETTINGS["lr"], batch_size=SETTINGS["batch_size"],
                  weight_decay=SETTINGS["weight_decay"], seed=seed, device="cpu", progress=progress)
    return model, history


def fingerprint(variant: str = "full") -> str:
    """The recipe of ``variant`` run for :data:`FINGERPRINT_STEPS` steps only (of its full schedule, seed and thread
    count), and the :func:`weights_sha256` then: equal to the shipped metadata's ``fingerprint`` when the code,
    data and torch build still make what shipped (seconds, where ``pretrain --check`` takes minutes). It pins
    torch's thread count for the process, as :func:`pretrain` does."""
    checkpoint_path(variant)  # rejects an unknown variant
    taken = {}
    try:
        _train(variant, SETTINGS["steps"], SETTINGS["seed"], SETTINGS["threads"], taken, stop=True)
    except _Reached:
        return taken["sha256"]
    raise RuntimeError(f"the run ended before step {FINGERPRINT_STEPS}")
