import pytest
import torch

from ftlib import checkpoint, freeze, models, paths


def test_glyphnet_shapes_and_size():
    model = models.GlyphNet(10)
    x = torch.rand(4, 1, 28, 28)
    assert model(x).shape == (4, 10)
    assert model.features(x).shape == (4, models.FEATURE_DIM)
    assert model.features(x, upto="block2").shape == (4, 32)
    backbone = freeze.count_parameters(model) - freeze.count_parameters(model.head)
    assert 90_000 < backbone < 110_000


def test_replace_head_keeps_the_backbone_and_changes_the_classes():
    torch.manual_seed(0)
    model = models.GlyphNet(52)
    before = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith("head")}
    models.replace_head(model, 24)
    assert model.num_classes == 24 and model.eval()(torch.rand(2, 1, 28, 28)).shape == (2, 24)
    after = model.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


@pytest.mark.parametrize("bad", [1, 0, 2.0, "10"])
def test_bad_class_counts_are_clear_errors(bad):
    with pytest.raises(ValueError, match="num_classes"):
        models.GlyphNet(bad)


def test_unknown_feature_block_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown block 'block9'.*block1"):
        models.GlyphNet(10).features(torch.rand(1, 1, 28, 28), upto="block9")


def test_pooled_features_stop_after_the_named_block():
    net, x = models.GlyphNet(10).eval(), torch.rand(2, 1, 28, 28)
    assert models.pooled_features(net, x, "block2").shape == (2, models.CHANNELS[1])
    assert torch.equal(models.pooled_features(net, x, "block1"), net.block1(x).mean(dim=(2, 3)))
    with pytest.raises(ValueError, match=r"unknown block 'head'.*block1, block2"):
        models.pooled_features(net, x, "head")


def test_shipped_checkpoint_loads_with_its_metadata():
    meta = checkpoint.read_metadata(models.PRETRAINED)
    assert meta["num_classes"] == 52 and meta["test_accuracy"] >= 0.90
    assert models.PRETRAINED.stat().st_size < 1_000_000
    model = models.load_pretrained(num_classes=10)
    assert model.num_classes == 10


def test_checkpoint_round_trip_is_exact_and_bytes_are_deterministic(tmp_path):
    torch.manual_seed(1)
    model = models.GlyphNet(10)
    path = checkpoint.save_checkpoint(model, tmp_path / "a.safetensors", {"seed": 1, "note": "test"})
    checkpoint.save_checkpoint(model, tmp_path / "b.safetensors", {"seed": 1, "note": "test"})
    assert checkpoint.file_digest(path) == checkpoint.file_digest(tmp_path / "b.safetensors")
    loaded = checkpoint.load_weights(models.GlyphNet(10), path)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in model.state_dict().items())
    assert checkpoint.read_metadata(path) == {"seed": 1, "note": "test"}


def test_truncated_checkpoint_is_a_clear_error(tmp_path, monkeypatch):
    path = checkpoint.save_checkpoint(models.GlyphNet(10), tmp_path / "m.safetensors", {})
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"m\.safetensors is damaged") as caught:
        checkpoint.load_weights(models.GlyphNet(10), path)
    assert "pretrain" not in str(caught.value)  # a user's own file: rebuilding the shipped ones cannot help
    monkeypatch.setattr(paths, "SHIPPED_DIRS", (tmp_path,))  # a shipped checkpoint: say how to rebuild it
    with pytest.raises(ValueError, match=r"m\.safetensors is damaged.*python -m ftlib pretrain"):
        checkpoint.load_weights(models.GlyphNet(10), path)


def test_checkpoint_with_wrong_shapes_is_a_clear_error(tmp_path):
    path = checkpoint.save_checkpoint(models.GlyphNet(10), tmp_path / "m.safetensors", {})
    with pytest.raises(ValueError, match=r"head\.weight: file \(10, 128\) vs model \(52, 128\)"):
        checkpoint.load_weights(models.GlyphNet(52), path)


def test_missing_checkpoint_says_how_to_rebuild(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "SHIPPED_DIRS", (tmp_path,))
    with pytest.raises(FileNotFoundError, match="python -m ftlib pretrain"):
        checkpoint.load_weights(models.GlyphNet(10), tmp_path / "none.safetensors")
