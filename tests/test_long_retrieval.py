"""Lesson 10's retrieval task: records by distance, the sliding window's reach, the fine-tunes and the stored sweep."""


import pytest
import torch

from ftlib.course.lessons import long_retrieval, retrieval_sweep
from ftlib.course.lessons.records import Results
from ftlib.lm import corpus, retrieval
from ftlib.lm.model import Config, TinyLM
from ftlib.lm.tokenizer import VOCAB


def test_records_by_band_put_the_queried_line_inside_each_band_and_use_the_split_keys():
    chosen = long_retrieval.records_by_band("test", 5, seed=1)
    assert list(chosen) == ["0-64", "64-128", "128-192", "192-256"]
    test_keys = set(retrieval.keys("test"))
    for band, records in chosen.items():
        low, high = map(int, band.split("-"))
        assert len(records) == 5 and all(low < r.distance <= high for r in records)
        assert all(len(r.prompt + r.answer) <= 256 and {k for k, _ in r.pairs} <= test_keys for r in records)
    assert chosen == long_retrieval.records_by_band("test", 5, seed=1)
    with pytest.raises(ValueError, match="band 0-5 holds no line"):
        long_retrieval.records_by_band("val", 1, seed=0, bands=((0, 5),))


class _Reader(torch.nn.Module):
    """Writes each record's answer after the query mark if and only if it can see the queried line."""

    def __init__(self, records):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.records = records

    def forward(self, ids):
        logits = torch.zeros(*ids.shape, len(VOCAB))
        for row, tokens in enumerate(ids):
            text = "".join(VOCAB[t] for t in tokens.tolist())
            for record in self.records:
                line = record.pairs[record.queries[0]]
                asked = f"{line[0]}?"
                where = text.rfind(asked)
                if where >= 0 and f"{line[0]}:{line[1]}" in text[:where]:
                    for i, digit in enumerate(line[1]):
                        if where + 2 + i < len(tokens):
                            logits[row, where + 2 + i, VOCAB.index(digit)] = 1.0
        return logits


def test_the_sliding_window_can_only_retrieve_a_line_it_can_see():
    chosen = long_retrieval.records_by_band("test", 3, seed=2)
    records = [r for group in chosen.values() for r in group]
    reader = _Reader(records)
    whole = long_retrieval.by_band(reader, chosen)
    windowed = long_retrieval.by_band(reader, chosen, reach=64)
    assert whole == {band: 1.0 for band in chosen}
    assert windowed["0-64"] == 1.0 and all(windowed[b] == 0.0 for b in ("64-128", "128-192", "192-256"))


def test_a_run_fine_tunes_every_arm_and_the_window_arm_reads_as_many_characters_per_step(monkeypatch):
    model = TinyLM(Config(layers=1, dim=32, heads=2))
    train, val = corpus.split_text()
    task = long_retrieval.LongRetrieval(model, train[:20000], val[:1025], steps=2, per_band=2, val_per_band=3,
                                        rates={"pi": 1e-3})
    long_batch, short_batch = next(task.batches("pi", 0)), next(task.batches("window", 0))
    assert long_batch[0].shape == (3, 256) and short_batch[0].shape == (12, 64)  # 768 characters per step each
    assert (long_batch[1][:2] != -100).sum() > 0 and (long_batch[1][2] != -100).all()  # answers; all of the prose
    record = task.run("pi", 0)
    assert record["lr"] == 1e-3 and record["steps"] == 2 and 0 <= record["val_accuracy"] <= 1
    assert {f"test_{b}" for b in ("0-64", "64-128", "128-192", "192-256")} <= set(record)
    assert record["far"] == pytest.approx((record["test_64-128"] + record["test_128-192"] + record["test_192-256"]) / 3)
    assert record["overall"] == pytest.approx((3 * record["far"] + record["test_0-64"]) / 4)
    assert len(task.val["0-64"]) == 3 and len(task.test["0-64"]) == 2
    assert {"beyond_kept", "beyond_rescaled"} <= set(record)  # read past 256 characters, as tuned and rescaled
    window = task.run("window", 0, lr=1e-3, val=False)
    assert "val_accuracy" not in window and "beyond_kept" not in window


def test_the_records_read_again_at_512_lie_past_the_fine_tuned_length_and_use_test_keys():
    model = TinyLM(Config(layers=1, dim=32, heads=2))
    train, val = corpus.split_text()
    task = long_retrieval.LongRetrieval(model, train[:20000], val[:1025], steps=2, per_band=4, val_per_band=1)
    test_keys = set(retrieval.keys("test"))
    assert len(task.beyond) == 4 and all(256 < r.distance <= 512 for r in task.beyond)
    assert all(len(r.prompt + r.answer) <= 512 and len(r.pairs) == 66 and {k for k, _ in r.pairs} <= test_keys
               for r in task.beyond)
    reader = _Reader(task.beyond)  # sees every line: right in both readings; the window arm is not read again
    assert task.reread(reader, "naive") == {"beyond_kept": 1.0, "beyond_rescaled": 1.0}
    assert set(task.reread(model, "pi", per_band=2)) == {"beyond_kept", "beyond_rescaled"}


def test_the_shipped_sweep_chose_each_arm_on_validation_at_each_budget_and_ran_six_seeds_at_that_rate():
    settings, rates, records = retrieval_sweep.load()
    assert set(rates) == {str(steps) for steps in settings["budgets"]} and settings["seeds"] == 6
    for budget, by_arm in rates.items():
        assert set(by_arm) == set(retrieval_sweep.ARMS)
        for arm, lr in by_arm.items():
            runs = records.where(arm=arm, steps=int(budget))
            means = {rate: Results(r for r in runs if r["lr"] == rate and r["seed"] in retrieval_sweep.CHOOSING_SEEDS)
                     .mean("val_accuracy") for rate in settings["rates"]}
            assert means[lr] == max(means.values())  # the best mean validation accuracy (ties: the lower rate)
            assert lr == min(rate for rate, mean in means.items() if mean == means[lr])
            assert sorted(r["seed"] for r in runs if r["lr"] == lr) == list(range(6))
    chosen = retrieval_sweep.chosen(records, rates)
    assert len(chosen) == 6 * len(retrieval_sweep.ARMS) * len(settings["budgets"])
    first = chosen.where(steps=settings["budgets"][0])
    gaps = retrieval_sweep.gaps(first, "far")
    assert set(gaps) == set(retrieval_sweep.ARMS) - {"window"} and all(len(g) == 6 for g in gaps.values())
    shortest = settings["budgets"][0]
    margins = retrieval_sweep.rate_margins(records.where(steps=shortest), rates[str(shortest)],
                                           {"pi": "position interpolation"}).splitlines()
    assert len(margins) == len(retrieval_sweep.ARMS)
    assert "position interpolation" in margins[retrieval_sweep.ARMS.index("pi")]
    table = retrieval_sweep.gap_table(first, {}).splitlines()
    assert len(table) == len(retrieval_sweep.ARMS) - 1
    assert all("all distances" in line and "inside 64" in line for line in table)
    budgets = retrieval_sweep.budget_table(chosen, {"pi": "PI"}).splitlines()
    assert len(budgets) == 1 + len(retrieval_sweep.ARMS) and all("steps" in h for h in budgets[:1])
    assert budgets[1 + retrieval_sweep.ARMS.index("pi")].startswith("PI ")
    report = retrieval_sweep.report(records, rates, shortest, {"pi": "position interpolation"})
    assert f"for {shortest} steps" in report and f"after {shortest} steps, minus" in report
    assert margins[retrieval_sweep.ARMS.index("pi")] in report and table[0] in report  # its rates and its gaps
    assert report.count("position interpolation") == 3  # its rate, its row by distance, its gap
    reread = long_retrieval.reread_table(chosen, {}).splitlines()
    assert len(reread) == len(retrieval_sweep.ARMS)  # a header and every long reader (the window is not read again)
    assert "the same model" in reread[1 + retrieval_sweep.ARMS.index("naive") - 1]


def test_the_budget_and_reread_tables_print_the_differences_seed_by_seed():
    records = Results([{"arm": "pi", "seed": s, "steps": steps, "far": far, "beyond_kept": 0.1,
                        "beyond_rescaled": 0.3 + 0.001 * s}
                       for s in range(3) for steps, far in ((40, 0.0), (160, 0.5 + 0.01 * s))])
    budgets = retrieval_sweep.budget_table(records, {}).splitlines()
    assert "160 minus 40" in budgets[0] and "+51 ± " in budgets[1] and "(higher)" in budgets[1]
    longer = Results([*records, *({**r, "steps": 640, "far": r["far"] - 0.001} for r in records.where(steps=160))])
    three = retrieval_sweep.budget_table(longer, {}).splitlines()  # each budget minus the one before it
    assert "160 minus 40" in three[0] and "640 minus 160" in three[0] and "640 minus 40" not in three[0]
    assert "+51 ± " in three[1] and "+0 ± 0 (lower)" in three[1]  # -0.1 point rounds to 0, printed without a "-"
    reread = long_retrieval.reread_table(records.where(steps=40), {"pi": "PI"}).splitlines()
    assert reread[1].startswith("PI") and "+20 ± 0 points (higher)" in reread[1]
    flat = Results([{**r, "beyond_rescaled": r["beyond_kept"] + (0.05 if r["seed"] else -0.05)} for r in records
                    if r["steps"] == 40])
    assert "(not resolved)" in long_retrieval.reread_table(flat, {}).splitlines()[1]
