"""The course's standard plots: image grids, curves with seed spread, and training histories."""

from __future__ import annotations

import warnings

import matplotlib.pyplot as plt
import torch

from ftlib.course.lessons.experiments import Results
from ftlib.data import ImageSet
from ftlib.stopping import History

# matplotlib warns when placing a legend at loc="best" took over a second: on a loaded machine a lesson's figure can
# take that long, and the warning would then appear in (and change) the lesson's stored outputs; the figure is the same
warnings.filterwarnings("ignore", message='Creating legend with loc="best" can be slow', category=UserWarning)

__all__ = ["plot_bars", "plot_confusion", "plot_history", "plot_results", "show_images"]


def show_images(images: ImageSet | torch.Tensor, count: int = 16, columns: int = 8, title: str = "",
                labels: list[str] | None = None) -> plt.Figure:
    """A grid of the first ``count`` images, titled with their class names when known."""
    tensor = images.images if isinstance(images, ImageSet) else images
    if labels is None and isinstance(images, ImageSet):
        labels = [images.classes[int(i)] for i in images.labels]
    count = min(count, len(tensor))
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 1.1, rows * 1.25), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < count:
            ax.imshow(tensor[k, 0].cpu(), cmap="gray", vmin=0, vmax=1)
            if labels:
                ax.set_title(labels[k], fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_results(results: Results, x: str, y: str = "accuracy", hue: str = "method", ax: plt.Axes | None = None,
                 logx: bool = False, percent: bool = True, title: str = "", xlabel: str | None = None,
                 ylabel: str | None = None) -> plt.Axes:
    """Mean of ``y`` against ``x``, one line per ``hue``, with a band of ± one standard deviation over seeds.

    Numeric ``x`` values are drawn in increasing order (whatever order the runs came in); others in first-seen order.
    """
    ax = ax or plt.subplots(figsize=(6.5, 4))[1]
    scale = 100 if percent else 1
    xs = results.unique(x)
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in xs):
        xs = sorted(xs)
    for group in results.unique(hue):
        means = [results.mean(y, **{x: v, hue: group}) * scale for v in xs]
        stds = [results.std(y, **{x: v, hue: group}) * scale for v in xs]
        line, = ax.plot(xs, means, marker="o", label=str(group))
        ax.fill_between(xs, [m - s for m, s in zip(means, stds)], [m + s for m, s in zip(means, stds)],
                        color=line.get_color(), alpha=0.15)
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(v) for v in xs])
        ax.minorticks_off()
    ax.set_xlabel(xlabel or x)
    ax.set_ylabel(ylabel or (f"{y} (%)" if percent else y))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    if title:
        ax.set_title(title)
    return ax


def plot_bars(results: Results, x: str = "method", y: str = "accuracy", ax: plt.Axes | None = None,
              percent: bool = True, title: str = "", ylabel: str | None = None) -> plt.Axes:
    """Mean of ``y`` for each value of ``x`` as bars, with ± one standard deviation over seeds as error bars."""
    ax = ax or plt.subplots(figsize=(6.5, 3.5))[1]
    scale = 100 if percent else 1
    groups = results.unique(x)
    means = [results.mean(y, **{x: g}) * scale for g in groups]
    stds = [results.std(y, **{x: g}) * scale for g in groups]
    bars = ax.bar(range(len(groups)), means, yerr=stds, capsize=4, color=[f"C{i}" for i in range(len(groups))])
    ax.bar_label(bars, labels=[f"{m:.1f}" for m in means], padding=3, fontsize=9)
    ax.set_xticks(range(len(groups)), [str(g).replace(", ", ",\n") for g in groups], fontsize=9)
    ax.set_ylabel(ylabel or (f"{y} (%)" if percent else y))
    top, bottom = max(m + s for m, s in zip(means, stds)), min(m - s for m, s in zip(means, stds))
    low, high = bottom * 1.15 if min(means) < 0 else 0, max(0, top * 1.15)  # differences may be negative
    ax.set_ylim(low, high if high > low else low + 1)
    ax.grid(axis="y", alpha=0.3)
    if title:
        ax.set_title(title)
    return ax


def plot_history(histories: dict[str, History], ax: plt.Axes | None = None, title: str = "",
                 smooth: int = 10) -> plt.Axes:
    """Training loss against step for each labelled history (a running mean over ``smooth`` steps)."""
    ax = ax or plt.subplots(figsize=(6.5, 4))[1]
    for label, history in histories.items():
        kernel = torch.ones(min(smooth, len(history.loss))) / min(smooth, len(history.loss))
        loss = torch.nn.functional.conv1d(torch.tensor(history.loss)[None, None], kernel[None, None])[0, 0]
        ax.plot(history.step[len(history.step) - len(loss):], loss, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    if title:
        ax.set_title(title)
    return ax


def plot_confusion(counts: torch.Tensor, classes: list[str] | tuple[str, ...], ax: plt.Axes | None = None,
                   title: str = "") -> plt.Axes:
    """A confusion matrix: row = true class, column = predicted class, each row shown as % of that class."""
    if counts.shape != (len(classes), len(classes)):
        raise ValueError(f"counts of shape {tuple(counts.shape)} do not match {len(classes)} classes")
    ax = ax or plt.subplots(figsize=(4.5, 4))[1]
    rates = 100 * counts.float() / counts.sum(1, keepdim=True).clamp_min(1)
    ax.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=100)
    for i, j in torch.nonzero(rates >= 1).tolist():  # label the cells that hold at least 1%
        ax.text(j, i, f"{rates[i, j]:.0f}", ha="center", va="center", fontsize=7,
                color="white" if rates[i, j] > 50 else "black")
    long = max(len(str(c)) for c in classes) > 2  # words, not characters: turn them so they do not overlap
    ax.set_xticks(range(len(classes)), classes, rotation=45 if long else 0, ha="right" if long else "center",
                  rotation_mode="anchor")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if title:
        ax.set_title(title)
    return ax
