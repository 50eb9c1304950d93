"""Lesson 07's additions: AdaBN (BatchNorm statistics re-estimated on the target), the ladder's fair arms, and the
flawed-checkpoint runs from a probe's head (LP-FT)."""

import pytest
import torch
from torch import nn

from ftlib import data
from ftlib.lessons import transfer_limits
from ftlib.models import GlyphNet
from ftlib.transfer import adapt_batchnorm


def test_adabn_sets_the_running_statistics_to_the_images_and_keeps_weights_and_mode():
    model = GlyphNet(4).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k and "num_batches" not in k}
    images = torch.rand(64, 1, 28, 28) * 0.3 + 0.4
    adapt_batchnorm(model, images, batch_size=64)
    bn = model.block1[1]
    with torch.no_grad():
        conv = model.block1[0](images)
    assert torch.allclose(bn.running_mean, conv.mean(dim=(0, 2, 3)), atol=1e-5)
    assert torch.allclose(bn.running_var, conv.var(dim=(0, 2, 3)), rtol=1e-3)
    assert bn.momentum == 0.1 and not model.training
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in weights.items())
    assert isinstance(bn, nn.BatchNorm2d)


def test_the_ladder_knows_its_fair_arms_and_the_flaw_run_its_heads():
    probe = transfer_limits.ladder_run("linear probe, AdaBN", "gratings", 1, seed=0)
    assert 0 <= probe["accuracy"] <= 1
    only = transfer_limits.flaw_run("narrow", "none", seed=0, n=1, head="probe only")
    assert set(only) == {"accuracy", "upright accuracy"}
    with pytest.raises(ValueError, match="unknown head"):
        transfer_limits.flaw_run("narrow", "none", seed=0, head="nope")
    assert data.test_set("gratings").num_classes == 10
