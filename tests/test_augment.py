"""Augmentations: shapes, value ranges, per-image randomness, seeded determinism, and agreement with v2."""

import math

import matplotlib
import pytest
import torch
from devices import on_each_device
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from ftlib import augment
from ftlib.course.lessons import augmentation
from ftlib.course.lessons.plots import plot_confusion

matplotlib.use("Agg")


def _digits(n: int = 8) -> torch.Tensor:
    """A batch of n copies of one simple, off-centre, asymmetric 'glyph' in [0, 1]."""
    image = torch.zeros(1, 28, 28)
    image[0, 6:20, 10:13] = 1.0
    image[0, 6:9, 10:20] = 0.7
    return image.expand(n, 1, 28, 28).clone()


AUGMENTS = {
    "standard": augment.standard(1.0),
    "strong affine": augment.random_affine(180, 0.3, (0.7, 1.3)),
    "flip": augment.random_flip(True, True, 0.5),
    "composed": augment.compose(augment.standard(2.0), augment.random_flip(False, True, 0.5)),
    "v2 pipeline per image": augment.per_image(augment.pipeline(1.0)),
    **{f"v2 {name}": augment.per_image(t) for name, t in augment.catalogue(2.0).items()},
}


@pytest.mark.parametrize("name", AUGMENTS)
def test_shape_range_and_seeded_determinism(name):
    fn, images = AUGMENTS[name], _digits(16)
    first = fn(images, torch.Generator().manual_seed(3))
    again = fn(images, torch.Generator().manual_seed(3))
    other = fn(images, torch.Generator().manual_seed(4))
    assert first.shape == images.shape and first.dtype == images.dtype
    assert first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, again), "the same generator seed must give the same batch"
    assert not torch.equal(first, other), "another seed must give another batch"
    assert torch.equal(images, _digits(16)), "the input batch must be left unchanged"


@pytest.mark.parametrize("name", ["standard", "strong affine", "v2 pipeline per image", "v2 rotation"])
def test_every_image_gets_its_own_parameters(name):
    out = AUGMENTS[name](_digits(8), torch.Generator().manual_seed(0))
    distinct = {tuple(img.flatten().tolist()) for img in out}
    assert len(distinct) == 8


def test_a_v2_transform_on_a_whole_batch_shares_one_draw_the_trap_per_image_avoids():
    images = _digits(8)
    torch.manual_seed(0)
    shared = v2.RandomRotation(30)(images)
    assert all(torch.equal(shared[0], img) for img in shared)


def test_per_image_leaves_the_global_random_state_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    augment.per_image(v2.RandomRotation(30))(_digits(4), torch.Generator().manual_seed(0))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.parametrize("angle, scale, shift", [(30.0, 1.0, (0, 0)), (-20.0, 1.2, (0, 0)), (0.0, 1.0, (3, -2)),
                                                 (15.0, 0.9, (2, 1))])
def test_affine_matrices_match_torchvision(angle, scale, shift):
    images = _digits(2)
    reference = TF.affine(images, angle=angle, translate=list(shift), scale=scale, shear=[0.0, 0.0],
                          interpolation=v2.InterpolationMode.BILINEAR)
    theta = augment.affine_matrices(torch.full((2,), math.radians(angle)), torch.full((2,), scale),
                                    torch.tensor([[2 * shift[0] / 28, 2 * shift[1] / 28]] * 2))
    grid = torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    ours = torch.nn.functional.grid_sample(images, grid, align_corners=False)
    assert torch.allclose(ours, reference, atol=1e-4)


def test_strength_zero_is_the_identity_and_ranges_grow_with_strength():
    images = _digits(4)
    assert torch.allclose(augment.standard(0)(images, torch.Generator().manual_seed(0)), images, atol=1e-5)
    assert augment.affine_ranges(1) == (10, 0.1, (0.9, 1.1))
    assert augment.affine_ranges(3)[0] > augment.affine_ranges(1)[0]


def test_flip_turns_chosen_images_upside_down_and_keeps_the_others():
    images = torch.arange(4 * 28 * 28, dtype=torch.float32).reshape(4, 1, 28, 28) / (4 * 28 * 28)
    out = augment.random_flip(True, True, 0.5)(images, torch.Generator().manual_seed(1))
    turned = [torch.equal(o, i.flip(-1, -2)) for o, i in zip(out, images)]
    kept = [torch.equal(o, i) for o, i in zip(out, images)]
    assert all(t != k for t, k in zip(turned, kept)) and any(turned) and any(kept)
    assert torch.equal(augment.random_flip(p=0.0)(images, torch.Generator()), images)


def test_images_per_second_is_positive():
    assert augment.images_per_second(augment.standard(), _digits(32), repeats=2) > 0


@pytest.mark.parametrize("call, match", [
    (lambda: augment.random_affine(-1), "degrees=-1"),
    (lambda: augment.random_affine(10, 2.0), "translate=2.0"),
    (lambda: augment.random_affine(10, 0.1, (1.2, 0.8)), r"scale=\(1.2, 0.8\)"),
    (lambda: augment.standard(7), "strength=7"),
    (lambda: augment.catalogue(-1), "strength=-1"),
    (lambda: augment.random_flip(p=1.5), "p=1.5"),
    (lambda: augment.random_flip(False, False), "a direction"),
    (lambda: augment.standard()(torch.zeros(28, 28), torch.Generator()), r"shape \(28, 28\)"),
    (lambda: augment.images_per_second(augment.standard(), _digits(2), repeats=0), "repeats=0"),
])
def test_bad_values_are_clear_errors(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_plot_confusion_checks_its_shape_and_draws_rates():
    counts = torch.tensor([[8, 2], [0, 10]])
    ax = plot_confusion(counts, ["six", "nine"], title="t")
    assert [t.get_text() for t in ax.texts] == ["80", "20", "100"]
    assert [t.get_rotation() for t in ax.get_xticklabels()] == [45.0, 45.0], "words are turned so they do not overlap"
    assert [t.get_rotation() for t in plot_confusion(counts, ["6", "9"]).get_xticklabels()] == [0.0, 0.0]
    with pytest.raises(ValueError, match="3 classes"):
        plot_confusion(counts, ["a", "b", "c"])


# --- every augmentation on each available device (the CPU here; a GPU where there is one) ------------------------

BATCHED = {**{name: (lambda name: augmentation.batched(name, 1.0))(name) for name in augmentation.EXTRA},
           "standard": augment.standard(1.0), "flips": augment.random_flip(True, True)}


@on_each_device
@pytest.mark.parametrize("name", list(BATCHED))
def test_each_batched_augmentation_runs_on_the_batchs_device_with_the_cpus_draws(name, device):
    """``fit`` moves the batch to the device and passes its CPU generator: the augmented batch stays on the
    device, and a seed draws the same augmentation there as on the CPU (equal up to float rounding)."""
    images = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    on_cpu = BATCHED[name](images, torch.Generator().manual_seed(7))
    on_device = BATCHED[name](images.to(device), torch.Generator().manual_seed(7))
    assert on_device.device.type == torch.device(device).type and on_device.shape == images.shape
    torch.testing.assert_close(on_device.cpu(), on_cpu, atol=1e-4, rtol=1e-4)
