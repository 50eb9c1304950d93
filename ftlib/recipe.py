"""The fine-tuning recipe for your own image folder, as one function and as a command line.

folder -> stratified split -> range test -> linear probe -> fine-tune with per-block rates at each backbone factor,
augmentation and early stopping -> the probe or a fine-tuned model, chosen on validation -> test report -> export.
The same code runs in one process or, under ``torchrun``, in several (see :mod:`ftlib.distributed`).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from . import analysis, augment, backbones, distributed, export, selection, stats
from .checks import SettingError, check_positive, check_rate, check_seed, printable
from .data import ImageSet
from .evaluation import confusion_matrix, evaluate
from .folder import ENOUGH_ADVICE, FolderReport, check_fractions, colour_image, load_folder, split, split_rows
from .lr import RangeTest, range_test
from .paths import shipped_folder
from .probe import linear_probe
from .runtime import get_device, pin_threads, thread_count
from .stopping import EarlyStopping, History
from .train import NonFiniteLoss, fit
from .transfer import adapt_batchnorm

__all__ = ["Candidate", "FACTORS", "FALLBACK_LR", "MAX_BACKBONE_FACTOR", "MAX_STRENGTH", "PATIENCE", "RecipeResult",
           "SCHEDULE", "TEST_FRACTION", "TINY_SPLIT", "TestReport", "VAL_FRACTION", "WEIGHT_DECAY", "check_settings",
           "cli", "colour_warning", "error_analysis", "export_target", "factors_of", "finetune", "kept",
           "split_warning", "test_report"]

FALLBACK_LR = 3e-3  # used when the range test cannot suggest a rate (its loss fell for fewer than 2 steps)
SCHEDULE = "cosine"  # falls from the start: early stopping never cuts a warm-up short
PATIENCE = 8  # evaluations (of 10 steps) without a better validation loss: a compute budget, not a tuned knob
FACTORS = (0.3, 1.0)  # backbone factors tried, the cautious one first; validation chooses (lesson 11)
VAL_FRACTION = 0.2  # share of each class for validation (early stopping and the choice read it)
TEST_FRACTION = 0.5  # share of each class for the test report (lesson 11 uses the same split)
WEIGHT_DECAY = 0.01  # AdamW's decoupled weight decay (PyTorch's default; ftlib.train.fit's own AdamW uses 0)
TINY_SPLIT = 5  # fewer validation or test images than this in a class: one image moves a score a lot; warned


@dataclass
class TestReport:
    """Accuracy, per-class precision and recall, and the confusion counts (row: true class, column: predicted)."""

    classes: tuple[str, ...]
    counts: torch.Tensor

    @property
    def accuracy(self) -> float:
        return float(self.counts.diag().sum() / self.counts.sum())

    @property
    def precision(self) -> list[float]:
        """Of the images predicted as each class, the share that really are (0 when none was predicted)."""
        return (self.counts.diag() / self.counts.sum(0).clamp_min(1)).tolist()

    @property
    def recall(self) -> list[float]:
        """Of the images of each class, the share predicted as that class."""
        return (self.counts.diag() / self.counts.sum(1).clamp_min(1)).tolist()

    @property
    def interval(self) -> tuple[float, float]:
        """The 95% (Wilson) interval of the accuracy: how far a test set this size can mislead."""
        return stats.proportion_interval(int(self.counts.diag().sum()), int(self.counts.sum()))

    def __str__(self) -> str:
        low, high = self.interval
        lines = [f"test accuracy {self.accuracy:.1%} on {int(self.counts.sum())} images "
                 f"(95% interval {low:.1%} to {high:.1%})",
                 f"{'class':<16}{'images':>7}{'precision':>11}{'recall':>9}"]
        for name, n, p, r in zip(self.classes, self.counts.sum(1).tolist(), self.precision, self.recall):
            lines.append(f"{printable(name):<16}{n:>7}{p:>11.1%}{r:>9.1%}")
        return "\n".join(lines)


def test_report(model: nn.Module, data: ImageSet) -> TestReport:
    """Score ``model`` (in eval mode) on ``data``: a :class:`TestReport`."""
    return TestReport(data.classes, confusion_matrix(model, data))


@dataclass
class Candidate:
    """One model the recipe made and scored on validation: the linear probe, or fine-tuning (from scratch: the
    scratch run) at one backbone ``factor``."""

    name: str  # "linear probe", "fine-tune x0.3", "LP-FT x1", "scratch"
    factor: float | None  # the backbone factor (None for the probe)
    model: nn.Module
    val_accuracy: float  # of the kept weights
    val_loss: float
    history: History | None = None  # None for the probe
    lr: dict[str, float] | None = None  # the rates it trained at (None for the probe)


def kept(history: History) -> tuple[float, float]:
    """The validation loss and accuracy at the evaluation whose weights early stopping kept."""
    i = history.eval_step.index(history.best_step)
    return history.val_loss[i], history.val_accuracy[i]


@dataclass
class RecipeResult:
    """Everything one run of the recipe made and measured. ``model``, ``history``, ``lr`` and ``test`` are those of
    the candidate that validation chose (``chosen``; ``history`` and ``lr`` are None when it is the probe)."""

    model: nn.Module
    backbone: str
    pretrained: bool
    report: FolderReport
    splits: dict[str, ImageSet]  # "train", "val", "test"
    range_test: RangeTest | None  # None when the head's rate was given (lr=...)
    lr: dict[str, float] | None
    probe_accuracy: float | None  # test accuracy of the linear probe (None for scratch), for comparison only
    history: History | None
    test: TestReport
    export_path: Path | None
    seconds: float
    files: dict[str, list[Path]] = field(default_factory=dict)  # each split's image files, in its rows' order
    reports: list[Path] = field(default_factory=list)  # the error analysis written beside the export
    candidates: list[Candidate] = field(default_factory=list)  # every model validation chose from, in grid order
    chosen: str = ""  # the name of the candidate that validation chose (and that was exported)
    warnings: list[str] = field(default_factory=list)  # what the run warned about (tiny splits, the rate fallback)

    def candidate(self, name: str) -> Candidate:
        """The candidate called ``name`` (e.g. ``"fine-tune x1"``); a ``ValueError`` lists the names otherwise."""
        found = [c for c in self.candidates if c.name == name]
        if not found:
            raise ValueError(f"name={name!r} is not a candidate of this run: choose one of "
                             f"{[c.name for c in self.candidates]}")
        return found[0]

    def arm(self, name: str) -> RecipeResult:
        """This result as if validation had chosen ``name``: its model, history, rates and a fresh test report (for
        comparing arms; nothing is exported)."""
        c = self.candidate(name)
        return replace(self, model=c.model, history=c.history, lr=c.lr, chosen=name, export_path=None,
                       test=test_report(c.model, self.splits["test"]), reports=[])


def _head_rate(rt: RangeTest | None, lr: float | None, notes: list[str]) -> float:
    """The head's rate: ``lr`` when given, else the range test's suggestion (else :data:`FALLBACK_LR`, noted)."""
    if lr is not None:
        return lr
    try:
        return rt.suggestion
    except ValueError as error:
        notes.append(f"range test: {error}; using lr {FALLBACK_LR}")
        return FALLBACK_LR


def split_warning(splits: dict[str, ImageSet], least: int = TINY_SPLIT) -> str | None:
    """A one-line warning when a class has fewer than ``least`` images in the validation or the test split (one
    image then moves a score by many points: validation can barely choose, the test report is a wide interval),
    else ``None``."""
    few = {}
    for part in ("val", "test"):
        counts = torch.bincount(splits[part].labels, minlength=splits[part].num_classes).tolist()
        if min(counts) < least:
            few[part] = f"{len(splits[part])} {'validation' if part == 'val' else 'test'} images " \
                        f"(as few as {min(counts)} in a class)"
    if not few:
        return None
    return (f"tiny split: {' and '.join(few.values())}: one image moves a score by "
            f"{100 / min(len(splits[p]) for p in few):.0f} points, so validation can barely choose and the test "
            f"accuracy is a wide interval; {ENOUGH_ADVICE}")


MAX_BACKBONE_FACTOR = 10.0  # the backbone at more than 10x the head's rate is a typo, not a recipe
MAX_STRENGTH = 5.0  # augmentation strength: 0 none, 1 mild (the default), 3 strong (ftlib.augment.affine_ranges)


def export_target(out: str | Path, folder: str | Path | None = None) -> Path:
    """``out/model.safetensors``, checked before any training: ``out`` must be (or become) a folder that this
    user can write to, outside the course's shipped folders (data/, notebooks/, the package ftlib/) and outside
    the image ``folder``, and the model file must not be a folder; a ``ValueError`` names ``out`` otherwise."""
    if not str(out):
        raise ValueError("--out '' names no folder: give the export folder (it is created if needed)")
    out = Path(out)
    target = out / "model.safetensors"
    shipped = shipped_folder(out)
    if shipped is not None:
        raise ValueError(f"--out {out} lies in {shipped.name}/, a shipped folder of the course: give a folder "
                         "outside data/, notebooks/ and ftlib/ (e.g. runs/finetune)")
    if folder is not None and out.resolve().is_relative_to(Path(folder).resolve()):
        raise ValueError(f"--out {out} lies inside the image folder {folder}: the export would be mixed with your "
                         "images; give a folder outside it (e.g. runs/finetune)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is an existing file: give a folder for the export (it is created if needed)")
    if any(p.exists() and not p.is_file() for p in (target, target.with_suffix(".json"))):
        raise ValueError(f"--out {out} holds a folder named model.safetensors or model.json; choose another folder")
    existing = out
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir() or not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} cannot be written ({existing} is not a folder this user can write to)")
    return target


def factors_of(backbone_factor: float | Sequence[float]) -> tuple[float, ...]:
    """One backbone factor or several as a tuple, lowest (most cautious) first, each checked: a ``SettingError``
    names a bad one."""
    many = isinstance(backbone_factor, Sequence) and not isinstance(backbone_factor, str)
    values = tuple(backbone_factor) if many else (backbone_factor,)
    if not values:
        raise SettingError("backbone_factor=() is not allowed: give one factor or several to choose from")
    for value in values:
        check_positive("backbone_factor", value)
        if value > MAX_BACKBONE_FACTOR:
            raise SettingError(f"backbone_factor={value!r} is not allowed: choose a number in "
                               f"(0, {MAX_BACKBONE_FACTOR:g}] (by default {' and '.join(map(str, FACTORS))} are "
                               "tried and validation chooses)")
    return tuple(sorted(set(values)))


def check_settings(backbone: str, pretrained: bool, weights: str | Path | None, seed: int,
                   backbone_factor: float | Sequence[float], *, lr: float | None = None, strength: float = 1.0,
                   val: float = VAL_FRACTION, test: float = TEST_FRACTION) -> None:
    """The recipe's own settings, checked before any image is read: a ``ValueError`` that names the bad one."""
    backbones.check_weights(backbone, pretrained, weights)
    check_seed(seed)
    factors_of(backbone_factor)
    if lr is not None:
        check_rate("lr", lr)
    if isinstance(strength, bool) or not isinstance(strength, (int, float)) or not 0 <= strength <= MAX_STRENGTH:
        raise SettingError(f"strength={strength!r} is not allowed: choose a number from 0 (no augmentation) to "
                           f"{MAX_STRENGTH:g} (1 by default, 3 is strong)")
    check_fractions(val, test)


def colour_warning(folder: str | Path, backbone: str) -> str | None:
    """A one-line warning when a greyscale backbone (GlyphNet) is given a folder of colour images (a few files
    sampled, :func:`ftlib.folder.colour_image`), else ``None``."""
    spec = backbones.spec(backbone)
    found = colour_image(folder) if spec.channels == 1 and Path(folder).is_dir() else None
    if found is None:
        return None
    example = Path(found).relative_to(folder).as_posix()
    return (f"{printable(str(folder))} holds colour images (e.g. {printable(example)}): {backbone} sees "
            f"every image as {spec.size}x{spec.size} greyscale, so colour and fine detail are lost; if they tell "
            "your classes apart, try --backbone resnet18 (it needs the ImageNet weights, see --weights)")


def error_analysis(model: nn.Module, report: FolderReport, data: ImageSet, rows: dict[str, torch.Tensor],
                   counts: torch.Tensor) -> dict[str, str]:
    """The error analysis of ``model`` on the test rows of ``data`` (loaded with ``report``; ``rows``: each split's
    row numbers, :func:`ftlib.folder.split_rows`), as :func:`ftlib.analysis.report_files` gives it; files are
    named relative to the image folder, with ``/`` between folders."""
    root = Path(report.root)
    names = [path.relative_to(root).as_posix() for path in report.files]
    part_of = {int(row): part for part, part_rows in rows.items() for row in part_rows}
    split_table = [(names[i], data.classes[int(data.labels[i])], part_of[i]) for i in range(len(data))]
    test_rows = rows["test"]
    test_set = ImageSet(data.images[test_rows], data.labels[test_rows], data.classes, data.name)
    predictions = analysis.file_predictions(model, test_set, [names[int(i)] for i in test_rows])
    return analysis.report_files(split_table, data.classes, counts, predictions)


def finetune(folder: str | Path, backbone: str = "glyphnet", *, pretrained: bool = True,
             weights: str | Path | None = None, seed: int = 0, steps: int = 200, batch_size: int = 32,
             backbone_factor: float | Sequence[float] = FACTORS, lr: float | None = None, val: float = VAL_FRACTION,
             test: float = TEST_FRACTION, range_steps: int = 60, strength: float = 1.0, patience: int = PATIENCE,
             eval_every: int = 10, lp_ft: bool = False, out: str | Path | None = None, progress: bool = False,
             device: str | None = None, threads: int | None = None) -> RecipeResult:
    """Run the recipe on the image folder ``folder`` (one sub-folder per class) and return a :class:`RecipeResult`.

    1. load and convert the images for ``backbone`` and split them by ``seed`` (``val``, ``test`` fractions; a
       class with fewer than :data:`TINY_SPLIT` validation or test images is warned about, :func:`split_warning`);
    2. range test of ``range_steps`` steps (the model is restored afterwards): the head's rate is its suggestion
       (or ``lr``, when given: then no range test runs);
    3. BatchNorm statistics re-estimated on the training images (AdaBN, :func:`ftlib.transfer.adapt_batchnorm`),
       then a linear probe on a copy: how far frozen features alone get (skipped for scratch);
    4. for each backbone factor in ``backbone_factor`` (one number or several; by default :data:`FACTORS`), fine-tune
       a copy for up to ``steps`` steps, the pretrained blocks at that factor times the head's rate, with AdamW
       (weight decay :data:`WEIGHT_DECAY`), augmentation (``strength``; 0 for none), a cosine schedule and early
       stopping on the validation loss (every ``eval_every`` steps, ``patience`` evaluations: a compute budget),
       keeping the best weights; with ``lp_ft`` from the probe's head instead of a fresh one (LP-FT, Kumar et al.
       2022; on the example folder it did no better than the fresh head, lesson 11: not resolved over 6 seeds);
    5. choose on validation among the probe and the fine-tuned models (:func:`ftlib.selection.best`: the higher
       validation accuracy, ties to the lower validation loss, then to the more cautious: the probe, then the lower
       factor); the test set plays no part;
    6. test report of the chosen model, with its 95% interval; 7. export it to ``out/model.safetensors`` (rank 0
       only under ``torchrun``) with the error analysis beside it, in the same all-or-nothing save
       (:data:`ftlib.analysis.REPORT_FILES`: the split, the test predictions, the confusion matrix, the
       most-confused pairs and the top losses), and every candidate's validation scores in its metadata.

    Under ``torchrun`` every rank evaluates the full validation set with the same weights (DDP also broadcasts
    rank 0's BatchNorm statistics), so all ranks see the same scores, stop at the same step and choose alike.

    ``pretrained=False`` runs the same recipe from random weights, one rate for every block and no probe (the
    baseline to beat; the factors do not apply).

    Every setting and ``out`` are checked before any training. For the same numbers from the same seed, torch is
    pinned to ``threads`` threads (default ``$FTLIB_THREADS``, else 2, as in the lessons); the command line
    passes every core instead unless told otherwise. An interrupt (``KeyboardInterrupt``) or a loss that turns
    non-finite (:class:`ftlib.train.NonFiniteLoss`) is raised before anything is exported.
    """
    start = time.perf_counter()
    check_settings(backbone, pretrained, weights, seed, backbone_factor, lr=lr, strength=strength, val=val,
                   test=test)
    factors = factors_of(backbone_factor) if pretrained else (1.0,)
    target = export_target(out, folder) if out is not None else None
    pin_threads(threads)
    context = distributed.init(device)
    spec = backbones.spec(backbone)
    data, report = load_folder(folder, spec.size, spec.channels, spec.bright_ink)
    if target is not None:
        _check_utf8_names(report)
    train_set, val_set, test_set = split(data, seed, val, test)
    splits = {"train": train_set, "val": val_set, "test": test_set}
    notes = [note for note in [split_warning(splits)] if note]
    rows = dict(zip(("train", "val", "test"), split_rows(data, seed, val, test)))
    model = backbones.build(backbone, data.num_classes, seed, pretrained, weights).to(context.device)
    rt = None if lr is not None else range_test(model, train_set, start=1e-5, end=1.0, steps=range_steps,
                                                batch_size=batch_size, seed=seed, device=context.device)
    head_rate = _head_rate(rt, lr, notes)
    for note in notes:
        warnings.warn(note, stacklevel=2)
    candidates, probe = [], None
    if pretrained:
        adapt_batchnorm(model, train_set.images)  # AdaBN: the probe reads features normalised as on this data
        probed = linear_probe(copy.deepcopy(model), train_set)
        scores = evaluate(probed, val_set)
        candidates.append(Candidate("linear probe", None, probed, scores.accuracy, scores.loss))
        probe = evaluate(probed, test_set).accuracy
    for factor in factors:
        trained = copy.deepcopy(model)
        if pretrained and lp_ft:  # LP-FT: fine-tune from the probe's head, not a random one
            trained.head.load_state_dict(probed.head.state_dict())
        rates = {"backbone": head_rate * factor, "head": head_rate}
        history = _fine_tune(trained, rates, train_set, val_set, context, steps=steps, batch_size=batch_size,
                             strength=strength, eval_every=eval_every, patience=patience, seed=seed,
                             progress=progress)
        name = f"{'LP-FT' if lp_ft else 'fine-tune'} x{factor:g}" if pretrained else "scratch"
        candidates.append(Candidate(name, factor if pretrained else None, trained, *kept(history)[::-1], history,
                                    rates))
    chosen = candidates[selection.best([(c.val_accuracy, c.val_loss) for c in candidates])]
    report_test = test_report(chosen.model, test_set)
    gap = max(distributed.weight_gap(c.model, context) for c in candidates)  # 0: DDP kept every rank in step
    path, reports = None, []
    if target is not None and context.main:
        beside = error_analysis(chosen.model, report, data, rows, report_test.counts)
        reports = [target.parent / name for name in beside]
        history = chosen.history
        path = export.save(chosen.model, target, backbone, data.classes, beside=beside, extra={
            "seed": seed, "pretrained": pretrained, "chosen": chosen.name, "backbone_factor": chosen.factor,
            "lr": chosen.lr, "weight_decay": WEIGHT_DECAY if chosen.history else None,
            "validation": {c.name: {"accuracy": c.val_accuracy, "loss": c.val_loss} for c in candidates},
            "steps_run": len(history.step) if history else 0, "best_step": history.best_step if history else None,
            "test_accuracy": report_test.accuracy, "test_interval": list(report_test.interval),
            "world_size": context.world_size, "written_by_rank": context.rank, "weight_gap_between_ranks": gap,
            "lp_ft": bool(pretrained and lp_ft), "warnings": notes, "folder": str(folder)})
    distributed.close(context)
    files = {part: [report.files[int(i)] for i in part_rows] for part, part_rows in rows.items()}
    return RecipeResult(chosen.model, backbone, pretrained, report, splits, rt, chosen.lr, probe, chosen.history,
                        report_test, path, time.perf_counter() - start, files, reports, candidates, chosen.name, notes)


def _fine_tune(model: nn.Module, rates: dict[str, float], train_set: ImageSet, val_set: ImageSet,
               context: distributed.Context, *, steps: int, batch_size: int, strength: float, eval_every: int,
               patience: int, seed: int, progress: bool) -> History:
    """Step 4 of :func:`finetune` for one set of rates: ``model`` trained in place (the best weights kept)."""
    net = distributed.wrap(model, context)
    return fit(net, distributed.shard(train_set, context), steps, lr=rates["head"],
               optimizer=distributed.block_adamw(net, rates, weight_decay=WEIGHT_DECAY), schedule=SCHEDULE,
               batch_size=max(1, batch_size // context.world_size),
               augment=augment.standard(strength) if strength else None, val_data=val_set, eval_every=eval_every,
               early_stopping=EarlyStopping(patience=patience), seed=seed + context.rank, device=context.device,
               progress=progress)


def _check_utf8_names(report: FolderReport) -> None:
    """A ``ValueError`` naming the first class folder or image file whose name is not valid UTF-8 (a name in other
    bytes): the error analysis beside the export is UTF-8 text and could not name it. Checked before training."""
    for name in [*report.classes, *(path.relative_to(report.root).as_posix() for path in report.files)]:
        try:
            name.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{printable(str(Path(report.root) / name))} is named in bytes that are not UTF-8: the "
                             "error analysis beside the export (UTF-8 CSV files) cannot name it; rename it") from None


def cli(argv: list[str] | None = None) -> int:
    """``python -m ftlib finetune FOLDER [options]`` (also under ``torchrun ... -m ftlib finetune``)."""
    parser = argparse.ArgumentParser(prog="python -m ftlib finetune",
                                     description="Fine-tune a pretrained backbone on an image folder "
                                                 "(FOLDER/<class name>/<images>), report on a test split, export.")
    parser.add_argument("folder", help="image folder with one sub-folder per class")
    parser.add_argument("--backbone", default="glyphnet", choices=sorted(backbones.SPECS))
    parser.add_argument("--weights", help="ResNet-18 ImageNet weights file (default: the torch hub cache)")
    parser.add_argument("--scratch", action="store_true", help="start from random weights (the baseline)")
    parser.add_argument("--out", default="runs/finetune", help="export folder (default: runs/finetune)")
    parser.add_argument("--steps", type=int, default=200, help="most fine-tuning steps (early stopping may stop)")
    parser.add_argument("--batch-size", type=int, default=32, help="images per step, over all processes")
    parser.add_argument("--backbone-factor", type=float, nargs="+", default=list(FACTORS), metavar="FACTOR",
                        help="pretrained blocks' rate as a multiple of the head's: one value, or several to try "
                             f"(default {' '.join(f'{f:g}' for f in FACTORS)}); validation chooses among them and "
                             "the linear probe (higher accuracy, then lower loss, then the more cautious)")
    parser.add_argument("--lr", type=float,
                        help="the head's learning rate, instead of the range test's suggestion (which is then "
                             "skipped); the pretrained blocks get --backbone-factor times it (AdamW, weight decay "
                             f"{WEIGHT_DECAY:g})")
    parser.add_argument("--val-fraction", type=float, default=VAL_FRACTION,
                        help="share of each class for validation, which early stopping and the choice read "
                             f"(default {VAL_FRACTION:g})")
    parser.add_argument("--test-fraction", type=float, default=TEST_FRACTION,
                        help=f"share of each class for the test report (default {TEST_FRACTION:g}, as in lesson 11); "
                             "the two add up to less than 1, the rest trains")
    parser.add_argument("--augment", type=float, default=1.0, metavar="STRENGTH",
                        help=f"augmentation strength: random turns, shifts and scales (default 1, mild; 3 strong; "
                             f"at most {MAX_STRENGTH:g}; 0 for none)")
    parser.add_argument("--patience", type=int, default=PATIENCE,
                        help=f"evaluations (every 10 steps) without a better validation loss before stopping: a "
                             f"compute budget, since more patience never keeps a worse validation loss "
                             f"(default {PATIENCE})")
    parser.add_argument("--lp-ft", action="store_true",
                        help="start fine-tuning from the linear probe's head (LP-FT) instead of a fresh one")
    parser.add_argument("--seed", type=int, default=0, help="seed of the split, the new head and the batches")
    parser.add_argument("--device", help="cpu (default, or $FTLIB_DEVICE), cuda, cuda:N, mps")
    parser.add_argument("--threads", type=int, help="torch threads (default: $FTLIB_THREADS, else every core)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    before = _file_id(Path(args.out) / "model.safetensors")
    try:
        settings = _cli_settings(args)
        check_settings(args.backbone, **{name: settings[name] for name in _CHECKED})  # before the warning
        export_target(settings["out"], args.folder)
        warning = colour_warning(args.folder, args.backbone) if _rank() == 0 else None
        if warning:
            print(f"warning: {warning}", file=sys.stderr, flush=True)
        with warnings.catch_warnings():
            warnings.simplefilter("always")
            warnings.showwarning = _show_warning
            result = finetune(args.folder, args.backbone, **settings)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {_flag_names(error)}", file=sys.stderr)
        return 2
    except NonFiniteLoss as error:
        print(f"error: {error}; nothing was exported", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        target = Path(args.out) / "model.safetensors"
        done = (f"the export {target} was complete before it stopped" if _file_id(target) != before
                else f"nothing was exported; {args.out} is as it was")
        print(f"\ninterrupted: {done}", file=sys.stderr)
        return 130
    if result.export_path is None:  # another rank under torchrun: rank 0 writes and reports
        print(f"rank {_rank()}: trained on its shard; rank 0 writes the export", flush=True)
        return 0
    print(result.report)
    print(_choice(result))
    print(result.test)
    print(_confusions(result.test))
    print(f"error analysis beside the export: {', '.join(path.name for path in result.reports)}")
    print(f"rank {_rank()}: exported to {printable(str(result.export_path))} in {result.seconds:.1f} s", flush=True)
    return 0


# the settings that check_settings checks, besides the backbone
_CHECKED = ("pretrained", "weights", "seed", "backbone_factor", "lr", "strength", "val", "test")


def _show_warning(message, *_args, **_kwargs) -> None:
    """The command line's form of a warning: one line on stderr."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def _choice(result: RecipeResult) -> str:
    """What validation chose from, one line per candidate, the exported one marked."""
    head = "; rates from --lr" if result.range_test is None else "; the head's rate from the range test"
    lines = [f"chosen on validation ({len(result.splits['val'])} images: higher accuracy, then lower loss, then the "
             f"more cautious{head}):"]
    for c in result.candidates:
        how = "frozen features, a new head" if c.history is None else (
            f"head {c.lr['head']:.1e}, other blocks {c.lr['backbone']:.1e}; {len(c.history.step)} steps, kept "
            f"step {c.history.best_step}")
        mark = "  <- exported" if c.name == result.chosen else ""
        lines.append(f"  {c.name:<16} validation {c.val_accuracy:6.1%}, loss {c.val_loss:.3f}  ({how}){mark}")
    return "\n".join(lines)


def _confusions(test: TestReport, shown: int = 3) -> str:
    """The test set's ``shown`` most-confused pairs, as one line."""
    pairs = analysis.most_confused(test.classes, test.counts)
    if not pairs:
        return "most confused (test): none, every test image was labelled right"
    listed = ", ".join(f"{printable(true)} -> {printable(predicted)} {count}" for true, predicted, count
                       in pairs[:shown])
    return f"most confused (test, true -> predicted, images): {listed}" + (", ..." if len(pairs) > shown else "")


def _cli_settings(args: argparse.Namespace) -> dict:
    """The keyword arguments of :func:`finetune` from the command line, with the flags that only it has checked."""
    for flag, value in [("--steps", args.steps), ("--batch-size", args.batch_size), ("--patience", args.patience)]:
        if value < 1:
            raise SettingError(f"{flag} {value} is not allowed: choose a positive integer")
    check_fractions(args.val_fraction, args.test_fraction, "--val-fraction", "--test-fraction")
    if not 0 <= args.augment <= MAX_STRENGTH:  # also NaN
        raise SettingError(f"--augment {args.augment} is not allowed: choose a strength from 0 (no augmentation) "
                           f"to {MAX_STRENGTH:g} (1 by default, 3 is strong)")
    get_device(args.device, flag="--device")
    threads = thread_count(args.threads, default=torch.get_num_threads(), flag="--threads")  # every core
    return dict(pretrained=not args.scratch, weights=args.weights, seed=args.seed, steps=args.steps,
                batch_size=args.batch_size, backbone_factor=args.backbone_factor, lr=args.lr, val=args.val_fraction,
                test=args.test_fraction, strength=args.augment, patience=args.patience, lp_ft=args.lp_ft,
                out=args.out, progress=not args.no_progress, device=args.device, threads=threads)


def _flag_names(error: Exception) -> str:
    """An error message with the recipe's argument names spelled as the command line's flags."""
    text = str(error)
    for name in ("backbone_factor", "weights", "seed", "threads", "device", "lr"):
        text = text.replace(f"{name}=", f"--{name.replace('_', '-')} ", 1) if text.startswith(f"{name}=") else text
    return text


def _file_id(path: Path) -> tuple[int, int] | None:
    """Which file is at ``path`` (inode and change time), to tell whether an export replaced it; None if none."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_ino, stat.st_ctime_ns


def _rank() -> int:
    return int(os.environ.get("RANK", "0"))


if __name__ == "__main__":
    sys.exit(cli())
