"""Export a fine-tuned model (weights + metadata in safetensors) and predict labels for image files with it."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from . import backbones, checkpoint
from .folder import read_image

FORMAT = "ftlib-export-1"


def save(model: nn.Module, path: str | Path, backbone: str, classes: tuple[str, ...] | list[str],
         extra: dict | None = None) -> Path:
    """Write ``model`` to ``path`` (safetensors) with the metadata that :func:`load` needs, plus ``extra``."""
    spec = backbones.spec(backbone)
    metadata = {"format": FORMAT, "backbone": backbone, "classes": list(classes), "channels": spec.channels,
                "size": spec.size, "bright_ink": spec.bright_ink, **(extra or {})}
    return checkpoint.save_checkpoint(model, path, metadata)


@dataclass(frozen=True)
class Prediction:
    """The predicted label of one image file, its probability, and the probability of every class."""

    path: str
    label: str
    probability: float
    probabilities: dict[str, float]


class Predictor:
    """An exported model, ready to label image files (in eval mode, on the CPU)."""

    def __init__(self, model: nn.Module, metadata: dict) -> None:
        self.model, self.metadata = model.cpu().eval(), metadata
        self.classes = tuple(metadata["classes"])

    @torch.no_grad()
    def probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities (rows sum to 1) for a batch of images converted as the backbone expects."""
        return torch.softmax(self.model(images.cpu()), dim=1)

    def predict(self, paths: list[str | Path]) -> list[Prediction]:
        """One :class:`Prediction` per image file, converted the way the training images were."""
        m = self.metadata
        images = torch.stack([read_image(p, m["size"], m["channels"], m["bright_ink"]) for p in paths])
        out = []
        for path, row in zip(paths, self.probabilities(images)):
            best = int(row.argmax())
            out.append(Prediction(str(path), self.classes[best], float(row[best]),
                                  {c: float(v) for c, v in zip(self.classes, row)}))
        return out


def load(path: str | Path) -> Predictor:
    """The model exported to ``path`` by :func:`save` (no pretrained weights are needed to load it)."""
    metadata = checkpoint.read_metadata(path)
    if metadata.get("format") != FORMAT:
        raise ValueError(f"{path} is not an ftlib export (format {metadata.get('format')!r}, expected {FORMAT!r})")
    model = backbones.build(metadata["backbone"], len(metadata["classes"]), seed=None, pretrained=False)
    return Predictor(checkpoint.load_weights(model, path), metadata)


def predict(export: str | Path, paths: list[str | Path]) -> list[Prediction]:
    """Label image files with the model exported to ``export``: ``load(export).predict(paths)``."""
    return load(export).predict(paths)


def cli(argv: list[str] | None = None) -> int:
    """``python -m ftlib predict EXPORT IMAGE...``: print each file's label and its probability."""
    parser = argparse.ArgumentParser(prog="python -m ftlib predict", description=cli.__doc__)
    parser.add_argument("export", help="a model written by `python -m ftlib finetune` (model.safetensors)")
    parser.add_argument("images", nargs="+", help="image files to label")
    args = parser.parse_args(argv)
    for p in predict(args.export, args.images):
        print(f"{p.path}: {p.label} ({p.probability:.1%})")
    return 0
