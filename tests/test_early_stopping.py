"""Early stopping: the rule on scripted curves, and inside ``fit`` (stop step, restored weights, interrupts)."""

import pytest
import torch

from ftlib import data, evaluation, models, runtime, stopping, train


@pytest.mark.parametrize("scores, patience, min_delta, mode, expected", [
    ([1.0, 0.8, 0.7, 0.75, 0.72, 0.71, 0.9], 3, 0.0, "min", (2, 5)),  # 3 evaluations without a new low
    ([1.0, 0.8, 0.7, 0.75, 0.72, 0.69, 0.9], 3, 0.0, "min", (5, None)),  # a late new low resets the count
    ([1.0, 0.8, 0.78, 0.77, 0.76], 2, 0.05, "min", (1, 3)),  # gains under min_delta are not improvements
    ([0.1, 0.5, 0.5, 0.4, 0.6], 2, 0.0, "max", (1, 3)),  # a tie is not an improvement
    ([0.5, 0.4, 0.3], 1, 0.0, "min", (2, None)),
    ([0.3], 1, 0.0, "min", (0, None)),
])
def test_the_rule_on_scripted_curves(scores, patience, min_delta, mode, expected):
    assert stopping.stopping_point(scores, patience, min_delta, mode) == expected


def test_the_rule_reads_a_curve_only_up_to_its_stop():
    assert stopping.stopping_point([1.0, 0.9, 0.95, 0.97, 0.1], 2) == (1, 3)


@pytest.mark.parametrize("kwargs, message", [
    ({"patience": 0}, "patience=0"),
    ({"patience": 2.5}, "patience=2.5"),
    ({"min_delta": -0.1}, "min_delta=-0.1"),
    ({"mode": "down"}, "mode='down'"),
])
def test_bad_rule_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        stopping.stopping_point([1.0, 0.5], **{"patience": 1, **kwargs})
    with pytest.raises(ValueError, match=message):
        stopping.EarlyStopping(**kwargs)


def test_an_empty_curve_and_an_unknown_monitor_are_clear_errors():
    with pytest.raises(ValueError, match="scores is empty"):
        stopping.stopping_point([], 1)
    with pytest.raises(ValueError, match="monitor='loss'.*val_accuracy"):
        stopping.EarlyStopping(monitor="loss")
    assert stopping.EarlyStopping("val_accuracy").direction == "max"
    assert stopping.EarlyStopping("val_accuracy", mode="min").direction == "min"


@pytest.fixture(scope="module")
def tiny():
    return data.few_shot("font_digits", 3, seed=0)


@pytest.fixture
def scripted(monkeypatch):
    """Make ``fit``'s evaluations return a scripted curve, and keep a copy of the weights at each one."""
    snapshots = []

    def install(losses=None, accuracies=None):
        def fake_evaluate(model, dataset, batch_size=250, device=None):
            snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            i = len(snapshots) - 1
            return evaluation.Metrics(loss=losses[i] if losses else 0.0, accuracy=accuracies[i] if accuracies else 0.0)
        monkeypatch.setattr(train, "evaluate_set", fake_evaluate)
        return snapshots
    return install


def _weights_equal(model, snapshot) -> bool:
    state = model.state_dict()
    return state.keys() == snapshot.keys() and all(torch.equal(state[k], v) for k, v in snapshot.items())


def _fit(tiny, steps=30, **kwargs):
    runtime.seed_everything(0)
    model = models.GlyphNet(10)
    return model, train.fit(model, tiny, steps, lr=1e-2, batch_size=10, schedule="constant", eval_every=2, **kwargs)


def test_fit_stops_at_the_right_step_and_restores_the_best_weights_exactly(tiny, scripted):
    snapshots = scripted(losses=[0.9, 0.7, 0.5, 0.6, 0.55, 0.65, 0.1, 0.1])
    model, history = _fit(tiny, val_data=tiny, early_stopping=stopping.EarlyStopping(patience=3))
    assert history.eval_step == [2, 4, 6, 8, 10, 12] and history.step == list(range(1, 13))
    assert (history.best_step, history.stopped_step, history.interrupted) == (6, 12, False)
    assert history.val_loss == [0.9, 0.7, 0.5, 0.6, 0.55, 0.65]
    assert _weights_equal(model, snapshots[2])
    assert not _weights_equal(model, snapshots[-1])  # the weights did change after the best step


def test_fit_can_watch_accuracy_and_keep_the_last_weights(tiny, scripted):
    snapshots = scripted(accuracies=[0.2, 0.4, 0.4, 0.3, 0.9])
    stopper = stopping.EarlyStopping("val_accuracy", patience=2, restore_best=False)
    model, history = _fit(tiny, val_data=tiny, early_stopping=stopper)
    assert (history.best_step, history.stopped_step) == (4, 8)
    assert _weights_equal(model, snapshots[-1])


def test_fit_without_a_stop_runs_every_step_and_still_restores_the_best(tiny, scripted):
    snapshots = scripted(losses=[0.9, 0.3, 0.5, 0.6])
    model, history = _fit(tiny, steps=8, val_data=tiny, early_stopping=stopping.EarlyStopping(patience=5))
    assert len(history.step) == 8 and (history.best_step, history.stopped_step) == (4, None)
    assert _weights_equal(model, snapshots[1])


def _interrupted_after(tiny, batches: int):
    g = torch.Generator().manual_seed(0)
    for _ in range(batches):
        rows = torch.randperm(len(tiny), generator=g)[:10]
        yield tiny.images[rows], tiny.labels[rows]
    raise KeyboardInterrupt


def _fit_interrupted(batches, **kwargs):
    """fit on ``batches`` that end in Ctrl+C: the interrupt comes back out, carrying the history so far."""
    runtime.seed_everything(0)
    model = models.GlyphNet(10)
    with pytest.raises(KeyboardInterrupt) as caught:
        train.fit(model, batches, 30, lr=1e-2, batch_size=10, schedule="constant", eval_every=2, **kwargs)
    return model, caught.value.history


def test_an_interrupt_is_raised_again_with_the_history_so_far_and_the_best_weights(tiny, scripted):
    snapshots = scripted(losses=[0.9, 0.4, 0.5, 0.6])
    model, history = _fit_interrupted(_interrupted_after(tiny, 7), val_data=tiny,
                                      early_stopping=stopping.EarlyStopping(patience=5))
    assert history.interrupted and history.stopped_step == 7 and history.step == list(range(1, 8))
    assert history.eval_step == [2, 4, 6] and history.best_step == 4
    assert _weights_equal(model, snapshots[1])


def test_an_interrupt_without_early_stopping_keeps_the_last_weights(tiny):
    model, history = _fit_interrupted(_interrupted_after(tiny, 5))
    assert history.interrupted and len(history.loss) == 5 and history.seconds > 0


def test_validation_scores_are_recorded_beside_the_evaluation_scores(tiny):
    _, history = _fit(tiny, steps=4, val_data=tiny, eval_data=data.few_shot("font_digits", 2, seed=1))
    assert history.eval_step == [2, 4] and len(history.val_loss) == len(history.eval_accuracy) == 2
    assert history.best_step is None and history.stopped_step is None


def test_early_stopping_needs_validation_data_and_an_evaluation_interval(tiny):
    with pytest.raises(ValueError, match="early_stopping needs val_data"):
        train.fit(models.GlyphNet(10), tiny, 5, eval_every=1, early_stopping=stopping.EarlyStopping())
    with pytest.raises(ValueError, match="early_stopping needs val_data"):
        train.fit(models.GlyphNet(10), tiny, 5, val_data=tiny, early_stopping=stopping.EarlyStopping())
