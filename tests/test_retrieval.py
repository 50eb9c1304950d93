"""Key-value retrieval records: the format, the held-out split, the training rows and the scorer (no training)."""

import random
from pathlib import Path

import pytest
import torch

from ftlib.course import pretrain_retrieval
from ftlib.lm import retrieval
from ftlib.lm.tokenizer import VOCAB, decode, encode


def test_a_record_is_its_lines_then_its_queries_and_a_seed_fixes_it():
    record = retrieval.random_record(random.Random(3), 8, queries=2)
    assert record == retrieval.random_record(random.Random(3), 8, queries=2)
    lines = record.text.split("\n")[:-1]
    assert len(lines) == 10 and all(len(line) == 6 for line in lines)
    assert all(line[2] == ":" for line in lines[:8]) and all(line[2] == "?" for line in lines[8:])
    asked = dict(line.split("?") for line in lines[8:])
    assert all(dict(line.split(":") for line in lines[:8])[key] == value for key, value in asked.items())
    assert len({line[:2] for line in lines[:8]}) == 8  # one value per key
    assert record.prompt + record.answer + "\n" == record.text[:len(record.prompt) + 4]


def test_eight_lines_and_a_query_fit_the_64_character_context():
    record = retrieval.random_record(random.Random(0), 8)
    assert len(record.prompt + record.answer) == 62


@pytest.mark.parametrize("index", [0, 3, 7])
def test_query_index_puts_the_queried_line_at_a_chosen_distance(index):
    record = retrieval.random_record(random.Random(1), 8, query_index=index)
    assert record.queries[0] == index
    start = len(record.prompt) - record.distance
    assert record.prompt[start:start + 3] == record.pairs[index][0] + ":"
    assert record.distance == 7 * (8 - index) + 3


def test_held_out_keys_are_disjoint_from_training_keys_and_cover_all_of_them():
    train, held_out = set(retrieval.keys("train")), set(retrieval.keys("held_out"))
    assert not train & held_out and train | held_out == set(retrieval.KEYS) and len(retrieval.KEYS) == 676
    record = retrieval.random_record(random.Random(0), 8, split="held_out")
    assert {key for key, _ in record.pairs} <= held_out
    with pytest.raises(ValueError, match="split='dev' is not allowed: choose one of train, held_out, val, test"):
        retrieval.keys("dev")


@pytest.mark.parametrize("bad", [{"lines": 0}, {"lines": 2, "queries": 3}, {"lines": 2, "query_index": 2},
                                 {"lines": 137, "split": "held_out"}])
def test_bad_record_sizes_are_value_errors_naming_the_input(bad):
    name = next(k for k in ("query_index", "queries", "lines") if k in bad)
    with pytest.raises(ValueError, match=f"{name}="):
        retrieval.random_record(random.Random(0), **bad)


def test_record_rows_have_unique_keys_and_mark_exactly_the_answers():
    ids, answers = retrieval.record_rows(random.Random(0), 4, 65, 2)
    assert ids.shape == answers.shape == (4, 65) and answers.dtype == torch.bool
    for row, mask in zip(ids, answers):
        text = decode(row)
        keys = [line[:2] for line in text.split("\n") if len(line) == 6 and line[2] == ":"]
        assert len(keys) == len(set(keys))
        marked = [i for i, m in enumerate(mask.tolist()) if m]
        assert all(text[i].isdigit() and "?" in text[i - 3:i] for i in marked)
        whole_queries = [i for i in range(len(text) - 6) if text[i + 2] == "?"]
        assert len(marked) >= 3 * len(whole_queries)


class _Oracle(torch.nn.Module):
    """Predicts, at each position, the character that follows it in a fixed text (right or wrong on purpose)."""

    def __init__(self, text: str, wrong_at: set[int] = frozenset()) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.next_ids = encode(text[1:])
        self.wrong_at = wrong_at

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*ids.shape, len(VOCAB))
        for t in range(ids.shape[1]):
            target = self.next_ids[t].item()
            logits[:, t, (target + 1) % len(VOCAB) if t in self.wrong_at else target] = 1.0
        return logits


def test_the_scorer_counts_exact_values_and_characters():
    record = retrieval.random_record(random.Random(0), 4)
    full = record.prompt + record.answer
    assert retrieval.retrieval_accuracy(_Oracle(full), [record]) == {"exact": 1.0, "chars": 1.0}
    last = len(full) - 2  # the position that predicts the value's last character
    assert retrieval.retrieval_accuracy(_Oracle(full, {last}), [record]) == {"exact": 0.0, "chars": 2 / 3}
    with pytest.raises(ValueError, match="records is empty"):
        retrieval.retrieval_accuracy(_Oracle(full), [])



def test_the_pretrain_command_builds_the_retrieval_base_with_its_recipe_and_guards_the_shipped_file(
        monkeypatch, tmp_path, capsys):
    from ftlib.__main__ import main

    calls = []

    def fake(path, **settings):
        calls.append((Path(path), settings))
        Path(path).write_bytes(b"weights")
        return {"val_bpc": 2.0, "val_text": "some prose", "exact_8_lines": 0.5}

    monkeypatch.setattr(pretrain_retrieval, "pretrain", fake)
    out = tmp_path / "base.safetensors"
    assert main(["pretrain", "--model", "tinylm-retrieval", "--out", str(out)]) == 0
    recipe = pretrain_retrieval.SETTINGS
    assert calls == [(out, {"steps": recipe["steps"], "seed": 0, "threads": recipe["threads"]})]
    assert "held-out retrieval 50.0% exact on 8-line records" in capsys.readouterr().out
    assert main(["pretrain", "--model", "tinylm-retrieval", "--steps", "5"]) == 2  # would replace the shipped file
    assert "would overwrite the shipped" in capsys.readouterr().err and len(calls) == 1


def test_the_held_out_set_is_fixed_and_the_shipped_base_retrieves_inside_its_context():
    first, again = (pretrain_retrieval.held_out_records(8, count=5) for _ in range(2))
    assert first == again and all(r.queries[0] in range(8) for r in first)
    base = pretrain_retrieval.load_pretrained()
    records = pretrain_retrieval.held_out_records(8, count=100)
    assert retrieval.retrieval_accuracy(base, records)["exact"] >= 0.9  # the bar, on 100 of its records
    wrong = [retrieval.Record(tuple((k, f"{(int(v) + 500) % 1000:03d}") for k, v in r.pairs), r.queries)
             for r in records]  # the same keys, other values: the model must read them, not remember them
    assert retrieval.retrieval_accuracy(base, wrong)["exact"] >= 0.9


def test_repeat_rows_write_each_string_twice_and_mark_the_second_copy_after_its_first_character():
    ids, copied = retrieval.repeat_rows(random.Random(0), 3, 65)
    assert ids.shape == copied.shape == (3, 65)
    for row, mask in zip(ids, copied):
        text = decode(row)
        first, second = text.split("\n")[:2]
        assert first == second and retrieval.REPEAT_LENGTHS[0] <= len(first) <= retrieval.REPEAT_LENGTHS[1]
        marked = [i for i, m in enumerate(mask.tolist()) if m]
        start = len(first) + 1  # the second copy's first character is not marked: it cannot be copied yet
        assert marked[:len(first)] == list(range(start + 1, start + len(first) + 1))
    assert torch.equal(retrieval.repeat_rows(random.Random(0), 3, 65)[0], ids)


def test_validation_and_test_keys_split_the_held_out_keys_in_two():
    val, test = set(retrieval.keys("val")), set(retrieval.keys("test"))
    assert len(val) == len(test) == 68 and not val & test
    assert val | test == set(retrieval.keys("held_out")) and not (val | test) & set(retrieval.keys("train"))


def test_check_refuses_when_there_is_no_shipped_file_to_compare_with(monkeypatch, tmp_path, capsys):
    from ftlib.__main__ import main

    monkeypatch.setattr(pretrain_retrieval, "CHECKPOINT", tmp_path / "missing.safetensors")
    monkeypatch.setattr(pretrain_retrieval, "pretrain", lambda path, **settings: pytest.fail("it trained"))
    assert main(["pretrain", "--model", "tinylm-retrieval", "--check"]) == 2
    assert "missing" in capsys.readouterr().err
