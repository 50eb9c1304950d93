"""Context extension: RoPE scaling methods, loss by position, the long fine-tune, the recall task."""

import math
import random

import pytest
import torch

from ftlib import runtime
from ftlib.lm import context, model
from ftlib.lm.bits import bits_per_char
from ftlib.lm.tokenizer import VOCAB

SMALL = model.Config(layers=2, dim=32, heads=2, context=16)
TEXT = "".join(random.Random(0).choices(VOCAB[1:], k=2000))


def _lm(seed=0):
    runtime.seed_everything(seed)
    return model.TinyLM(SMALL).eval()


def test_scaled_sets_positions_and_base_on_a_copy():
    lm = _lm()
    pi, big = context.scaled(lm, "pi", 64), context.scaled(lm, "base", 64)
    assert (pi.position_scale, big.position_scale) == (0.25, 1.0)
    assert big.config.rope_base == SMALL.rope_base * context.BASE_FACTOR
    assert pi.config.context == 64 and lm.config.context == 16 and lm.position_scale == 1.0
    assert context.scaled(lm, "pi", 8).position_scale == 1.0  # never stretches positions
    ids = torch.randint(0, 96, (2, 20))
    with torch.no_grad():
        assert torch.equal(context.scaled(lm, "naive", 64)(ids), lm(ids))
        assert not torch.allclose(pi(ids), lm(ids)) and not torch.allclose(big(ids), lm(ids))
    assert context.EXTENSIONS == ("naive", "pi", "base", "parts")
    with pytest.raises(ValueError, match="method='ntk'.*naive, pi, base, parts"):
        context.scaled(lm, "ntk", 64)
    with pytest.raises(ValueError, match="length=0"):
        context.scaled(lm, "pi", 0)


def test_position_bits_has_one_entry_per_position_and_averages_to_bits_per_char():
    lm = _lm()
    curve = context.position_bits(lm, TEXT[:321], 32)
    assert curve.shape == (32,)
    assert math.isclose(curve.mean().item(), bits_per_char(lm, TEXT[:321], 32), rel_tol=1e-5)
    assert abs(curve.mean().item() - math.log2(96)) < 0.2  # an untrained model is close to uniform


def test_extend_fine_tunes_a_copy_at_the_longer_context():
    lm = _lm()
    weights = {k: v.clone() for k, v in lm.state_dict().items()}
    longer, history = context.extend(lm, "pi", 32, TEXT, steps=3, lr=1e-3, seed=0, batch_size=2)
    assert len(history.loss) == 3 and longer.config.context == 32 and longer.position_scale == 0.5
    assert all(torch.equal(v, lm.state_dict()[k]) for k, v in weights.items())
    assert not torch.equal(longer.embed.weight, lm.embed.weight)


def test_recall_task_repeats_the_passage_only_in_the_repeated_batch():
    repeated, fresh = context.recall_task(TEXT, passage=10, gap=25, count=6, seed=1)
    assert repeated.shape == fresh.shape == (6, 45)
    assert torch.equal(repeated[:, :10], repeated[:, -10:])
    assert torch.equal(repeated[:, 10:], fresh[:, 10:])
    assert not torch.equal(fresh[:, :10], fresh[:, -10:])
    again, _ = context.recall_task(TEXT, passage=10, gap=25, count=6, seed=1)
    assert torch.equal(again, repeated)
    with pytest.raises(ValueError, match="passage=0"):
        context.recall_task(TEXT, passage=0, gap=5, count=2, seed=0)


def test_recall_bits_scores_only_the_last_passage():
    lm = _lm()
    repeated, fresh = context.recall_task(TEXT, passage=8, gap=4, count=16, seed=0)
    bits = context.recall_bits(lm, repeated, 8)
    assert abs(bits - math.log2(96)) < 0.2
    changed = repeated.clone()
    changed[:, :8] = fresh[:, :8]  # a different first copy changes the context, not the scored characters
    assert context.recall_bits(lm, changed, 8) != bits
