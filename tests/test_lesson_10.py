"""Lesson 10's additions: RoPE by parts, the wavelengths, the sliding-window baseline, checks along a fine-tune, and
the chat model extended against one kept at its trained context."""

import math
import random
import time

import matplotlib
import pytest
import torch

from ftlib import runtime
from ftlib.course import pretrain_lm
from ftlib.course.lessons import context_extension, experiments
from ftlib.course.lessons.exercises import lesson10 as exercises
from ftlib.lm import chat, context, corpus, model

matplotlib.use("Agg")
from ftlib.lm.tokenizer import VOCAB, encode

SMALL = model.Config(layers=2, dim=32, heads=2, context=16)  # head dim 16: 8 rotated pairs
TEXT = "".join(random.Random(0).choices(VOCAB[1:], k=2000))


def _lm(seed=0):
    runtime.seed_everything(seed)
    return model.TinyLM(SMALL).eval()


def test_wavelengths_are_two_pi_over_the_rope_frequencies():
    waves = context.wavelengths(SMALL)
    assert waves.shape == (8,)
    assert math.isclose(waves[0].item(), 2 * math.pi, rel_tol=1e-6)  # the fastest pair turns once every 2 pi
    assert math.isclose(waves[1].item(), 2 * math.pi * 10000 ** (2 / 16), rel_tol=1e-5)
    assert torch.all(waves[1:] > waves[:-1])
    lesson = context.wavelengths(model.Config())  # TinyLM: head dim 32, 16 pairs
    assert [round(w) for w in lesson[:6].tolist()] == [6, 11, 20, 35, 63, 112]


def test_parts_factors_keep_fast_pairs_and_interpolate_slow_ones():
    config = model.Config()  # context 64
    factors = context.parts_factors(config, 256)
    turns = config.context / context.wavelengths(config)
    assert torch.all(factors[turns >= 2] == 1.0)  # turn twice or more inside the context: unchanged
    assert torch.all(factors[turns <= 1] == 0.25)  # at most once: interpolated as PI (64/256)
    middle = (turns > 1) & (turns < 2)
    assert middle.any() and torch.all((factors[middle] > 0.25) & (factors[middle] < 1))
    assert torch.all(factors[1:] <= factors[:-1])  # slower pairs are squeezed at least as much
    assert torch.all(context.parts_factors(config, 64) == 1.0)  # no longer context: nothing changes
    assert torch.all(context.parts_factors(config, 32) == 1.0)  # never stretches
    with pytest.raises(ValueError, match="ramp"):
        context.parts_factors(config, 256, ramp=(2.0, 1.0))


def test_parts_scales_each_pair_of_a_copy_and_pi_is_parts_with_every_pair_slow():
    lm = _lm()
    parts = context.scaled(lm, "parts", 64)
    assert lm.rope_scale is None and parts.position_scale == 1.0 and parts.config.context == 64
    assert torch.equal(parts.rope_scale, context.parts_factors(SMALL, 64))
    ids = torch.randint(0, 96, (2, 20))
    with torch.no_grad():
        assert not torch.allclose(parts(ids), lm(ids))
        pi = context.scaled(lm, "pi", 64)
        everything = context.scaled(lm, "naive", 64)
        everything.rope_scale = torch.full((8,), 0.25)  # every pair squeezed 4x is PI
        assert torch.allclose(everything(ids), pi(ids), atol=1e-5)
        everything.rope_scale = torch.ones(8)
        assert torch.equal(everything(ids), lm(ids))


def test_sliding_bits_reads_only_the_last_reach_characters():
    lm = _lm()
    text = TEXT[:4 * 48 + 1]
    bits = context.sliding_bits(lm, text, 48, reach=16, stride=4)
    whole = context.position_bits(lm, text, 48)
    assert bits.shape == (48,) and torch.equal(bits[:16], whole[:16])
    assert not torch.allclose(bits[16:], whole[16:])
    # position 19 (the last of a stride) reads characters 4..19 of each window, exactly 16: score it by hand
    rows = torch.stack([encode(text[w * 48 + 4:w * 48 + 21]) for w in range(4)])
    with torch.no_grad():
        nats = torch.nn.functional.cross_entropy(lm(rows[:, :-1])[:, -1], rows[:, -1], reduction="none")
    assert math.isclose(bits[19].item(), (nats / math.log(2)).mean().item(), rel_tol=1e-5)
    with pytest.raises(ValueError, match="stride"):
        context.sliding_bits(lm, text, 48, reach=16, stride=5)


def test_extend_run_checks_the_fine_tune_along_the_way():
    lm = _lm()
    study = context_extension.ContextExtension(lm, TEXT[:4 * 32 + 1], (16, 32), TEXT, steps=4, lr=1e-3,
                                               batch_size=2, checks=2)
    assert study.window.shape == (32,) and study.check_steps == [2, 4]
    results = experiments.run_grid(study.extend_run, method=["parts"], seed=[0])  # checks the record's keys
    [record] = results
    assert set(record) == {"method", "seed", "x1", "x2", "rise", "seconds", "model", "curves"}
    assert list(record["curves"]) == [2, 4] and record["model"].config.context == 32
    snapshots = study.snapshots(results)
    assert [(r["method"], r["step"]) for r in snapshots] == [("parts", 2), ("parts", 4)]
    assert math.isclose(snapshots[-1]["past"], record["x2"], rel_tol=1e-6)
    assert math.isclose(snapshots[-1]["excess"], record["x2"] - study.beyond(study.window, 32), abs_tol=1e-5)
    assert torch.equal(study.mean_after(results, "parts"), record["curves"][4])
    assert torch.equal(study.mean_after(results, "parts", 2), record["curves"][2])
    assert vars(study).keys() == {"base", "evaluation", "lengths", "train_text", "steps", "lr", "batch_size",
                                  "checks", "window"}  # the study keeps its settings, not its runs


@pytest.fixture(scope="module")
def lesson_study():
    """The lesson's setting (no fine-tune run): the shipped base model and its 8,192 validation characters."""
    base = pretrain_lm.load_pretrained()
    train_text, val_text = corpus.split_text()
    return context_extension.ContextExtension(base, val_text[:8193], (64, 128, 256), train_text, 40, 1e-3, 3)


def test_untouched_exercises_say_what_to_do_and_neither_pass_nor_fail(lesson_study, capsys):
    study = lesson_study
    for feedback in (exercises.naive_loss(..., study, study.window), exercises.why_pi_hurts(...),
                     exercises.keep_fast_pairs(..., study.base, study)):
        assert feedback.passed is None and "not attempted" in feedback.message
    out = capsys.readouterr().out
    assert "trained context" in out and "fast pairs tell neighbours" in out and "pairs keep their frequency" in out


def test_naive_loss_prediction_passes_near_the_measured_loss_and_explains_a_miss(lesson_study):
    study = lesson_study
    naive = study.curve(study.base)
    assert exercises.naive_loss(exercises.SOLUTIONS["naive_loss"], study, naive).passed is True
    wrong = exercises.naive_loss(exercises.WRONG_ANSWERS["naive_loss"][0][0], study, naive)
    assert wrong.passed is False and "too low" in wrong.message and "worse, not better" not in wrong.message


def test_why_pi_hurts_question_right_and_wrong_answers():
    assert exercises.why_pi_hurts(exercises.SOLUTIONS["why_pi_hurts"]).passed is True
    wrong = exercises.why_pi_hurts(exercises.WRONG_ANSWERS["why_pi_hurts"][0][0])
    assert wrong.passed is False and "every angle is smaller" in wrong.message


def test_keep_fast_pairs_passes_when_only_the_fast_pairs_are_kept(lesson_study):
    study = lesson_study
    assert exercises.keep_fast_pairs(exercises.SOLUTIONS["keep_fast_pairs"], study.base, study).passed is True
    squeezed = exercises.keep_fast_pairs(exercises.WRONG_ANSWERS["keep_fast_pairs"][0][0], study.base, study)
    assert squeezed.passed is False and "you squeeze pairs that already turn" in squeezed.message
    kept = exercises.keep_fast_pairs(8, study.base, study)
    assert kept.passed is False and "angles the model never saw" in kept.message
    assert exercises.keep_fast_pairs(17, study.base, study).passed is False
    split = exercises.split_scaled(study.base, 16, 256)
    assert split.config.context == 256 and torch.equal(split.rope_scale, torch.ones(16))


@pytest.mark.parametrize("keep, passes", [(k, k == 5) for k in range(17)])
def test_keep_fast_pairs_passes_only_around_the_pairs_that_turn_inside_the_trained_context(lesson_study, keep, passes,
                                                                                          capsys):
    """Only 5 passes (every pair that turns inside 64 characters kept); 4 (the pair of wavelength 63 squeezed) and 6
    (one slow pair kept) miss, each told the side it is on."""
    study = lesson_study
    feedback = exercises.keep_fast_pairs(keep, study.base, study)
    assert feedback.passed is passes
    if not passes:
        assert ("you squeeze pairs" if keep < 5 else "angles the model never saw") in feedback.message


def test_keep_fast_pairs_takes_a_count_summed_from_the_wavelengths_and_rejects_floats(lesson_study, capsys):
    study = lesson_study
    counted = (context.wavelengths(study.base.config) < study.trained).sum()  # tensor(5): a natural way to write it
    assert exercises.keep_fast_pairs(counted, study.base, study).passed is True
    for answer, words in exercises.WRONG_ANSWERS["keep_fast_pairs"]:
        wrong = exercises.keep_fast_pairs(answer, study.base, study)
        assert wrong.passed is False and words in wrong.message
    for bad in ("5", True, torch.tensor(True), -1, None):
        assert exercises.keep_fast_pairs(bad, study.base, study).passed is False


def test_every_wrong_pi_option_fails_and_the_fast_pairs_are_not_named_by_the_right_one_alone():
    """The question asks why squeezing the *fast* pairs hurts: the right option must not be the only one about
    them, and no wrong option may be refuted by the question's own premise (by parts squeezes the slow pairs)."""
    for answer, words in exercises.WRONG_ANSWERS["why_pi_hurts"]:
        wrong = exercises.why_pi_hurts(answer)
        assert wrong.passed is False and words in wrong.message
    assert sum("fast pairs" in o.text for o in exercises.PI_FAST_PAIRS.choices) >= 2
    assert not any("slow pairs are the problem" in o.text for o in exercises.PI_FAST_PAIRS.choices)


@pytest.mark.parametrize("guess, passes", [(3.5, True), (3.15, True), (3.9, True), (3.1, False), (3.95, False),
                                           (2.06, False), ("3.5", False)])
def test_naive_loss_passes_within_its_tolerance_of_the_printed_loss(lesson_study, guess, passes, capsys):
    study = lesson_study
    feedback = exercises.naive_loss(guess, study, study.curve(study.base))
    assert feedback.passed is passes and (passes or isinstance(guess, str) or "3.5" not in feedback.message)


def test_live_position_scale_scores_the_base_model(lesson_study, capsys):
    start = time.perf_counter()
    context_extension.at_position_scale(lesson_study, 0.5)
    seconds = time.perf_counter() - start  # well under a second on 2 cores; measured, not asserted
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("position scale = 0.5: positions 0-255 turn RoPE as positions 0-127.5 would")
    assert lines[1].startswith("loss: positions 0-63 ") and "positions 64-255" in lines[1] and seconds > 0
    assert 1.0 in context_extension.POSITION_SCALES and 0.25 in context_extension.POSITION_SCALES


QUESTIONS = [f"What does module_{i}.function do exactly?" if i % 3 else "Thanks!" for i in range(40)]  # 1 in 3 short
CHAT = "".join(f"User: {q}\nAssistant: It does thing {i}.\n\n" for i, q in enumerate(QUESTIONS))


def test_long_question_turns_are_the_turns_whose_user_tag_a_short_view_cannot_show():
    turns = context_extension.long_question_turns(CHAT, view=20, first=100)
    assert turns and all(CHAT.startswith("Assistant: ", s) and s >= 100 for s in turns)
    for s in turns:  # the question line (newline included) is longer than the view
        line = CHAT[CHAT.rfind("\n", 0, s - 1) + 1:s]
        assert line.startswith("User: What does") and len(line) > 20
    replies = [m for m in range(100, len(CHAT)) if CHAT.startswith("Assistant: ", m)]
    assert len(turns) == sum(CHAT[CHAT.rfind("\n", 0, m - 1) + 1:m] != "User: Thanks!\n" for m in replies)
    assert context_extension.long_question_turns(CHAT, view=200, first=0) == []  # every tag in view
    short = context_extension.long_question_turns(CHAT, view=20, first=100, long=False)  # the control: tag in view
    assert short and sorted(turns + short) == replies
    assert all(CHAT[CHAT.rfind("\n", 0, s - 1) + 1:s] == "User: Thanks!\n" for s in short)


def test_format_chances_are_per_turn_and_read_the_whole_context():
    lm = _lm()
    starts = context_extension.long_question_turns(CHAT, view=5, first=SMALL.context)
    chances = chat.format_chances(lm, CHAT, starts, temperature=1.0)
    assert chances.shape == (len(starts),) and ((0 <= chances) & (chances <= 1)).all()
    every = [m for m in range(SMALL.context, len(CHAT)) if CHAT.startswith("Assistant: ", m) and CHAT[m - 1] == "\n"]
    assert math.isclose(chat.format_chances(lm, CHAT, every).mean().item(),
                        chat.format_rate(lm, CHAT, prompts=len(every)), rel_tol=1e-5)
    with pytest.raises(ValueError, match="context=16"):
        chat.format_chances(lm, CHAT, [3])
    assert chat.format_chances(lm, CHAT, []).shape == (0,)


@pytest.mark.slow
def test_chat_extension_tunes_both_arms_alike_and_reads_the_window_arm_through_a_sliding_window():
    lm = _lm()
    talk = context_extension.ChatExtension(lm, CHAT, CHAT, length=32, steps=2, lr=1e-3, chars_per_step=64,
                                           temperature=0.7, eval_chars=4 * 32, control=True)
    assert talk.view == 16 - len("Assistant: ") + 1 and talk.turns
    window, parts = talk.run("window", 0), talk.run("parts", 0)
    assert set(window) == set(parts) == {"past", "format", "format_short", "seconds"}
    assert 0 < window["format"] < 1 and window["past"] != parts["past"]
    assert talk.short_turns == [] and math.isnan(window["format_short"])  # a view of 6 hides every question's tag
    talk.control = False
    assert set(talk.run("window", 0)) == {"past", "format", "seconds"}  # no control asked for: not scored
    with pytest.raises(ValueError, match="chars_per_step=40"):
        context_extension.ChatExtension(lm, CHAT, CHAT, 32, 2, 1e-3, 40, 0.7)
