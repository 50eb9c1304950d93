"""Data augmentation on batches of image tensors, with a fresh random draw for every image, seeded.

Every augmentation here is an ``Augment``: a function ``(images, generator) -> images`` on a batch (B, 1, H, W) in
[0, 1], which is what ``ftlib.train.fit(..., augment=...)`` calls on each training batch.

* :func:`random_affine` rotates, shifts and scales every image of a batch by its own random amounts in one
  ``affine_grid``/``grid_sample`` call: fast enough for training.
* :func:`per_image` wraps any ``torchvision.transforms.v2`` transform so that each image gets its own parameters.
  (A v2 transform called on a batch draws *one* set of parameters for the whole batch.) It loops over the images,
  so it suits previews and rich pipelines more than training.
* :func:`catalogue` and :func:`pipeline` are the v2 transforms of the lesson, scaled by one ``strength`` knob.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torchvision.transforms import v2

from .train import Augment

__all__ = ["BILINEAR", "affine_matrices", "affine_ranges", "catalogue", "compose", "images_per_second", "per_image",
           "pipeline", "random_affine", "random_flip", "standard"]

BILINEAR = v2.InterpolationMode.BILINEAR  # smoother than v2's default (nearest) on 28x28 images


def _check_batch(images: torch.Tensor) -> None:
    if images.ndim != 4:
        raise ValueError(f"images of shape {tuple(images.shape)}: expected a batch (B, C, H, W)")


def random_affine(degrees: float = 10.0, translate: float = 0.1,
                  scale: tuple[float, float] = (0.9, 1.1)) -> Augment:
    """Rotate each image by its own angle in ±``degrees`` (counter-clockwise positive, as in v2), shift it by up
    to ``translate`` of its width and height, and scale it by a factor in ``scale``; bilinear, zero fill.

    The parameters mean what they mean in ``v2.RandomAffine(degrees, (translate, translate), scale)``, but every
    image gets its own draw from the generator, and the whole batch is resampled at once.
    """
    if degrees < 0 or not 0 <= translate <= 1:
        raise ValueError(f"degrees={degrees}, translate={translate}: need degrees >= 0 and 0 <= translate <= 1")
    if not 0 < scale[0] <= scale[1]:
        raise ValueError(f"scale={scale} is not allowed: need 0 < low <= high")

    def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(images)
        n = images.shape[0]
        draw = torch.rand(n, 4, generator=generator).to(images.device)
        angle = (2 * draw[:, 0] - 1) * math.radians(degrees)
        factor = scale[0] + (scale[1] - scale[0]) * draw[:, 1]
        shift = (2 * draw[:, 2:] - 1) * 2 * translate  # [-1, 1] image coordinates span 2 units per width
        theta = affine_matrices(angle, factor, shift)
        grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
        return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)

    return augment


def affine_ranges(strength: float) -> tuple[float, float, tuple[float, float]]:
    """``(degrees, translate, scale)`` at ``strength``: rotation ±10°·strength, shift ±10%·strength and scale
    1 ± 0.1·strength (0: none, 1: mild, 3: strong; from 0 to 5)."""
    if not 0 <= strength <= 5:
        raise ValueError(f"strength={strength} is not allowed: choose a number from 0 to 5")
    return 10 * strength, min(0.1 * strength, 1), (max(1 - 0.1 * strength, 0.1), 1 + 0.1 * strength)


def standard(strength: float = 1.0) -> Augment:
    """The lesson's fast training augmentation: :func:`random_affine` with the ranges of :func:`affine_ranges`."""
    return random_affine(*affine_ranges(strength))


def random_flip(horizontal: bool = True, vertical: bool = False, p: float = 0.5) -> Augment:
    """Flip each image with probability ``p``, on its own draw: left-right, upside down, or both at once
    (which is a 180° turn)."""
    if not 0 <= p <= 1 or not (horizontal or vertical):
        raise ValueError(f"horizontal={horizontal}, vertical={vertical}, p={p}: need 0 <= p <= 1 and a direction")
    dims = [d for d, on in ((-1, horizontal), (-2, vertical)) if on]

    def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(images)
        chosen = (torch.rand(images.shape[0], generator=generator) < p).to(images.device)
        return torch.where(chosen[:, None, None, None], images.flip(dims), images)

    return augment


def compose(*augments: Augment) -> Augment:
    """Apply ``augments`` one after the other, all drawing from the same generator."""

    def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for step in augments:
            images = step(images, generator)
        return images

    return augment


def affine_matrices(angle: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """The (n, 2, 3) matrices that ``F.affine_grid`` needs (output -> input coordinates) to rotate each image by
    ``angle`` (radians, counter-clockwise on screen), scale it by ``scale`` and then shift it by ``shift`` (x, y in
    [-1, 1] image coordinates)."""
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # affine_grid maps each output pixel back to where it samples the input: undo the shift, then turn by -angle
    # and shrink by 1/scale (with y pointing down, as on screen; checked against v2.functional.affine).
    inverse = torch.stack([torch.stack([cos, sin], 1), torch.stack([-sin, cos], 1)], 1)
    return torch.cat([inverse, -(inverse @ shift[:, :, None])], 2)


def per_image(transform: Callable[[torch.Tensor], torch.Tensor]) -> Augment:
    """Apply ``transform`` (e.g. a ``torchvision.transforms.v2`` transform) to each image on its own, so that
    every image gets its own random parameters, drawn reproducibly from the generator.

    v2 transforms draw from torch's global random state; here it is seeded from the generator inside
    ``torch.random.fork_rng``, so the global state of the caller is left as it was. Results are clamped to [0, 1].
    """

    def augment(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        _check_batch(images)
        seed = int(torch.randint(0, 2**62, (1,), generator=generator))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            return torch.stack([transform(image) for image in images]).clamp_(0, 1)

    return augment


def catalogue(strength: float = 1.0) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
    """The lesson's single augmentations as v2 transforms, each at ``strength`` (0: none, 1: mild, 3: strong).

    At strength 1: rotation ±10°, shift ±10%, scale 0.9-1.1 (see :func:`affine_ranges`), elastic alpha 15 in
    v2's convention (a move of alpha/2 = 7.5 px times a field smoothed with sigma 3 px), noise sigma 0.1, blur
    sigma up to 1, erasing 2-10% of the image.
    """
    degrees, translate, scale = affine_ranges(strength)
    s = strength
    return {
        "rotation": v2.RandomRotation(degrees, interpolation=BILINEAR),
        "shift": v2.RandomAffine(0, translate=(translate, translate), interpolation=BILINEAR),
        "scale": v2.RandomAffine(0, scale=scale, interpolation=BILINEAR),
        "elastic": v2.ElasticTransform(alpha=15.0 * s, sigma=3.0),
        "noise": v2.GaussianNoise(sigma=0.1 * s),
        "blur": v2.GaussianBlur(5, sigma=(0.01, max(0.01, s))),
        "erasing": v2.RandomErasing(p=1.0 if s else 0.0, scale=(0.02 * s, 0.1 * s) if s else (0.02, 0.1)),
    }


def pipeline(strength: float = 1.0) -> v2.Compose:
    """A combined v2 pipeline at ``strength``: rotation, shift and scale in one ``RandomAffine``, then elastic
    distortion, blur and noise."""
    degrees, translate, scale = affine_ranges(strength)
    t = catalogue(strength)
    return v2.Compose([v2.RandomAffine(degrees, (translate, translate), scale, interpolation=BILINEAR),
                       t["elastic"], t["blur"], t["noise"]])


def images_per_second(augment: Augment, images: torch.Tensor, repeats: int = 5, seed: int = 0) -> float:
    """How many images per second ``augment`` processes, on ``repeats`` passes over the batch ``images``."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} is not allowed: need at least 1")
    generator = torch.Generator().manual_seed(seed)
    start = time.perf_counter()
    for _ in range(repeats):
        augment(images, generator)
    return repeats * len(images) / (time.perf_counter() - start)
