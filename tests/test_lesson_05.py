"""Lesson 05's new measures and choices: per-layer drift, BatchNorm re-estimation, output change, validation split,
decoupled weight decay, the choice on validation, and rank correlation."""

import pytest
import torch

from ftlib import data, models, regularize
from ftlib.course.lessons import experiments
from ftlib.course.lessons import weight_regularization as wr


def test_layer_drift_scale_free_ignores_a_rescaled_layer():
    torch.manual_seed(0)
    model = models.GlyphNet(10)
    start = regularize.starting_point(model)
    with torch.no_grad():
        model.block2[0].weight.mul_(0.5)
    plain = regularize.layer_drift(model, start)
    free = regularize.layer_drift(model, start, scale_free=True)
    assert plain["block2.0.weight"] == pytest.approx(0.5)
    assert free["block2.0.weight"] == pytest.approx(0.0, abs=1e-6)
    assert set(plain) == {f"block{i}.0.weight" for i in range(1, 5)}  # only weights with 2 or more dimensions


@pytest.mark.slow
def test_a_rescaled_convolution_before_batchnorm_computes_the_same_after_recalibration():
    model = models.load_pretrained()
    images = data.few_shot("letters", 2, 0).images
    reference = regularize.source_probe(model, model.head, images)
    with torch.no_grad():
        model.block3[0].weight.mul_(0.3)
    probe = regularize.source_probe(model, model.head, images)
    with torch.no_grad():
        expected, same, stale = reference(images), probe(images), model.eval()(images)
    assert regularize.output_change(same, expected) == pytest.approx(0.0, abs=1e-4)
    assert regularize.output_change(stale, expected) > 0.01  # the stale statistics do not fit the weights


def test_recalibrate_batchnorm_keeps_weights_and_momentum():
    model = models.GlyphNet(10)
    before = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "batches" not in k}
    regularize.recalibrate_batchnorm(model, torch.rand(20, 1, 28, 28))
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())
    assert model.block1[1].momentum == 0.1 and not model.training


def test_retention_with_source_images_of_the_untouched_model_is_close_to_its_accuracy():
    head, letters, images = wr._source()
    assert regularize.retention(models.load_pretrained(), head, letters, images) == pytest.approx(
        wr.shipped_retention(), abs=0.01)


def test_decoupled_decay_shrinks_the_backbone_only():
    model = models.GlyphNet(10)
    optimizer = wr._decoupled(model, 2.0)(
        [{"params": list(model.block1.parameters()), "lr": 0.1, "name": "block1"},
         {"params": list(model.head.parameters()), "lr": 0.1, "name": "head"}])
    assert [g["weight_decay"] for g in optimizer.param_groups] == [2.0, 0.0]


def test_tuned_picks_the_best_validation_score_ties_go_to_the_weaker_and_validation_decides_use():
    results = experiments.Results([
        {"penalty": "none", "alpha": 0.0, "seed": 0, "val_accuracy": 0.8, "accuracy": 0.1},
        {"penalty": "l2sp", "alpha": 0.1, "seed": 0, "val_accuracy": 0.9, "accuracy": 0.2},
        {"penalty": "l2sp", "alpha": 1.0, "seed": 0, "val_accuracy": 0.9, "accuracy": 0.3},
        {"penalty": "none", "alpha": 0.0, "seed": 1, "val_accuracy": 0.9, "accuracy": 0.4},
        {"penalty": "l2sp", "alpha": 0.1, "seed": 1, "val_accuracy": 0.9, "accuracy": 0.5},
    ])
    assert wr.tuned(results, "l2sp").values("alpha") == [0.1, 0.1]  # among the penalty's own strengths
    choice = wr.compare_tuned(results)  # use it only where validation beats no penalty's (seed 0, not seed 1)
    assert choice.gains["l2sp"] == pytest.approx([0.1, 0.0])


def test_rank_correlation():
    assert wr.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert wr.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)


def test_a_decay_run_reports_every_measure():
    record = wr.regularized_run("decay", 1.0, 1e-3, seed=0, steps=3, n_val=2)
    assert {"accuracy", "val_accuracy", "drift", "layer_drift", "direction_drift", "output_change", "retention",
            "retention_bn"} == set(record)
    assert 0 <= record["retention"] <= 1 and record["output_change"] >= 0


# Exercises and the live slider (issue #24)

from ftlib.course.lessons.exercises import lesson05 as ex05  # noqa: E402


def _sweep(kept):
    return experiments.Results({"penalty": p, "seed": s, "retention": k} for p, k in kept.items() for s in (0, 1))


def test_exercises_untouched_print_what_to_do_and_compute_nothing(capsys):
    sweep = _sweep({"none": 0.8, "decay": 0.7, "l2": 0.8, "l2sp": 0.9})
    for feedback in (ex05.most_letters(..., sweep), ex05.build_l2sp(...), ex05.decay_pulls_to(...)):
        assert feedback.passed is None and "not attempted" in feedback.message
    out = capsys.readouterr().out
    assert "\"decay\", \"l2\" or \"l2sp\"" in out and ") Towards zero" in out


def test_most_letters_solution_passes_and_a_wrong_guess_gets_the_measured_order():
    sweep = _sweep({"none": 0.8, "decay": 0.7, "l2": 0.8, "l2sp": 0.9})
    assert ex05.most_letters(ex05.SOLUTIONS["most_letters"], sweep).passed is True
    wrong = ex05.most_letters(ex05.WRONG_ANSWERS["most_letters"][0][0], sweep)
    assert wrong.passed is False and "keeps fewer letters than another penalty" in wrong.message
    assert "only L2-SP pulls towards the pretrained weights" not in wrong.message
    assert ex05.most_letters("adam", sweep).passed is False


def test_decay_question_solution_and_wrong_answer():
    assert ex05.decay_pulls_to(ex05.SOLUTIONS["decay_pulls_to"]).passed is True
    wrong = ex05.decay_pulls_to(ex05.WRONG_ANSWERS["decay_pulls_to"][0][0])
    assert wrong.passed is False and "zero only at w = 0" in wrong.message


@pytest.mark.slow
def test_build_l2sp_a_gentle_strength_passes_and_section_1s_strength_costs_validation_digits():
    assert ex05.build_l2sp(ex05.SOLUTIONS["build_l2sp"]).passed is True
    wrong = ex05.build_l2sp(ex05.WRONG_ANSWERS["build_l2sp"][0][0])
    assert wrong.passed is False and "too strong" in wrong.message
    towards_zero = ex05.build_l2sp(lambda model: regularize.L2Penalty(0.01))
    assert towards_zero.passed is False and "not an L2SP" in towards_zero.message


@pytest.mark.slow
def test_live_l2sp_names_its_value_first(capsys):
    wr.live_l2sp(0.003, steps=5)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "L2-SP strength alpha = 0.003" and "letters kept" in lines[1]
    assert all(str(v) == repr(v) for v in wr.LIVE_STRENGTHS)  # the readout shows each value as written
