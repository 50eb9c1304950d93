import pytest
import torch

from ftlib import checkpoint, data, models, probe, transfer
from ftlib.course import pretrain
from ftlib.course.lessons import transfer_limits


def test_frechet_distance_is_zero_for_one_cloud_and_the_squared_shift_for_a_moved_one():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(500, 8, generator=g)
    assert transfer.frechet_distance(a, a) == pytest.approx(0, abs=1e-6)
    shift = torch.tensor([3.0, 0, 0, 0, 4.0, 0, 0, 0])
    assert transfer.frechet_distance(a, a + shift) == pytest.approx(25.0, rel=1e-6)
    assert transfer.frechet_distance(a, 2 * a) > 1.0  # same mean, wider spread
    with pytest.raises(ValueError, match="same d"):
        transfer.frechet_distance(a, a[:, :4])


def test_a_far_target_lies_farther_from_the_source_than_a_near_one():
    model = models.load_pretrained()
    source = transfer.subset(data.test_set("letters"), 10)
    near = transfer.task_distance(model, source, transfer.subset(data.test_set("font_digits"), 50))
    far = transfer.task_distance(model, source, transfer.subset(data.test_set("gratings"), 50))
    assert 0 < near < far


def test_truncate_reads_the_features_of_the_chosen_block_and_leaves_the_model_alone():
    model = models.load_pretrained(10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = data.test_set("font_digits").images[:4]
    for i, block in enumerate(models.BLOCKS):
        cut = transfer.truncate(model, block)
        assert cut.head.in_features == models.CHANNELS[i]
        assert torch.equal(probe.extract_features(cut, x), probe.extract_features(model, x, upto=block))
        assert cut(x).shape == (4, 10)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="unknown block 'block9'"):
        transfer.truncate(model, "block9")


def test_probe_run_scores_a_probe_on_an_early_block():
    result = transfer_limits.probe_run("shapes", 2, seed=0, block="block2", test_per_class=20)
    assert 0.1 < result["accuracy"] <= 1.0


def test_subset_keeps_the_first_images_of_every_class():
    test = data.test_set("shapes")
    small = transfer.subset(test, 3)
    assert torch.equal(torch.bincount(small.labels), torch.full((10,), 3))
    assert torch.equal(small.images[:3], test.images[test.labels == 0][:3])


def test_pretrained_start_is_seeded_and_reinitialises_only_the_named_blocks():
    path = pretrain.checkpoint_path("narrow")
    a, b = models.pretrained_start(10, seed=1, path=path), models.pretrained_start(10, seed=1, path=path)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in a.state_dict().items())
    shipped = models.load_pretrained(path=path).state_dict()
    fresh = models.pretrained_start(10, seed=1, path=path, reinit=("block4",)).state_dict()
    assert torch.equal(fresh["block3.0.weight"], shipped["block3.0.weight"])
    assert not torch.equal(fresh["block4.0.weight"], shipped["block4.0.weight"])
    with pytest.raises(ValueError, match="unknown block"):
        models.pretrained_start(10, seed=1, path=path, reinit=("head4",))


def test_flaw_run_reports_shifted_and_upright_accuracy_and_rejects_unknown_remedies():
    result = transfer_limits.flaw_run("narrow", "augmentation", seed=0, n=1, steps=2)
    assert set(result) == {"accuracy", "upright_accuracy"}
    with pytest.raises(ValueError, match="unknown remedy 'prayer'"):
        transfer_limits.flaw_run("narrow", "prayer", seed=0)


def test_checkpoint_paths_of_the_variants():
    assert pretrain.checkpoint_path() == models.PRETRAINED
    assert pretrain.checkpoint_path("narrow").name == "glyphnet_narrow.safetensors"
    with pytest.raises(ValueError, match="unknown variant 'wide'"):
        pretrain.checkpoint_path("wide")


def test_the_narrow_checkpoint_ships_small_and_says_what_its_source_lacks():
    path = pretrain.checkpoint_path("narrow")
    assert path.stat().st_size < 1_000_000
    meta = checkpoint.read_metadata(path)
    assert meta["variant"] == "narrow" and meta["source_lacks"] == data.NARROW_LACKS
    assert meta["steps"] == pretrain.SETTINGS["steps"]
    assert "variant" not in checkpoint.read_metadata(models.PRETRAINED)  # the full one's metadata is unchanged
    models.load_pretrained(path=path)  # every name and shape fits GlyphNet


def test_a_short_narrow_build_is_bit_identical_and_differs_from_the_full_one(tmp_path):
    paths = [tmp_path / "a.safetensors", tmp_path / "b.safetensors", tmp_path / "full.safetensors"]
    for path, variant in zip(paths, ["narrow", "narrow", "full"]):
        pretrain.pretrain(path, steps=3, progress=False, variant=variant)
    digests = [checkpoint.file_digest(p) for p in paths]
    assert digests[0] == digests[1] != digests[2]
    with pytest.raises(ValueError, match="unknown variant"):
        pretrain.pretrain(tmp_path / "c.safetensors", steps=1, variant="wide")
