"""Lesson 10's shipped step sweep: complete, reproducible run by run, compared with live runs, and its command."""

import json
import re
from pathlib import Path

import matplotlib
import pytest

from ftlib.__main__ import main
from ftlib.course.lessons import context_sweep
from ftlib.course.lessons.experiments import Results
from ftlib.course.lessons.records import choose
from ftlib.lm import chat, corpus

matplotlib.use("Agg")

TINY = context_sweep.SETTINGS | {"budgets": [2], "seeds": 2, "choosing_seeds": 1, "rates": [1e-3, 1e-2],
                                 "prose_eval_chars": 512, "chat_eval_chars": 512}


def test_the_shipped_sweep_holds_every_run_once_and_each_rate_chosen_on_validation():
    settings, chosen, bar, sweep = context_sweep.load()
    assert settings == context_sweep.SETTINGS
    assert bar == pytest.approx(context_sweep.untouched(context_sweep.runners()), abs=1e-3)  # any thread count
    keys = [(r["task"], r["arm"], r["seed"], r["steps"], r["lr"]) for r in sweep]
    choosing = range(settings["choosing_seeds"])
    expected = {(t, a, s, k, lr) for t in context_sweep.TASKS for a in context_sweep.ARMS for k in settings["budgets"]
                for s in range(settings["seeds"])
                for lr in (settings["rates"] if s in choosing else [chosen[t][str(k)][a]])}
    assert len(keys) == len(set(keys)) and set(keys) == expected
    for t in context_sweep.TASKS:
        for k in settings["budgets"]:
            for a in context_sweep.ARMS:
                tried = Results(r for r in sweep.where(task=t, steps=k, arm=a) if r["seed"] in choosing)
                assert chosen[t][str(k)][a] == choose(tried, "lr")  # the lower mean validation loss, seeds 0-2
    tuned = context_sweep.at_chosen(sweep, chosen)
    assert len(tuned) == len(context_sweep.TASKS) * len(context_sweep.ARMS) * len(settings["budgets"]) * 6
    assert all(1 < r["past"] < 6 and 1 < r["val_loss"] < 6 for r in tuned)
    assert all(0 <= r["format"] <= 1 and 0 <= r["format_short"] <= 1 for r in sweep.where(task="chat"))
    assert not any("format" in r or "format_short" in r for r in sweep.where(task="prose"))


@pytest.mark.slow
def test_a_long_run_of_the_shipped_sweep_is_reproduced_when_run_on_its_own():
    """Each record is a pure function of its task, arm, seed, steps and rate: rerun one chat run at its chosen rate
    on a seed that did not choose it (about 10 s, most of it the format chances)."""
    _, chosen, _, sweep = context_sweep.load()
    lr = chosen["chat"]["40"]["parts"]
    fresh = context_sweep.run("chat", "parts", 5, 40, lr)
    [stored] = sweep.where(task="chat", arm="parts", seed=5, steps=40)
    assert fresh["lr"] == stored["lr"] == lr
    assert all(abs(fresh[k] - stored[k]) < 0.01 for k in ("past", "val_loss", "format", "format_short"))


def test_a_run_is_the_same_twice_and_scores_validation_and_test_apart():
    first = context_sweep.run("prose", "parts", 0, 2, 1e-3, TINY)
    assert first == context_sweep.run("prose", "parts", 0, 2, 1e-3, TINY)
    assert list(first) == ["task", "arm", "seed", "steps", "lr", "past", "val_loss"]
    assert first["past"] != first["val_loss"]  # two texts: the test prose and the validation prose


def test_validation_and_test_texts_are_apart_and_the_held_out_chat_is_never_trained_on():
    built = context_sweep.runners(TINY)
    dialogues = chat.load_dialogues("train")
    held = context_sweep.held_out_dialogues(dialogues, TINY["chat_eval_chars"] + 1)
    assert built["chat"].choice_text == chat.chat_text(dialogues[-held:])[0]
    assert built["chat"].choice_text not in built["chat"].train_text
    assert len(built["chat"].choice) == TINY["chat_eval_chars"] + 1 <= len(chat.chat_text(dialogues[-held:])[0])
    _, held_prose = corpus.split_text()  # validation: its first 513 characters; test: the next 513
    assert built["prose"].choice == held_prose[:513] and built["prose"].evaluation == held_prose[513:1026]
    with pytest.raises(ValueError, match="chars=10000000 is more than the dialogues hold"):
        context_sweep.held_out_dialogues(dialogues, 10_000_000)


def test_the_sweep_chooses_each_rate_on_the_choosing_seeds_then_runs_the_others_at_it(monkeypatch):
    calls = []

    def fake(task, arm, seed, steps, lr, settings, progress):
        calls.append((task, arm, seed, lr))
        best = {"window": 1e-2, "naive": 1e-3}.get(arm, 1e-2)  # the validation loss is lowest at this rate
        return {"task": task, "arm": arm, "seed": seed, "steps": steps, "lr": lr,
                "val_loss": 1.0 + abs(lr - best), "past": 5.0 - abs(lr - best)}  # test would choose the other

    monkeypatch.setattr(context_sweep, "run", fake)
    chosen, found = context_sweep.sweep_records(TINY)
    assert chosen["prose"]["2"] == {"window": 1e-2, "naive": 1e-3, "pi": 1e-2, "parts": 1e-2}
    assert chosen["chat"]["2"]["naive"] == 1e-3
    assert len(found) == 2 * 4 * (2 * 1 + 1)  # tasks x arms x (rates x choosing seeds + the other seed)
    assert [c for c in calls if c[2] == 1] == [(t, a, 1, chosen[t]["2"][a]) for t in context_sweep.TASKS
                                               for a in context_sweep.ARMS]
    assert len(context_sweep.at_chosen(found, chosen)) == 2 * 4 * 2


@pytest.mark.parametrize("selection, message", [({"task": "poetry"}, r"task='poetry' is not allowed"),
                                                ({"arm": "yarn"}, r"arm='yarn' is not allowed")])
def test_run_names_an_unknown_task_or_arm(selection, message):
    with pytest.raises(ValueError, match=message):
        context_sweep.run(**({"task": "prose", "arm": "parts"} | selection), seed=0, steps=2, lr=1e-3,
                          settings=TINY)


def test_differs_names_the_lesson_settings_without_a_stored_twin():
    settings = context_sweep.SETTINGS
    assert context_sweep.differs(settings, 40, rates=1e-3, temperature=0.7) == []
    assert context_sweep.differs(settings, 50, rates=2e-3, temperature=0.7) == ["rates", "steps"]


def test_largest_difference_pairs_live_runs_with_their_stored_twins_on_the_validation_text():
    stored = Results([{"task": "chat", "arm": a, "seed": s, "steps": 40, "lr": lr, "past": 9.0, "val_loss": 2.0 + s}
                      for a in ("x", "y") for s in range(3) for lr in (1e-3, 1e-2)])
    live = Results([{"method": "x", "seed": 0, "past": 2.004}, {"method": "y", "seed": 2, "past": 3.99},
                    {"method": "x", "seed": 9, "past": 7.0}])  # seed 9 has no twin
    count, largest = context_sweep.largest_difference(stored, live, "chat", 40, 1e-3, field="method")
    assert count == 2 and largest == pytest.approx(0.01)
    assert context_sweep.largest_difference(stored, live, "chat", 160, 1e-3, field="method") == (0, 0.0)
    assert context_sweep.largest_difference(stored, live, "chat", 40, 3e-3, field="method") == (0, 0.0)


def test_rates_table_prints_each_arms_rate_and_its_validation_loss_per_task_and_budget():
    chosen = {"prose": {"40": {"window": 1e-4, "parts": 3e-3}}, "chat": {"40": {"window": 1e-3, "parts": 1e-2}}}
    sweep = Results({"task": t, "steps": 40, "arm": a, "lr": lr, "seed": s, "val_loss": 2.0 + lr + 0.1 * s}
                    for t in chosen for a in ("window", "parts") for lr in (1e-4, 1e-3, 3e-3, 1e-2)
                    for s in range(4))  # seed 3 is not a choosing seed: not in the mean
    text = context_sweep.rates_table(sweep, chosen, {"window": "64", "parts": "by parts"})
    assert "prose, 40" in text and "chat, 40" in text
    assert re.search(r"by parts\s+0.003: 2.103\s+0.01: 2.110", text), text
    assert re.search(r"64\s+0.0001: 2.100\s+0.001: 2.101", text), text


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


def test_choosing_keeps_the_choosing_seeds_runs_alone():
    sweep = Results({"task": "prose", "arm": "x", "seed": s, "lr": lr} for s in range(6) for lr in (1e-3, 1e-2))
    kept = context_sweep.choosing(sweep, context_sweep.SETTINGS | {"choosing_seeds": 3}, lr=1e-3)
    assert [r["seed"] for r in kept] == [0, 1, 2] and all(r["lr"] == 1e-3 for r in kept)
