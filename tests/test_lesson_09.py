"""Lesson 09's drivers: the per-turn format check, its breakdown, and forgetting read at a matched chat loss."""

import math
import time

import matplotlib
import pytest
import torch

from ftlib import runtime
from ftlib.course import pretrain_lm
from ftlib.course.lessons import chat_finetuning, chat_sweep, experiments, self_chat
from ftlib.course.lessons.exercises import lesson09 as exercises
from ftlib.lm import chat, model
from ftlib.lm.finetune import finetune
from ftlib.lm.tokenizer import VOCAB, decode

matplotlib.use("Agg")

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


LONG_MINUS_SHORT = {"full": [0.044, 0.101, 0.070], "lora": [0.098, 0.052, 0.009]}  # the lesson's, default seeds


@pytest.fixture(scope="module")
def lora_chat_model():
    """The lesson's seed-0 LoRA model: 80 steps on the training dialogues (about 5 s on 2 cores)."""
    runtime.seed_everything(0)
    train_text, _ = chat.chat_text(chat.load_dialogues("train"))
    return finetune(pretrain_lm.load_pretrained(), train_text, "lora", 80, 1e-2, 0, batch_size=8)[0]


def test_untouched_exercises_say_what_to_do_and_neither_pass_nor_fail(capsys):
    tiny = _lm()
    for feedback in (exercises.long_questions(..., LONG_MINUS_SHORT), exercises.format_misses(...),
                     exercises.chat_prompt(..., tiny, 0.7)):
        assert feedback.passed is None and "not attempted" in feedback.message
    out = capsys.readouterr().out
    assert "in points" in out and ") Misses sit at the closing thanks" in out and "your prompt" in out
    assert "7.2" not in out  # the measured difference stays hidden


def test_long_questions_prediction_passes_near_the_measured_difference_and_explains_a_miss():
    assert exercises.long_questions(exercises.SOLUTIONS["long_questions"], LONG_MINUS_SHORT).passed is True
    wrong = exercises.long_questions(exercises.WRONG_ANSWERS["long_questions"][0][0], LONG_MINUS_SHORT)
    assert wrong.passed is False and "too low" in wrong.message
    assert "in view however long the question is" not in wrong.message


def test_format_misses_question_right_and_wrong_answers():
    assert exercises.format_misses(exercises.SOLUTIONS["format_misses"]).passed is True
    for answer, words in exercises.WRONG_ANSWERS["format_misses"]:
        wrong = exercises.format_misses(answer)
        assert wrong.passed is False and words in wrong.message
    rope = exercises.FORMAT_MISSES.letter_of(3)
    assert "reads only its context" in exercises.format_misses(rope).message


def test_the_format_question_does_not_state_the_finding():
    """The stem used to say that long questions do not miss more: the finding the table is read for."""
    stem = exercises.FORMAT_MISSES.prompt.lower()
    assert "do not miss" not in stem and "out of the model's view" not in stem
    assert any("long questions" in o.text.lower() and not o.correct for o in exercises.FORMAT_MISSES.choices)


@pytest.mark.parametrize("guess, passes", [(7.0, True), (2.2, True), (12.1, True), (2.1, False), (12.2, False),
                                           (0, False), (-20, False), (0.07, False), ("7", False)])
def test_long_questions_passes_within_five_points_of_the_mean_difference(guess, passes, capsys):
    feedback = exercises.long_questions(guess, LONG_MINUS_SHORT)
    assert feedback.passed is passes and (passes or "7.2" not in feedback.message)


def test_long_questions_explains_the_sign_it_measured():
    """With a negative measured difference the explanation used to read 'follow the format less often, not less'."""
    negative = exercises.long_questions(-3, {"full": [-0.03, -0.05, -0.01]})
    assert negative.passed is True and "not less" not in negative.message and "less often" in negative.message
    positive = exercises.long_questions(7, LONG_MINUS_SHORT)
    assert "at least as often, not less" in positive.message
    assert "minus" not in exercises.HINTS["long_questions"][1]  # the second hint is no recipe for copying the table


@pytest.mark.slow
def test_chat_prompt_in_the_training_format_is_answered_in_turn(lora_chat_model, capsys):
    right = exercises.chat_prompt(exercises.SOLUTIONS["chat_prompt"], lora_chat_model, 0.7)
    assert right.passed is True and "Target met" in right.message
    assert "without its 'User: ' tag" in capsys.readouterr().out
    wrong = exercises.chat_prompt(exercises.WRONG_ANSWERS["chat_prompt"][0][0], lora_chat_model, 0.7)
    assert wrong.passed is False and "stop exactly there" in wrong.message and "\\n" not in wrong.message
    degenerate = exercises.chat_prompt(exercises.WRONG_ANSWERS["chat_prompt"][1][0], lora_chat_model, 0.7)
    assert degenerate.passed is False and "no reply" in degenerate.message
    hints = " ".join(exercises.HINTS["chat_prompt"])
    assert "newline" not in hints and "\\n" not in hints
    assert exercises.chat_prompt("", lora_chat_model, 0.7).passed is False
    for lazy in ("Assistant: ", "hello\n", "User: What does heapq.heappush do? Assistant:"):  # no question line
        assert exercises.chat_prompt(lazy, lora_chat_model, 0.7).passed is False, lazy
    assert exercises.chat_prompt("User: café?\n", lora_chat_model, 0.7).passed is False


@pytest.mark.parametrize("prompt", ["?\n", "User: \n", "Thanks!\n", "User: ?\n", "What does heapq.heappush do?\n",
                                    "User: What does heapq.heappush do?\nThanks!\n"])
def test_chat_prompt_refuses_a_prompt_whose_last_line_is_no_question_of_the_user(prompt):
    """Degenerate prompts that a fine-tuned model answers in turn anyway (a second reader: '?\\n' 75.6%, an empty
    turn 63.6%, 'Thanks!\\n' 86.2%) say nothing about the turn format: refused before any sampling."""
    feedback = exercises.chat_prompt(prompt, None, 0.7)
    assert feedback.passed is False and "user's turn" in feedback.message


@pytest.mark.slow
def test_live_temperature_scores_and_samples_the_model(lora_chat_model, capsys):
    val_text, _ = chat.chat_text(chat.load_dialogues("val"))
    start = time.perf_counter()
    chat_finetuning.at_temperature(lora_chat_model, "LoRA r=8", val_text, ["What does json.dumps do?"], 1.5)
    seconds = time.perf_counter() - start  # about 1 s on 2 cores; measured, not asserted
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("temperature = 1.5: LoRA r=8 starts ") and "validation replies" in lines[0]
    assert lines[1] == "User: What does json.dumps do?" and seconds > 0
    assert 1.5 in chat_finetuning.TEMPERATURES and 0.7 in chat_finetuning.TEMPERATURES


def test_a_run_returns_one_record_that_carries_its_model_curves_and_turns(capsys):
    """The study keeps its settings only: each run's model, scores by step and turns come back in its record."""
    text, mask = chat.chat_text([{"topic": "t", "turns": [["What does a.b do?", "It does x."]]}] * 24)
    study = chat_finetuning.ChatFinetuning(_lm(), text, text, mask, steps=6, lr={"full": 1e-3, "lora": 1e-2},
                                           batch_size=2, rank=2, temperature=0.7, eval_chars=256)
    results = experiments.run_grid(study.run, method=["full", "lora"], seed=[0, 1])  # checks the records' keys
    assert set(results[0]) == {"method", "seed", "chat", "answer", "prose", "val_loss", "format", "seconds",
                               "trainable", "model", "curves", "turns"}
    assert list(results[0]["curves"]) == [0, 2, 5, 6] and results[0]["curves"][0] == study.base_losses
    assert results[0]["model"] is not results[1]["model"] and len(results[0]["turns"]["chance"]) > 0
    assert "models" not in vars(study) and "curves" not in vars(study) and "turns" not in vars(study)
    full_chat = results.values("chat", method="full")
    assert math.isclose(chat_finetuning.mean_at(results, "full", 6, "chat"), sum(full_chat) / 2)
    before = experiments.Results([{"method": "base", "seed": 0, **study.base_losses, "trainable": 0, "format": 0.0}])
    names = {"base": "base model", "full": "full fine-tuning", "lora": "LoRA r=2"}
    lines = chat_finetuning.score_table(before, results, names).splitlines()
    assert lines[0] == f"{'':<18}{'trainable':>10}{'chat':>14}{'answers':>14}{'prose':>14}{'format':>10}"
    assert [line[:18].strip() for line in lines[1:]] == ["base model", "full fine-tuning", "LoRA r=2"]
    assert lines[1].endswith("0.0%")
    stored = experiments.Results({**r, **chat_sweep.stored_run(r, chat_finetuning.view(study.base))} for r in results)
    by_group = chat_finetuning.print_format_breakdown(study, stored, names)
    assert all(len(rates) == 2 for rates in by_group["lora"].values()) and "turns" in capsys.readouterr().out
    chat_finetuning.plot_over_steps(results, 6, names)


def test_the_validation_dialogues_must_hold_a_reporting_and_a_choosing_slice():
    text, mask = chat.chat_text([{"topic": "t", "turns": [["What does a.b do?", "It does x."]]}] * 3)
    with pytest.raises(ValueError, match="eval_chars=256 needs at least 514"):
        chat_finetuning.ChatFinetuning(_lm(), text, text, mask, 2, {"full": 1e-3}, 2, 2, 0.7, eval_chars=256)


def test_checks_are_dense_early_and_end_at_the_last_step():
    assert chat_finetuning.check_steps(80) == [2, 5, 10, 20, 40, 80]
    assert chat_finetuning.check_steps(200) == [2, 5, 10, 20, 40, 80, 160, 200]
    assert chat_finetuning.check_steps(3) == [2, 3]


def _sweep(val_losses: dict[str, list[float]]) -> experiments.Results:
    rates = {"full": [1e-4, 3e-4, 1e-3, 3e-3], "lora": [1e-3, 3e-3, 1e-2, 3e-2]}
    return experiments.Results({"method": m, "lr": lr, "seed": s, "val_loss": v + 0.01 * s}
                               for m, losses in val_losses.items() for lr, v in zip(rates[m], losses)
                               for s in range(3))


def test_the_sweep_chooses_the_lowest_validation_loss_and_refuses_an_edge():
    sweep = _sweep({"full": [2.0, 1.6, 1.5, 1.7], "lora": [2.1, 1.8, 1.7, math.nan]})
    assert chat_sweep.chosen(sweep) == {"full": 1e-3, "lora": 1e-2}
    with pytest.raises(ValueError, match="edge of its grid"):
        chat_sweep.chosen(_sweep({"full": [1.0, 1.6, 1.5, 1.7], "lora": [2.1, 1.8, 1.7, 1.9]}))


def test_matched_reads_full_fine_tunings_prose_at_loras_chat_loss_on_its_rate_curve():
    rows = [("full", 1e-4, 2.0, 2.2), ("full", 3e-4, 1.8, 2.4), ("full", 1e-3, 1.6, 2.8), ("full", 3e-3, 1.7, 3.2),
            ("lora", 1e-3, 2.2, 2.25), ("lora", 3e-3, 1.9, 2.4), ("lora", 1e-2, 1.75, 2.5), ("lora", 3e-2, 2.0, 3.1)]
    sweep = experiments.Results({"method": m, "lr": lr, "seed": 0, "chat": c, "prose": p} for m, lr, c, p in rows)
    points = chat_sweep.matched(sweep, 0, {"full": 1e-3, "lora": 1e-2})
    assert [p[0] for p in points] == [3e-3, 1e-2]  # LoRA at 1e-3 learns less than full at its lowest rate: left out
    assert math.isclose(points[0][2], 2.3) and math.isclose(points[1][2], 2.5)


def test_dialogue_batches_train_every_character_once_per_epoch_and_never_cross_a_dialogue():
    dialogues = [{"topic": "t", "turns": [["What does a.b do?", "It does x, y and z, and more besides."],
                                          ["Thanks!", "You're welcome!"]]},
                 {"topic": "u", "turns": [["Hi?", "Yes."]]}]
    batches = chat.dialogue_batches(dialogues, batch_size=1, context=16, seed=0)
    texts = [chat.PREAMBLE + chat.format_dialogue(d) for d in dialogues]
    windows = [next(batches) for _ in range(sum(max(1, (len(t) - 9) // 8 + ((len(t) - 9) % 8 > 0)) for t in texts))]
    trained = sorted("".join(decode([t]) for t in y[0].tolist() if t >= 0) for _, y in windows)
    assert sorted("".join(t[1:] for t in texts)) == sorted("".join(trained))
    for x, _ in windows:  # every window lies inside one dialogue (the short one is padded, its padding ignored)
        assert any(decode(x[0]).rstrip("\n") in t for t in texts)
    with pytest.raises(ValueError, match="fewer than batch_size"):
        next(chat.dialogue_batches(dialogues[1:], batch_size=8, context=16, seed=0))


@pytest.mark.parametrize("transcript, turns, reason", [
    ("Assistant: Foo.\nUser: And b?\nAssistant: Bar.\nUser: Th", [[None, "Foo."], ["And b?", "Bar."]], "cut"),
    ("Assistant: Foo.\nUser: ok\nAssistant: B\n\nUser: x", [[None, "Foo."], ["ok", "B"]], "end"),
    ("Assistant: Foo.\nAssistant: Bar.\n", [[None, "Foo."]], "malformed"),
    ("Assistant: \nUser: x\n", [], "malformed"),
    ("User: Foo.\n", [], "malformed"),
    ("Assistant: Foo, cut before its end", [], "cut")])
def test_baizes_filter_keeps_whole_well_formed_turns(transcript, turns, reason):
    assert chat.keep_turns(transcript) == (turns, reason)


def test_distinct_pairs_measures_repeated_replies():
    assert self_chat.distinct_pairs(["a b c", "a b c"]) == 0.5
    assert self_chat.distinct_pairs(["a b", "c d"]) == 1.0 and self_chat.distinct_pairs(["a"]) == 0.0


def test_the_answer_choice_finds_the_answer_a_model_was_built_to_prefer_and_is_at_chance_when_blind():
    dialogues = [{"topic": "t", "turns": [[f"What does m.f{i} do?", f"{'xyzw'[i]}{'xyzw'[i]} does it."]]}
                 for i in range(4)]

    class Knows(torch.nn.Module):  # puts its weight on the letter named by the digit at the question's end
        config = model.Config(layers=1, dim=8, heads=1, context=64)

        def __init__(self):
            super().__init__()
            self.scale = torch.nn.Parameter(torch.ones(()))

        def forward(self, ids):
            logits = torch.zeros(*ids.shape, len(VOCAB))
            for row, seq in enumerate(ids.tolist()):
                text = decode(seq)
                digit = [c for c in text if c.isdigit()][-1]
                logits[row, :, VOCAB.index("xyzw"[int(digit)])] = 9.0
            return logits * self.scale

    assert chat_finetuning.answer_choice(Knows(), dialogues, candidates=4, chars=2) == 1.0
    blind = chat_finetuning.knowledge_test({"blind": _lm()}, dialogues, candidates=4, chars=2)["blind"]
    assert 0.0 <= blind <= 1.0
    with pytest.raises(ValueError, match="candidates=5"):
        chat_finetuning.answer_choice(_lm(), dialogues, candidates=5)


def test_matched_length_reads_full_fine_tunings_prose_at_loras_last_chat_loss_along_its_budgets():
    sweep = experiments.Results([{"method": "full", "lr": 1e-3, "seed": 0, "chat": 1.6, "prose": 2.6},
                                 {"method": "lora", "lr": 1e-2, "seed": 0, "chat": 1.8, "prose": 2.5}])
    lengths = experiments.Results([{"method": "full", "steps": 10, "seed": 0, "chat": 2.4, "prose": 2.1},
                                   {"method": "full", "steps": 40, "seed": 0, "chat": 2.0, "prose": 2.3},
                                   {"method": "lora", "steps": 40, "seed": 0, "chat": 2.2, "prose": 2.2}])
    rates = {"full": 1e-3, "lora": 1e-2}
    assert [p[0] for p in chat_sweep.length_curve(sweep, lengths, "full", 0, rates, 80)] == [10, 40, 80]
    lora, full = chat_sweep.matched_length(sweep, lengths, 0, rates, 80)
    assert lora == 2.5 and math.isclose(full, 2.3 + 0.5 * 0.3)
