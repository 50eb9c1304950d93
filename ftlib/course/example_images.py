"""The example image folder of lesson 11: printed symbols in colour on cluttered backgrounds, generated from a seed.

``data/example_images/<class>/<nnn>.<png|jpg>`` holds 40 images of each of 8 printed symbols that are not letters
(ampersand ``&``, at ``@``, dollar ``$``, euro ``€``, hash ``#``, percent ``%``, pound ``£``, question ``?``),
typeset with PIL in 16 of matplotlib's fonts (DejaVu Sans, Sans Mono, Serif and STIX, each upright, bold, italic
and bold italic), in random colours, sizes, positions and small turns, some with thickened strokes, over a colour
gradient with random clutter (lines, boxes, ellipses), then blurred and noised a little, like photos. The files
are of mixed sizes (36-80 px, not always square) and colour modes (RGB, RGBA, greyscale and palette PNGs, RGB
JPEGs), as images from different sources would be. Their pixels look nothing like our rendered letters (colour,
clutter, polarity, compression), but their content is printed strokes, the kind of thing a glyph model has learnt
to see.

Rebuild the folder (same seed, same files) with ``python -m ftlib.course.example_images [--out DIR] [--seed S]``.
"""

from __future__ import annotations

import argparse
import math
import shutil
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

from ftlib.data import LATIN_FONTS, font_path
from ftlib.paths import DATA_DIR

__all__ = ["CLASSES", "EXAMPLE_DIR", "FONTS", "FORMATS", "NOISE", "PER_CLASS", "SEED", "SYMBOLS", "THICKENED",
           "draw_image", "generate", "glyph_mask", "main"]

EXAMPLE_DIR = DATA_DIR / "example_images"
SYMBOLS = {"ampersand": "&", "at": "@", "dollar": "$", "euro": "€", "hash": "#", "percent": "%", "pound": "£",
           "question": "?"}
CLASSES = tuple(SYMBOLS)  # the folder names, sorted as the loader sorts them
FONTS = tuple(f for f in LATIN_FONTS if not f.startswith("cm"))  # matplotlib's Computer Modern fonts have no €
PER_CLASS = 40
SEED = 11
NOISE = 14.0  # largest standard deviation of the pixel noise (0-255)
THICKENED = 0.3  # share of symbols drawn with thickened strokes
FORMATS = ("RGB.png", "RGBA.png", "L.png", "P.png", "RGB.jpg")  # colour mode and file type, drawn per image


def _colour(rng: np.random.Generator, lightness: float) -> tuple[int, int, int]:
    """A random hue with roughly the given lightness (0 dark .. 1 light)."""
    base = rng.uniform(0, 1, 3)
    base = base / max(base.mean(), 1e-3) * lightness
    return tuple(int(255 * min(max(v, 0.0), 1.0)) for v in base)


def glyph_mask(char: str, size: tuple[int, int], rng: np.random.Generator) -> Image.Image:
    """An 8-bit mask of ``char`` in a random font, size, stroke, position and small turn on a ``size`` canvas."""
    width, height = size
    side = min(width, height)
    font = ImageFont.truetype(font_path(FONTS[int(rng.integers(len(FONTS)))]), round(side * rng.uniform(0.55, 0.85)))
    stroke = int(rng.integers(1, 3)) if rng.random() < THICKENED else 0
    mask = Image.new("L", size, 0)
    draw = ImageDraw.Draw(mask)
    left, top, right, bottom = draw.textbbox((0, 0), char, font=font, stroke_width=stroke)
    cx = width / 2 + rng.uniform(-0.1, 0.1) * side
    cy = height / 2 + rng.uniform(-0.1, 0.1) * side
    draw.text((cx - (left + right) / 2, cy - (top + bottom) / 2), char, fill=255, font=font, stroke_width=stroke,
              stroke_fill=255)
    return mask.rotate(math.degrees(rng.uniform(-0.3, 0.3)), resample=Image.BICUBIC, center=(cx, cy))


def draw_image(name: str, rng: np.random.Generator) -> Image.Image:
    """One RGB image of symbol ``name`` on a cluttered background, with every choice drawn from ``rng``."""
    if name not in SYMBOLS:
        raise ValueError(f"unknown symbol {name!r}; choose one of {', '.join(CLASSES)}")
    width, height = (int(v) for v in rng.integers(36, 81, 2))
    if rng.random() < 0.5:
        height = width
    dark_background = rng.random() < 0.5
    bg_light, ink_light = (0.25, 0.85) if dark_background else (0.75, 0.15)
    top, bottom = np.array(_colour(rng, bg_light)), np.array(_colour(rng, bg_light))
    ramp = np.linspace(0, 1, height)[:, None, None]
    canvas = (top * (1 - ramp) + bottom * ramp).repeat(width, axis=1).astype(np.uint8)
    image = Image.fromarray(canvas, "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 10))):  # clutter: lines, boxes and blobs in mid tones
        x0, x1 = sorted(rng.uniform(0, width, 2))
        y0, y1 = sorted(rng.uniform(0, height, 2))
        fill = _colour(rng, rng.uniform(0.35, 0.65))
        kind = rng.integers(3)
        if kind == 0:
            draw.line([(x0, y0), (x1, y1)], fill=fill, width=int(rng.integers(1, 3)))
        elif kind == 1:
            draw.rectangle([x0, y0, x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3], fill=fill)
        else:
            draw.ellipse([x0, y0, x0 + (x1 - x0) / 3, y0 + (y1 - y0) / 3], outline=fill)
    ink = Image.new("RGB", image.size, _colour(rng, ink_light))
    image = Image.composite(ink, image, glyph_mask(SYMBOLS[name], image.size, rng))
    image = image.filter(ImageFilter.GaussianBlur(rng.uniform(0, 1.2)))  # out of focus, and sensor noise
    noise = rng.normal(0, rng.uniform(0, NOISE), (height, width, 1))
    return Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8), "RGB")


def _save(image: Image.Image, path: Path, fmt: str) -> Path:
    mode, suffix = fmt.split(".")
    path = path.with_suffix(f".{suffix}")
    if mode == "P":
        image = image.quantize(colors=32)
    elif mode != "RGB":
        image = image.convert(mode)
    image.save(path, **({"quality": 80} if suffix == "jpg" else {"optimize": True}))
    return path


def generate(out: str | Path = EXAMPLE_DIR, seed: int = SEED, per_class: int = PER_CLASS) -> list[Path]:
    """Write ``per_class`` images of each class into ``out/<class>/`` (replacing those folders); return the files."""
    if not isinstance(per_class, int) or per_class < 1:
        raise ValueError(f"per_class={per_class!r} is not allowed: choose a positive integer")
    out, rng, written = Path(out), np.random.default_rng(seed), []
    for name in CLASSES:
        folder = out / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for k in range(per_class):
            fmt = FORMATS[int(rng.integers(len(FORMATS)))]
            written.append(_save(draw_image(name, rng), folder / f"{k:03d}", fmt))
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ftlib.course.example_images", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(EXAMPLE_DIR), help=f"target folder (default: {EXAMPLE_DIR})")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--per-class", type=int, default=PER_CLASS)
    args = parser.parse_args(argv)
    files = generate(args.out, args.seed, args.per_class)
    total = sum(f.stat().st_size for f in files)
    print(f"wrote {len(files)} images of {len(CLASSES)} classes to {args.out} ({total / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
