"""Lesson 10's shipped step sweep: complete, reproducible run by run, compared with live runs, and its command."""

import json
from pathlib import Path

import matplotlib
import pytest

from ftlib import runtime
from ftlib.__main__ import main
from ftlib.course.lessons import context_sweep
from ftlib.course.lessons.experiments import Results

matplotlib.use("Agg")

TINY = context_sweep.SETTINGS | {"budgets": [2], "seeds": 1, "prose_eval_chars": 512, "chat_eval_chars": 512}


def test_the_shipped_sweep_holds_every_run_once_with_the_recipe_settings():
    settings, sweep = context_sweep.load()
    assert settings == context_sweep.SETTINGS
    keys = [(r["task"], r["arm"], r["seed"], r["steps"]) for r in sweep]
    expected = {(t, a, s, k) for t in context_sweep.TASKS for a in context_sweep.ARMS
                for s in range(settings["seeds"]) for k in settings["budgets"]}
    assert len(keys) == len(set(keys)) and set(keys) == expected
    assert all(1 < r["past"] < 6 for r in sweep)
    assert all(0 <= r["format"] <= 1 and 0 <= r["format_short"] <= 1 for r in sweep.where(task="chat"))
    assert not any("format" in r or "format_short" in r for r in sweep.where(task="prose"))


@pytest.mark.slow
def test_a_long_run_of_the_shipped_sweep_is_reproduced_when_run_on_its_own():
    """Each record is a pure function of its task, arm, seed and steps: rerun one 160-step chat run (about 6 s)."""
    runtime.seed_everything(0)
    [fresh] = context_sweep.run_sweep(tasks=["chat"], arms=["parts"], seeds=[5], budgets=[160])
    _, sweep = context_sweep.load()
    [stored] = sweep.where(task="chat", arm="parts", seed=5, steps=160)
    assert all(abs(fresh[k] - stored[k]) < 0.01 for k in ("past", "format", "format_short"))


@pytest.mark.slow
def test_run_sweep_gives_one_record_per_run_the_same_twice():
    runtime.seed_everything(0)
    first = context_sweep.run_sweep(TINY, arms=["window", "parts"])
    assert [(r["task"], r["arm"]) for r in first] == [("prose", "window"), ("prose", "parts"),
                                                      ("chat", "window"), ("chat", "parts")]
    assert first == context_sweep.run_sweep(TINY, arms=["window", "parts"])
    assert first[2]["past"] != first[3]["past"] and set(first[3]) == {"task", "arm", "seed", "steps", "past",
                                                                       "format", "format_short"}


@pytest.mark.parametrize("selection, message", [({"tasks": ["poetry"]}, r"tasks=\['poetry'\] is not allowed"),
                                                ({"arms": ["yarn"]}, r"arms=\['yarn'\] is not allowed")])
def test_run_sweep_names_an_unknown_task_or_arm(selection, message):
    with pytest.raises(ValueError, match=message):
        context_sweep.run_sweep(TINY, **selection)


def test_differs_names_the_lesson_settings_without_a_stored_twin():
    settings = context_sweep.SETTINGS
    assert context_sweep.differs(settings, 40, lr=1e-3, temperature=0.7) == []
    assert context_sweep.differs(settings, 50, lr=3e-3, temperature=0.7) == ["lr", "steps"]


def test_largest_difference_pairs_live_runs_with_their_stored_twins():
    stored = Results([{"task": "chat", "arm": a, "seed": s, "steps": 40, "past": 2.0 + s} for a in ("x", "y")
                      for s in range(3)])
    live = Results([{"method": "x", "seed": 0, "past": 2.004}, {"method": "y", "seed": 2, "past": 3.99},
                    {"method": "x", "seed": 9, "past": 7.0}])  # seed 9 has no twin
    count, largest = context_sweep.largest_difference(stored, live, "chat", 40, "past", field="method")
    assert count == 2 and largest == pytest.approx(0.01)
    assert context_sweep.largest_difference(stored, live, "chat", 160, "past", field="method") == (0, 0.0)


def test_gaps_and_their_table_count_the_seeds_below_the_baseline():
    level = {("window", 40): 2.0, ("window", 160): 2.0, ("parts", 40): 2.1, ("parts", 160): 1.9}
    sweep = Results([{"task": "prose", "arm": a, "seed": s, "steps": k, "past": v + 0.1 * s}
                     for (a, k), v in level.items() for s in range(3)])
    table = context_sweep.gaps(sweep, "prose", "past", "window", arms=["parts"])
    assert table == {"parts": {40: pytest.approx([0.1] * 3), 160: pytest.approx([-0.1] * 3)}}
    text = context_sweep.gap_table(table, {"parts": "by parts"})
    assert "+0.10 ± 0.00 (0/3 better)" in text and "-0.10 ± 0.00 (3/3 better)" in text and "160 steps" in text
    assert "+0.10 ± 0.00 (3/3 better)" in context_sweep.gap_table(table, {"parts": "by parts"}, higher_is_better=True)
    assert context_sweep.verdicts(table) == {"parts": {40: "higher", 160: "lower"}}
    noisy = {"parts": {40: [0.1, -0.1, 0.05]}}
    assert context_sweep.verdicts(noisy, "worse", "better", "tied") == {"parts": {40: "tied"}}
    fixed = context_sweep.gaps(sweep, "prose", "past", 2.0, arms=["window"])
    assert fixed["window"][40] == pytest.approx([0.0, 0.1, 0.2])
    context_sweep.plot_sweep(Results([*sweep, *(dict(r, task="chat", format=0.5, format_short=0.4) for r in sweep)]),
                             {"window": "64", "parts": "by parts"}, 2.0)


@pytest.mark.parametrize("command", ["context-sweep", "retrieval-sweep"])
def test_the_command_refuses_a_folder_and_checks_by_rebuilding_aside(command, tmp_path, monkeypatch, capsys):
    """Both of lesson 10's stored sweeps: --check rebuilds aside, compares bytes, never writes the shipped file."""
    import importlib

    sweep = importlib.import_module(f"ftlib.course.lessons.{command.replace('-', '_')}")
    assert main([command, "--out", str(tmp_path)]) == 2
    assert "--out" in capsys.readouterr().err and list(tmp_path.iterdir()) == []
    shipped = sweep.SWEEP.read_bytes()
    built = []

    def fake(path, progress=True):
        built.append(Path(path))
        Path(path).write_bytes(shipped if len(built) == 1 else b"other")
        return json.loads(shipped)

    monkeypatch.setattr(sweep, "build", fake)
    assert main([command, "--check"]) == 0 and main([command, "--check"]) == 1
    assert "bit-identical" in capsys.readouterr().out and not any(p.exists() for p in built)
    assert sweep.SWEEP.read_bytes() == shipped and all(p != sweep.SWEEP for p in built)
