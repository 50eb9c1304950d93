"""Error analysis of a classifier on a labelled set of image files, as small CSV files a spreadsheet or pandas reads.

* :func:`file_predictions`: each file's true class, predicted class, the predicted class's probability and the loss
  (cross-entropy of the true class);
* :func:`most_confused`: the (true, predicted) pairs of mistakes, most frequent first;
* :func:`top_losses`: the files with the highest loss (confident mistakes first: often a wrong label or an odd
  image);
* :func:`report_files`: all of them, and the split and the confusion matrix, as ``{file name: CSV text}``
  (:data:`REPORT_FILES`), which :func:`ftlib.export.save` writes beside an export in the same all-or-nothing save.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .data import ImageSet
from .runtime import evaluating

__all__ = ["REPORT_FILES", "TOP_LOSSES", "FilePrediction", "csv_text", "file_predictions", "most_confused",
           "report_files", "top_losses"]

TOP_LOSSES = 10  # rows of top_losses.csv
REPORT_FILES = ("split.csv", "test_predictions.csv", "confusion_matrix.csv", "most_confused.csv", "top_losses.csv")
_COLUMNS = ["file", "true", "predicted", "probability", "loss"]


@dataclass(frozen=True)
class FilePrediction:
    """One labelled file as the model sees it: ``probability`` is the predicted class's, ``loss`` the
    cross-entropy of the true class (``-ln p(true)``)."""

    file: str
    true: str
    predicted: str
    probability: float
    loss: float

    @property
    def row(self) -> list[str]:
        return [self.file, self.true, self.predicted, f"{self.probability:.6f}", f"{self.loss:.4f}"]


@torch.no_grad()
def file_predictions(model: nn.Module, data: ImageSet, files: list[str],
                     batch_size: int = 250) -> list[FilePrediction]:
    """One :class:`FilePrediction` per row of ``data`` (``files[i]`` names row ``i``), with ``model`` in eval mode
    (restored afterwards) on its own device, in batches of ``batch_size`` as
    :func:`ftlib.evaluation.confusion_matrix` scores them, so the two count the same predictions."""
    if len(files) != len(data):
        raise ValueError(f"files has {len(files)} names for {len(data)} images: give one name per image")
    device = next(model.parameters()).device
    with evaluating(model):
        logits = torch.cat([model(data.images[i:i + batch_size].to(device)).float().cpu()
                            for i in range(0, len(data), batch_size)]) if len(data) else torch.zeros(0, 1)
    losses = F.cross_entropy(logits, data.labels, reduction="none") if len(data) else torch.zeros(0)
    probabilities = torch.softmax(logits, 1)
    predicted = logits.argmax(1)
    return [FilePrediction(name, data.classes[int(y)], data.classes[int(p)], float(probabilities[i, p]),
                           float(losses[i]))
            for i, (name, y, p) in enumerate(zip(files, data.labels, predicted))]


def most_confused(classes: tuple[str, ...] | list[str], counts: torch.Tensor) -> list[tuple[str, str, int]]:
    """``(true, predicted, count)`` for every pair of different classes that ``counts`` (a confusion matrix, row:
    true class, column: predicted) holds mistakes for, most frequent first (ties in class order)."""
    k = len(classes)
    if tuple(counts.shape) != (k, k):
        raise ValueError(f"counts of shape {tuple(counts.shape)} do not fit {k} classes: expected ({k}, {k})")
    pairs = [(classes[t], classes[p], int(counts[t, p])) for t in range(k) for p in range(k)
             if t != p and counts[t, p] > 0]
    return sorted(pairs, key=lambda pair: -pair[2])  # sorted() is stable: ties stay in class order


def top_losses(predictions: list[FilePrediction], k: int = TOP_LOSSES) -> list[FilePrediction]:
    """The ``k`` predictions with the highest loss, highest first (ties by file name)."""
    return sorted(predictions, key=lambda p: (-p.loss, p.file))[:k]


def csv_text(rows: list[list]) -> str:
    """``rows`` as CSV text (comma-separated, quoted where a name holds a comma, quote or newline; ``\\n`` ends
    each line)."""
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


def report_files(split: list[tuple[str, str, str]], classes: tuple[str, ...] | list[str], counts: torch.Tensor,
                 predictions: list[FilePrediction]) -> dict[str, str]:
    """The error analysis as ``{file name: CSV text}``, one entry per name of :data:`REPORT_FILES`.

    ``split`` is ``(file, class, part)`` for every file (part: ``train``, ``val`` or ``test``); ``counts`` the
    test set's confusion matrix; ``predictions`` the test files' :func:`file_predictions`.
    """
    tables = {
        "split.csv": [["file", "class", "split"], *map(list, split)],
        "test_predictions.csv": [_COLUMNS, *(p.row for p in sorted(predictions, key=lambda p: p.file))],
        "confusion_matrix.csv": [["true \\ predicted", *classes],
                                 *([name, *row] for name, row in zip(classes, counts.tolist()))],
        "most_confused.csv": [["true", "predicted", "count"], *map(list, most_confused(classes, counts))],
        "top_losses.csv": [_COLUMNS, *(p.row for p in top_losses(predictions))],
    }
    return {name: csv_text(tables[name]) for name in REPORT_FILES}
