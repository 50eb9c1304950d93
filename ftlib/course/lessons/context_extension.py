"""Lesson 10's drivers: loss by position before and after a short fine-tune at a longer context, the sliding-window
baseline it must beat, checks along each fine-tune, the recall table, a chat model extended against one kept at its
trained context and fine-tuned alike, and the lesson's plots.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import matplotlib.pyplot as plt
import torch
from torch import nn

from ftlib.course.lessons import records
from ftlib.course.lessons.chat_finetuning import view
from ftlib.course.lessons.experiments import Results
from ftlib.course.lessons.workers import independent
from ftlib.lm import chat, context
from ftlib.lm.finetune import finetune
from ftlib.stopping import History

__all__ = ["POSITION_SCALES", "ChatExtension", "ContextExtension", "ExtensionRuns", "at_position_scale",
           "long_question_turns", "plot_before_after", "plot_loss_by_position",
           "plot_wavelengths", "smooth"]

POSITION_SCALES = (1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25)  # the live slider's factors on every position


@dataclass
class ContextExtension:
    """The lesson's setting: the base model, the evaluation text, the lengths read, and the long fine-tune.

    ``lengths`` are 1x, 2x, ... the trained context; the last (``longest``) is the window curves are scored on
    and fine-tunes train on. ``window`` is the base model's curve when it reads only the last ``trained``
    characters (a sliding window): the baseline. Every :meth:`extend_run` checks its model ``checks`` times along
    the fine-tune and returns its record, the model and the curve at each check included; :meth:`snapshots` and
    :meth:`mean_after` read those records.
    """

    base: nn.Module
    evaluation: str
    lengths: tuple[int, ...]
    train_text: str | torch.Tensor
    steps: int
    lr: float
    batch_size: int
    checks: int = 4

    def __post_init__(self) -> None:
        self.window = context.sliding_bits(self.base, self.evaluation, self.longest)

    @property
    def trained(self) -> int:
        """The context the base model was trained on."""
        return self.base.config.context

    @property
    def longest(self) -> int:
        return self.lengths[-1]

    @property
    def check_steps(self) -> list[int]:
        """The steps at which each fine-tune is checked (the last is ``steps``)."""
        every = self.steps // self.checks
        return [every * i for i in range(1, self.checks)] + [self.steps]

    def curve(self, lm: nn.Module) -> torch.Tensor:
        """Loss (bpc) at each position 0..longest-1, over windows of ``longest`` characters of the evaluation text."""
        return context.position_bits(lm, self.evaluation, self.longest)

    def beyond(self, bits: torch.Tensor, n: int) -> float:
        """Mean loss at positions trained..n-1 (reading n characters), or at positions 0..trained-1 for n = trained."""
        return (bits[self.trained:n] if n > self.trained else bits[:self.trained]).mean().item()

    def rise(self, bits: torch.Tensor) -> float:
        """How much higher the loss is at positions 2*trained..longest-1 than at trained..2*trained-1."""
        return bits[2 * self.trained:].mean().item() - bits[self.trained:2 * self.trained].mean().item()

    @independent  # a pure function of the study, method and seed: run_grid may share it out to the workers
    def extend_run(self, method: str, seed: int) -> dict:
        """Extend the base model by ``method`` and fine-tune it; the mean loss past the trained context per length.

        The record (for ``run_grid``) holds ``x2``, ``x4``, ... (and ``x1``, inside the context), ``rise`` (see
        :meth:`rise`) and ``seconds``, at the end of the fine-tune; and for later cells the fine-tuned ``model`` and
        its loss by position at each of :attr:`check_steps` (``curves``, by step).
        """
        every = self.steps // self.checks
        lm, history = context.extend(self.base, method, self.longest, self.train_text, self.steps, self.lr, seed,
                                     self.batch_size, evaluate=lambda m: {"curve": self.curve(m)}, every=every)
        curves = {step: history.evals[step]["curve"] for step in self.check_steps}
        bits = curves[self.steps]
        lengths = {f"x{n // self.trained}": self.beyond(bits, n) for n in self.lengths}
        return lengths | {"rise": self.rise(bits), "seconds": history.seconds, "model": lm, "curves": curves}

    def snapshots(self, results: Results) -> Results:
        """One record per run of :meth:`extend_run` in ``results`` and check (``method``, ``seed``, ``step``): the
        loss past the trained context (``past``) and its ``excess`` over the sliding-window baseline."""
        return Results({"method": run["method"], "seed": run["seed"], "step": step,
                        "past": self.beyond(bits, self.longest),
                        "excess": self.beyond(bits - self.window, self.longest)}
                       for run in results for step, bits in run["curves"].items())

    def mean_after(self, results: Results, method: str, step: int | None = None) -> torch.Tensor:
        """The curve after ``step`` (default: all) fine-tuning steps by ``method``, averaged over its runs in
        ``results``."""
        step = step or self.steps
        return torch.stack([curves[step] for curves in results.values("curves", method=method)]).mean(0)

    def table(self, rows: dict[str, list[str]], names: dict[str, str]) -> str:
        """One line per method (``names`` labels them) with its cells under each length's positions."""
        heads = [f"{self.trained}-{n - 1} ({n // self.trained}x)" if n > self.trained else f"0-{n - 1} (1x)"
                 for n in self.lengths]
        return records.layout(["", *heads], [[names[m], *cells] for m, cells in rows.items()], lead=34, width=18)


def long_question_turns(text: str, view: int, first: int, long: bool = True) -> list[int]:
    """Where the assistant turns of chat ``text`` start whose question line (its newline included) is longer than
    ``view`` characters, so a model that sees ``view`` characters before the turn cannot see the ``User:`` tag;
    only turns at least ``first`` characters into the text, so every reader has its whole context before them.
    ``long=False`` gives the other turns: those whose ``User:`` tag is in view (the control)."""
    starts = [m.start() for m in re.finditer(rf"^{chat.ASSISTANT}", text, flags=re.MULTILINE) if m.start() >= first]
    return [s for s in starts if (s - (text.rfind("\n", 0, s - 1) + 1) > view) == long]


@dataclass
class ExtensionRuns:
    """Fine-tunes of the base model at ``length`` characters with an extension method, against the same fine-tune
    at the base's own context read through a sliding window (the ``"window"`` arm): same steps, learning rate, seed
    and ``chars_per_step`` characters of ``train_text`` per step, so only the context differs.

    :meth:`run` scores an arm on the first ``eval_chars`` characters of ``val_text``: the loss past the trained
    context; with ``choice_text``, also on its first ``eval_chars`` characters (``val_loss``: the held-out text a
    rate is chosen on, so that ``val_text`` can be the test text).
    """

    base: nn.Module
    train_text: str
    val_text: str
    length: int
    steps: int
    lr: float
    chars_per_step: int
    eval_chars: int = field(default=4096, kw_only=True)
    choice_text: str = field(default="", kw_only=True)

    def __post_init__(self) -> None:
        trained = self.base.config.context
        if self.chars_per_step % self.length or self.length % trained:
            raise ValueError(f"chars_per_step={self.chars_per_step} must be a multiple of length={self.length}, "
                             f"itself a multiple of the trained context {trained}")
        self.evaluation = self.val_text[:self.eval_chars + 1]
        self.choice = self.choice_text[:self.eval_chars + 1]

    def tune(self, arm: str, seed: int, steps: int | None = None, lr: float | None = None
             ) -> tuple[nn.Module, History]:
        """The fine-tuned model of ``arm`` (``"window"``: at the trained context; else :func:`context.extend` at
        ``length``) after ``steps`` (default: ``self.steps``) steps at ``lr`` (default: ``self.lr``), and its
        history."""
        steps, lr = steps or self.steps, self.lr if lr is None else lr
        if arm == "window":
            return finetune(self.base, self.train_text, "full", steps, lr, seed,
                            batch_size=self.chars_per_step // self.base.config.context)
        return context.extend(self.base, arm, self.length, self.train_text, steps, lr, seed,
                              self.chars_per_step // self.length)

    def past(self, lm: nn.Module, arm: str, text: str | None = None) -> float:
        """Mean bpc at positions trained..length-1 of ``text`` (default: the evaluation text); the window arm reads
        a sliding window."""
        text = self.evaluation if text is None else text
        bits = (context.sliding_bits(lm, text, self.length) if arm == "window"
                else context.position_bits(lm, text, self.length))
        return bits[self.base.config.context:].mean().item()

    def scores(self, lm: nn.Module, arm: str) -> dict:
        """``past`` (see :meth:`past`) and, with a choice text, ``val_loss`` (the same on it)."""
        return {"past": self.past(lm, arm)} | ({"val_loss": self.past(lm, arm, self.choice)} if self.choice else {})

    def run(self, arm: str, seed: int, steps: int | None = None, lr: float | None = None) -> dict:
        """Fine-tune one arm; the record (for ``run_grid``) holds :meth:`scores` and ``seconds``."""
        lm, history = self.tune(arm, seed, steps, lr)
        return {**self.scores(lm, arm), "seconds": history.seconds}


@dataclass
class ChatExtension(ExtensionRuns):
    """:class:`ExtensionRuns` on chat text, which :meth:`run` also scores on the turns of
    :func:`long_question_turns`: the chance that a reply starts in the format, at ``temperature``, on the long
    questions (``turns``) and, with ``control``, also on the others (``short_turns``, whose tag is in view).
    """

    temperature: float = 0.7
    control: bool = field(default=False, kw_only=True)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.view = view(self.base)  # what the trained context shows of a question before the reply
        self.turns = long_question_turns(self.val_text, self.view, self.length)
        self.short_turns = long_question_turns(self.val_text, self.view, self.length, long=False)

    def run(self, arm: str, seed: int, steps: int | None = None, lr: float | None = None) -> dict:
        """Fine-tune one arm (``"window"`` or an extension method) on the chat text; the record (for ``run_grid``)
        holds :meth:`scores` (``past``: bpc at positions trained..length-1), ``format`` (on the long questions), with
        ``control`` ``format_short`` (on the others), and ``seconds``."""
        lm, history = self.tune(arm, seed, steps, lr)
        groups = {"format": self.turns} | ({"format_short": self.short_turns} if self.control else {})
        chances = {name: chat.format_chances(lm, self.val_text, turns, self.temperature).mean().item()
                   for name, turns in groups.items()}
        return {**self.scores(lm, arm), **chances, "seconds": history.seconds}


def smooth(bits: torch.Tensor, width: int = 8) -> torch.Tensor:
    """A moving average, so the curves are readable (position noise is large with 32 windows)."""
    return torch.nn.functional.avg_pool1d(bits[None, None], width, 1)[0, 0]


def plot_loss_by_position(study: ContextExtension, bits: torch.Tensor, short: float) -> None:
    """The smoothed loss by position of an unchanged model, the sliding-window baseline, and each length marked."""
    fig, ax = plt.subplots(figsize=(9, 3.8))
    ax.plot(range(7, study.longest), smooth(bits), label="TinyLM, positions as they are")
    ax.plot(range(7, study.longest), smooth(study.window), color="black", linewidth=1,
            label=f"TinyLM reading only the last {study.trained} characters (sliding window)")
    ax.axhline(short, color="gray", linewidth=1,
               label=f"its mean loss at positions 0-{study.trained - 1}: {short:.2f} bpc")
    for n in study.lengths:
        ax.axvline(n - 1, color="gray", linestyle="--", linewidth=1)
        ax.text(n - 4, 5.7, f"{n // study.trained}x", ha="right")
    ax.set(xlabel="position in the window", ylabel="bits per character (smoothed)", ylim=(1.5, 6),
           title="No change to the model: loss by position")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, 0.9), fontsize=8)  # below the 1x, 2x, 4x marks
    plt.show()


def plot_wavelengths(config, length: int) -> None:
    """Each rotated pair's wavelength (log scale) against the trained context and ``length``, and the factor each
    method puts on its frequency (the NTK-aware base's factor follows from its larger base)."""
    waves, factors = context.wavelengths(config), context.parts_factors(config, length)
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(12, 3.6))
    pairs = range(len(waves))
    ax.bar(pairs, waves, color=["tab:blue" if w < config.context else "tab:orange" for w in waves])
    ax.axhline(config.context, color="black", linestyle="--", linewidth=1,
               label=f"trained context: {config.context} characters")
    ax.axhline(length, color="gray", linestyle=":", linewidth=1, label=f"new length: {length} characters")
    ax.set(yscale="log", xlabel="rotated pair of a head (fastest first)", ylabel="wavelength (characters, log)",
           title="Blue: turns at least once inside the trained context")
    ax.legend(fontsize=8)
    bx.plot(pairs, factors, "o-", color="tab:brown", label="RoPE by parts")
    head_dim = config.dim // config.heads
    ntk = context.ntk_base_factor(config, length) ** (-torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim)
    bx.plot(pairs, ntk, "s-", color="tab:green", label="larger base (NTK-aware)")
    bx.plot(pairs, context.truncated_factors(config), "^-", color="tab:purple",
            label="truncated basis (0: no rotation)")
    bx.axhline(config.context / length, color="tab:red", linestyle="--", label="position interpolation (all pairs)")
    bx.axhline(1.0, color="gray", linewidth=1, label="naive (all pairs)")
    bx.set(xlabel="rotated pair of a head (fastest first)", ylabel="factor on its frequency", ylim=(0, 1.1),
           title=f"How each method turns a pair, reading {length} characters")
    bx.legend(fontsize=8)
    for a in (ax, bx):
        a.grid(alpha=0.3)
    fig.tight_layout()
    plt.show()


def plot_before_after(study: ContextExtension, results: Results, before: dict[str, torch.Tensor],
                      names: dict[str, str], step: int) -> None:
    """One panel per method: loss by position before (dashed) and after ``step`` fine-tuning steps (the seed mean of
    its runs of :meth:`ContextExtension.extend_run` in ``results``), against the base model reading a sliding window
    of its trained context (black)."""
    fig, axes = plt.subplots(1, len(names), figsize=(13, 3.6), sharey=True)
    span = range(7, study.longest)
    for ax, m in zip(axes, names):
        ax.plot(span, smooth(before[m]), "--", label="before fine-tuning")
        ax.plot(span, smooth(study.mean_after(results, m, step)), label=f"after {step} steps at {study.longest}")
        ax.plot(span, smooth(study.window), color="black", linewidth=1, label=f"base, sliding {study.trained}")
        ax.axvline(study.trained, color="gray", linestyle="--", linewidth=1)
        ax.set(title=names[m], xlabel="position in the window", ylim=(1.5, 6), xlim=(0, study.longest))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("bits per character (smoothed)")
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    plt.show()


def at_position_scale(study: ContextExtension, position_scale: float) -> None:
    """The live slider: the base model, untrained, reads ``study.longest`` characters with every position multiplied
    by ``position_scale`` (1: naive, ``trained / longest``: position interpolation); its loss by position band (the
    bands of the lesson's tables: inside the trained context, then from its end to each longer length) is printed
    under a first line that names the value, and drawn against the sliding-window baseline."""
    lm = context.scaled(study.base, "naive", study.longest)
    lm.position_scale = position_scale
    bits = study.curve(lm)
    bands = [(0, study.trained)] + [(study.trained, n) for n in study.lengths[1:]]  # as the lesson's tables
    print(f"position scale = {position_scale}: positions 0-{study.longest - 1} turn RoPE as positions "
          f"0-{(study.longest - 1) * position_scale:g} would")
    print("loss: " + ", ".join(f"positions {lo}-{hi - 1} {bits[lo:hi].mean().item():.2f} bpc" for lo, hi in bands)
          + f" (sliding {study.trained}-character window past {study.trained}: "
          f"{study.beyond(study.window, study.longest):.2f} bpc)")
    fig, ax = plt.subplots(figsize=(8, 3.2))
    span = range(7, study.longest)
    ax.plot(span, smooth(bits), label=f"all positions x{position_scale}")
    ax.plot(span, smooth(study.window), color="black", linewidth=1, label=f"base, sliding {study.trained}")
    ax.axvline(study.trained, color="gray", linestyle="--", linewidth=1)
    ax.set(xlabel="position in the window", ylabel="bits per character (smoothed)", ylim=(1.5, 6),
           title=f"Untrained, reading {study.longest} characters, position scale {position_scale}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    plt.show()
