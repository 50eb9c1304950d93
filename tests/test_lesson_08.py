"""Lesson 08's drivers: each method trains what it says, rates are chosen on validation, costs split adapters/head."""

import pytest

from ftlib import data
from ftlib.lessons import adapters

SETTINGS = {"steps": 2, "blocks": ["block3", "block4"], "alpha": 8.0}


def _trainable_blocks(model):
    return {name.split(".")[0] for name, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("method, blocks", [
    (adapters.PROBE, {"head"}), (adapters.HEAD, {"head"}), (adapters.lora_name(1), {"block3", "block4", "head"}),
    (adapters.PARTIAL, {"block3", "block4", "head"}), (adapters.FULL, {"block1", "block2", "block3", "block4", "head"}),
])
def test_each_method_trains_only_what_it_names(method, blocks):
    model = adapters.train_method(method, data.few_shot("font_digits", 2, 0), 0, lr=1e-3, **SETTINGS).model
    assert _trainable_blocks(model) == blocks
    lora_params = [n for n, p in model.named_parameters() if p.requires_grad and "lora_" in n]
    assert bool(lora_params) == method.startswith("LoRA")


def test_an_unknown_method_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown method 'nonsense'"):
        adapters.train_method("nonsense", data.few_shot("font_digits", 2, 0), 0, lr=1e-3, **SETTINGS)


def test_rates_are_chosen_on_a_validation_split_among_the_candidates():
    chosen, scores = adapters.choose_rates([adapters.HEAD], [1e-3, 1e-2], "font_digits", 4, seed=0, **SETTINGS)
    assert set(chosen) == {adapters.HEAD} and chosen[adapters.HEAD] in (1e-3, 1e-2)
    assert len(scores) == 2 and scores[0]["images"] == 10  # one of 4 per class held out, 10 classes
    best = max(scores, key=lambda r: (r["accuracy"], -r["loss"]))
    assert chosen[adapters.HEAD] == best["lr"]


def test_a_grid_record_splits_the_trainable_parameters_into_adapters_and_head():
    kept = {}
    record = adapters.method_run(adapters.lora_name(1), "font_digits", 2, 0, rates={"LoRA": 1e-2}, keep=kept,
                                 **SETTINGS)
    model = kept[adapters.lora_name(1), 0]
    assert record["head"] == 128 * 10 + 10
    assert record["backbone"] == sum(p.numel() for n, p in model.named_parameters() if "lora_" in n) > 0
    assert record["trainable"] == record["backbone"] + record["head"] and 0 <= record["accuracy"] <= 1
