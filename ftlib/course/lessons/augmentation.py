"""Lesson 04's drivers: a preview of each augmentation, runs with and without augmentation, and the 6/9 trap.

:func:`augmented_run` trains on ``n`` digits per class and scores on a validation set (more labelled digits from the
pool, disjoint from training and test: the strength is chosen there) and on the test set. :func:`batched` gives
batch versions (one draw per image) of the catalogue's elastic, noise, blur and erasing, fast enough to train with.
The tuning table (:mod:`~ftlib.course.lessons.tuning`) holds one arm per method and strength, each at its own rate:
:func:`strength_arms` finds them, :func:`stored_validation` reads their stored validation records (what each
method's strength is chosen from, the same on every machine) and :func:`~ftlib.course.lessons.tuning.run_arms`
runs them on the lesson's seeds.
:func:`live_augmentation` is the live slider's run: scratch trained for real with one augmentation at one strength.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F

from ftlib import augment, data
from ftlib.course.lessons import plots, records, tuning
from ftlib.course.lessons.experiments import run, validation_scores
from ftlib.course.lessons.workers import independent
from ftlib.course.runner import points
from ftlib.evaluation import confusion_matrix
from ftlib.train import Augment

__all__ = ["ELASTIC_ALPHA", "ELASTIC_RADIUS", "ELASTIC_SIGMA", "ERASING_AREA", "EXTRA", "SIMARD_ALPHA", "SIMARD_SIGMA",
           "VALIDATION_PER_CLASS", "augmented_run", "batched", "best_strength", "digit_changes", "displacement_rms",
           "elastic_vs_simard", "ink_removed", "live_augmentation", "on_six_nine", "plot_strengths", "preview",
           "rank_on_validation", "smoothed_field", "stored_validation", "strength_arms", "strength_sizes", "swapped",
           "ways_table"]

VALIDATION_PER_CLASS = 20  # labelled digits per class held out to choose the strength (never the test set)
EXTRA = ("elastic", "noise", "blur", "erasing")  # the catalogue's augmentations beyond rotation, shift and scale
ERASING_AREA = (0.02, 0.1)  # share of the image one zero-filled patch covers at strength 1, on every image
# torchvision v2's convention: a displacement of alpha/W in [-1, 1] image coordinates, so alpha/2 pixels times the
# smoothed field (Simard et al.'s alpha is in pixels: alpha times the field; 34 on MNIST)
ELASTIC_ALPHA = 15.0  # at strength 1, in torchvision v2's convention
ELASTIC_SIGMA = 3.0  # pixels: the smoothing of the elastic displacement field (Simard et al.: 4 on MNIST)
ELASTIC_RADIUS = 6  # pixels: the smoothing kernel is cut at ±2 sigma (13 taps)
SIMARD_ALPHA, SIMARD_SIGMA = 34.0, 4.0  # Simard et al. (2003) on MNIST: alpha in pixels, sigma in pixels


def preview(digits: torch.Tensor, strength: float) -> None:
    """Show ``digits`` under each augmentation of the catalogue and the v2 pipeline, at ``strength``."""
    single = {name: augment.per_image(t) for name, t in augment.catalogue(strength).items()}
    rows = {"original": lambda x, g: x, **single, "v2 pipeline": augment.per_image(augment.pipeline(strength))}
    grid = torch.cat([fn(digits, torch.Generator().manual_seed(0)) for fn in rows.values()])
    names = [name if k == 0 else "" for name in rows for k in range(len(digits))]
    degrees, shift, scale = augment.affine_ranges(strength)
    print(f"strength = {strength}: rotation ±{degrees:g}°, shift ±{100 * shift:.0f}%, "
          f"scale {scale[0]:.2f}-{scale[1]:.2f}")
    plots.show_images(grid, count=len(grid), columns=len(digits), labels=names,
                      title=f"Six training digits under each augmentation (strength {strength})")
    plt.show()


# The random draws come from the CPU generator that ``fit`` passes (so that a seed gives the same augmentation on
# every device); what they shape moves to the batch's device before it touches the images.


def _noise(sigma: float) -> Augment:
    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return (x + sigma * torch.randn(x.shape, generator=g).to(x.device)).clamp(0, 1)
    return apply


def _blur(top: float) -> Augment:
    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        sigma = 0.01 + (top - 0.01) * torch.rand(len(x), generator=g)
        taps = torch.exp(-torch.arange(-2.0, 3.0)[None] ** 2 / (2 * sigma[:, None] ** 2))
        taps = (taps / taps.sum(1, keepdim=True)).to(x.device)  # one 5-tap Gaussian per image, as v2.GaussianBlur
        y = F.conv2d(F.pad(x.transpose(0, 1), (2, 2, 0, 0), mode="reflect"), taps[:, None, None], groups=len(x))
        return F.conv2d(F.pad(y, (0, 0, 2, 2), mode="reflect"), taps[:, None, :, None], groups=len(x)).transpose(0, 1)
    return apply


def _erasing(low: float, high: float) -> Augment:
    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        area = h * w * (low + (high - low) * torch.rand(n, generator=g))
        ratio = torch.exp(math.log(0.3) + (math.log(3.3) - math.log(0.3)) * torch.rand(n, generator=g))
        eh = (area * ratio).sqrt().clamp(1, h - 1).round()
        ew = (area / ratio).sqrt().clamp(1, w - 1).round()
        top, left = ((h - eh) * torch.rand(n, generator=g)).floor(), ((w - ew) * torch.rand(n, generator=g)).floor()
        rows, cols = torch.arange(h)[None, :, None], torch.arange(w)[None, None, :]
        box = ((rows >= top[:, None, None]) & (rows < (top + eh)[:, None, None])
               & (cols >= left[:, None, None]) & (cols < (left + ew)[:, None, None]))
        return x * ~box[:, None].to(x.device)
    return apply


def smoothed_field(count: int, height: int, width: int, sigma: float, generator: torch.Generator,
                   radius: int = ELASTIC_RADIUS) -> torch.Tensor:
    """``count`` random fields (count, 1, height, width), as v2.ElasticTransform draws them: uniform in [-1, 1], then
    smoothed by a Gaussian of ``sigma`` pixels cut at ±``radius`` pixels (reflecting at the edges)."""
    if sigma <= 0 or radius < 0 or radius >= min(height, width):
        raise ValueError(f"sigma={sigma}, radius={radius}: need sigma > 0 and 0 <= radius < the image's size")
    field = 2 * torch.rand(count, 1, height, width, generator=generator) - 1
    taps = torch.exp(-torch.arange(-float(radius), radius + 1.0) ** 2 / (2 * sigma ** 2))
    taps = taps / taps.sum()
    field = F.conv2d(F.pad(field, (radius, radius, 0, 0), mode="reflect"), taps.view(1, 1, 1, -1))
    return F.conv2d(F.pad(field, (0, 0, radius, radius), mode="reflect"), taps.view(1, 1, -1, 1))


def displacement_rms(alpha_pixels: float, sigma: float, radius: int | None = None, size: int = 28,
                     draws: int = 256, seed: int = 0) -> float:
    """The root-mean-square displacement per axis, in pixels, of an elastic distortion that moves each pixel by
    ``alpha_pixels`` times a :func:`smoothed_field` (Simard et al.'s convention; torchvision v2's alpha moves by
    alpha/2 pixels), on ``size`` x ``size`` images, over ``draws`` fields. ``radius``: where the kernel is cut
    (default: ±4 sigma, as v2.ElasticTransform; the lesson's training cuts at :data:`ELASTIC_RADIUS`)."""
    if alpha_pixels < 0 or draws < 1:
        raise ValueError(f"alpha_pixels={alpha_pixels}, draws={draws}: need alpha_pixels >= 0 and draws >= 1")
    radius = round(4 * sigma) if radius is None else radius
    field = smoothed_field(draws, size, size, sigma, torch.Generator().manual_seed(seed), radius)
    return alpha_pixels * field.pow(2).mean().sqrt().item()


def _elastic(alpha: float, sigma: float = ELASTIC_SIGMA) -> Augment:
    def apply(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        field = smoothed_field(n * 2, h, w, sigma, g).to(x.dtype)
        shift = (alpha / torch.tensor([w, h], dtype=x.dtype)) * field.view(n, 2, h, w).permute(0, 2, 3, 1)
        grid = F.affine_grid(torch.eye(2, 3)[None].expand(n, 2, 3).to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, (grid + shift).to(x.device), mode="bilinear", padding_mode="zeros", align_corners=False)
    return apply


def batched(name: str, strength: float = 1.0) -> Augment:
    """The catalogue's ``name`` (one of :data:`EXTRA`) at ``strength`` on a whole batch, one draw per image.

    Same ranges as :func:`ftlib.augment.catalogue`: elastic alpha :data:`ELASTIC_ALPHA` (torchvision v2's
    convention: alpha/2 pixels times a field smoothed with sigma :data:`ELASTIC_SIGMA` px), noise sigma 0.1, blur
    sigma up to 1 and erasing :data:`ERASING_AREA` of the image at strength 1 (one patch on every image, filled with
    zeros)."""
    s = strength
    makers = {"elastic": lambda: _elastic(ELASTIC_ALPHA * s), "noise": lambda: _noise(0.1 * s),
              "blur": lambda: _blur(max(0.01, s)),
              "erasing": lambda: _erasing(ERASING_AREA[0] * s, ERASING_AREA[1] * s)}
    if name not in makers:
        raise ValueError(f"unknown augmentation {name!r}; choose one of {', '.join(makers)}")
    return makers[name]()


@independent
def augmented_run(method: str, strength: float, seed: int, n: int, steps: int, turn: bool = False,
                  kind: str = "affine", lr: float | None = None) -> dict:
    """Train ``method`` on ``n`` digits per class with augmentation ``kind`` at ``strength`` (0: none).

    ``kind`` is ``"affine"`` (the standard rotation, shift and scale) or one of :data:`EXTRA`. ``turn`` also
    turns half of the images upside down (a 180° turn). ``lr``: the peak rate (default: the method's). Returns the
    ``val_accuracy`` and ``val_loss`` (on :func:`ftlib.data.few_shot_split`'s held-out digits), the test
    ``accuracy``, the ``confusion`` matrix on the test digits, and the training ``seconds``.
    """
    parts = [augment.standard(strength) if kind == "affine" else batched(kind, strength)] if strength else []
    if turn:
        parts.append(augment.random_flip(horizontal=True, vertical=True, p=0.5))
    train_set, val_set = data.few_shot_split("mnist", n, VALIDATION_PER_CLASS, seed)
    rate = {} if lr is None else {"lr": lr}
    trained = run(method, train_set, seed, steps, augment=augment.compose(*parts) if parts else None, **rate)
    test = data.test_set("mnist")
    confusion = confusion_matrix(trained.model, test)
    return {**validation_scores(trained.model, val_set), "accuracy": confusion.trace().item() / len(test),
            "confusion": confusion, "seconds": trained.history.seconds}


def ink_removed(images: torch.Tensor, strength: float = 1.0, seed: int = 0) -> torch.Tensor:
    """Per image: the share of its ink (summed pixel values) that :func:`batched` erasing at ``strength`` removes."""
    erased = batched("erasing", strength)(images, torch.Generator().manual_seed(seed))
    return 1 - erased.sum((1, 2, 3)) / images.sum((1, 2, 3))


def live_augmentation(strength: float, kind: str = "erasing", lr: float | None = None, n: int = 5, steps: int = 60,
                      seed: int = 0, method: str = "scratch") -> None:
    """Train ``method`` with augmentation ``kind`` (``"affine"`` or one of :data:`EXTRA`) at ``strength`` for real
    (:func:`augmented_run` at the peak rate ``lr``; 60 steps take about 1.5 s on 2 cores); print its validation
    accuracy (the test digits stay unread: a strength is chosen on validation), and show eight of its training
    digits as one augmented batch draws them."""
    record = augmented_run(method, strength, seed, n, steps, kind=kind, lr=lr)
    rate = "" if lr is None else f" at lr {lr:g}"
    print(f"{kind} strength = {strength}: {method}, N = {n} digits per class, seed {seed}, {steps} steps{rate} in "
          f"{record['seconds']:.1f} s")
    print(f"validation accuracy {record['val_accuracy']:.1%} ({VALIDATION_PER_CLASS} held-out digits per class)")
    digits = data.few_shot("mnist", 1, seed).images[:8]
    draw = augment.standard(strength) if kind == "affine" else batched(kind, strength)
    shown = draw(digits, torch.Generator().manual_seed(seed)) if strength else digits
    plots.show_images(shown, count=8, columns=8, title=f"Eight training digits as {kind} at strength {strength} "
                                                       "draws them")
    plt.show()


def strength_sizes(kind: str, strengths) -> str:
    """What each of ``strengths`` of ``kind`` (``"erasing"`` or ``"elastic"``) does, in one line: the share of the
    image one erased patch covers, or the elastic RMS displacement per axis in pixels (:func:`displacement_rms`)."""
    def size(strength: float) -> str:
        if not strength:
            return "none"
        if kind == "erasing":
            return f"{100 * ERASING_AREA[0] * strength:g}%-{100 * ERASING_AREA[1] * strength:g}% of the image"
        return f"{displacement_rms(ELASTIC_ALPHA * strength / 2, ELASTIC_SIGMA, ELASTIC_RADIUS):.2f} px RMS"

    if kind not in ("erasing", "elastic"):
        raise ValueError(f"kind={kind!r} is not allowed: choose 'erasing' or 'elastic'")
    return f"{kind} by strength: " + "; ".join(f"{s:g}: {size(s)}" for s in strengths)


def elastic_vs_simard() -> tuple[float, float]:
    """The RMS displacement per axis in pixels (:func:`displacement_rms`) of the lesson's elastic distortion at
    strength 1 (alpha :data:`ELASTIC_ALPHA` in torchvision's convention, kernel cut at :data:`ELASTIC_RADIUS`) and of
    Simard et al.'s (alpha :data:`SIMARD_ALPHA` px, sigma :data:`SIMARD_SIGMA` px)."""
    return (displacement_rms(ELASTIC_ALPHA / 2, ELASTIC_SIGMA, ELASTIC_RADIUS),
            displacement_rms(SIMARD_ALPHA, SIMARD_SIGMA))


def plot_strengths(stored: records.Results, best: dict, strength: float) -> plt.Axes:
    """Each method's validation accuracy by strength from the table's ``stored`` runs (mean, band of ± 1 std over
    seeds, each strength at its own rate), a star at each method's chosen strength (``best``), a dashed line at
    ``strength``."""
    ax = plots.plot_results(stored, x="strength", y="val_accuracy", xlabel="augmentation strength (0 = none)",
                            ylabel="validation accuracy (%)",
                            title="N = 5: validation accuracy by strength\n(band: ± 1 std over the table's seeds; "
                                  "each point at its own rate; star: chosen)")
    for line in list(ax.lines):
        method = line.get_label()
        ax.plot(best[method], 100 * stored.mean("val_accuracy", method=method, strength=best[method]), marker="*",
                markersize=16, color=line.get_color(), linestyle="none", label=f"{method}: chosen {best[method]:g}")
    ax.axvline(strength, color="gray", linestyle="--")
    ax.legend(fontsize=9)
    return ax


def strength_arms(table: tuning.Table, method: str, n: int = 5) -> dict[float, str]:
    """The tuning table's lesson-04 arms of ``method`` with the standard augmentation on ``n`` digits per class:
    each arm's key by its strength, weakest first."""
    keys = {e["fixed"]["strength"]: key for key, e in table.entries.items()
            if e["lesson"] == "04" and "kind" not in e["fixed"] and e["fixed"]["method"] == method
            and e["fixed"]["n"] == n}
    if not keys:
        raise ValueError(f"the tuning table has no lesson-04 arm of method {method!r} at n={n}: its arms are "
                         f"{', '.join(k for k in table.entries if k.startswith('04'))}")
    return dict(sorted(keys.items()))


def stored_validation(table: tuning.Table, keys) -> records.Results:
    """The table's stored validation records of each arm of ``keys`` at its chosen point (the table's seeds), each
    with the arm's fixed settings (method, strength, n...) and its ``label``: what a strength is chosen from, read
    from the table and so the same on every machine."""
    return records.Results({**table.arm(key).fixed, "label": table.arm(key).name, **record}
                           for key in keys for record in table.records(key))


def rank_on_validation(results: records.Results, field: str) -> list:
    """The values of ``field`` ranked by the course's one choose rule (:func:`~records.choose` on validation: the
    best first, then the best of the rest...); ties go to the value met first."""
    ranking, rest = [], records.Results(results)
    while rest:
        ranking.append(records.choose(rest, field))
        rest = records.Results(r for r in rest if r[field] != ranking[-1])
    return ranking


def best_strength(results, method: str) -> float:
    """``method``'s strength chosen on validation by the course's one rule (:func:`~records.choose`: the best mean
    validation accuracy over seeds; ties to the first in the grid, here ordered from the weakest strength)."""
    weakest_first = records.Results(sorted(results.where(method=method), key=lambda r: r["strength"]))
    return records.choose(weakest_first, "strength")


def ways_table(results, field: str = "way", baseline: str = "none") -> str:
    """Per value of ``field``: validation and test accuracy (mean ± std), and the test gain over ``baseline``."""
    def gains(rows: records.Results) -> str:
        way = rows[0][field]
        return "" if way == baseline else points(results.differences(field, way, baseline))

    columns = [records.Column("validation", "val_accuracy"), records.Column("test"),
               records.Column(f"   test gain over {baseline}, per seed", cell=lambda rows: f"   {gains(rows)}",
                              width=1, align="<")]
    return records.table(results, field, columns, lead=24)


def digit_changes(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per true digit: the change in the share read correctly (points, after minus before) of summed confusions."""
    return 100 * (after.diag() / after.sum(1) - before.diag() / before.sum(1))


def _six_nine_count(confusion: torch.Tensor) -> int:
    return int(confusion[6].sum() + confusion[9].sum())


def on_six_nine(confusion: torch.Tensor) -> float:
    """The share of the test 6s and 9s that are read correctly."""
    return (confusion[6, 6] + confusion[9, 9]).item() / _six_nine_count(confusion)


def swapped(confusion: torch.Tensor) -> float:
    """The share of the test 6s and 9s read as the other one."""
    return (confusion[6, 9] + confusion[9, 6]).item() / _six_nine_count(confusion)
