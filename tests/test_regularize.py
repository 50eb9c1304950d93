import pytest
import torch

from ftlib import checkpoint, data, models, regularize
from ftlib.course.lessons import weight_regularization


def _nudged(model, amount=0.01):
    with torch.no_grad():
        for p in model.parameters():
            p.add_(amount * torch.randn_like(p))
    return model


def test_l2sp_is_zero_at_the_start_and_grows_away_from_it():
    torch.manual_seed(0)
    model = models.GlyphNet(10)
    penalty = regularize.L2SP(model, alpha=1.0)
    assert penalty(model).item() == 0.0
    assert penalty(_nudged(model)).item() > 0


def test_l2sp_gradient_is_exactly_alpha_times_the_distance_and_the_head_is_pulled_to_zero():
    torch.manual_seed(0)
    model = models.GlyphNet(10)
    penalty = regularize.L2SP(model, alpha=0.5, beta=0.1)
    _nudged(model)
    penalty(model).backward()
    conv = model.block2[0].weight
    assert torch.allclose(conv.grad, 0.5 * (conv.detach() - penalty.start["block2.0.weight"]), atol=1e-7)
    assert torch.allclose(model.head.weight.grad, 0.1 * model.head.weight.detach(), atol=1e-7)
    assert model.head.bias.grad is None  # biases of the head are not penalised


def test_plain_l2_pulls_towards_zero():
    torch.manual_seed(0)
    model = models.GlyphNet(10)
    regularize.L2Penalty(alpha=2.0)(model).backward()
    conv = model.block1[0].weight
    assert torch.allclose(conv.grad, 2.0 * conv.detach())


def test_drift_is_zero_at_the_start_and_is_the_euclidean_distance():
    torch.manual_seed(0)
    model = models.GlyphNet(10)
    start = regularize.starting_point(model)
    assert regularize.drift(model, start) == 0.0
    with torch.no_grad():
        model.block1[0].weight[0, 0, 0, 0] += 3.0
        model.block4[0].weight[0, 0, 0, 0] -= 4.0
    assert regularize.drift(model, start) == pytest.approx(5.0)


def test_retention_of_the_untouched_model_is_its_letters_accuracy():
    pretrained = models.load_pretrained()
    tuned = models.load_pretrained(num_classes=10)
    test = data.test_set("letters")
    expected = checkpoint.read_metadata(models.PRETRAINED)["test_accuracy"]
    assert regularize.retention(tuned, pretrained.head, test) == pytest.approx(expected, abs=1e-4)
    assert tuned.num_classes == 10  # the model itself is left alone


def test_l2sp_run_drifts_less_than_no_penalty():
    free = weight_regularization.regularized_run("none", 0.0, 1e-3, seed=0, steps=20)
    held = weight_regularization.regularized_run("l2sp", 1.0, 1e-3, seed=0, steps=20)
    assert held["drift"] < free["drift"] / 2
    assert {"accuracy", "val_accuracy", "drift", "retention", "retention_bn"} <= set(free)


@pytest.mark.parametrize("bad", [-0.1, "0.1", True])
def test_bad_strengths_are_clear_errors(bad):
    with pytest.raises(ValueError, match="penalty strength"):
        regularize.L2SP(models.GlyphNet(10), alpha=bad)


def test_unknown_penalty_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown penalty 'l1'"):
        weight_regularization.regularized_run("l1", 0.1, 1e-3, seed=0)
