"""Self-chat dialogues in the ``User:`` / ``Assistant:`` format, built from the prose snapshot, and their metrics.

Baize had ChatGPT chat with itself; here a seeded template plays both sides. Each dialogue stays on one topic
(a top-level stdlib module): 1-3 questions about its functions and classes, each answered with the first sentence
of the docstring, then a closing thanks. Validation holds out whole topics, so its questions name modules the
fine-tuning never saw in a dialogue.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path

import torch
from torch import nn

from ..paths import DATA_DIR
from ..runtime import evaluating
from . import corpus
from .bits import char_bits
from .generate import generate
from .tokenizer import clean, encode

__all__ = ["ASSISTANT", "CHAT_FILES", "CLOSING", "FIRST", "FOLLOW_UP", "PREAMBLE", "USER", "VAL_FRACTION",
           "build_dialogues", "chat_text", "dialogue_batches", "first_sentence", "format_chances", "format_dialogue",
           "format_rate", "keep_turns", "load_dialogues", "losses", "reply"]

CHAT_FILES = {"train": DATA_DIR / "chat_train.jsonl", "val": DATA_DIR / "chat_val.jsonl"}
USER, ASSISTANT = "User: ", "Assistant: "
VAL_FRACTION = 0.06  # share of the question-answer pairs whose topics are held out for validation
FIRST = {"function": ["What does {} do?", "What is {} for?", "Can you tell me what {} does?", "Explain {}, please."],
         "class": ["What is {}?", "What is the class {} for?", "Tell me about {}."]}
FOLLOW_UP = ["And {}?", "What about {}?", "How about {}?"]
PREAMBLE = "A chat about Python.\n"  # opens every dialogue trained from its start (Baize's opening line, shortened)
CLOSING = [("Thanks!", "You're welcome!"), ("Thank you, that helps.", "Glad I could help."),
           ("Great, thanks.", "Happy to help. Ask me about another module any time.")]


def first_sentence(text: str) -> str | None:
    """The first sentence of a docstring's first paragraph, or None if it does not read like a sentence."""
    paragraph = " ".join(text.split("\n\n")[0].split())
    sentence = re.split(r"(?<=[.!?])\s", paragraph)[0].rstrip(".:") + "."
    if not 15 <= len(sentence) <= 120 or not sentence[0].isalpha() or "->" in sentence or "(" in sentence[:12]:
        return None
    return sentence[0].upper() + sentence[1:]


def _pairs_by_topic(documents: list[dict]) -> dict[str, list[tuple[str, str, str]]]:
    topics: dict[str, list[tuple[str, str, str]]] = {}
    for doc in documents:
        public = not any(part.startswith("_") for part in doc["name"].split("."))
        answer = first_sentence(doc["text"]) if doc["kind"] in FIRST and public else None
        if answer:
            topics.setdefault(doc["name"].split(".")[0], []).append((doc["kind"], doc["name"], answer))
    return topics


def _dialogue(topic: str, items: list[tuple[str, str, str]], rng: random.Random) -> dict:
    turns = []
    for i, (kind, name, answer) in enumerate(items):
        question = rng.choice(FIRST[kind] if i == 0 else FOLLOW_UP).format(name)
        turns.append([question, answer])
    turns.append(list(rng.choice(CLOSING)))
    return {"topic": topic, "turns": turns}


def build_dialogues(seed: int = 0, snapshot: str | Path = corpus.SNAPSHOT,
                    paths: dict[str, Path] = CHAT_FILES) -> dict[str, int]:
    """Write the train and validation dialogues (JSON lines) from the snapshot's docstrings, seeded.

    Topics are shuffled with ``seed``; the first ones, until they hold ``VAL_FRACTION`` of all pairs, are held
    out for validation. Within a topic, pairs are shuffled and cut into dialogues of 1-3 questions plus a
    closing turn. Returns the number of dialogues per split.
    """
    rng = random.Random(seed)
    topics = _pairs_by_topic(corpus.load_documents(snapshot))
    order = sorted(topics)
    rng.shuffle(order)
    total, held, split = sum(len(v) for v in topics.values()), 0, {}
    for topic in order:
        split[topic] = "val" if held < VAL_FRACTION * total else "train"
        held += len(topics[topic]) if split[topic] == "val" else 0
    dialogues: dict[str, list[dict]] = {"train": [], "val": []}
    for topic in order:
        items = topics[topic]
        rng.shuffle(items)
        while items:
            size = rng.randint(1, 3)
            dialogues[split[topic]].append(_dialogue(topic, items[:size], rng))
            items = items[size:]
    for name, rows in dialogues.items():
        rng.shuffle(rows)
        Path(paths[name]).write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows), encoding="ascii")
    return {name: len(rows) for name, rows in dialogues.items()}


def load_dialogues(split: str) -> list[dict]:
    """The shipped dialogues of ``split`` ("train" or "val"): ``{"topic", "turns": [[user, assistant], ...]}``."""
    if split not in CHAT_FILES:
        raise ValueError(f"split={split!r} is not allowed: choose 'train' or 'val'")
    return [json.loads(line) for line in CHAT_FILES[split].read_text(encoding="ascii").splitlines()]


def format_dialogue(dialogue: dict) -> str:
    """One dialogue as text: a ``User:`` line and an ``Assistant:`` line per turn."""
    return "".join(f"{USER}{user}\n{ASSISTANT}{assistant}\n" for user, assistant in dialogue["turns"])


def chat_text(dialogues: list[dict]) -> tuple[str, torch.Tensor]:
    """The dialogues as one text (a blank line between them) and a mask of the answer characters.

    The mask marks what the assistant says after ``Assistant: ``, up to and including the line's newline.
    """
    text = "\n".join(format_dialogue(d) for d in dialogues)
    mask = torch.zeros(len(text), dtype=torch.bool)
    for match in re.finditer(rf"^{ASSISTANT}(.*\n)", text, flags=re.MULTILINE):
        mask[match.start(1):match.end(1)] = True
    return text, mask


def losses(model: nn.Module, chat: str, answer_mask: torch.Tensor, prose: str) -> dict[str, float]:
    """Bits per character on the dialogues ``chat``, on their answers only, and on the ``prose`` (in eval mode)."""
    bits = char_bits(model, chat, model.config.context)
    return {"chat": bits.mean().item(), "answer": bits[answer_mask[1:len(bits) + 1].to(bits.device)].mean().item(),
            "prose": char_bits(model, prose, model.config.context).mean().item()}


@torch.no_grad()
def format_chances(model: nn.Module, text: str, starts: list[int], temperature: float = 0.7) -> torch.Tensor:
    """For each assistant turn of ``text`` that starts at one of ``starts``: the probability that sampling at
    ``temperature`` writes exactly ``Assistant: `` there (at 0: 1 if the most likely characters spell it, else 0).

    The model reads the ``config.context`` characters before each turn (they end with the user's question and its
    newline), in eval mode on its own device, and gets its mode back. The result lies on the CPU (empty for no
    ``starts``).
    """
    n, context = len(ASSISTANT), model.config.context
    if any(s < context for s in starts):
        raise ValueError(f"every turn must start at least context={context} characters into the text")
    if not starts:
        return torch.zeros(0)
    ids = torch.stack([encode(text[s + n - context - 1:s + n]) for s in starts]).to(next(model.parameters()).device)
    with evaluating(model):
        logits, wanted = model(ids[:, :-1])[:, -n:], ids[:, -n:]
    if temperature == 0:
        return (logits.argmax(-1) == wanted).all(-1).float().cpu()
    return torch.log_softmax(logits / temperature, -1).gather(-1, wanted[..., None]).sum((1, 2)).exp().cpu()


def format_rate(model: nn.Module, text: str, prompts: int = 48, temperature: float = 0.7) -> float:
    """How often replies sampled at ``temperature`` follow the turn format: after a user's line, ``Assistant: ``.

    For ``prompts`` evenly spaced assistant turns of ``text``, the model reads the characters before the turn
    and we take the probability that sampling writes exactly ``Assistant: `` next (:func:`format_chances`: the
    product of its 11 characters' probabilities at this temperature). The mean is the share of sampled replies
    that start in turn, as many samples would measure it, without their noise.
    """
    context = model.config.context
    starts = [m.start() for m in re.finditer(rf"^{ASSISTANT}", text, flags=re.MULTILINE) if m.start() >= context]
    chosen = starts[:: max(1, len(starts) // prompts)][:prompts]
    return format_chances(model, text, chosen, temperature).mean().item()


def reply(model: nn.Module, conversation: str, question: str, temperature: float = 0.7, seed: int = 0,
          max_chars: int = 100) -> str:
    """What the model writes after ``conversation`` and a new ``User:`` line with ``question`` (seeded sampling).

    It stops where the model starts the user's next turn, or after ``max_chars`` characters. A fine-tuned model
    writes an ``Assistant:`` line; a base model writes whatever it writes.
    """
    prompt = f"{conversation}{USER}{clean(question)}\n"
    return generate(model, prompt, max_chars, temperature, seed, stop=f"\n{USER.strip()}")


def dialogue_batches(dialogues: list[dict], batch_size: int, context: int, seed: int,
                     preamble: str = PREAMBLE) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless seeded batches of windows that never cross a dialogue, as Baize trains on whole dialogues.

    Each dialogue, ``preamble`` first, is cut from its start into windows of ``context + 1`` characters, each
    starting half a context after the last, so that every character is trained once, on at least half a context of
    its own dialogue (from its start, in the first window). Targets already trained by the window before (the
    first half of every later window) and the padding after a dialogue's end are -100, which cross-entropy ignores.
    The windows are shuffled with ``seed``, epoch after epoch.
    """
    if not dialogues:
        raise ValueError("dialogues is empty: give at least one dialogue to train on")
    half, windows, targets = context // 2, [], []
    for dialogue in dialogues:
        ids = encode(preamble + format_dialogue(dialogue))
        for start in range(0, max(1, len(ids) - half - 1), half) if len(ids) > context + 1 else [0]:
            piece = ids[start:start + context + 1]
            window = torch.zeros(context + 1, dtype=torch.long)
            window[:len(piece)] = piece
            target = window[1:].clone()
            target[len(piece) - 1:] = -100
            if start:
                target[:half] = -100
            windows.append(window[:-1])
            targets.append(target)
    inputs, wanted = torch.stack(windows), torch.stack(targets)
    if len(inputs) < batch_size:
        raise ValueError(f"the dialogues make {len(inputs)} windows, fewer than batch_size={batch_size}: give more "
                         "dialogues or a smaller batch")
    generator = torch.Generator().manual_seed(seed)
    while True:
        order = torch.randperm(len(inputs), generator=generator)
        for i in range(0, len(order) - batch_size + 1, batch_size):
            chosen = order[i:i + batch_size]
            yield inputs[chosen], wanted[chosen]


def keep_turns(transcript: str) -> tuple[list[list[str]], str]:
    """Baize's filter on a self-chat ``transcript`` (what a model wrote after a dialogue's first ``User:`` line):
    the complete turns it keeps, and why it stops.

    The transcript must open with ``Assistant: ``; then ``User:`` and ``Assistant:`` lines must alternate. As in
    Baize's preprocessing, the last turn is dropped when the text ran out before it ended (no final newline),
    reading stops at the first malformed line (an empty reply, a line in neither format, two of one side in a row),
    and a transcript with no complete first answer keeps nothing. Returns ``(turns, reason)``: ``turns`` as
    ``[[None, answer], [question, answer], ...]`` (the first question is the seed's), ``reason`` ``"end"``, ``"cut"``
    or ``"malformed"``.
    """
    lines = transcript.split("\n")
    complete, last = lines[:-1], lines[-1]
    turns: list[list[str | None]] = []
    question: str | None = None
    expect_answer = True
    for line in complete:
        if line == "":
            return turns, "end"  # a blank line closes the dialogue, as in the training text
        side, _, said = line.partition(": ")
        if expect_answer and f"{side}: " == ASSISTANT and said.strip():
            turns.append([question, said])
            expect_answer = False
        elif not expect_answer and f"{side}: " == USER and said.strip():
            question, expect_answer = said, True
        else:
            return turns, "malformed"
    return turns, "cut" if last else "end"
