"""Lesson 07's additions: AdaBN (BatchNorm statistics re-estimated on the target), the ladder's fair arms, and the
flawed-checkpoint runs from a probe's head (LP-FT)."""

import pytest
import torch
from torch import nn

from ftlib import data, models, transfer
from ftlib.course.lessons import transfer_limits
from ftlib.models import GlyphNet
from ftlib.transfer import adapt_batchnorm


def test_adabn_sets_the_running_statistics_to_the_images_and_keeps_weights_and_mode():
    model = GlyphNet(4).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    images = torch.rand(64, 1, 28, 28) * 0.3 + 0.4
    adapt_batchnorm(model, images, batch_size=64)
    bn = model.block1[1]
    with torch.no_grad():
        conv = model.block1[0](images)
    assert torch.allclose(bn.running_mean, conv.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, conv.var(dim=(0, 2, 3)), rtol=1e-3)
    assert bn.momentum == 0.1 and not model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert isinstance(bn, nn.BatchNorm2d)


def test_the_ladder_knows_its_fair_arms_and_the_flaw_run_its_heads():
    probe = transfer_limits.ladder_run("linear probe, AdaBN", "gratings", 1, seed=0)
    assert 0 <= probe["accuracy"] <= 1
    only = transfer_limits.flaw_run("narrow", "none", seed=0, n=1, head="probe only")
    assert set(only) == {"accuracy", "upright_accuracy"}
    for setting in ("flawed, LP-FT", "flawed, LP-FT without AdaBN", "sound + augmentation"):
        record = transfer_limits.flaw_setting_run(setting, n=1, seed=0, steps=2, n_val=1)
        assert set(record) == {"accuracy", "upright_accuracy", "val_accuracy", "val_loss"}, setting
    with pytest.raises(ValueError, match="unknown head"):
        transfer_limits.flaw_run("narrow", "none", seed=0, head="nope")
    assert data.test_set("gratings").num_classes == 10


# ------------------------------------------------------------------------------------ exercises and the live slider
from ftlib.course.lessons.exercises import lesson07  # noqa: E402


def test_an_untouched_lesson07_exercise_says_what_to_do_and_computes_nothing(capsys):
    for feedback in (lesson07.predict_far_gain(..., [-0.05]), lesson07.probe_earlier_block(...),
                     lesson07.explain_flaw(...)):
        assert feedback.passed is None
    out = capsys.readouterr().out
    assert out.count("Exercise not attempted yet") == 3 and "-5.0" not in out and "letters lacked that variation" in out


def test_the_far_gain_prediction_passes_near_the_ladder_and_explains_the_sign():
    gains = [-0.012, -0.067, -0.056]  # the ladder's per-seed gains on the gratings
    assert lesson07.predict_far_gain(lesson07.SOLUTIONS["predict_far_gain"], gains).passed is True
    wrong = lesson07.predict_far_gain(lesson07.WRONG_ANSWERS["predict_far_gain"][0][0], gains)
    assert wrong.passed is False and "too high" in wrong.message and "unlearn" not in wrong.message


def test_the_block_rule_passes_where_it_chooses_on_validation_and_a_block_written_down_does_not():
    assert lesson07.probe_earlier_block(lesson07.SOLUTIONS["probe_earlier_block"]).passed is True
    # block 4 or block 2 on every target; the better of blocks 2 and 4; the best cut returned with its weights zeroed
    for wrong_rule, words in lesson07.WRONG_ANSWERS["probe_earlier_block"]:
        wrong = lesson07.probe_earlier_block(wrong_rule)
        assert wrong.passed is False and words in wrong.message
        assert not any(w in wrong.message for w in ("truncate(", "BLOCKS", "for block in", "scores best")), \
            "the feedback names what was missed, never the rule"

    def forgot_return(model, score):
        transfer.truncate(model, "block2")

    assert lesson07.probe_earlier_block(forgot_return).passed is False


def test_the_block_hints_name_no_block_and_do_not_spell_out_the_rule():
    """The hints point at score(cut), never which block wins nor the rule written out (score every cut, keep the
    best), which is the solution."""
    text = " ".join(lesson07.HINTS["probe_earlier_block"])
    assert not any(block in text for block in ("block1", "block2", "block3", "block4", "in between", "Block"))
    assert not any(words in text for words in ("return the best", "max(", "every cut", "for block in"))


def test_the_block_rule_scores_the_network_it_returns_not_a_cut_it_scored_before():
    """The score is keyed by every weight outside the head: a changed network is scored anew."""
    cut = transfer.truncate(lesson07._start(), "block3")
    same = transfer.truncate(lesson07._start(), "block3")
    assert lesson07._fingerprint(cut) == lesson07._fingerprint(same)
    with torch.no_grad():
        same.block1[0].weight.zero_()
    assert lesson07._fingerprint(cut) != lesson07._fingerprint(same)
    assert lesson07._fingerprint(cut) != lesson07._fingerprint(transfer.truncate(lesson07._start(), "block2"))


def test_the_flaw_question_rewards_the_inherited_blind_spot_and_answers_more_steps():
    assert lesson07.explain_flaw(lesson07.SOLUTIONS["explain_flaw"]).passed is True
    wrong = lesson07.explain_flaw(lesson07.WRONG_ANSWERS["explain_flaw"][0][0])
    assert wrong.passed is False and "training longer" in wrong.message


GRATINGS_GAINS = [-0.012, -0.067, -0.056]  # the ladder's per-seed gains on the gratings (mean -4.5 points)


@pytest.mark.parametrize("guess, passes", [(-5, True), (-4.5, True), (-9.5, True), (-0.1, True), (-9.6, False),
                                           (0, False), (0.5, False), (20, False), ("-5", False), (None, False)])
def test_the_far_gain_prediction_needs_the_sign_that_every_seed_shows(guess, passes, capsys):
    """Within 5 points of -4.5 a 0 or +0.5 ('no gain', 'a small gain') used to pass: the sign is the lesson."""
    feedback = lesson07.predict_far_gain(guess, GRATINGS_GAINS)
    assert feedback.passed is passes
    if not passes and isinstance(guess, (int, float)) and guess != 0:
        assert ("too high" if guess > -4.5 else "too low") in feedback.message
        assert "-4.5" not in feedback.message and "unlearn" not in feedback.message


def test_the_far_gain_sign_rule_waits_for_the_seeds_to_agree_and_the_why_follows_the_sign():
    no_difference = lesson07.predict_far_gain(0, [0.01, -0.03])  # "transfer makes no difference" is no sign
    assert no_difference.passed is False and "not a prediction of its sign" in no_difference.message
    assert lesson07.predict_far_gain(-1, [0.01, -0.03]).passed is True  # seeds disagree: the tolerance on the mean
    assert lesson07.predict_far_gain(0.5, [0.01, -0.03]).passed is False  # the mean's other side
    positive = lesson07.predict_far_gain(4, [0.03, 0.05])
    assert positive.passed is True and "less than nothing" not in positive.message
    assert lesson07.predict_far_gain(-1, [0.03, 0.05]).passed is False
    for guess, words in lesson07.WRONG_ANSWERS["predict_far_gain"]:
        wrong = lesson07.predict_far_gain(guess, GRATINGS_GAINS)
        assert wrong.passed is False and words in wrong.message


@pytest.mark.slow
def test_a_fixed_earlier_block_fails_on_the_near_target_and_a_bad_network_is_told_in_one_line(capsys):
    """Block 1 or block 3 written down fails (another block wins on validation); so does a rule that picks worst."""
    for block in ("block1", "block3"):
        assert lesson07.probe_earlier_block(lambda m, s, b=block: transfer.truncate(m, b)).passed is False
    worst = lesson07.probe_earlier_block(lambda m, s: min((transfer.truncate(m, b) for b in models.BLOCKS), key=s))
    assert worst.passed is False

    def cut_by_hand(model, score):  # the later blocks removed, the head left at block 4's 128 features
        model.block3, model.block4 = nn.Identity(), nn.Identity()
        return model

    by_hand = lesson07.probe_earlier_block(cut_by_hand)
    assert by_hand.passed is False and "gives the head that block's width" in by_hand.message
    other = lesson07.probe_earlier_block(lambda m, s: nn.Linear(3, 4))
    assert other.passed is False and "Linear(" in other.message and "GlyphNet" in other.message
    names_for_cuts = lesson07.probe_earlier_block(lambda m, s: max(models.BLOCKS, key=s))  # score("block1")
    assert names_for_cuts.passed is False and "raised TypeError: score takes a GlyphNet" in names_for_cuts.message
    assert "two arguments" not in names_for_cuts.message


def test_a_rule_with_the_wrong_signature_is_told_so_before_anything_runs():
    """The signature is read with inspect, so a TypeError raised inside a right-shaped rule is not blamed on it."""
    for wrong in (lambda m: transfer.truncate(m, "block2"), lambda: None, lambda m, s, x: m):
        feedback = lesson07.probe_earlier_block(wrong)
        assert feedback.passed is False and "should take two arguments" in feedback.message

    def with_default(model, score, block="block2"):
        return transfer.truncate(model, block)

    assert lesson07._takes_two_arguments(with_default) and lesson07._takes_two_arguments(lambda *a: a)
    assert lesson07._takes_two_arguments(lesson07.SOLUTIONS["probe_earlier_block"])
    assert not lesson07._takes_two_arguments(lambda model: model)


def test_every_wrong_flaw_option_fails_with_its_own_feedback_and_none_is_refuted_by_the_question_alone():
    for answer, words in lesson07.WRONG_ANSWERS["explain_flaw"]:
        wrong = lesson07.explain_flaw(answer)
        assert wrong.passed is False and words in wrong.message
    texts = [o.text for o in lesson07.FLAW_QUESTION.choices]
    assert not any("fine-tuning data" in t for t in texts)  # the question itself says the data were the same


def test_no_wrong_flaw_option_gives_the_right_one_away():
    """Each wrong option's feedback ends at the evidence against it; where the flaw lies is the learner's to say."""
    right = lesson07.SOLUTIONS["explain_flaw"]
    wrong_letters = [letter for letter in lesson07.FLAW_QUESTION.options if letter != right]
    assert len(wrong_letters) == 3
    for letter in wrong_letters:
        message = lesson07.explain_flaw(letter).message
        assert not any(words in message for words in ("source letters", "letters differed", "lacked", "flaw was in",
                                                       "flaw lives", "before fine-tuning began")), (letter, message)


def test_the_live_rotation_names_its_angle_first_and_turns_the_digits(capsys):
    images = data.test_set("upright_digits").images[:4]
    assert torch.equal(transfer_limits.rotated(images, 0), images) or \
        torch.allclose(transfer_limits.rotated(images, 0), images, atol=1e-5)
    assert not torch.allclose(transfer_limits.rotated(images, 45), images, atol=1e-2)
    transfer_limits.rotation_live(45)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("angle = 45°:") and "sound" in lines[1] and "flawed" in lines[1]


# ------------------------------------------------------------------ the tie control and the gap in shares of errors
from ftlib.course.lessons import tuning  # noqa: E402
from ftlib.course.lessons.records import Results  # noqa: E402


def test_run_at_reads_the_tables_runs_at_a_rate_not_chosen_and_refuses_a_point_off_the_grid():
    table = tuning.load()
    runs = transfer_limits.run_at(table, "07 flawed", {"lr": 0.01}, range(3), "setting", "control", n=5, steps=80)
    stored = table.records("07 flawed", lr=0.01)
    assert [r["accuracy"] for r in runs] == [stored.where(seed=s)[0]["accuracy"] for s in range(3)]
    assert {r["setting"] for r in runs} == {"control"} and {r["lr"] for r in runs} == {0.01}
    assert table.chosen("07 flawed") != {"lr": 0.01}  # a control at a rate validation did not choose
    with pytest.raises(ValueError, match="not on 07 flawed's grid"):
        transfer_limits.run_at(table, "07 flawed", {"lr": 0.02}, range(3))
    with pytest.raises(ValueError, match="no fixed setting 'width'"):
        transfer_limits.run_at(table, "07 flawed", {"lr": 0.01}, range(3), width=3)
    line = transfer_limits.validation_margin(table, "07 flawed", {"lr": 0.01})
    assert line.startswith("07 flawed: validation chose lr 0.003 over lr 0.01") and "of 600 validation images" in line


def test_error_ratios_and_log_odds_treat_equal_shares_of_errors_removed_alike():
    rows = [("sound", 0.94), ("sound + aug", 0.97), ("flawed", 0.85), ("flawed + aug", 0.925)]  # both halve errors
    results = Results({"setting": s, "seed": 0, "accuracy": a} for s, a in rows)
    assert transfer_limits.error_ratios(results, "setting", "sound + aug", "sound") == pytest.approx([0.5])
    assert transfer_limits.error_ratios(results, "setting", "flawed + aug", "flawed") == pytest.approx([0.5])
    before = transfer_limits.log_odds_differences(results, "setting", "sound", "flawed")[0]
    after = transfer_limits.log_odds_differences(results, "setting", "sound + aug", "flawed + aug")[0]
    assert 100 * ((0.94 - 0.85) - (0.97 - 0.925)) == pytest.approx(4.5)  # the points gap halves ...
    assert after == pytest.approx(before, abs=0.1)  # ... the log-odds gap hardly moves
    perfect = Results([{"setting": "a", "seed": 0, "accuracy": 1.0}, {"setting": "b", "seed": 0, "accuracy": 0.9}])
    assert transfer_limits.error_ratios(perfect, "setting", "a", "b")[0] < 0.01  # finite at 100%


# ------------------------------------------------------------------------ the Kumar box's line follows the verdicts
CLEAR_AHEAD, CLEAR_BEHIND = [0.03, 0.031, 0.029], [-0.03, -0.031, -0.029]
MEAN_AHEAD, MEAN_BEHIND = [0.02, 0.03, -0.01], [-0.02, -0.03, 0.01]  # 95% intervals reaching zero


@pytest.mark.parametrize("lp_ft, same_rate, probe, words", [
    (CLEAR_AHEAD, CLEAR_AHEAD, CLEAR_AHEAD, ["confirms Kumar", "probe alone is ahead of fine-tuning too"]),
    (CLEAR_AHEAD, MEAN_AHEAD, MEAN_AHEAD, ["at the chosen rates, but at one rate", "without confirming",
                                           "probe alone is not told apart"]),
    (MEAN_AHEAD, CLEAR_AHEAD, MEAN_AHEAD, ["at one rate, but at the chosen rates", "without confirming"]),
    (MEAN_AHEAD, MEAN_AHEAD, CLEAR_BEHIND, ["on average", "without confirming", "probe alone is behind"]),
    (MEAN_AHEAD, MEAN_BEHIND, MEAN_AHEAD, ["neither confirms nor leans"]),
    (CLEAR_AHEAD, CLEAR_BEHIND, MEAN_AHEAD, ["behind fine-tuning at one rate", "against Kumar"]),
    (CLEAR_BEHIND, MEAN_AHEAD, MEAN_AHEAD, ["behind fine-tuning at the chosen rates", "against Kumar"]),
])
def test_the_kumar_line_says_only_what_the_verdicts_say(lp_ft, same_rate, probe, words):
    line = transfer_limits.kumar_reading(lp_ft, same_rate, probe)
    assert all(w in line for w in words), line
    assert ("confirms Kumar" in line) == (lp_ft is same_rate is CLEAR_AHEAD), line
