"""Key-value retrieval in the LongChat-Lines style, in miniature: records of ``key:value`` lines, then queries.

A record is ``n`` lines ``kq:483`` (a two-letter key, a three-digit value), then one or more queries ``kq?483``
that repeat a key of the record and ask for its value; every line ends in a newline::

    kq:483
    bz:071
    kq?483

Eight lines and one query fill 62 characters, inside TinyLM's 64-character context; more lines make a longer
record, and ``query_index`` puts the queried line at a chosen distance from the query (:attr:`Record.distance`).

The 676 two-letter keys are split once: every ``HELD_OUT_EVERY``-th key (in alphabetical order) is held out, so a
held-out record never shares a key, hence never a key-value pair, with a training record. The score
(:func:`retrieval_accuracy`) reads the model's argmax prediction of each value character after the query;
choosing a value of the record blindly is right ``1 / n`` of the time, a random three-digit value 1 in 1,000.
"""

from __future__ import annotations

import itertools
import random
import string
from dataclasses import dataclass

import torch
from torch import nn

from ..runtime import evaluating
from .tokenizer import encode

__all__ = ["HELD_OUT_EVERY", "KEYS", "QUERY_MARK", "REPEAT_ALPHABET", "Record", "SPLITS", "VALUE_DIGITS", "keys",
           "random_record", "record_rows", "repeat_rows", "retrieval_accuracy"]

VALUE_DIGITS = 3
KEYS = tuple("".join(pair) for pair in itertools.product(string.ascii_lowercase, repeat=2))  # aa..zz: 676
HELD_OUT_EVERY = 5  # keys 0, 5, 10, ... (alphabetical) are held out
SPLITS = ("train", "held_out", "val", "test")
LINE_MARK, QUERY_MARK = ":", "?"
REPEAT_ALPHABET = string.ascii_lowercase + string.digits  # the characters of repeat_rows' random strings
REPEAT_LENGTHS = (8, 31)  # shortest and longest random string of repeat_rows


def keys(split: str) -> tuple[str, ...]:
    """The keys of ``split``: ``"train"`` (540 keys) or ``"held_out"`` (every ``HELD_OUT_EVERY``-th, 136 keys),
    which splits in two halves for a fine-tune of the base: ``"val"`` (68 keys, to choose a setting on) and
    ``"test"`` (the other 68, to score on)."""
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not allowed: choose one of {', '.join(SPLITS)}")
    index = {"train": lambda i: i % HELD_OUT_EVERY != 0, "held_out": lambda i: i % HELD_OUT_EVERY == 0,
             "val": lambda i: i % (2 * HELD_OUT_EVERY) == 0,
             "test": lambda i: i % (2 * HELD_OUT_EVERY) == HELD_OUT_EVERY}[split]
    return tuple(k for i, k in enumerate(KEYS) if index(i))


@dataclass(frozen=True)
class Record:
    """``pairs`` (key, value) in the order of their lines, and the indices of the lines that are queried."""

    pairs: tuple[tuple[str, str], ...]
    queries: tuple[int, ...]

    @property
    def lines(self) -> str:
        """The ``key:value`` lines."""
        return "".join(f"{key}{LINE_MARK}{value}\n" for key, value in self.pairs)

    @property
    def text(self) -> str:
        """The whole record: its lines, then each query with its answer."""
        return self.lines + "".join(f"{self.pairs[i][0]}{QUERY_MARK}{self.pairs[i][1]}\n" for i in self.queries)

    @property
    def prompt(self) -> str:
        """The lines and the first query up to its question mark: what the model reads before the answer."""
        return self.lines + self.pairs[self.queries[0]][0] + QUERY_MARK

    @property
    def answer(self) -> str:
        """The value the first query asks for."""
        return self.pairs[self.queries[0]][1]

    @property
    def distance(self) -> int:
        """Characters from the start of the first queried line to the first answer character."""
        line_length = len(self.lines) // len(self.pairs)
        return len(self.prompt) - self.queries[0] * line_length


def random_record(rng: random.Random, lines: int, queries: int = 1, split: str = "train",
                  query_index: int | None = None) -> Record:
    """A record of ``lines`` distinct keys of ``split`` with random values, and ``queries`` distinct queried lines.

    ``query_index`` fixes the line the first query asks for (0 is the first line, the farthest from the query);
    otherwise each queried line is drawn at random. Everything is drawn from ``rng``, so a seed fixes the record.
    """
    pool = keys(split)
    if not 1 <= lines <= len(pool):
        raise ValueError(f"lines={lines} is not allowed: choose 1 to {len(pool)} for split {split!r}")
    if not 1 <= queries <= lines:
        raise ValueError(f"queries={queries} is not allowed: choose 1 to lines={lines}")
    if query_index is not None and not 0 <= query_index < lines:
        raise ValueError(f"query_index={query_index} is not allowed: choose 0 to {lines - 1}")
    return _draw(rng, pool, lines, queries, query_index)


def _draw(rng: random.Random, pool: list[str] | tuple[str, ...], lines: int, queries: int,
          query_index: int | None = None) -> Record:
    chosen = rng.sample(pool, lines)
    pairs = tuple((key, f"{rng.randrange(10 ** VALUE_DIGITS):0{VALUE_DIGITS}d}") for key in chosen)
    order = rng.sample(range(lines), lines)
    if query_index is not None:
        order = [query_index] + [i for i in order if i != query_index]
    return Record(pairs, tuple(order[:queries]))


def record_rows(rng: random.Random, rows: int, length: int, lines: int,
                split: str = "train") -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` rows of ``length`` characters, each filled with records of ``lines`` lines, every line queried.

    Records follow one another (a blank line between them) and the last is cut at ``length``; keys are distinct
    within a row, so each query has one answer in it. Returns the token ids (rows, length) and a mask of the same
    shape that marks the answers' characters (the only ones a model can predict from what came before).
    """
    pool = keys(split)
    ids, answers = [], []
    for _ in range(rows):
        text, mask, used = "", [], set()
        while len(text) < length:
            record = _draw(rng, [k for k in pool if k not in used], lines, lines)
            used.update(key for key, _ in record.pairs)
            text += record.text + "\n"
            mask += [False] * len(record.lines)
            for index in record.queries:  # key and question mark, the value (scored), the newline
                mask += [False] * (len(record.pairs[index][0]) + 1) + [True] * VALUE_DIGITS + [False]
            mask.append(False)  # the blank line between records
        ids.append(encode(text[:length]))
        answers.append(torch.tensor(mask[:length]))
    return torch.stack(ids), torch.stack(answers)


def repeat_rows(rng: random.Random, rows: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``rows`` rows of ``length`` characters, each a run of random strings written twice (``s\\ns\\n``).

    Past its first character, the second copy can be predicted only by finding the same characters earlier and
    copying what followed them: the task on which transformers learn induction heads (Olsson et al. 2022), the
    circuit that key-value retrieval needs too. Returns the token ids (rows, length) and a mask of the characters
    that copying predicts (the second copy after its first character, and its newline).
    """
    ids, copied = [], []
    for _ in range(rows):
        text, mask = "", []
        while len(text) < length:
            word = "".join(rng.choice(REPEAT_ALPHABET) for _ in range(rng.randint(*REPEAT_LENGTHS)))
            text += f"{word}\n{word}\n"
            mask += [False] * (len(word) + 2) + [True] * len(word)
        ids.append(encode(text[:length]))
        copied.append(torch.tensor(mask[:length]))
    return torch.stack(ids), torch.stack(copied)


@torch.no_grad()
def retrieval_accuracy(model: nn.Module, records: list[Record]) -> dict[str, float]:
    """How often ``model`` retrieves the first queried value of each record: argmax of each value character,
    given the prompt and the value's earlier characters (so "exact" equals greedy decoding's exact match).

    Returns ``{"exact": share of records whose whole value is right, "chars": share of right value characters}``.
    Records of one length run as one batch.
    """
    if not records:
        raise ValueError("records is empty: give at least one record to score")
    device = next(model.parameters()).device
    exact = chars = 0
    by_length: dict[int, list[Record]] = {}
    for record in records:
        by_length.setdefault(len(record.prompt), []).append(record)
    with evaluating(model):
        for length, group in by_length.items():
            ids = torch.stack([encode(r.prompt + r.answer) for r in group]).to(device)
            predicted = model(ids[:, :-1])[:, length - 1:].argmax(-1)
            right = predicted == ids[:, length:]
            exact += right.all(dim=1).sum().item()
            chars += right.sum().item()
    return {"exact": exact / len(records), "chars": chars / (len(records) * VALUE_DIGITS)}
