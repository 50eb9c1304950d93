"""Your own images: load a folder with one sub-folder per class, convert every image, split it by seed, report.

``root/<class name>/<any image file>``: PNG, JPEG, BMP, GIF, TIFF or WebP, of any size and colour mode. Every image
is converted to what the backbone expects (greyscale or RGB, a square of ``size`` pixels: the largest centred
square is cut out and resized), as floats in [0, 1]; 16-bit, 32-bit integer and float images are scaled by their
own range of values (darkest pixel 0, brightest 1); a photo's EXIF orientation is applied first (it is read
upright, as a viewer shows it). For a backbone pretrained on bright ink on a dark background
(GlyphNet), ``bright_ink=True`` inverts every image whose border is brighter than its centre. Files that PIL cannot
read (or that claim more pixels than PIL decodes safely) are skipped with a warning that names them; hidden
files and folders (names starting with ``.``) are ignored; everything found and skipped is in the
:class:`FolderReport`.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

from .checks import SettingError, named, printable
from .data import ImageSet, split_validation

__all__ = ["COLOUR_TOLERANCE", "ENOUGH_ADVICE", "ENOUGH_PER_CLASS", "FolderReport", "SUFFIXES", "UnreadableImage",
           "WIDE_MODES", "check_fractions", "colour_image", "image_files", "is_colour", "load_folder", "read_image",
           "split", "split_rows", "to_8bit", "to_tensor"]

ENOUGH_PER_CLASS = 25  # per class: a 20% validation split then holds 5 of each (recipe.TINY_SPLIT / VAL_FRACTION)
ENOUGH_ADVICE = f"at least {ENOUGH_PER_CLASS} images per class are better"  # the loader's and the recipe's one wording
SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")  # more than 8 bits per pixel: scaled by their range


class UnreadableImage(ValueError):
    """An image file that cannot be used; ``reason`` says why in a few words (for a skip list)."""

    def __init__(self, path: str | Path, reason: str, detail: str = "") -> None:
        super().__init__(f"{path} {reason}" + (f" ({detail})" if detail else ""))
        self.reason = reason


def to_8bit(image: Image.Image) -> Image.Image:
    """A 16-bit, 32-bit integer or float greyscale image as an 8-bit one, scaled by its own range of values.

    A constant image becomes black; NaN or infinite pixels are a ``ValueError`` (there is no range to scale by).
    """
    array = np.asarray(image, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError("holds NaN or infinite pixel values")
    low, high = float(array.min()), float(array.max())
    scaled = (array - low) / (high - low) if high > low else np.zeros_like(array)
    return Image.fromarray(np.round(scaled * 255).astype(np.uint8), mode="L")


@dataclass
class FolderReport:
    """What :func:`load_folder` found: the classes with their image counts, the files it loaded (in the order of
    the :class:`ImageSet`'s rows), and the files it skipped (and why)."""

    root: str
    counts: dict[str, int]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path relative to root, reason)
    files: list[Path] = field(default_factory=list)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.counts)

    def __str__(self) -> str:
        total = sum(self.counts.values())
        lines = [f"{printable(Path(self.root).name)}/: {total} images in {len(self.counts)} classes"]
        lines += [f"  {printable(name):<16} {count:>5} images" for name, count in self.counts.items()]
        lines.append(f"  skipped {len(self.skipped)} file(s)" + (":" if self.skipped else ""))
        lines += [f"    {printable(path)}: {reason}" for path, reason in self.skipped]
        return "\n".join(lines)


def to_tensor(image: Image.Image, size: int, channels: int, bright_ink: bool = False) -> torch.Tensor:
    """One PIL image as a (channels, size, size) float tensor in [0, 1] (greyscale for 1 channel, else RGB).

    With ``bright_ink``, an image whose border is on average brighter than its central half is inverted, so that
    the subject is bright on a dark background (as GlyphNet's letters were).
    """
    if channels not in (1, 3):
        raise ValueError(f"channels={channels!r} is not allowed: choose 1 (greyscale) or 3 (RGB)")
    if image.mode in WIDE_MODES:
        image = to_8bit(image)
    if image.mode in ("P", "LA", "RGBA", "PA") or "transparency" in image.info:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (0, 0, 0, 255))  # transparent pixels become black
        image = Image.alpha_composite(background, image)
    image = ImageOps.fit(image.convert("L" if channels == 1 else "RGB"), (size, size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32).reshape(size, size, channels) / 255
    if bright_ink:
        quarter = size // 4
        centre = array[quarter:size - quarter, quarter:size - quarter].mean()
        border = np.concatenate([array[0], array[-1], array[:, 0], array[:, -1]]).mean()
        array = 1 - array if border > centre else array
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def read_image(path: str | Path, size: int, channels: int, bright_ink: bool = False) -> torch.Tensor:
    """The image file ``path`` as :func:`to_tensor` makes it; an :class:`UnreadableImage` (a ``ValueError``)
    naming the file if it is missing, not a regular file (only regular files are opened: a FIFO would block),
    claims more pixels than PIL decodes safely, or cannot be read or converted."""
    path = Path(path)
    if not path.exists():
        raise UnreadableImage(path, "does not exist")
    if not path.is_file():
        raise UnreadableImage(path, "is not a regular file", "a directory, FIFO or device")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                image.load()
                upright = ImageOps.exif_transpose(image)  # a phone photo as it was taken, not as it is stored
                return to_tensor(upright if upright is not None else image, size, channels, bright_ink)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise UnreadableImage(path, "is too large to decode safely", str(error).split(".")[0]) from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as error:
        raise UnreadableImage(path, "is not a readable image", f"{type(error).__name__}: {error}") from None


def _walk(folder: Path) -> tuple[list[Path], list[tuple[Path, str]]]:
    """Every entry under ``folder`` that is not a folder (sorted, hidden files and folders left out), and
    ``(folder, why)`` for each folder that could not be listed (``folder`` itself included), never dropped quietly."""
    found: list[Path] = []
    unreadable: list[tuple[Path, str]] = []

    def note(error: OSError) -> None:
        unreadable.append((Path(error.filename), error.strerror or type(error).__name__))

    for top, dirs, files in os.walk(folder, onerror=note, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(top) / f for f in files if not f.startswith(".")]
    return sorted(found), sorted(unreadable)


def image_files(folder: str | Path, unreadable: list[tuple[Path, str]] | None = None) -> list[Path]:
    """The regular files under ``folder`` whose suffix is an image type, sorted, hidden files and folders left out;
    the folders that cannot be listed are added to ``unreadable`` as ``(folder, why)``, when it is given."""
    found, blocked = _walk(Path(folder))
    if unreadable is not None:
        unreadable += blocked
    return [p for p in found if p.is_file() and p.suffix.lower() in SUFFIXES]


def load_folder(root: str | Path, size: int = 28, channels: int = 1,
                bright_ink: bool = False) -> tuple[ImageSet, FolderReport]:
    """Every image under ``root/<class>/``, converted by :func:`to_tensor`, as an :class:`ImageSet` (classes
    sorted by name).

    Raises ``FileNotFoundError`` if ``root`` is missing, ``ValueError`` if it has no class folders or no readable
    image; unreadable files are skipped with a warning, and files that are not images by their suffix (or not in a
    class folder) are skipped quietly; both are listed in the report.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist (expected {root}/<class name>/<images>)")
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size={size!r} is not allowed: choose an integer of at least 8 pixels")
    try:
        entries = sorted(root.iterdir())
    except OSError as error:
        raise ValueError(f"image folder {root} cannot be read ({error.strerror or error})") from None
    folders = [p for p in entries if p.is_dir() and not p.name.startswith(".")]
    report = FolderReport(str(root), {}, [(p.name, "not in a class folder") for p in entries
                                          if p.is_file() and not p.name.startswith(".")])
    if not folders:
        raise ValueError(f"image folder {root} has no class folders: put each class's images in root/<class name>/")
    images, labels = [], []
    for folder in folders:
        found = 0
        paths, unreadable = _walk(folder)
        if unreadable and unreadable[0][0] == folder:
            raise ValueError(f"class folder {folder} cannot be read ({unreadable[0][1]}): give this user read "
                             "access to it, or move it out of the image folder")
        for blocked, why in unreadable:
            warnings.warn(f"skipped the folder {blocked}: it cannot be read ({why})", stacklevel=2)
            report.skipped.append((f"{blocked.relative_to(root)}/", f"folder not readable ({why})"))
        for path in paths:
            relative = str(path.relative_to(root))
            if not path.is_file():
                report.skipped.append((relative, "not a regular file"))
                continue
            if path.suffix.lower() not in SUFFIXES:
                report.skipped.append((relative, f"not an image file ({path.suffix or 'no suffix'})"))
                continue
            try:
                images.append(read_image(path, size, channels, bright_ink))
            except UnreadableImage as error:
                warnings.warn(f"skipped {error}", stacklevel=2)
                report.skipped.append((relative, error.reason.removeprefix("is ")))
                continue
            labels.append(len(report.counts))
            report.files.append(path)
            found += 1
        report.counts[folder.name] = found
    if not images:
        raise ValueError(f"image folder {root} has no readable image in its class folders "
                         f"{[f.name for f in folders]}; allowed file types: {', '.join(SUFFIXES)}")
    if len(folders) < 2:
        raise ValueError(f"image folder {root} has one class folder ({folders[0].name}): a classifier needs at "
                         "least 2, one sub-folder per class")
    data = ImageSet(torch.stack(images), torch.tensor(labels), report.classes, root.name)
    return data, report


def check_fractions(val: float, test: float, val_name: str = "val", test_name: str = "test") -> None:
    """A :class:`~ftlib.checks.SettingError` naming ``val_name`` or ``test_name`` (an argument, or a flag that
    starts with ``-``) unless both are fractions in (0, 1) that add up to less than 1 (the rest trains)."""
    for name, value in ((val_name, val), (test_name, test)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < 1:
            raise SettingError(f"{named(name, value)} is not allowed: choose a fraction between 0 and 1 (exclusive)")
    if not val + test < 1:
        raise SettingError(f"{named(val_name, val)} and {named(test_name, test)} add up to {val + test:g}: they must "
                           "add up to less than 1 (the rest is for training)")


def split(data: ImageSet, seed: int, val: float = 0.2, test: float = 0.4) -> tuple[ImageSet, ImageSet, ImageSet]:
    """A stratified ``(train, validation, test)`` split chosen by ``seed``: ``test`` of each class for the test set,
    then ``val`` of each class for validation, the rest for training (each part gets at least one per class: a
    small class gives the test set fewer than ``test`` of it, so that two are left for training and validation).

    A class with fewer than 3 images cannot be split, and fewer than 2 classes cannot be classified: either is a
    ``ValueError`` that names it.
    """
    check_fractions(val, test)
    counts = torch.bincount(data.labels, minlength=data.num_classes).tolist()
    few = {name: n for name, n in zip(data.classes, counts) if n < 3}
    if few:
        raise ValueError(f"class(es) with too few images for a train/validation/test split: {few}; "
                         f"each class needs at least 3 images ({ENOUGH_ADVICE})")
    if data.num_classes < 2:
        raise ValueError(f"{data.name or 'the image folder'} has {data.num_classes} class {list(data.classes)}: "
                         "a classifier needs at least 2 classes (one sub-folder per class)")
    rest, test_set = split_validation(data, test, seed, keep=2)
    train_set, val_set = split_validation(rest, val / (1 - test), seed + 1, keep=1)
    return train_set, val_set, test_set


def split_rows(data: ImageSet, seed: int, val: float = 0.2,
               test: float = 0.4) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The row numbers of ``data`` that :func:`split` puts in its ``(train, validation, test)`` parts, in the
    parts' order: which file went where (``FolderReport.files[row]``)."""
    rows = ImageSet(torch.arange(len(data)), data.labels, data.classes, data.name)
    train, validation, test_part = split(rows, seed, val, test)
    return train.images, validation.images, test_part.images


COLOUR_TOLERANCE = 16  # of 255: channels further apart than this are colour, not JPEG rounding of a grey image
_GREY_MODES = ("1", "L", "LA", "La", *WIDE_MODES)


def is_colour(path: str | Path, tolerance: int = COLOUR_TOLERANCE) -> bool:
    """Whether the image file ``path`` has a pixel whose red, green and blue differ by more than ``tolerance``
    (of 255), judged on a copy shrunk to at most 64 pixels a side; a greyscale mode or a file that cannot be
    read is not colour."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as image:
                if image.mode in _GREY_MODES:
                    return False
                image.draft("RGB", (64, 64))  # JPEG: decode at a reduced size, cheaply
                small = image.convert("RGB")
                small.thumbnail((64, 64))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):
        return False
    array = np.asarray(small, dtype=np.int16)
    return int((array.max(axis=2) - array.min(axis=2)).max()) > tolerance


def colour_image(root: str | Path, sample: int = 8) -> Path | None:
    """A colour image (:func:`is_colour`) among ``sample`` image files spread evenly over the folder ``root``
    (sorted, so over its classes), or ``None`` if none of them is: a cheap look, not a census."""
    files = image_files(root)
    chosen = files[::max(1, len(files) // sample)][:sample]
    return next((path for path in chosen if is_colour(path)), None)
