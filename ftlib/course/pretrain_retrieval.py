"""Pretraining a retrieval-capable TinyLM: the shipped TinyLM, trained on, with key-value records mixed into its
prose; the seeded rebuild of its checkpoint.

The same TinyLM as :mod:`ftlib.course.pretrain_lm` (same shape, tokenizer and optimizer), continued from the shipped
checkpoint on batches of three kinds of rows (:data:`SETTINGS`): random windows of the training prose; records of
:mod:`ftlib.lm.retrieval` (``kq:483`` lines, then a query for every line, 2 to 8 lines drawn per batch), of which
only the answers are scored (keys and values are random: the answers are what a model can learn); and random
strings written twice (:func:`ftlib.lm.retrieval.repeat_rows`), of which only the second copy is scored. The
repeated strings are what makes retrieval emerge: they reward the induction circuit (find the same characters
earlier, copy what followed), and key-value lookup is that circuit keyed on the query's letters. Every
``EVAL_EVERY`` steps the held-out retrieval accuracy and the validation prose's bits per character go into the
metadata's curve.

Measured before this recipe was set (1 thread, 200 held-out records per size; exact match at 2 / 4 / 8 lines):
records and prose alone, from scratch, with a 2-4-8 curriculum or sizes mixed per batch, stayed for 6,000 steps on
the plateau where the model copies *some* value of the record (at best 48 / 20 / 8%, chance 50 / 25 / 12.5%); with
the repeated strings, from scratch, 2,000 steps reached 55 / 22 / 11%; from the shipped TinyLM the accuracy jumped
between steps 1,500 and 1,750 (51 / 24 / 13% to 96 / 95 / 83%) and was 98 / 97 / 96% at 3,000.
"""

from __future__ import annotations

import copy
import math
import random
import time
from pathlib import Path

import torch

from ftlib import checkpoint
from ftlib.course import pretrain_lm
from ftlib.course.pretrain_lm import EVAL_CHARS
from ftlib.course.versions import warn_if_different
from ftlib.freeze import count_parameters
from ftlib.lm import corpus, retrieval
from ftlib.lm.bits import bits_per_char
from ftlib.lm.model import Config, TinyLM
from ftlib.paths import DATA_DIR
from ftlib.runtime import seed_everything
from ftlib.schedules import warmup_constant_schedule
from ftlib.train import fit

__all__ = ["CHECKPOINT", "EVAL_EVERY", "EVAL_LINES", "EVAL_RECORDS", "EVAL_SEED", "SETTINGS", "held_out_records",
           "load_pretrained", "pretrain"]

CHECKPOINT = DATA_DIR / "tinylm_retrieval.safetensors"
SETTINGS = {"steps": 3000, "batch_size": 32, "lr": 1e-3, "warmup": 100, "weight_decay": 0.01, "clip_grad_norm": 1.0,
            "rows": {"records": 16, "repeats": 8, "prose": 8}, "lines": (2, 8), "seed": 0, "threads": 2}
EVAL_LINES = (2, 4, 8)  # record sizes scored; 8 lines (62 characters) is the accuracy at the 64-character context
EVAL_RECORDS = 500  # held-out records per size
EVAL_SEED = 1000  # the held-out records are the same whatever the training seed
EVAL_EVERY = 500


def held_out_records(lines: int, count: int = EVAL_RECORDS, seed: int = EVAL_SEED) -> list[retrieval.Record]:
    """``count`` seeded records of ``lines`` held-out keys, each with one query on a random line."""
    rng = random.Random(seed * 100 + lines)
    return [retrieval.random_record(rng, lines, split="held_out") for _ in range(count)]


def _mixed_batches(prose: str, config: Config, seed: int):
    """Endless seeded batches: record rows (answers scored), repeated strings (second copies scored), prose windows."""
    rows = SETTINGS["rows"]
    windows = corpus.batches(prose, rows["prose"], config.context, seed)
    rng = random.Random(seed)
    while True:
        ids, answers = retrieval.record_rows(rng, rows["records"], config.context + 1, rng.randint(*SETTINGS["lines"]))
        repeated, copied = retrieval.repeat_rows(rng, rows["repeats"], config.context + 1)
        x, y = next(windows)
        yield (torch.cat([ids[:, :-1], repeated[:, :-1], x]),
               torch.cat([ids[:, 1:].masked_fill(~answers[:, 1:], -100),
                          repeated[:, 1:].masked_fill(~copied[:, 1:], -100), y]))


def _scores(model: TinyLM, held_out: dict[int, list[retrieval.Record]], val_text: str) -> dict[str, float]:
    scores = {f"exact_{lines}_lines": round(retrieval.retrieval_accuracy(model, records)["exact"], 4)
              for lines, records in held_out.items()}
    return scores | {"val_bpc": round(bits_per_char(model, val_text, model.config.context), 4)}


def pretrain(path: str | Path = CHECKPOINT, steps: int = SETTINGS["steps"], seed: int = SETTINGS["seed"],
             threads: int = SETTINGS["threads"], progress: bool = True) -> dict:
    """Train the shipped TinyLM on prose, retrieval records and repeats; save it as fp16 safetensors + metadata.

    The recipe is :data:`SETTINGS` (AdamW from the shipped TinyLM's weights, gradients clipped to norm 1, warm-up
    then a constant rate; :func:`_mixed_batches`' rows). The metadata records every setting, the curve of held-out
    accuracy and prose bits per character over the steps, and the final scores of the fp16 weights (what loads from
    the file). With the same seed, steps and thread count, on the same torch build, the file is bit-identical to the
    one in ``data/``.
    """
    warn_if_different("the shipped checkpoints")  # bit-identical rebuilds need the same torch build
    seed_everything(seed, threads)
    model = pretrain_lm.load_pretrained()  # the shipped TinyLM: prose first, then records and repeats
    config = model.config
    train_text, val_text = corpus.split_text()
    val_text = val_text[:EVAL_CHARS]
    held_out = {lines: held_out_records(lines) for lines in EVAL_LINES}
    evaluations = 0

    def evaluate(m: TinyLM) -> dict[str, float]:
        nonlocal evaluations
        evaluations += 1
        scores = _scores(m, held_out, val_text)
        if progress:
            print(f"step {min(evaluations * EVAL_EVERY, steps)}: {scores}", flush=True)
        return scores

    started, cpu_started = time.perf_counter(), time.process_time()
    history = fit(model, _mixed_batches(train_text, config, seed), steps, lr=SETTINGS["lr"],
                  weight_decay=SETTINGS["weight_decay"], schedule=warmup_constant_schedule(SETTINGS["warmup"]),
                  clip_grad_norm=SETTINGS["clip_grad_norm"], evaluate=evaluate, eval_every=EVAL_EVERY,
                  device=next(model.parameters()).device, progress=progress)
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    model.eval()
    stored = copy.deepcopy(model).half()
    model.load_state_dict(stored.state_dict())  # the fp16 weights, back in fp32: what loading the file gives
    final = _scores(model, held_out, val_text)
    metadata = {
        "architecture": "TinyLM",
        "config": config.as_dict(),
        "tokenizer": "characters: newline + ASCII 32-126",
        "corpus": f"{corpus.SNAPSHOT.name}: CPython's pydoc topics and stdlib docstrings (PSF License), mixed with "
                  "key-value records (ftlib.lm.retrieval, training keys only)",
        "parameters": count_parameters(model),
        "seed": seed,
        "steps": steps,
        "batch_size": SETTINGS["batch_size"],
        "start": f"the shipped TinyLM ({pretrain_lm.CHECKPOINT.name}, sha256 "
                 f"{checkpoint.file_digest(pretrain_lm.CHECKPOINT)[:16]}...)",
        "rows_per_batch": dict(SETTINGS["rows"]),
        "record_lines": f"{SETTINGS['lines'][0]} to {SETTINGS['lines'][1]}, drawn per batch",
        "repeats": f"random strings of {retrieval.REPEAT_LENGTHS[0]}-{retrieval.REPEAT_LENGTHS[1]} characters of "
                   f"{retrieval.REPEAT_ALPHABET!r}, each written twice; loss on the second copy",
        "record_loss": "answers only (keys and values are random)",
        "optimizer": f"AdamW lr={SETTINGS['lr']} weight_decay={SETTINGS['weight_decay']}, "
                     f"{SETTINGS['warmup']} warm-up steps then constant, gradients clipped to norm "
                     f"{SETTINGS['clip_grad_norm']}",
        "threads": threads,
        "dtype": "float16",
        "torch": torch.__version__.split("+")[0],
        "final_train_loss": round(sum(history.loss[-50:]) / len(history.loss[-50:]) / math.log(2), 4),
        "held_out": f"{EVAL_RECORDS} records per size of held-out keys (seed {EVAL_SEED}), one query on a random "
                    "line; exact = argmax of every value character right",
        "chance": "1/lines choosing one of the record's values blindly, 1/1000 a random value",
        **final,
        "val_text": f"the first {EVAL_CHARS} characters of the validation prose",
        "curve": {str(step): scores for step, scores in history.evals.items()},
    }
    checkpoint.save_checkpoint(stored, path, metadata)
    if progress:  # the times vary from run to run, so they stay out of the (bit-identical) metadata
        print(f"trained in {wall:.0f} s wall, {cpu:.0f} s CPU ({threads} threads)", flush=True)
    return metadata


def load_pretrained(path: str | Path = CHECKPOINT) -> TinyLM:
    """The retrieval base (``data/tinylm_retrieval.safetensors``), or a rebuild of it at ``path``, in eval mode."""
    return pretrain_lm.load_pretrained(path)
