"""Lesson 09's exercises: predict whether long questions miss the turn format more often, explain where the misses
come from, and write a prompt that the fine-tuned model answers in turn.
"""

from __future__ import annotations

from statistics import fmean
from types import EllipsisType

import torch
from torch import nn

from ftlib.course.lessons.exercises import (
    Coach,
    Feedback,
    Option,
    Question,
    attempted,
    cells_not_run,
    check_prediction,
    check_target,
    exercise,
    not_attempted,
    tell,
)
from ftlib.lm import chat
from ftlib.lm.generate import generate
from ftlib.lm.tokenizer import clean, encode
from ftlib.runtime import evaluating

__all__ = ["FORMAT_MISSES", "HINTS", "PROMPT_TARGET", "SOLUTIONS", "WRONG_ANSWERS", "chat_prompt", "format_misses",
           "hint", "long_questions", "reply_chance", "solution"]

PROMPT_TARGET = 50.0  # percent of sampled replies that must start with "Assistant: " after the learner's prompt


@exercise
def long_questions(guess: float | EllipsisType, long_minus_short: dict[str, list[float]]) -> Feedback:
    """Predict (in points) full fine-tuning's format rate on turns whose ``User:`` is out of view minus in view.

    ``long_minus_short`` is the lesson's ``{method: [difference per seed, as a fraction]}``.
    """
    quantity = ("full fine-tuning's format rate on turns whose 'User:' is out of view minus on turns that show it, "
                "in points (negative if long questions miss more)")
    if not attempted(guess):
        return check_prediction(guess, 0.0, tolerance=5.0, quantity=quantity, why="")
    if not long_minus_short.get("full"):
        return cells_not_run("full fine-tuning's differences (long_minus_short)")
    measured = 100 * fmean(long_minus_short["full"])
    if measured >= 0:
        why = ("long questions follow the format at least as often, not less: what the model reads just before it "
               "writes 'Assistant: ' is the end of the question line, and that stays in view however long the "
               "question is.")
    else:
        why = ("here long questions do follow the format less often: with these settings the tag out of view costs "
               "something. Compare the rows by kind above to see whether that is where most misses sit.")
    return check_prediction(guess, measured, tolerance=5.0, unit=" points", quantity=quantity, why=why)


FORMAT_MISSES = Question(
    "Full fine-tuning and LoRA both miss the turn format on many validation turns. Read the table's rows (by kind of "
    "turn, by what the model sees of the question, and the lines on the letter 'U'): which reading fits them?",
    [
        Option("Misses sit at the closing thanks and first questions; long ones miss no more.", True,
               "The rows by kind put the lowest rates at the closing thanks and the first questions, the out-of-view "
               "row misses no more than the in-view one, and the last lines show that most of the missing "
               "probability goes to a reply starting with 'U'. Why those turns trip the model is not resolved at "
               "this scale."),
        Option("The misses are sampling noise: scored on more turns, every row would come out equal.", False,
               "The format rate is computed exactly from the model's probabilities, with no sampling at all, and "
               "the rows by kind differ by tens of points over more than a hundred turns each (the count column): "
               "the misses have a place."),
        Option("Earlier turns, still in view, show whose line it is when its own tag is not.", False,
               "Earlier turns lie further back than the question's own 'User:' tag: when the tag is out of view, "
               "so is everything before it. The model reads only its last characters."),
        Option("RoPE lets the model see the 'User:' tag even far outside its context.", False,
               "The model reads only its context: what lies further back does not reach it at all. Long questions "
               "do fine without seeing the tag."),
        Option("Long questions push their 'User:' tag out of view, and that is where most misses are.", False,
               "Compare the out-of-view row with the in-view row: the turns whose tag is out of view do not miss more "
               "often, so the short view is not where the misses come from."),
    ], seed="lesson09.format_misses.v4")


@exercise
def format_misses(answer: str | EllipsisType) -> Feedback:
    """Explain: where the format misses come from (see :data:`FORMAT_MISSES`)."""
    return FORMAT_MISSES.check(answer)


@torch.no_grad()
def reply_chance(model: nn.Module, prompt: str, temperature: float) -> float:
    """The probability that a reply sampled at ``temperature`` right after ``prompt`` starts with ``Assistant: ``.

    The model reads the last characters of its context, as when it writes; eval mode, its mode restored.
    """
    n, context = len(chat.ASSISTANT), model.config.context
    ids = encode((prompt + chat.ASSISTANT)[-(context + 1):]).to(next(model.parameters()).device)
    with evaluating(model):
        logits = model(ids[None, :-1])[0, -n:] / temperature
    return torch.log_softmax(logits, -1).gather(-1, ids[-n:, None]).sum().exp().item()


QUESTION_LETTERS = 6  # chat_prompt: the user's last turn asks something (at least this many letters after its tag)


@exercise
def chat_prompt(prompt: str | EllipsisType, model: nn.Module, temperature: float) -> Feedback:
    """Do: a prompt that asks a question in the user's turn, after which the fine-tuned ``model`` replies in turn
    (``Assistant: ...``) at least half the time.

    It prints a reply sampled after the prompt (seed 0), and, for a prompt that starts with ``User: ``, how likely
    the format is without that tag.
    """
    quantity = "the chance that a sampled reply starts with 'Assistant: '"
    if not attempted(prompt):
        return not_attempted("write your prompt, a string,")
    if not isinstance(prompt, str) or not clean(prompt) or clean(prompt) != prompt:
        return tell(False, f"Write the prompt as a non-empty string of plain ASCII characters, got {prompt!r}.")
    lines = prompt.rstrip("\n").split("\n")
    if lines[-1].startswith(chat.ASSISTANT.strip()) or any(line.strip() == chat.ASSISTANT.strip() for line in lines):
        return tell(False, "The prompt must end with what the user says, and an empty 'Assistant:' line is no reply: "
                           "a prompt of the assistant's own lines only asks the model to repeat them. Ask it "
                           "something, and let it answer.")
    question = lines[-1][len(chat.USER):] if lines[-1].startswith(chat.USER) else ""
    if sum(character.isalpha() for character in question) < QUESTION_LETTERS:
        return tell(False, "Ask the model something, as the user does in the dialogues it was fine-tuned on: the "
                           "prompt's last line is the user's turn, with a question of a few words. A prompt that is "
                           "no question at all (a '?', a greeting, an empty turn) says nothing about the turn format.")
    chance = 100 * reply_chance(model, prompt, temperature)
    print(f"after your prompt the model writes: {generate(model, prompt, 60, temperature, seed=0)!r}")
    if prompt.startswith(chat.USER) and len(prompt) > len(chat.USER):
        bare = 100 * reply_chance(model, prompt[len(chat.USER):], temperature)
        print(f"the same prompt without its 'User: ' tag: {bare:.1f}% of replies start with 'Assistant: '")
    return check_target(chance, target=PROMPT_TARGET, quantity=quantity, unit="%",
                        hint="where, in the training dialogues, does an 'Assistant: ' line begin? Make your prompt "
                             "stop exactly there.")


HINTS: dict[str, tuple[str, str]] = {
    "long_questions": (
        "When the model writes 'Assistant: ', which characters does it read just before? Are they in view for a "
        "long question?",
        "If the cue is the end of the question line, a long question loses nothing by its tag being out of view: "
        "which sign does that give the difference?"),
    "format_misses": (
        "Compare the out-of-view row with the in-view row for both methods: do long questions miss more?",
        "Look at the rows by kind and the lines on the letter 'U': after which turns are the misses, and what does "
        "the model write instead?"),
    "chat_prompt": (
        "The lesson prints a training dialogue in section 2: in what shape did the model see questions?",
        "Try two prompts that differ only in their last character or two, and compare the chances the check prints: "
        "which ending looks most like the moment, in the training text, just before the assistant speaks?"),
}
SOLUTIONS: dict[str, object] = {"long_questions": 7.0, "format_misses": FORMAT_MISSES.right_letter,
                                "chat_prompt": "User: What does heapq.heappush do?\n"}
WRONG_ANSWERS: dict[str, list[tuple[object, str]]] = {
    "long_questions": [(-20.0, "too low")],
    "format_misses": [(FORMAT_MISSES.letter_of(1), "computed exactly"),
                      (FORMAT_MISSES.letter_of(2), "so is everything before it"),
                      (FORMAT_MISSES.letter_of(4), "not where the misses come from")],
    "chat_prompt": [("User: What does heapq.heappush do?", "stop exactly there"),
                    ("Assistant: \nAssistant: \nAssistant: \n", "no reply")],
}
_COACH = Coach(HINTS, SOLUTIONS)
hint, solution = _COACH.hint, _COACH.solution
