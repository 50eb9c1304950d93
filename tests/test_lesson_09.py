"""Lesson 09's drivers: the per-turn format check, its breakdown, and forgetting read at a matched chat loss."""

import math

import torch

from ftlib import runtime
from ftlib.lessons import chat_finetuning
from ftlib.lm import chat, model

SMALL = model.Config(layers=2, dim=32, heads=2, context=16)
TEXT = chat.chat_text([{"topic": "t", "turns": [["What does a.b do?", "It does x."], ["Thanks!", "You're welcome!"]]},
                       {"topic": "t", "turns": [["A question long enough to push the user out?", "Yes."]]}] * 3)[0]


def _lm():
    runtime.seed_everything(0)
    return model.TinyLM(SMALL).eval()


def test_turn_format_scores_every_turn_and_names_its_kind():
    lm = _lm()
    turns = chat_finetuning.turn_format(lm, TEXT, temperature=0.7)
    count = len([m for m in range(len(TEXT)) if TEXT.startswith(chat.ASSISTANT, m) and (m == 0 or TEXT[m - 1] == "\n")
                 and m >= SMALL.context])
    assert len(turns["chance"]) == len(turns["kind"]) == len(turns["length"]) == count
    assert set(turns["kind"]) <= {"first question", "follow-up question", "closing thanks"}
    assert "closing thanks" in turns["kind"] and "first question" in turns["kind"]
    assert torch.all((turns["chance"] >= 0) & (turns["chance"] + turns["user_first"] <= 1 + 1e-6))
    mean_all = turns["chance"].mean().item()
    assert math.isclose(mean_all, chat.format_rate(lm, TEXT, prompts=10_000, temperature=0.7), rel_tol=1e-5)
    assert chat_finetuning.view(lm) == SMALL.context - len(chat.ASSISTANT) + 1


def test_the_breakdown_splits_turns_by_kind_and_by_what_the_model_sees():
    turns = {"chance": torch.tensor([1.0, 0.0, 0.5, 0.25]), "user_first": torch.zeros(4),
             "length": torch.tensor([10, 60, 20, 70]),
             "kind": ["first question", "follow-up question", "closing thanks", "first question"]}
    parts = chat_finetuning.format_breakdown(turns, shown=54)
    assert parts["first question"] == (0.625, 2) and parts["closing thanks"] == (0.5, 1)
    assert parts["question in view"] == (0.75, 2) and parts["'User:' out of view"] == (0.125, 2)


def test_prose_at_chat_interpolates_at_the_first_crossing_and_is_nan_when_never_reached():
    curve = {0: {"chat": 3.0, "prose": 2.0}, 10: {"chat": 2.0, "prose": 2.4}, 20: {"chat": 1.5, "prose": 2.5}}
    assert math.isclose(chat_finetuning.prose_at_chat(curve, 2.5), 2.2)
    assert math.isclose(chat_finetuning.prose_at_chat(curve, 1.5), 2.5)
    assert math.isnan(chat_finetuning.prose_at_chat(curve, 1.0))
