"""Lesson 07's additions: AdaBN (BatchNorm statistics re-estimated on the target), the ladder's fair arms, and the
flawed-checkpoint runs from a probe's head (LP-FT)."""

import pytest
import torch
from torch import nn

from ftlib import data, transfer
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


def test_a_probe_on_block2_beats_block4_on_validation_gratings_and_keeping_block4_does_not():
    assert lesson07.probe_earlier_block(lesson07.SOLUTIONS["probe_earlier_block"]).passed is True
    wrong = lesson07.probe_earlier_block(lesson07.WRONG_ANSWERS["probe_earlier_block"][0][0])
    assert wrong.passed is False and "transfer.truncate(model, 'blockN')" in wrong.message

    def forgot_return(model):
        transfer.truncate(model, "block2")

    assert lesson07.probe_earlier_block(forgot_return).passed is False


def test_the_flaw_question_rewards_the_inherited_blind_spot_and_answers_more_steps():
    assert lesson07.explain_flaw(lesson07.SOLUTIONS["explain_flaw"]).passed is True
    wrong = lesson07.explain_flaw(lesson07.WRONG_ANSWERS["explain_flaw"][0][0])
    assert wrong.passed is False and "training longer" in wrong.message


def test_the_live_rotation_names_its_angle_first_and_turns_the_digits(capsys):
    images = data.test_set("upright_digits").images[:4]
    assert torch.equal(transfer_limits.rotated(images, 0), images) or \
        torch.allclose(transfer_limits.rotated(images, 0), images, atol=1e-5)
    assert not torch.allclose(transfer_limits.rotated(images, 45), images, atol=1e-2)
    transfer_limits.rotation_live(45)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("angle = 45°:") and "sound" in lines[1] and "flawed" in lines[1]
