"""Pretraining TinyLM on the prose snapshot: the seeded rebuild of the shipped checkpoint."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import torch

from ftlib import checkpoint
from ftlib.course.versions import warn_if_different
from ftlib.freeze import count_parameters
from ftlib.lm import corpus
from ftlib.lm.bits import bits_per_char
from ftlib.lm.model import Config, TinyLM
from ftlib.paths import DATA_DIR
from ftlib.runtime import seed_everything
from ftlib.schedules import warmup_cosine_schedule
from ftlib.train import fit

__all__ = ["CHECKPOINT", "EVAL_CHARS", "SETTINGS", "load_pretrained", "pretrain"]

CHECKPOINT = DATA_DIR / "tinylm.safetensors"
SETTINGS = {"steps": 1800, "batch_size": 32, "lr": 3e-3, "warmup": 100, "weight_decay": 0.01, "clip_grad_norm": 1.0,
            "seed": 0, "threads": 2}
EVAL_CHARS = 32768  # validation prose scored in the metadata


def pretrain(path: str | Path = CHECKPOINT, steps: int = SETTINGS["steps"], seed: int = SETTINGS["seed"],
             threads: int = SETTINGS["threads"], progress: bool = True) -> dict:
    """Pretrain a TinyLM on the snapshot's training prose and save it as fp16 safetensors + metadata.

    Random windows of ``context`` characters, trained by :func:`ftlib.train.fit` (AdamW, gradients clipped to norm
    1, warm-up then cosine). The weights are rounded to fp16 before they are scored, so the metadata describes
    exactly the model that loads from the file. With the same seed, steps and thread count, on the same torch
    build, the file is bit-identical to the one in ``data/``.
    """
    warn_if_different("the shipped checkpoints")  # bit-identical rebuilds need the same torch build
    seed_everything(seed, threads)
    config = Config()
    model = TinyLM(config)
    train_text, val_text = corpus.split_text()
    batches = corpus.batches(train_text, SETTINGS["batch_size"], config.context, seed)
    history = fit(model, batches, steps, lr=SETTINGS["lr"], weight_decay=SETTINGS["weight_decay"],
                  schedule=warmup_cosine_schedule(SETTINGS["warmup"]), clip_grad_norm=SETTINGS["clip_grad_norm"],
                  device=next(model.parameters()).device, progress=progress)
    model.eval()
    final_bits = [nats / math.log(2) for nats in history.loss[-50:]]
    stored = copy.deepcopy(model).half()
    model.load_state_dict(stored.state_dict())  # the fp16 weights, back in fp32: what loading the file gives
    metadata = {
        "architecture": "TinyLM",
        "config": config.as_dict(),
        "tokenizer": "characters: newline + ASCII 32-126",
        "corpus": f"{corpus.SNAPSHOT.name}: CPython's pydoc topics and stdlib docstrings (PSF License)",
        "parameters": count_parameters(model),
        "seed": seed,
        "steps": steps,
        "batch_size": SETTINGS["batch_size"],
        "optimizer": f"AdamW lr={SETTINGS['lr']} weight_decay={SETTINGS['weight_decay']}, "
                     f"{SETTINGS['warmup']} warm-up steps then cosine",
        "threads": threads,
        "dtype": "float16",
        "torch": torch.__version__.split("+")[0],
        "final_train_bpc": round(sum(final_bits) / len(final_bits), 4),
        "val_bpc": round(bits_per_char(model, val_text[:EVAL_CHARS], config.context), 4),
        "val_text": f"the first {EVAL_CHARS} characters of the validation prose",
    }
    checkpoint.save_checkpoint(stored, path, metadata)
    return metadata


def load_pretrained(path: str | Path = CHECKPOINT) -> TinyLM:
    """The shipped TinyLM (fp16 on disk, fp32 in memory), in eval mode."""
    config = Config(**checkpoint.read_metadata(path)["config"])
    return checkpoint.load_weights(TinyLM(config), path).eval()
