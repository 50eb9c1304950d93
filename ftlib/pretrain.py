"""Pretraining: build the shipped letters checkpoint, bit for bit, from a seed."""

from __future__ import annotations

from pathlib import Path

import torch

from . import checkpoint, data
from .freeze import count_parameters
from .models import BLOCKS, CHANNELS, PRETRAINED, GlyphNet
from .train import evaluate, fit, seed_everything

RECIPE = {"steps": 3000, "batch_size": 128, "lr": 3e-3, "weight_decay": 5e-4, "seed": 0, "threads": 2}


def pretrain(path: str | Path = PRETRAINED, steps: int = RECIPE["steps"], seed: int = RECIPE["seed"],
             threads: int = RECIPE["threads"], progress: bool = True) -> dict:
    """Pretrain GlyphNet on the 52-letter source task and save it (weights + metadata) to ``path``.

    Each step sees a fresh batch of rendered letters (AdamW, one-cycle schedule). With the same seed, steps
    and thread count, on the same torch build, the file is bit-identical to the one that ships in ``data/``.
    Returns the metadata, which includes the accuracy on the fixed letters test set.
    """
    seed_everything(seed, threads)
    model = GlyphNet(len(data.LETTERS))
    history = fit(model, data.letter_batches(RECIPE["batch_size"], seed), steps, lr=RECIPE["lr"],
                  batch_size=RECIPE["batch_size"], weight_decay=RECIPE["weight_decay"], seed=seed,
                  device="cpu", progress=progress)
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
        "batch_size": RECIPE["batch_size"],
        "optimizer": f"AdamW lr={RECIPE['lr']} weight_decay={RECIPE['weight_decay']}, one-cycle",
        "threads": threads,
        "torch": torch.__version__.split("+")[0],
        "final_train_loss": round(sum(history.loss[-50:]) / len(history.loss[-50:]), 4),
        "test_accuracy": round(accuracy, 4),
        "test_set": f"{len(data.test_set('letters'))} fixed letters (100 per class)",
    }
    checkpoint.save_checkpoint(model, path, metadata)
    return metadata
