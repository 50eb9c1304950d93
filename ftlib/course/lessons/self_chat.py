"""Baize's self-chat in miniature: a teacher chat model writes both sides of dialogues from seed questions, Baize's
filter keeps the well-formed turns, and fresh LoRA students train on template, self-chat and mixed dialogues.

The teacher is lesson 09's own chat model (full fine-tuning at its chosen rate, seed 0). Its seed questions are the
first questions of training dialogues, about training modules; the students train on whole dialogues from their
start, a preamble first (:func:`ftlib.lm.chat.dialogue_batches`), and are scored on the held-out modules: the turn
format, the loss of the true docstring answers, and the diversity of their replies (distinct word pairs); the loss
of the teacher's own replies to the same questions is stored too, not shown (many of them are not answers). Too
slow for the lesson's minute, it is built with lesson 09's rate sweep (``python -m ftlib chat-sweep``) and stored
beside it.
"""

from __future__ import annotations

from itertools import groupby

from torch import nn

from ftlib.course.lessons.chat_finetuning import ChatFinetuning, answer_bits, turn_format
from ftlib.course.lessons.records import Results
from ftlib.lm import chat
from ftlib.lm.finetune import finetune
from ftlib.lm.generate import generate
from ftlib.runtime import seed_everything

__all__ = ["COLUMNS", "DATASETS", "SETTINGS", "build", "collect", "differences", "distinct_pairs", "replies",
           "score_student", "score_table"]

DATASETS = ("template", "shape", "self-chat", "mix")  # "shape": the template cut to self-chat's turns per dialogue
SETTINGS = {
    "questions": 240,  # seed questions: the first questions of the first training dialogues
    "max_chars": 200,  # the most the teacher writes after a seed question
    "temperature": 0.7,
    "student_seeds": 6,
    "replies": 24,  # held-out first questions each model answers (diversity; the teacher's answers to score)
    "reply_chars": 80,
}


def replies(model: nn.Module, prompts: list[str], chars: int, temperature: float, seed: int,
            stop: str | None) -> list[str]:
    """``model``'s sampled continuation of each prompt (prompts of one length sampled together, seeded by it)."""
    out: dict[int, str] = {}
    order = sorted(range(len(prompts)), key=lambda i: (len(prompts[i]), i))
    for length, group in groupby(order, key=lambda i: len(prompts[i])):
        group = list(group)
        texts = generate(model, [prompts[i] for i in group], chars, temperature, seed=seed + length, stop=stop)
        out.update(zip(group, texts))
    return [out[i] for i in range(len(prompts))]


def collect(teacher: nn.Module, questions: list[str], settings: dict = SETTINGS, seed: int = 0
            ) -> tuple[list[dict], dict[str, int]]:
    """Self-chat: the teacher continues ``PREAMBLE + "User: <question>\\n"`` for each seed question (both sides),
    and :func:`ftlib.lm.chat.keep_turns` filters each transcript. Returns the kept dialogues (``topic``: ``"seed
    question <index>"``) and the counts:
    ``transcripts``, ``kept``, ``dropped`` (nothing well-formed), and how the kept ones ended (``ended``: a blank
    line; ``cut``: out of characters, last turn dropped; ``malformed``: read up to a malformed line)."""
    prompts = [f"{chat.PREAMBLE}{chat.USER}{q}\n" for q in questions]
    texts = replies(teacher, prompts, settings["max_chars"], settings["temperature"], seed, stop="\n\n")
    kept, counts = [], {"transcripts": len(texts), "kept": 0, "dropped": 0, "ended": 0, "cut": 0, "malformed": 0}
    for question, text in zip(questions, texts):
        ended = len(text) < settings["max_chars"] - 1  # generate cut it at the blank line
        turns, how = chat.keep_turns(text + ("\n\n" if ended else ""))
        if not turns:
            counts["dropped"] += 1
            continue
        turns[0][0] = question
        kept.append({"topic": f"seed question {len(kept) + counts['dropped']}", "turns": turns})
        counts["kept"] += 1
        counts[{"end": "ended", "cut": "cut", "malformed": "malformed"}[how]] += 1
    return kept, counts


def distinct_pairs(texts: list[str]) -> float:
    """Diversity: distinct word pairs over all word pairs in ``texts`` ("distinct-2", Li et al. 2016); 0 if none."""
    pairs = [tuple(words[i:i + 2]) for t in texts for words in [t.split()] for i in range(len(words) - 1)]
    return len(set(pairs)) / len(pairs) if pairs else 0.0


def score_student(model: nn.Module, runs: ChatFinetuning, truth: list[dict], taught: list[dict],
                  settings: dict = SETTINGS) -> dict:
    """A model's scores on the held-out modules: ``format`` (every validation turn), ``answer`` (bpc of the true
    docstring answers), ``teacher_answer`` (bpc of the teacher's answers to the same questions), ``distinct``
    (distinct word pairs of its sampled replies to them)."""
    questions = [d["turns"][0][0] for d in truth]
    said = replies(model, [f"{chat.PREAMBLE}{chat.USER}{q}\n" for q in questions], settings["reply_chars"],
                   settings["temperature"], 0, stop=f"\n{chat.USER.strip()}")
    return {"format": turn_format(model, runs.val_text, runs.temperature)["chance"].mean().item(),
            "answer": answer_bits(model, truth, chat.PREAMBLE),
            "teacher_answer": answer_bits(model, taught, chat.PREAMBLE),
            "distinct": distinct_pairs(said)}


def build(runs: ChatFinetuning, rates: dict[str, float], settings: dict = SETTINGS, threads: int = 2,
          progress: bool = True) -> dict:
    """The whole experiment: the teacher (full fine-tuning at ``rates["full"]``, seed 0), its self-chat with the
    filter's counts and the first kept dialogues, its answers to held-out questions, and the scores of the teacher
    and of a LoRA student (at ``rates["lora"]``) per dataset and seed, rounded to 6 decimals."""
    seed_everything(0, threads)
    teacher = runs.run("full", 0, lr=rates["full"])["model"]
    train = chat.load_dialogues("train")
    template = [{"topic": d["topic"], "turns": d["turns"]} for d in train[:settings["questions"]]]
    self_chat, counts = collect(teacher, [d["turns"][0][0] for d in template], settings)
    truth = [{"topic": d["topic"], "turns": d["turns"][:1]} for d in chat.load_dialogues("val")[:settings["replies"]]]
    answers = replies(teacher, [f"{chat.PREAMBLE}{chat.USER}{d['turns'][0][0]}\n" for d in truth],
                      settings["reply_chars"], settings["temperature"], 1, stop="\n")
    taught = [{"topic": d["topic"], "turns": [[d["turns"][0][0], a.removeprefix(chat.ASSISTANT)]]}
              for d, a in zip(truth, answers)]
    # the same seed questions in every dataset: the kept ones, answered by the template (true docstrings), by the
    # template cut to as many turns as the teacher's kept dialogue (shape: self-chat's dialogue shape, true
    # answers), by the teacher (self-chat), or by each in turn (mix)
    asked = [template[int(d["topic"].split()[-1])] for d in self_chat]
    data = {"template": asked, "self-chat": self_chat,
            "shape": [{"topic": t["topic"], "turns": t["turns"][:len(c["turns"])]} for t, c in zip(asked, self_chat)],
            "mix": [t if i % 2 == 0 else c for i, (t, c) in enumerate(zip(asked, self_chat))]}
    round_ = lambda scores: {k: round(v, 6) for k, v in scores.items()}  # noqa: E731
    records = [{"data": "teacher", "seed": 0, **round_(score_student(teacher, runs, truth, taught, settings))}]
    for name in DATASETS:
        for seed in range(settings["student_seeds"]):
            batches = chat.dialogue_batches(data[name], runs.batch_size, runs.base.config.context, seed)
            student, _ = finetune(runs.base, batches, "lora", runs.steps, rates["lora"], seed, rank=runs.rank)
            records.append({"data": name, "seed": seed, **round_(score_student(student, runs, truth, taught,
                                                                               settings))})
            if progress:
                print(f"student on {name}, seed {seed}: {records[-1]}", flush=True)
    sizes = {k: {"dialogues": len(v), "turns": sum(len(d["turns"]) for d in v),
                 "characters": len(chat.chat_text(v)[0])} for k, v in data.items()}
    return {"settings": settings, "counts": counts, "sizes": sizes,
            "examples": [chat.format_dialogue(d) for d in self_chat[:3]], "taught": taught[:3],
            "records": Results(records)}


def differences(records: Results, first: str, second: str, key: str) -> list[float]:
    """Per student seed, score ``key`` of the student on dataset ``first`` minus the one on ``second``."""
    ones, others = (sorted(records.where(data=d), key=lambda r: r["seed"]) for d in (first, second))
    if [r["seed"] for r in ones] != [r["seed"] for r in others] or not ones:
        raise ValueError(f"{first!r} and {second!r} must have students on the same seeds")
    return [a[key] - b[key] for a, b in zip(ones, others)]


# the stored ``teacher_answer`` is not shown: many of the teacher's "answers" to new questions are not answers (it
# often opens another ``User:`` line), so their loss measures exposure to such lines more than to the teacher
COLUMNS = {"format": ("format, % (higher)", 100, "%"), "answer": ("docstring answers", 1, " bpc"),
           "distinct": ("distinct pairs, %", 100, "%")}


def score_table(records: Results, names: dict[str, str]) -> str:
    """One line per model of ``records`` (``data``: ``"teacher"`` and :data:`DATASETS`): each score of
    :func:`score_student` as its mean ± std over the seeds; ``names`` labels the rows."""
    from ftlib.course.lessons.records import spread

    lines = [f"{'':<30}" + "".join(f"{header:>20}" for header, _, _ in COLUMNS.values())]
    for data in ("teacher", *DATASETS):
        rows = records.where(data=data)
        cells = [spread(rows.mean(key), rows.std(key) if len(rows) > 1 else 0.0, scale=scale,
                        digits=1 if scale == 100 else 2) for key, (_, scale, _) in COLUMNS.items()]
        lines.append(f"{names[data]:<30}" + "".join(f"{cell:>20}" for cell in cells))
    return "\n".join(lines)
