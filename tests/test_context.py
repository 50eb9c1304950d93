"""Context extension: RoPE scaling methods, loss by position, the long fine-tune."""

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
    head_dim = SMALL.dim // SMALL.heads  # 16: the NTK-aware factor is 4 ** (16 / 14)
    assert math.isclose(big.config.rope_base, SMALL.rope_base * 4 ** (head_dim / (head_dim - 2)), rel_tol=1e-9)
    assert pi.config.context == 64 and lm.config.context == 16 and lm.position_scale == 1.0
    assert context.scaled(lm, "pi", 8).position_scale == 1.0  # never stretches positions
    ids = torch.randint(0, 96, (2, 20))
    with torch.no_grad():
        assert torch.equal(context.scaled(lm, "naive", 64)(ids), lm(ids))
        assert not torch.allclose(pi(ids), lm(ids)) and not torch.allclose(big(ids), lm(ids))
    assert context.EXTENSIONS == ("naive", "pi", "base", "parts", "truncated")
    with pytest.raises(ValueError, match="method='ntk'.*naive, pi, base, parts, truncated"):
        context.scaled(lm, "ntk", 64)
    with pytest.raises(ValueError, match="length=0"):
        context.scaled(lm, "pi", 0)


def test_the_ntk_aware_base_keeps_the_fastest_pair_and_slows_the_slowest_as_pi_does():
    config = model.Config()  # head dimension 32: pairs i = 0..15 turn at base ** (-2i / 32)
    factor = context.ntk_base_factor(config, 256)
    assert math.isclose(factor, 4 ** (32 / 30)) and context.ntk_base_factor(config, 64) == 1.0
    slowest = factor ** (-30 / 32)  # the slowest pair's frequency changes by factor ** (-2 * 15 / 32)
    assert math.isclose(slowest, 1 / 4)  # what PI does to every pair at 4x


def test_truncated_basis_keeps_fast_pairs_sets_middle_ones_to_one_slow_frequency_and_stops_the_slowest():
    config = model.Config()  # trained on 64: wavelengths 6.3 ... 35,000 characters
    waves, factors = context.wavelengths(config), context.truncated_factors(config)
    new_waves = waves / factors  # a factor 0 gives an infinite wavelength: no rotation
    assert torch.equal(factors[waves <= 64], torch.ones(int((waves <= 64).sum())))  # 5 pairs turn inside 64
    middle = (waves > 64) & (waves <= 8 * 64)
    assert middle.sum() == 3 and torch.allclose(new_waves[middle], torch.full((3,), 16.0 * 64))
    assert torch.all(factors[waves > 8 * 64] == 0) and int((factors == 0).sum()) == 8
    lm = _lm()
    truncated = context.scaled(lm, "truncated", 64)
    assert torch.equal(truncated.rope_scale, context.truncated_factors(SMALL)) and truncated.position_scale == 1.0


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


def test_a_scaled_model_is_set_up_again_for_another_length_as_its_pretrained_base_would_be():
    """Giraffe's evaluation-time scale: a model scaled (and fine-tuned) for 256 characters, set up for 512 from
    the configuration it was pretrained with, reads as the base scaled for 512 would, with its own weights."""
    lm = model.TinyLM(model.Config(layers=1, dim=32, heads=2))
    for method in context.EXTENSIONS:
        tuned = context.scaled(lm, method, 256)
        with torch.no_grad():
            tuned.embed.weight.add_(1.0)
        again, fresh = context.scaled(tuned, method, 512, pretrained=lm.config), context.scaled(lm, method, 512)
        assert again.config == fresh.config and again.position_scale == fresh.position_scale, method
        assert (again.rope_scale is None and fresh.rope_scale is None) or torch.equal(again.rope_scale,
                                                                                      fresh.rope_scale), method
        assert torch.equal(again.embed.weight, tuned.embed.weight)
        assert not torch.equal(again.embed.weight, fresh.embed.weight)
    assert context.scaled(context.scaled(lm, "pi", 256), "pi", 512, pretrained=lm.config).position_scale == 0.125


def test_the_length_free_methods_set_a_model_up_alike_at_every_length():
    lm = model.TinyLM(model.Config(layers=1, dim=32, heads=2))
    for method in context.EXTENSIONS:
        at_256, at_512 = context.scaled(lm, method, 256), context.scaled(lm, method, 512)
        same = (at_256.config.rope_base == at_512.config.rope_base and at_256.position_scale == at_512.position_scale
                and (at_256.rope_scale is None) == (at_512.rope_scale is None)
                and (at_256.rope_scale is None or torch.equal(at_256.rope_scale, at_512.rope_scale)))
        assert same == (method in context.LENGTH_FREE), method
