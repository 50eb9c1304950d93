"""Lesson 09's drivers: fine-tune the TinyLM on the template dialogues (in full or with LoRA), score it over the
steps on held-out dialogues and prose, and show the scores as a table and as curves.

:func:`turn_format` scores every assistant turn of a text (how likely a sampled reply starts in the format, what the
model sees of the question), :func:`format_breakdown` groups those scores, and :func:`prose_at_chat` reads a
method's forgetting at a given chat loss along one run. Each method's rate is chosen on validation in lesson 09's
rate sweep (:mod:`~ftlib.course.lessons.chat_sweep`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from statistics import fmean

import matplotlib.pyplot as plt
import torch
from torch import nn

from ftlib.course.lessons import records
from ftlib.course.lessons.experiments import Results
from ftlib.freeze import count_parameters
from ftlib.lm import chat, corpus
from ftlib.lm.bits import char_bits
from ftlib.lm.finetune import finetune
from ftlib.lm.tokenizer import VOCAB, encode
from ftlib.runtime import evaluating

__all__ = ["EVAL_CHARS", "GROUPS", "TEMPERATURES", "ChatFinetuning", "answer_bits", "answer_choice", "at_temperature",
           "check_steps", "format_breakdown", "knowledge_test", "mean_at", "plot_over_steps", "print_format_breakdown",
           "prose_at_chat", "sample_replies", "score_table", "turn_format", "view"]

EVAL_CHARS = 3072  # characters of the validation dialogues and of the held-out prose scored at every check


TEMPERATURES = (0.1, 0.3, 0.5, 0.7, 1.0, 1.5, 2.0)  # the live slider's sampling temperatures
GROUPS = ("first question", "follow-up question", "closing thanks", "question in view", "'User:' out of view")


def view(model: nn.Module) -> int:
    """Characters before an assistant turn that the model sees when it writes the turn's first character."""
    return model.config.context - len(chat.ASSISTANT) + 1


@torch.no_grad()
def turn_format(model: nn.Module, text: str, temperature: float) -> dict[str, torch.Tensor | list[str]]:
    """Every assistant turn of ``text`` (after the first context's worth): how sampling at ``temperature`` starts it.

    Like :func:`ftlib.lm.chat.format_rate`, but for each turn: ``chance`` that a sampled reply starts with
    ``Assistant: ``, ``user_first`` the probability that it starts with ``U`` instead (another ``User:`` line),
    ``length`` the characters of the question line (its newline included), and ``kind``: ``"first question"``,
    ``"follow-up question"`` or ``"closing thanks"``.
    """
    n, context = len(chat.ASSISTANT), model.config.context
    starts = [m.start() for m in re.finditer(rf"^{chat.ASSISTANT}", text, flags=re.MULTILINE) if m.start() >= context]
    ids = torch.stack([encode(text[s + n - context - 1:s + n]) for s in starts]).to(next(model.parameters()).device)
    with evaluating(model):
        logits, wanted = model(ids[:, :-1])[:, -n:] / temperature, ids[:, -n:]
    log_p = torch.log_softmax(logits, -1)
    closings = {user for user, _ in chat.CLOSING}
    lines = [text[text.rfind("\n", 0, s - 1) + 1:s] for s in starts]  # "User: ...\n"
    before = [text[max(0, text.rfind("\n", 0, s - 1) - 1):text.rfind("\n", 0, s - 1) + 1] for s in starts]
    kind = ["closing thanks" if line[len(chat.USER):-1] in closings else
            "first question" if b in ("", "\n", "\n\n") else "follow-up question" for line, b in zip(lines, before)]
    return {"chance": log_p.gather(-1, wanted[..., None]).sum((1, 2)).exp().cpu(),
            "user_first": log_p[:, 0, VOCAB.index("U")].exp().cpu(),
            "length": torch.tensor([len(line) for line in lines]), "kind": kind}


def format_breakdown(turns: dict, shown: int) -> dict[str, tuple[float, int]]:
    """The mean format rate and the number of turns in each of :data:`GROUPS`; ``shown`` is :func:`view`."""
    kinds = turns["kind"]
    masks = {group: torch.tensor([k == group for k in kinds]) for group in GROUPS[:3]}
    masks[GROUPS[3]], masks[GROUPS[4]] = turns["length"] <= shown, turns["length"] > shown
    return {g: (turns["chance"][m].mean().item(), int(m.sum())) for g, m in masks.items()}


def prose_at_chat(curve: dict[int, dict], level: float) -> float:
    """The prose loss where a run's chat loss first falls to ``level`` (linear between the checked steps).

    ``curve`` maps steps to scores (``"chat"``, ``"prose"``); NaN if the run never gets that low.
    """
    steps = sorted(curve)
    for before, after in zip(steps, steps[1:]):
        high, low = curve[before]["chat"], curve[after]["chat"]
        if low <= level <= high:
            t = (high - level) / (high - low) if high > low else 1.0
            return curve[before]["prose"] + t * (curve[after]["prose"] - curve[before]["prose"])
    return float("nan")


def answer_bits(model: nn.Module, dialogues: list[dict], preamble: str = "") -> float:
    """Bits per character of the assistant's answers in ``dialogues`` (read as one text, ``preamble`` first)."""
    text, mask = chat.chat_text(dialogues)
    mask = torch.cat([torch.zeros(len(preamble), dtype=torch.bool), mask])
    bits = char_bits(model, preamble + text, model.config.context)
    return bits[mask[1:len(bits) + 1].to(bits.device)].mean().item()


def answer_choice(model: nn.Module, dialogues: list[dict], candidates: int = 8, chars: int = 16) -> float:
    """Does ``model`` know which answer belongs to which question? For the first question of each dialogue, the
    mean loss of the first ``chars`` characters of ``candidates`` answers (its own and the next dialogues' first
    answers, in turn) after ``User: <question>`` and ``Assistant: ``; returns the share of questions whose own
    answer is the cheapest (chance: ``1 / candidates``).

    Only an answer's first characters are scored: they are read with the question in view (a 64-character model
    predicts an answer's later characters from the answer itself), and a sentence's start is where knowing which
    function was asked shows. Sequences longer than the model's context keep their last ``context + 1`` characters.
    """
    firsts = [d["turns"][0] for d in dialogues]
    if not 2 <= candidates <= len(firsts):
        raise ValueError(f"candidates={candidates} must lie between 2 and the {len(firsts)} dialogues given")
    context, device = model.config.context, next(model.parameters()).device
    right = 0
    with evaluating(model), torch.no_grad():
        for i, (question, _) in enumerate(firsts):
            prompt = f"{chat.USER}{question}\n{chat.ASSISTANT}"
            answers = [(firsts[(i + k) % len(firsts)][1] + "\n")[:chars] for k in range(candidates)]
            bits = torch.empty(candidates)
            for length in sorted({len(a) for a in answers}):  # candidates of one length in one batch
                which = [k for k, a in enumerate(answers) if len(a) == length]
                ids = torch.stack([encode(prompt + answers[k])[-(context + 1):] for k in which]).to(device)
                logits = model(ids[:, :-1])[:, -length:]
                nats = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, -length:], reduction="none")
                bits[which] = nats.mean(1).cpu()
            right += int(bits.argmin()) == 0
    return right / len(firsts)


def knowledge_test(models: dict[str, nn.Module], dialogues: list[dict], candidates: int = 8, chars: int = 16
                   ) -> dict[str, float]:
    """:func:`answer_choice` of each model on ``dialogues``: ``{name: share of questions whose own answer is the
    cheapest of candidates}``."""
    return {name: answer_choice(lm, dialogues, candidates, chars) for name, lm in models.items()}


def sample_replies(models: dict[str, nn.Module], questions: list[str], temperature: float, max_chars: int = 80
                   ) -> dict[str, list[str]]:
    """Each model's sampled reply (seed 0) to each question asked on its own: ``{name: [reply, ...]}``."""
    return {name: [chat.reply(lm, "", q, temperature, seed=0, max_chars=max_chars) for q in questions]
            for name, lm in models.items()}


def at_temperature(model: nn.Module, name: str, val_text: str, questions: list[str], temperature: float) -> None:
    """The live slider: ``model``'s format rate over every validation turn at ``temperature`` (printed under a first
    line that names the value, and drawn by kind of turn, :data:`GROUPS`), and its sampled replies (seed 0, 60
    characters at most) to ``questions``."""
    turns = turn_format(model, val_text, temperature)
    print(f"temperature = {temperature}: {name} starts {turns['chance'].mean().item():.1%} of {len(turns['chance'])} "
          "validation replies with 'Assistant: '")
    for question, said in zip(questions, sample_replies({name: model}, questions, temperature, 60)[name]):
        print(f"User: {question}\n  {name} | " + said.replace("\n", "\n" + " " * (len(name) + 5)))
    parts = format_breakdown(turns, view(model))
    fig, ax = plt.subplots(figsize=(8, 2.6))
    ax.barh(GROUPS[::-1], [100 * parts[g][0] for g in GROUPS[::-1]])
    ax.set(xlim=(0, 100), xlabel="replies that start with 'Assistant: ' (%)",
           title=f"{name}, sampling temperature {temperature}: format rate by kind of turn")
    ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    plt.show()


def check_steps(steps: int) -> list[int]:
    """The steps at which a run of ``steps`` steps is scored: densely early, where the losses move fastest (2, 5,
    10, then doubling), and the last step."""
    early = [2, 5] + [10 * 2 ** k for k in range(12)]
    return sorted({s for s in early if s < steps} | {steps})


@dataclass
class ChatFinetuning:
    """The lesson's setting: the base model, the chat data, and how both methods fine-tune and sample.

    ``lr`` gives each method ("full", "lora") its rate. On creation the base model is scored once
    (``base_losses``, ``base_turns``); every :meth:`run` returns its record, fine-tuned model included, and keeps
    nothing. The validation dialogues serve twice, in two disjoint slices of ``eval_chars`` characters: the first
    reports (``chat``, ``answer``), the second chooses the rates (``val_loss``, see :mod:`chat_sweep`).
    """

    base: nn.Module
    train_text: str
    val_text: str
    answer_mask: torch.Tensor
    steps: int
    lr: dict[str, float]
    batch_size: int
    rank: int
    temperature: float
    eval_chars: int = EVAL_CHARS

    def __post_init__(self) -> None:
        end = self.eval_chars + 1
        if len(self.val_text) < 2 * end:
            raise ValueError(f"the validation dialogues hold {len(self.val_text)} characters: eval_chars="
                             f"{self.eval_chars} needs at least {2 * end} (a reporting and a choosing slice)")
        self.chat_eval, self.answers_eval = self.val_text[:end], self.answer_mask[:end]
        self.choose_eval = self.val_text[end:2 * end]
        self.prose_eval = corpus.split_text()[1][:end]
        self.base_losses = self.losses(self.base)
        self.base_turns = turn_format(self.base, self.val_text, self.temperature)

    def losses(self, lm: nn.Module) -> dict[str, float]:
        """Bits per character on the reporting slice of the validation dialogues (``chat``), on its answers
        (``answer``), on held-out prose (``prose``), and on the choosing slice (``val_loss``)."""
        return {**chat.losses(lm, self.chat_eval, self.answers_eval, self.prose_eval),
                "val_loss": char_bits(lm, self.choose_eval, lm.config.context).mean().item()}

    def run(self, method: str, seed: int, lr: float | None = None, steps: int | None = None) -> dict:
        """Fine-tune the base model by ``method`` (at ``lr``, default the lesson's rate) for ``steps`` (default the
        lesson's; each budget has its own warm-up and cosine schedule), scored at :func:`check_steps`.

        The record holds the last scores (``chat``, ``answer``, ``prose``, ``val_loss``), the ``format`` rate of
        sampled replies over every validation turn, the training ``seconds`` and the ``trainable`` parameters; and
        for later cells the fine-tuned ``model``, its scores by step in ``curves`` (step 0: the base model's) and its
        ``turns`` (:func:`turn_format` of every validation turn).
        """
        steps = self.steps if steps is None else steps
        checked, every = check_steps(steps), 1
        due = iter(range(1, steps + 1))

        def scored(lm: nn.Module) -> dict:  # called at every step: scores only the checked ones
            return self.losses(lm) if next(due) in checked else {}

        lm, history = finetune(self.base, self.train_text, method, steps,
                               self.lr[method] if lr is None else lr, seed, batch_size=self.batch_size,
                               rank=self.rank, evaluate=scored, every=every)
        turns = turn_format(lm, self.val_text, self.temperature)
        evals = {step: scores for step, scores in history.evals.items() if scores}
        return {**evals[steps], "format": turns["chance"].mean().item(), "seconds": history.seconds,
                "trainable": count_parameters(lm, trainable_only=True), "model": lm,
                "curves": {0: self.base_losses, **evals}, "turns": turns}


def _by_seed(results: Results, method: str) -> Results:
    """The runs of ``method`` in ``results``, in the order of their seeds."""
    return Results(sorted(results.where(method=method), key=lambda r: r["seed"]))


def mean_at(results: Results, method: str, step: int, key: str) -> float:
    """The mean over the seeds run of score ``key`` of ``method`` at ``step`` (read off the records' ``curves``)."""
    curves = _by_seed(results, method).values("curves")
    return sum(curve[step][key] for curve in curves) / len(curves)


def score_table(before: Results, results: Results, names: dict[str, str]) -> str:
    """One line per method (base model, full, LoRA): trainable weights, the three losses and the format rate.

    Each score is the mean ± std over the seeds; ``names`` maps "base", "full", "lora" to the lesson's labels.
    """
    def loss(metric: str):
        return lambda rows: records.spread(rows.mean(metric), rows.std(metric), scale=1, digits=2, width=8)

    columns = [records.Column("trainable", cell=lambda rows: f"{rows.values('trainable')[0]:,}", width=10),
               *(records.Column(header, cell=loss(metric), width=14)
                 for header, metric in (("chat", "chat"), ("answers", "answer"), ("prose", "prose"))),
               records.Column("format", cell=lambda rows: f"{rows.mean('format'):.1%}", width=10)]
    runs = Results([*before.where(method="base"), *results.where(method="full"), *results.where(method="lora")])
    return records.table(runs, "method", columns, lead=18, title="", names=names)


def plot_over_steps(results: Results, step: int, names: dict[str, str]) -> None:
    """The chat loss and the prose loss of both methods at every checked step (mean over seeds of the runs'
    ``curves``), ``step`` marked."""
    checked = sorted(_by_seed(results, "full")[0]["curves"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for ax, key, title in zip(axes, ("chat", "prose"), ("chat loss (validation dialogues)",
                                                       "prose loss (held-out docs): forgetting")):
        for method in ("full", "lora"):
            ax.plot(checked, [mean_at(results, method, s, key) for s in checked], marker="o", label=names[method])
        ax.axvline(step, color="gray", linestyle="--", label=f"step {step}")
        ax.set(xlabel="fine-tuning step", ylabel="bits per character", title=title)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    plt.show()


def print_format_breakdown(study: ChatFinetuning, results: Results, names: dict[str, str]
                           ) -> dict[str, dict[str, list[float]]]:
    """The format rate of each method in each of :data:`GROUPS` (mean over seeds of the records' ``by_group``, and
    the turns counted), and where the missing probability goes (``missing_u``); returns ``{method: {group: [rate
    per seed]}}``."""
    counts = format_breakdown(study.base_turns, view(study.base))
    by_method = {m: {g: _by_seed(results, m).values("by_group") for g in GROUPS} for m in ("full", "lora")}
    by_method = {m: {g: [parts[g] for parts in groups[g]] for g in GROUPS} for m, groups in by_method.items()}
    print(f"{'turns':<22}{'count':>7}" + "".join(f"{names[m]:>20}" for m in ("full", "lora")))
    for group in GROUPS:
        print(f"{group:<22}{counts[group][1]:>7}" + "".join(f"{fmean(by_method[m][group]):>20.1%}"
                                                            for m in ("full", "lora")))
    for method in ("full", "lora"):
        print(f"{names[method]}: {fmean(results.values('missing_u', method=method)):.0%} of the probability of "
              "missing the format is a reply that starts with 'U' (another 'User:' line)")
    return by_method
