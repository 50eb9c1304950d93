"""Loading an image folder: conversion of any size and mode, the found-report, bad input, the split, the example."""

import numpy as np
import pytest
import torch
from PIL import Image

from ftlib import folder
from ftlib.course import example_images


def _write(path, mode="RGB", size=(30, 20), value=200, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = value if len(Image.new(mode, (1, 1)).getbands()) == 1 else (value,) * len(mode)
    Image.new(mode, size, colour).save(path, format=fmt)
    return path


def test_the_shipped_example_folder_loads_as_the_glyph_model_expects():
    data, report = folder.load_folder(example_images.EXAMPLE_DIR, 28, 1, bright_ink=True)
    assert report.classes == example_images.CLASSES == data.classes
    assert set(report.counts.values()) == {example_images.PER_CLASS} and not report.skipped
    assert data.images.shape == (len(example_images.CLASSES) * example_images.PER_CLASS, 1, 28, 28)
    assert 0 <= data.images.min() and data.images.max() <= 1
    assert torch.bincount(data.labels).tolist() == [example_images.PER_CLASS] * len(example_images.CLASSES)
    sizes = {Image.open(p).size for p in example_images.EXAMPLE_DIR.rglob("*.*")}
    modes = {Image.open(p).mode for p in example_images.EXAMPLE_DIR.rglob("*.*")}
    assert len(sizes) > 20 and {"RGB", "RGBA", "L", "P"} <= modes
    total = sum(p.stat().st_size for p in example_images.EXAMPLE_DIR.rglob("*.*"))
    assert total < 1.5e6


def test_the_example_generator_is_seeded(tmp_path):
    first = example_images.generate(tmp_path / "a", seed=3, per_class=2)
    second = example_images.generate(tmp_path / "b", seed=3, per_class=2)
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
    assert len(first) == 2 * len(example_images.CLASSES)


def test_every_example_symbol_exists_in_every_font_it_is_drawn_in():
    from fontTools.ttLib import TTFont

    from ftlib.data import font_path

    assert len(example_images.FONTS) >= 8 and sorted(example_images.CLASSES) == list(example_images.CLASSES)
    for font in example_images.FONTS:
        cmap = TTFont(font_path(font)).getBestCmap()
        missing = [c for c in example_images.SYMBOLS.values() if ord(c) not in cmap]
        assert not missing, f"{font} lacks {missing}"


def test_example_symbols_differ_and_an_unknown_one_is_an_error():
    rng = np.random.default_rng(0)
    masks = {name: np.asarray(example_images.glyph_mask(char, (60, 60), np.random.default_rng(1)), dtype=float)
             for name, char in example_images.SYMBOLS.items()}
    assert all(m.max() == 255 and (m > 0).mean() < 0.5 for m in masks.values())
    names = list(masks)
    assert all(np.abs(masks[a] - masks[b]).mean() > 5 for i, a in enumerate(names) for b in names[i + 1:])
    with pytest.raises(ValueError, match="unknown symbol 'arrow'.*ampersand"):
        example_images.draw_image("arrow", rng)


def test_every_mode_and_size_becomes_the_same_shape(tmp_path):
    for i, mode in enumerate(["RGB", "RGBA", "L", "P", "LA", "I;16", "1"]):
        _write(tmp_path / "a" / f"{i}.png", mode, size=(10 + 7 * i, 40))
    _write(tmp_path / "b" / "x.jpg", "RGB", (64, 32), fmt="JPEG")
    _write(tmp_path / "b" / "y.bmp", "RGB", (5, 90))
    for channels, size in [(1, 28), (3, 64)]:
        data, report = folder.load_folder(tmp_path, size, channels)
        assert data.images.shape == (9, channels, size, size) and data.images.dtype == torch.float32
        assert report.counts == {"a": 7, "b": 2} and data.classes == ("a", "b")


def test_bright_ink_inverts_dark_symbols_on_light_backgrounds():
    image = Image.new("L", (40, 40), 230)
    image.paste(20, (12, 12, 28, 28))
    plain = folder.to_tensor(image, 28, 1)
    bright = folder.to_tensor(image, 28, 1, bright_ink=True)
    assert plain[0, 14, 14] < 0.2 and bright[0, 14, 14] > 0.8
    assert torch.allclose(bright, 1 - plain)
    dark = Image.new("L", (40, 40), 10)
    assert torch.equal(folder.to_tensor(dark, 28, 1, bright_ink=True), folder.to_tensor(dark, 28, 1))


def test_unreadable_files_are_skipped_with_a_warning_that_names_them(tmp_path):
    _write(tmp_path / "cats" / "ok.png")
    _write(tmp_path / "dogs" / "ok.png")  # a second class: one class alone is an error
    (tmp_path / "cats" / "broken.jpg").write_bytes(b"not a jpeg at all")
    (tmp_path / "cats" / "notes.txt").write_text("hello")
    (tmp_path / "stray.png").write_bytes(b"x")
    with pytest.warns(UserWarning, match=r"broken\.jpg is not a readable image"):
        data, report = folder.load_folder(tmp_path)
    assert len(data) == 2 and report.files == [tmp_path / "cats" / "ok.png", tmp_path / "dogs" / "ok.png"]
    reasons = dict(report.skipped)
    assert reasons["cats/broken.jpg"] == "not a readable image"
    assert reasons["cats/notes.txt"].startswith("not an image file")
    assert reasons["stray.png"] == "not in a class folder"
    assert "skipped 3 file(s)" in str(report) and "cats/broken.jpg" in str(report)


def test_bad_folders_are_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        folder.load_folder(tmp_path / "missing")
    with pytest.raises(ValueError, match="no class folders"):
        folder.load_folder(tmp_path)
    (tmp_path / "dogs").mkdir()
    (tmp_path / "dogs" / "a.png").write_bytes(b"garbage")
    with pytest.warns(UserWarning), pytest.raises(ValueError, match="no readable image"):
        folder.load_folder(tmp_path)
    with pytest.raises(ValueError, match="channels=2"):
        folder.to_tensor(Image.new("L", (4, 4)), 8, 2)


def _labelled(counts):
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    images = torch.arange(len(labels), dtype=torch.float32).view(-1, 1, 1, 1).expand(-1, 1, 8, 8)
    return folder.ImageSet(images, labels, tuple(f"c{i}" for i in range(len(counts))))


def test_split_is_stratified_disjoint_and_seeded():
    data = _labelled([40, 20, 10])
    train, val, test = folder.split(data, seed=0)
    assert torch.bincount(test.labels).tolist() == [16, 8, 4]
    assert torch.bincount(val.labels).tolist() == [8, 4, 2]
    ids = [set(part.images[:, 0, 0, 0].tolist()) for part in (train, val, test)]
    assert sum(map(len, ids)) == len(data) and len(set.union(*ids)) == len(data)
    again = folder.split(data, seed=0)[2]
    other = folder.split(data, seed=1)[2]
    assert torch.equal(again.images, test.images) and not torch.equal(other.images, test.images)


def test_a_class_with_too_few_images_is_named():
    with pytest.raises(ValueError, match=r"\{'c1': 2\}") as error:
        folder.split(_labelled([10, 2]), seed=0)
    assert str(error.value).endswith(f"at least 3 images ({folder.ENOUGH_ADVICE})")
    with pytest.raises(ValueError, match="add up to less than 1"):
        folder.split(_labelled([10, 10]), seed=0, val=0.5, test=0.5)
    train, val, test = folder.split(_labelled([3, 3]), seed=0)
    assert [len(train), len(val), len(test)] == [2, 2, 2]


def test_pixels_keep_their_values():
    array = np.zeros((20, 20), np.uint8)
    array[:, 10:] = 255
    out = folder.to_tensor(Image.fromarray(array), 20, 1)
    assert out[0, :, 0].max() == 0 and out[0, :, -1].min() == 1


@pytest.mark.parametrize("counts, test", [([3, 3], 0.5), ([3, 12], 0.5), ([3, 40, 7], 0.4), ([4, 3], 0.7)])
def test_every_class_of_three_or_more_reaches_every_part(counts, test):
    """Issue 37 row 2: a class of 3 (the documented minimum) gave validation none, so evaluation divided by 0."""
    train, val, test_set = folder.split(_labelled(counts), seed=0, val=0.2, test=test)
    for part in (train, val, test_set):
        assert (torch.bincount(part.labels, minlength=len(counts)) >= 1).all()
    assert len(train) + len(val) + len(test_set) == sum(counts)


def test_a_single_class_folder_is_a_one_line_error(tmp_path):
    for i in range(4):
        _write(tmp_path / "only" / f"{i}.png")
    with pytest.raises(ValueError, match="one class folder \\(only\\): a classifier needs at least 2") as caught:
        folder.load_folder(tmp_path)
    assert "\n" not in str(caught.value)
    with pytest.raises(ValueError, match="at least 2 classes"):
        folder.split(_labelled([5]), seed=0)


def test_a_photo_is_read_upright_by_its_exif_orientation(tmp_path):
    """Issue 37 row 3: a phone photo stores its pixels sideways with orientation 6 (rotate 90° clockwise)."""
    upright = np.zeros((40, 40), np.uint8)
    upright[:, :10] = 255  # a bright bar on the left
    stored = np.rot90(upright, 1)  # as the camera stored it: the viewer turns it 90° clockwise back
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "photo.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    out = folder.read_image(path, 20, 1)[0].numpy()
    expected = folder.to_tensor(Image.fromarray(upright), 20, 1)[0].numpy()
    assert np.abs(out - expected).mean() < 0.05 and expected[:, :5].mean() > 0.9
