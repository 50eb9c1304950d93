import time

import pytest
import torch
from torch import nn

from ftlib import data, evaluation, freeze, models, probe, runtime, train
from ftlib.course.lessons import experiments


@pytest.fixture(scope="module")
def tiny_task():
    return data.few_shot("font_digits", 5, seed=0), data.few_shot("font_digits", 20, seed=1)


def _trained(tiny_task, steps=40, **kwargs):
    runtime.seed_everything(0)
    model = models.GlyphNet(10)
    history = train.fit(model, tiny_task[0], steps, lr=1e-2, eval_data=tiny_task[1], eval_every=20, **kwargs)
    return model, history


def test_seed_everything_pins_the_thread_count():
    runtime.seed_everything(0, threads=1)
    assert torch.get_num_threads() == 1
    runtime.seed_everything(0)
    assert torch.get_num_threads() == runtime.DEFAULT_THREADS


@pytest.mark.slow
def test_fit_lowers_the_loss_and_records_a_history(tiny_task):
    runtime.seed_everything(0)
    model = models.GlyphNet(10)
    before = evaluation.evaluate(model, tiny_task[0]).loss
    _, history = _trained(tiny_task)
    assert history.step == list(range(1, 41)) and len(history.loss) == len(history.lr) == 40
    assert history.eval_step == [20, 40]
    assert evaluation.evaluate(_trained(tiny_task)[0], tiny_task[0]).loss < before / 2
    assert history.final_accuracy > 0.2  # twice chance (0.1) after 40 steps from scratch


def test_fit_is_reproducible_for_a_seed(tiny_task):
    (a, ha), (b, hb) = _trained(tiny_task, steps=10), _trained(tiny_task, steps=10)
    assert ha.loss == hb.loss
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())


def test_fit_follows_the_schedule(tiny_task):
    _, history = _trained(tiny_task, steps=20, schedule="constant")
    assert history.lr == [1e-2] * 20
    _, history = _trained(tiny_task, steps=20, schedule="onecycle")
    assert max(history.lr) == pytest.approx(1e-2) and history.lr[-1] < 1e-4


def test_fit_accepts_any_optimizer_and_a_stream_of_batches(tiny_task):
    runtime.seed_everything(0)
    model = models.GlyphNet(52)
    history = train.fit(model, data.letter_batches(32, seed=0), 5, lr=0.1,
                        optimizer=lambda groups: torch.optim.SGD(groups, nesterov=True, momentum=0.9),
                        schedule="constant")
    assert len(history.loss) == 5 and history.lr == [0.1] * 5


def test_fit_minimises_the_loss_it_is_given_and_records_it(tiny_task):
    doubled = lambda model, batch: 2 * train.cross_entropy_loss(model, batch)
    (_, plain), (_, given) = _trained(tiny_task, steps=1), _trained(tiny_task, steps=1, loss=doubled)
    assert given.loss == [2 * plain.loss[0]]


def test_fit_clips_the_gradients_to_the_norm_given(tiny_task, monkeypatch):
    norms = []
    step = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: norms.append(
        torch.linalg.vector_norm(torch.stack([p.grad.norm() for g in self.param_groups for p in g["params"]])).item())
        or step(self, *a, **k))
    _trained(tiny_task, steps=3)
    assert min(norms) > 0.05  # so that clipping at 0.05 has something to do
    norms.clear()
    _trained(tiny_task, steps=3, clip_grad_norm=0.05)
    assert max(norms) == pytest.approx(0.05, rel=1e-4)


def test_fit_runs_evaluate_in_eval_mode_and_leaves_its_seconds_out(tiny_task):
    def evaluate(model):
        time.sleep(0.3)
        return {"training": model.training}

    runtime.seed_everything(0)
    begin = time.perf_counter()
    history = train.fit(models.GlyphNet(10), tiny_task[0], 4, schedule="constant", evaluate=evaluate, eval_every=2)
    total = time.perf_counter() - begin
    assert history.evals == {2: {"training": False}, 4: {"training": False}} and history.eval_step == [2, 4]
    assert 0 < history.seconds <= total - 0.6


def test_fit_does_not_change_frozen_blocks(tiny_task):
    runtime.seed_everything(0)
    model = models.GlyphNet(10)
    freeze.freeze(model, ["block1", "block2"])
    before = {k: v.clone() for k, v in model.state_dict().items() if k.startswith(("block1", "block2"))}
    train.fit(model, tiny_task[0], 5, lr=1e-2)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


@pytest.mark.parametrize("kwargs, message", [
    ({"steps": 0}, "steps=0"),
    ({"steps": -5}, "steps=-5"),
    ({"steps": 5, "lr": 0.0}, "lr=0.0"),
    ({"steps": 5, "lr": -1e-3}, "lr=-0.001"),
    ({"steps": 5, "lr": {"backbone": 1e-3, "head": -1.0}}, r"lr\['head'\]=-1.0"),
    ({"steps": 5, "optimizer": "adamax"}, "unknown optimizer 'adamax'"),
    ({"steps": 5, "schedule": "linear"}, "unknown schedule 'linear'"),
    ({"steps": 5, "clip_grad_norm": 0.0}, "clip_grad_norm=0.0"),
])
def test_bad_training_settings_are_clear_errors(tiny_task, kwargs, message):
    with pytest.raises(ValueError, match=message):
        train.fit(models.GlyphNet(10), tiny_task[0], **kwargs)


def test_linear_probe_trains_only_the_head_and_beats_chance(tiny_task):
    runtime.seed_everything(0)
    model = models.load_pretrained(num_classes=10)
    backbone = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head")}
    probe.linear_probe(model, tiny_task[0])
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in backbone.items())
    assert freeze.count_parameters(model, trainable_only=True) == freeze.count_parameters(model.head)
    assert evaluation.evaluate(model, tiny_task[1]).accuracy > 0.7


def test_get_device_honours_an_explicit_choice(monkeypatch):
    assert runtime.get_device("cpu") == torch.device("cpu")
    monkeypatch.setenv("FTLIB_DEVICE", "cpu")
    assert runtime.get_device() == torch.device("cpu")


def test_transfer_run_and_results_summaries():
    results = experiments.run_grid(experiments.transfer_run, method=["scratch", "linear probe"],
                                   target=["font_digits"], n=[2], seed=[0, 1], steps=[10])
    assert len(results) == 4 and set(results[0]) >= {"method", "n", "seed", "accuracy", "seconds", "trainable"}
    assert results.values("trainable", method="linear probe") == [1290, 1290]
    assert len(results.values(method="scratch")) == 2
    assert results.mean(method="linear probe") > results.mean(method="scratch")
    table = results.table("method", "n")
    assert "linear probe" in table and "n=2" in table and "±" in table


def test_differences_pair_records_by_seed_not_by_order():
    rows = [("fine-tune", 1, 5, 0.9), ("fine-tune", 0, 5, 0.8), ("scratch", 0, 5, 0.5), ("scratch", 1, 5, 0.4),
            ("scratch", 0, 9, 0.7)]
    results = experiments.Results(dict(zip(("method", "seed", "n", "accuracy"), row)) for row in rows)
    assert results.differences("method", "fine-tune", "scratch", n=5) == pytest.approx([0.5, 0.3])  # seeds 1, 0
    with pytest.raises(ValueError, match="one record per seed"):
        results.differences("method", "fine-tune", "scratch")  # scratch has two records for seed 0
    with pytest.raises(ValueError, match="ran seeds"):
        results.differences("n", 5, 9, method="scratch")
    with pytest.raises(ValueError, match="method='probe'"):
        results.differences("method", "probe", "scratch", n=5)


def test_unknown_method_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown method 'distill'"):
        experiments.get_method("distill")


def test_make_model_gives_the_same_model_for_a_seed_on_the_first_call_and_later():
    models.loaded_checkpoint.cache_clear()
    method = experiments.get_method("fine-tune")
    first = experiments.make_model(method, 10, seed=3)
    again = experiments.make_model(method, 10, seed=3)
    assert torch.equal(first.head.weight, again.head.weight)


def test_results_table_keeps_long_labels_apart():
    results = experiments.Results([{"recipe": "a very long recipe name, longer than 28", "target": "font_digits",
                                    "accuracy": 0.5}, {"recipe": "b", "target": "font_digits", "accuracy": 0.25}])
    header, first, second = results.table("recipe", "target").splitlines()
    assert header.split() == ["recipe", "target=font_digits"]
    assert first.startswith("a very long recipe name, longer than 28  ") and first.endswith("50.0 ± 0.0")
    assert second.split() == ["b", "25.0", "±", "0.0"]
    assert len({len(header), len(first), len(second)}) == 1, "columns line up"


def test_confusion_matrix_counts_true_against_predicted_and_restores_the_mode():
    model = nn.Sequential(nn.Flatten(), nn.Linear(1, 2))
    with torch.no_grad():  # predicts class 1 for a bright pixel, class 0 for a dark one
        model[1].weight.copy_(torch.tensor([[-1.0], [1.0]]))
        model[1].bias.zero_()
    images = torch.tensor([-1.0, -1.0, 1.0, 1.0, 1.0]).reshape(5, 1, 1, 1)
    labels = torch.tensor([0, 1, 1, 1, 0])
    model.train()
    counts = evaluation.confusion_matrix(model, data.ImageSet(images, labels, ("a", "b"), "toy"), batch_size=2)
    assert counts.tolist() == [[1, 1], [1, 2]] and model.training


def test_model_device_is_where_the_weights_are():
    from torch import nn

    from ftlib.runtime import model_device

    assert model_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert model_device(nn.ReLU()) == torch.device("cpu")  # no parameters: the CPU
