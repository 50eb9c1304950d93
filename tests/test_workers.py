"""Independent runs share the cores (ftlib.course.lessons.workers): same records, same order, as one after the other."""

import os

import pytest
import torch

from ftlib.course.lessons import experiments, workers


@workers.independent
def _noisy_sum(seed: int, size: int = 1000) -> dict:
    """A seeded torch computation and the process that ran it."""
    torch.manual_seed(seed)
    return {"value": float(torch.randn(size).sum()), "pid": os.getpid()}


@workers.independent
def _fails(seed: int) -> dict:
    if seed == 1:
        raise ValueError(f"seed {seed} fails")
    return {"value": seed}


@pytest.fixture
def two_workers(monkeypatch):
    import sys
    import types

    monkeypatch.setenv("FTLIB_WORKERS", "2")
    monkeypatch.delenv("FTLIB_DEVICE", raising=False)
    if not hasattr(sys.modules.get("__main__"), "__spec__"):  # an earlier test's IPython shell left its stand-in
        monkeypatch.setitem(sys.modules, "__main__", types.ModuleType("__main__"))


def test_records_come_back_in_order_from_other_processes(two_workers):
    calls = [(_noisy_sum, {"seed": seed}) for seed in range(6)]
    records = workers.run_calls(calls)
    assert [r["value"] for r in records] == [_noisy_sum(seed)["value"] for seed in range(6)]
    assert os.getpid() not in {r["pid"] for r in records}


def test_one_worker_runs_here(monkeypatch):
    monkeypatch.setenv("FTLIB_WORKERS", "1")
    records = workers.run_calls([(_noisy_sum, {"seed": seed}) for seed in range(3)])
    assert {r["pid"] for r in records} == {os.getpid()}


def test_a_run_that_cannot_travel_runs_here(two_workers):
    records = workers.run_calls([(lambda seed: {"pid": os.getpid(), "seed": seed}, {"seed": s}) for s in range(3)])
    assert [r["seed"] for r in records] == [0, 1, 2] and {r["pid"] for r in records} == {os.getpid()}


def _keeps(seed: int, kept: dict) -> dict:
    """A driver that writes somewhere besides its record (as lesson 08's method_run keeps its models)."""
    kept[seed] = os.getpid()
    return {"seed": seed}


def test_a_driver_not_marked_independent_runs_here_so_what_it_writes_is_kept(two_workers):
    kept = {}
    workers.run_calls([(_keeps, {"seed": seed, "kept": kept}) for seed in range(3)])
    assert kept == {0: os.getpid(), 1: os.getpid(), 2: os.getpid()}


def test_the_course_drivers_that_share_the_cores_are_marked():
    from ftlib.course.lessons import (
        augmentation,
        early_stopping,
        freezing,
        learning_rate,
        tuning,
        weight_regularization,
    )

    for run in (experiments.transfer_run, freezing.depth_run, freezing.staged_run, freezing.frozen_head_run,
                augmentation.augmented_run, learning_rate.rate_run, weight_regularization.regularized_run,
                early_stopping.policy_run, tuning.run_arm):
        assert workers._is_independent(run), run.__name__


def test_a_failing_run_raises_its_own_error(two_workers):
    with pytest.raises(ValueError, match="seed 1 fails"):
        workers.run_calls([(_fails, {"seed": seed}) for seed in range(4)])


def test_progress_is_called_once_per_run(two_workers):
    done = []
    workers.run_calls([(_noisy_sum, {"seed": seed}) for seed in range(5)], progress=lambda: done.append(1))
    assert len(done) == 5


@pytest.mark.parametrize("value", ["0", "-1", "two", "1.5", "²"])
def test_a_bad_worker_count_is_one_line(monkeypatch, value):
    monkeypatch.setenv("FTLIB_WORKERS", value)
    with pytest.raises(ValueError, match="FTLIB_WORKERS") as error:
        workers.worker_count()
    assert "\n" not in str(error.value)


def test_a_gpu_runs_one_process_at_a_time(monkeypatch):
    monkeypatch.delenv("FTLIB_WORKERS", raising=False)
    monkeypatch.setenv("FTLIB_DEVICE", "cuda")
    assert workers.worker_count() == 1


def test_a_lesson_run_gives_the_same_bits_in_a_worker(monkeypatch, two_workers):
    """A real driver: the records (but the seconds) are identical whether the runs share the cores or not."""
    grid = dict(method=["fine-tune", "scratch"], target=["mnist"], n=[2], steps=[6], lr=[3e-3], seed=[0, 1],
                n_val=[5])

    def records(count: str) -> list[dict]:
        monkeypatch.setenv("FTLIB_WORKERS", count)
        return [{k: v for k, v in r.items() if k not in ("seconds", "cpu_seconds")}
                for r in experiments.run_grid(experiments.transfer_run, **grid)]

    assert records("2") == records("1")


def test_a_main_module_without_a_spec_runs_everything_here(monkeypatch):
    """A tool that replaced ``__main__`` with a module lacking ``__spec__`` (spawn would fail reading it)."""
    import sys
    import types

    monkeypatch.delenv("FTLIB_WORKERS", raising=False)
    monkeypatch.delenv("FTLIB_DEVICE", raising=False)
    stand_in = types.ModuleType("__main__")
    del stand_in.__spec__
    monkeypatch.setitem(sys.modules, "__main__", stand_in)
    assert workers.worker_count() == 1
    records = workers.run_calls([(_noisy_sum, {"seed": seed}) for seed in range(3)])
    assert {r["pid"] for r in records} == {os.getpid()}
    monkeypatch.setenv("FTLIB_WORKERS", "2")  # asked for, but spawn cannot start from such a __main__
    records = workers.run_calls([(_noisy_sum, {"seed": seed}) for seed in range(3)])
    assert {r["pid"] for r in records} == {os.getpid()}


def test_a_workers_warm_up_leaves_torchs_random_state_as_it_was():
    """The untimed warm-up each worker runs first (so that its first run is timed like the next) draws no number a
    run would otherwise draw."""
    import torch

    from ftlib.course.lessons import workers

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    workers._warm_up()
    assert torch.equal(torch.rand(3), expected)


def test_a_run_travels_unless_it_holds_something_of_main_even_if_its_text_mentions_main():
    """Issue 34: lesson 10's study carries Python's docs, which mention ``__main__``; the runs must still travel."""
    import functools
    import types

    from ftlib.course.lessons import experiments, workers

    driver = functools.partial(experiments.transfer_run, note='if __name__ == "__main__": main()')
    assert workers._travels([(driver, {})])
    own = types.FunctionType((lambda: {}).__code__, {}, "own")
    own.__module__, own.independent = "__main__", True
    assert not workers._travels([(own, {})])
    assert not workers._travels([(functools.partial(experiments.transfer_run, make=own), {})])
