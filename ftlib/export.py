"""Export a fine-tuned model (weights + metadata in safetensors) and predict labels for image files with it."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import backbones, checkpoint
from .folder import SUFFIXES, UnreadableImage, image_files, read_image

__all__ = ["FORMAT", "MAX_SIZE", "Prediction", "Predictor", "cli", "expand", "load", "predict", "save"]

FORMAT = "ftlib-export-1"


def save(model: nn.Module, path: str | Path, backbone: str, classes: tuple[str, ...] | list[str],
         extra: dict | None = None, beside: dict[str, str] | None = None) -> Path:
    """Write ``model`` to ``path`` (safetensors) with the metadata that :func:`load` needs, plus ``extra``, and the
    text files ``beside`` (file name -> text) into the same folder, all in one all-or-nothing save
    (:func:`ftlib.checkpoint.save_checkpoint`)."""
    spec = backbones.spec(backbone)
    metadata = {"format": FORMAT, "backbone": backbone, "classes": list(classes), "channels": spec.channels,
                "size": spec.size, "bright_ink": spec.bright_ink, **(extra or {})}
    return checkpoint.save_checkpoint(model, path, metadata, beside)


@dataclass(frozen=True)
class Prediction:
    """The predicted label of one image file, its probability, and the probability of every class."""

    path: str
    label: str
    probability: float
    probabilities: dict[str, float]

    def top(self, k: int) -> list[tuple[str, float]]:
        """The ``k`` most likely labels (all of them if there are fewer) with their probabilities, most likely
        first (ties in class order)."""
        if isinstance(k, bool) or not isinstance(k, int) or k < 1:
            raise ValueError(f"k={k!r} is not allowed: choose a positive integer")
        return sorted(self.probabilities.items(), key=lambda item: -item[1])[:k]

    def as_json(self, k: int = 1) -> dict:
        """``{"file", "label", "probability", "top": [{"label", "probability"}, ...]}`` (``k`` in ``top``)."""
        return {"file": self.path, "label": self.label, "probability": self.probability,
                "top": [{"label": label, "probability": p} for label, p in self.top(k)]}


class Predictor:
    """An exported model, ready to label image files (in eval mode, on the CPU)."""

    def __init__(self, model: nn.Module, metadata: dict) -> None:
        self.model, self.metadata = model.cpu().eval(), metadata
        self.classes = tuple(metadata["classes"])

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (rows sum to 1) for a batch of images converted as the backbone expects."""
        return torch.softmax(self.model(images.cpu()), dim=1)

    def read(self, path: str | Path) -> torch.Tensor:
        """One image file converted the way the training images were (an ``UnreadableImage`` if it cannot be)."""
        m = self.metadata
        return read_image(path, m["size"], m["channels"], m["bright_ink"])

    def predict(self, paths: list[str | Path]) -> list[Prediction]:
        """One :class:`Prediction` per image file; the first file that cannot be read is a ``ValueError``."""
        if not paths:
            return []
        images = torch.stack([self.read(p) for p in paths])
        out = []
        for path, row in zip(paths, self.probabilities(images)):
            best = int(row.argmax())
            out.append(Prediction(str(path), self.classes[best], float(row[best]),
                                  {c: float(v) for c, v in zip(self.classes, row)}))
        return out

    def predict_each(self, paths: list[str | Path],
                     batch_size: int = 256) -> tuple[list[Prediction], list[tuple[str, str]]]:
        """Predictions for every file that can be read, and ``(path, why not)`` for every one that cannot.

        A folder among ``paths`` stands for its image files (:func:`ftlib.folder.image_files`).
        """
        readable, failed = [], []
        for item in self.stream(paths, batch_size):
            (readable if isinstance(item, Prediction) else failed).append(item)
        return readable, failed

    def stream(self, paths: list[str | Path], batch_size: int = 256) -> Iterator[Prediction | tuple[str, str]]:
        """:meth:`predict_each` one result at a time, in the order of ``paths``: a :class:`Prediction`, or
        ``(path, why not)``; at most ``batch_size`` images are in memory at once, so any number of files fit."""
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size={batch_size!r} is not allowed: choose a positive integer (e.g. 256)")
        batch: list[tuple[Path, torch.Tensor]] = []
        for path in expand(paths):
            if isinstance(path, tuple):
                yield from self._label(batch)
                batch = []
                yield path
                continue
            try:
                batch.append((path, self.read(path)))
            except UnreadableImage as error:
                yield from self._label(batch)
                batch = []
                yield str(path), str(error)
                continue
            if len(batch) == batch_size:
                yield from self._label(batch)
                batch = []
        yield from self._label(batch)

    def _label(self, batch: list[tuple[Path, torch.Tensor]]) -> list[Prediction | tuple[str, str]]:
        """The predictions for one batch of ``(path, image)`` (``(path, why not)`` for a non-finite output)."""
        if not batch:
            return []
        rows = self.probabilities(torch.stack([image for _, image in batch]))
        out: list[Prediction | tuple[str, str]] = []
        for (path, _), row in zip(batch, rows):
            if not torch.isfinite(row).all():
                out.append((str(path), f"{path}: the model's output is NaN or infinite (a damaged export?)"))
                continue
            best = int(row.argmax())
            out.append(Prediction(str(path), self.classes[best], float(row[best]),
                                  {c: float(v) for c, v in zip(self.classes, row)}))
        return out


def expand(paths: list[str | Path]) -> list[Path | tuple[str, str]]:
    """Each path, with a folder replaced by its image files (or by ``(folder, why)`` when it has none)."""
    out: list[Path | tuple[str, str]] = []
    for text in paths:
        path = Path(text)
        if not str(text):
            out.append(("", "an empty path names no file (it would mean the current folder)"))
        elif path.is_dir():
            unreadable: list[tuple[Path, str]] = []
            found = image_files(path, unreadable)
            out += [(str(folder), f"{folder} is a folder that cannot be read ({why})") for folder, why in unreadable]
            out += found or ([] if unreadable else
                             [(str(path), f"{path} is a folder without image files ({', '.join(SUFFIXES)})")])
        else:
            out.append(path)
    return out


def load(path: str | Path) -> Predictor:
    """The model exported to ``path`` by :func:`save` (no pretrained weights are needed to load it)."""
    metadata = checkpoint.read_metadata(path)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not an ftlib export (format {metadata.get('format')!r}, expected {FORMAT!r})")
    classes = metadata.get("classes")
    if not (isinstance(classes, list) and len(classes) >= 2 and all(isinstance(c, str) for c in classes)):
        raise ValueError(f"{path} has no list of class names in its metadata; export it again")
    _check_input_settings(path, metadata)
    model = backbones.build(metadata["backbone"], len(classes), seed=None, pretrained=False)
    checkpoint.load_weights(model, path)
    if not all(torch.isfinite(v).all() for v in model.state_dict().values() if v.is_floating_point()):
        raise ValueError(f"{path} holds NaN or infinite weights: it cannot predict; train and export it again")
    negative = [name for name, v in model.state_dict().items() if name.endswith("running_var") and (v < 0).any()]
    if negative:
        raise ValueError(f"{path} holds negative BatchNorm variances ({negative[0]}): it is damaged; export it again")
    return Predictor(model, metadata)


MAX_SIZE = 1024  # pixels a side: larger is a damaged export, and would allocate without bound


def _check_input_settings(path: str | Path, metadata: dict) -> None:
    """The export's backbone and image settings, checked before any image is read: a ``ValueError`` naming the
    export and the bad key (a wrong size or channel count would otherwise blame every image, or allocate without
    bound)."""
    backbone = metadata.get("backbone")
    if not isinstance(backbone, str) or backbone not in backbones.SPECS:
        raise ValueError(f"{path} has backbone={backbone!r} in its metadata; expected one of "
                         f"{', '.join(backbones.SPECS)}: export it again")
    spec = backbones.spec(backbone)
    size, channels, bright_ink = metadata.get("size"), metadata.get("channels"), metadata.get("bright_ink")
    if isinstance(size, bool) or not isinstance(size, int) or not 8 <= size <= MAX_SIZE:
        raise ValueError(f"{path} has size={size!r} in its metadata; expected an integer from 8 to {MAX_SIZE} "
                         f"({spec.size} for {backbone}): export it again")
    if channels != spec.channels or isinstance(channels, bool):
        raise ValueError(f"{path} has channels={channels!r} in its metadata; {backbone} takes {spec.channels}: "
                         "export it again")
    if not isinstance(bright_ink, bool):
        raise ValueError(f"{path} has bright_ink={bright_ink!r} in its metadata; expected true or false: "
                         "export it again")


def predict(export: str | Path, paths: list[str | Path]) -> list[Prediction]:
    """Label image files with the model exported to ``export``: ``load(export).predict(paths)``."""
    return load(export).predict(paths)


def cli(argv: list[str] | None = None) -> int:
    """``python -m ftlib predict EXPORT IMAGE_OR_FOLDER...``: print each file's label and its probability (with
    ``--top-k K``, the K most likely labels), or with ``--json`` one JSON object per line.

    A file that cannot be read is reported on stderr (and, with ``--json``, as ``{"file", "error"}`` on stdout) and
    the others are still labelled; the exit status is 2 if the export or any file could not be used, else 0.
    """
    from .checks import SettingError, printable
    from .runtime import pin_threads

    parser = argparse.ArgumentParser(prog="python -m ftlib predict", description=cli.__doc__)
    parser.add_argument("export", help="a model written by `python -m ftlib finetune` (model.safetensors)")
    parser.add_argument("images", nargs="+", help="image files, or folders of them, to label")
    parser.add_argument("--threads", type=int, help="torch threads (default: $FTLIB_THREADS, else every core)")
    parser.add_argument("--batch-size", type=int, default=256,
                        help="images labelled at once (default 256): memory stays small for any number of files")
    parser.add_argument("--top-k", type=int, default=1, metavar="K",
                        help="the K most likely labels of each file with their probabilities (default 1; at most "
                             "the number of classes are shown)")
    parser.add_argument("--json", action="store_true",
                        help='JSON lines: {"file", "label", "probability", "top": [{"label", "probability"}, ...]} '
                             'for each file, {"file", "error"} for one that cannot be labelled')
    args = parser.parse_args(argv)
    try:
        pin_threads(args.threads, default=None, flag="--threads")
        if args.batch_size < 1:
            raise SettingError(f"--batch-size {args.batch_size} is not allowed: choose a positive integer (e.g. 256)")
        if args.top_k < 1:
            raise SettingError(f"--top-k {args.top_k} is not allowed: choose a positive integer (e.g. 3)")
        if "" in args.images:
            raise SettingError("an empty image path '' is not allowed (it would label everything under the "
                               "current folder): give files or folders, e.g. '.' for the current folder")
    except SettingError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    try:
        predictor = load(args.export)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: cannot use the export: {error}", file=sys.stderr)
        return 2
    labelled = failed = 0
    for item in predictor.stream(args.images, args.batch_size):
        if isinstance(item, Prediction):
            labelled += 1
            line = (json.dumps(item.as_json(args.top_k)) if args.json else f"{printable(item.path)}: " + ", ".join(
                f"{printable(label)} ({p:.1%})" for label, p in item.top(args.top_k)))
            print(line, flush=True)
        else:
            failed += 1
            if args.json:
                print(json.dumps({"file": item[0], "error": item[1]}), flush=True)
            print(f"error: {printable(item[1])}", file=sys.stderr, flush=True)
    if failed:
        print(f"{failed} of {failed + labelled} file(s) could not be labelled", file=sys.stderr)
    return 2 if failed else 0
