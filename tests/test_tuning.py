"""The tuning table: every arm chosen on validation by the one rule, rebuilt bit for bit, read by the lessons."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ftlib.course.lessons import records, tuning


def tiny_arms() -> list[tuning.Arm]:
    """Two arms of two steps each on one label per class: the table's machinery, in seconds."""
    fixed = {"target": "font_digits", "n": 1, "steps": 2}
    return [tuning.Arm("01", "scratch", "experiments:transfer_run", {"method": "scratch", **fixed},
                       grid={"lr": (1e-3, 1e-1)}),
            tuning.Arm("03", "probe", "freezing:depth_run", {"k": 4, **fixed}, grid={}, note="fitted exactly")]


def _tiny_patch(patch: pytest.MonkeyPatch) -> None:
    patch.setattr(tuning, "ARMS", tiny_arms())
    patch.setattr(tuning, "SEEDS", (0, 1))


@pytest.fixture(scope="module")
def tiny_table(tmp_path_factory):
    """The tiny arms' table, built once: ``(path, table)``."""
    with pytest.MonkeyPatch.context() as patch:
        _tiny_patch(patch)
        path = tmp_path_factory.mktemp("tuning") / "table.json"
        return path, tuning.build(path)


@pytest.fixture
def tiny(tiny_table, monkeypatch):
    """The tiny arms in place of the course's (for this test only), and their table."""
    _tiny_patch(monkeypatch)
    return tiny_table


def test_candidates_keep_grid_order_and_per_block_rates_follow_the_head():
    arm = tuning.Arm("02", "per-layer", "learning_rate:rate_run", {}, grid={"lr": (1e-3, 1e-2), "alpha": (0, 1)},
                     rates="head/10")
    assert arm.candidates() == [{"lr": 1e-3, "alpha": 0}, {"lr": 1e-3, "alpha": 1}, {"lr": 1e-2, "alpha": 0},
                                {"lr": 1e-2, "alpha": 1}]
    assert arm.options({"lr": 1e-2}) == {"lr": {"backbone": 1e-3, "head": 1e-2}}
    assert tuning.Arm("01", "x", "experiments:transfer_run", {}).options({"lr": 3e-3}) == {"lr": 3e-3}
    assert tuning.Arm("01", "x", "experiments:transfer_run", {}, grid={}).candidates() == [{}]


def test_every_arm_has_a_unique_key_a_driver_and_conservative_first_grids():
    keys = [arm.key for arm in tuning.ARMS]
    assert len(keys) == len(set(keys))
    for arm in tuning.ARMS:
        assert callable(arm.driver())
        for knob, values in arm.grid.items():
            assert list(values) == sorted(values), f"{arm.key}: {knob}'s grid should list the lowest value first"
        if not arm.grid:
            assert arm.note, f"{arm.key} tunes nothing: its note must say why"


def test_build_chooses_on_validation_by_the_one_rule_and_rebuilds_bit_for_bit(tiny, tmp_path):
    first, table = tiny
    again = tmp_path / "again.json"
    tuning.build(again, lessons=["01"], base=first)  # a partial rebuild merged into the table: the same bytes
    assert again.read_bytes() == first.read_bytes()
    scratch = table["arms"][0]
    runs = records.Results({**r, "candidate": r["lr"]} for r in scratch["records"])
    assert scratch["chosen"] == {"lr": records.choose(runs, "candidate")}
    assert {r["seed"] for r in scratch["records"]} == {0, 1} and len(scratch["records"]) == 4
    assert all(set(r) == {"lr", "seed", "val_accuracy", "val_loss", "accuracy", "trainable"}
               for r in scratch["records"]), "every run's scores and measures, but not its seconds"
    upside_down = records.Results({**r, "candidate": r["lr"], "accuracy": 1 - r["accuracy"]}
                                  for r in scratch["records"])
    assert records.choose(upside_down, "candidate") == scratch["chosen"]["lr"], "the test score never chooses"
    assert table["arms"][1]["chosen"] == {} and table["settings"]["seeds"] == [0, 1]


def test_a_partial_rebuild_needs_the_other_entries(tiny, tmp_path):
    base = tmp_path / "base.json"
    base.write_text(json.dumps({"settings": {}, "arms": []}))
    with pytest.raises(ValueError, match="01 scratch is not in"):
        tuning.build(tmp_path / "t.json", lessons=["03"], base=base)
    with pytest.raises(ValueError, match=r"lessons \['07'\] have no arms"):
        tuning.build(tmp_path / "t.json", lessons=["07"])


def test_table_shows_how_each_arm_was_set_and_rechecks_runs(tiny):
    path, _ = tiny
    table = tuning.Table(json.loads(path.read_text()))
    chosen = table.chosen("01 scratch")["lr"]
    shown = table.show(["01 scratch", "03 probe"])
    assert f"lr {chosen:g}" in shown and "lr 0.001 0.1" in shown and "fitted exactly" in shown
    assert table.options("01 scratch") == {"lr": chosen}
    runs = table.records("01 scratch")
    assert "matches the table" in table.recheck("01 scratch", runs)
    stale = records.Results({**r, "val_accuracy": r["val_accuracy"] + 0.1} for r in runs)
    with pytest.raises(AssertionError, match="stale for 01 scratch"):
        table.recheck("01 scratch", stale)
    with pytest.raises(ValueError, match="not in the tuning table"):
        table.entry("01 nothing")


def test_lessons_read_back_the_tables_runs_and_train_the_rest(tiny):
    path, _ = tiny
    table = tuning.Table(json.loads(path.read_text()))
    stored = {r["seed"]: r for r in table.records("01 scratch")}
    runs = tuning.run_chosen("01 scratch", [0, 1, 2], table)
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert [bool(r.get("from_table")) for r in runs] == [True, True, False], "seed 2 is not in the table: trained"
    assert all(r["accuracy"] == stored[r["seed"]]["accuracy"] for r in runs[:2]) and "seconds" in runs[2]
    assert runs[0]["lr"] == table.chosen("01 scratch")["lr"] and runs[0]["label"] == "scratch"
    again = tuning.run_chosen("01 scratch", [0, 1], table, live=True)  # run now: the same numbers as stored
    assert not any(r.get("from_table") for r in again)
    assert [(r["accuracy"], r["val_accuracy"]) for r in again] == [(stored[s]["accuracy"], stored[s]["val_accuracy"])
                                                                  for s in (0, 1)]
    assert "test accuracy matches" in table.recheck("01 scratch", again)
    with pytest.raises(ValueError, match="runs made now"):
        table.recheck("01 scratch", runs)
    longer = tuning.run_chosen("01 scratch", [0], table, steps=3)  # a changed setting is never read back
    assert not longer[0].get("from_table") and "tuned at 2" in longer[0]["label"]
    mixed = tuning.run_arms(["01 scratch", "03 probe"], [0], table, live=["03 probe"])
    assert [bool(r.get("from_table")) for r in mixed] == [True, False]
    seed_one = tuning.run_arms(["01 scratch"], [0, 1], table, live_seeds=[1])
    assert [bool(r.get("from_table")) for r in seed_one] == [True, False]


def test_the_shipped_table_matches_the_arms_the_lessons_define():
    table = tuning.load()
    assert set(table.entries) == {arm.key for arm in tuning.ARMS}, "rebuild: python -m ftlib tune"
    for arm in tuning.ARMS:
        stored = table.arm(arm.key)
        assert (stored.run, stored.fixed, stored.grid, stored.rates) == (arm.run, arm.fixed, arm.grid, arm.rates), \
            f"{arm.key} changed since the table was built: python -m ftlib tune --lessons {arm.lesson}"
        entry = table.entry(arm.key)
        runs = records.Results({**r, "candidate": arm.candidates().index({k: r[k] for k in arm.grid})}
                               for r in entry["records"])
        assert entry["chosen"] == arm.candidates()[records.choose(runs, "candidate")], f"{arm.key}: not the one rule"
        assert sorted(runs.unique("seed")) == table.settings["seeds"]
        assert all("accuracy" in r and "seconds" not in r for r in runs), f"{arm.key}: rebuild with test scores"
    assert table.settings["n_val"] == tuning.N_VAL and table.settings["rates"] == list(tuning.RATES)


@pytest.mark.parametrize("args, message", [
    (["--lessons", "09"], "--lessons 09 is not allowed"),
    (["--check", "--overwrite-shipped"], "--check never writes"),
    (["--out", "table.txt"], "must end in .json"),
    (["--out", "data/tuning.json"], "shipped folder"),
])
def test_tune_command_refuses_bad_flags_in_one_line(args, message):
    result = subprocess.run([sys.executable, "-m", "ftlib", "tune", *args], capture_output=True, text=True)
    assert result.returncode == 2 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_tune_command_names_a_bad_worker_count_before_training(tmp_path):
    env = {**os.environ, "FTLIB_WORKERS": "two"}
    result = subprocess.run([sys.executable, "-m", "ftlib", "tune", "--out", str(tmp_path / "t.json")], env=env,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "FTLIB_WORKERS='two' is not allowed" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "t.json").exists()


def test_a_damaged_table_is_named_in_one_line(tmp_path):
    for text in ["{", "[]", '{"settings": {}, "arms": 3}']:
        path = tmp_path / "t.json"
        path.write_text(text)
        with pytest.raises(ValueError, match="is not a tuning table .*python -m ftlib tune"):
            tuning.Table(tuning._contents(path))
    with pytest.raises(ValueError, match="does not exist"):
        tuning.load(tmp_path / "none.json")


def test_an_interrupted_build_leaves_the_table_as_it_was_and_no_stray_file(tiny, tmp_path, monkeypatch):
    first, _ = tiny
    target = tmp_path / "table.json"
    target.write_bytes(first.read_bytes())
    calls = []

    def interrupted(arm, progress=None):
        calls.append(arm.key)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {"lesson": arm.lesson, "arm": arm.name}

    monkeypatch.setattr(tuning, "tune", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tuning.build(target, progress=lambda line: None)
    assert target.read_bytes() == first.read_bytes() and [p.name for p in tmp_path.iterdir()] == ["table.json"]


def test_lesson05s_penalties_run_at_the_rate_chosen_for_no_penalty():
    """The penalty arms fix their rate on purpose at no penalty's chosen rate: the table must agree with itself
    (a rebuild that moves no penalty's choice must move them too)."""
    table = tuning.load()
    sensible = table.chosen("05 no penalty")["lr"]
    for key in table.entries:
        if key.startswith("05 ") and key != "05 no penalty" and "lr 0.03" not in key:
            assert table.arm(key).fixed["lr"] == sensible, f"{key} runs at {table.arm(key).fixed['lr']}"
