"""The one shape of a lesson's results: records with fixed keys, summaries over seeds, one choose rule, one table.

A *record* is a dict: the coordinates of one run (its grid point: ``method``, ``lr``, ``seed``, ...) and what the run
measured, under the names of :data:`MEASURES` only, so that the same quantity has the same name in every lesson
(``val_accuracy``, never ``validation`` or ``"val accuracy"``). :func:`check_record` enforces it;
:func:`ftlib.course.lessons.experiments.run_grid` checks every record it collects.

:class:`Results` is a list of records with helpers to select and summarise over seeds (the sample standard deviation
of :mod:`ftlib.stats`). :func:`choose` is the course's one rule for choosing a setting on validation data, and
:func:`table` (with :class:`Column`, :func:`spread` and :func:`layout`) its one table printer.
"""

from __future__ import annotations

import math
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from ftlib import selection
from ftlib.stats import sample_std

__all__ = ["MEASURES", "SETTINGS", "Column", "Results", "at_chosen", "check_record", "choose", "layout", "spread",
           "table"]

MEASURES: dict[str, str] = {
    # scores: the test set reports, the validation set chooses
    "accuracy": "accuracy on the target's test set (reports; never chooses)",
    "val_accuracy": "accuracy on held-out labelled validation data (chooses)",
    "val_loss": "loss on the validation data (breaks ties of val_accuracy; chooses where there is none)",
    "upright_accuracy": "accuracy on upright digits (lesson 07's flaw check)",
    "train_accuracy": "accuracy on the run's own training images (lesson 07: how well a probe fits them)",
    "retention": "letters test accuracy with the letters head put back (lesson 05)",
    "retention_bn": "retention with the letters' BatchNorm statistics re-estimated (lesson 05)",
    "gain": "a difference in accuracy from a baseline in the same seed",
    # cost
    "seconds": "seconds of training steps (evaluations not counted)",
    "cpu_seconds": "processor seconds of the same run, all its threads together (lessons 01 and 03's timed runs)",
    "trainable": "trainable parameters",
    "trainable_backbone": "trainable parameters outside the head (adapters or fine-tuned blocks)",
    "trainable_head": "trainable parameters in the head",
    "val_images": "images in the validation set",
    "steps": "training steps taken",
    "best_step": "the step whose weights were kept",
    # how the weights moved (lesson 05) and which tensors changed (lesson 03)
    "drift": "||w - w0|| of the backbone",
    "layer_drift": "mean over layers of ||w - w0|| / ||w0||",
    "direction_drift": "mean over layers of the scale-free change of direction",
    "output_change": "KL of the letters predictions from the shipped model's",
    "changed": "tensors that changed in training",
    "tensors": "tensors checked",
    # language models (lessons 09 and 10), in bits per character unless said
    "chat": "bpc on the validation dialogues",
    "answer": "bpc on the validation dialogues' answers",
    "prose": "bpc on held-out prose",
    "format": "chance that a sampled reply starts in the format (long questions in lesson 10)",
    "format_short": "format chance on the questions whose tag is in view (lesson 10's control)",
    "past": "bpc at positions past the trained context",
    "excess": "past, minus the sliding window's",
    "far": "exact-match retrieval on test records whose queried line lies past the trained context (lesson 10)",
    "overall": "exact-match retrieval on test records at every distance (lesson 10)",
    "near_window": "retrieval on the nearest band's test records read through the trained context's window (lesson 10)",
    "beyond_kept": "retrieval on test records whose line lies past the fine-tuned length, read with its scale "
                   "(lesson 10)",
    "beyond_rescaled": "the same records read with the scale for twice the fine-tuned length (Giraffe's "
                       "evaluation-time scale, lesson 10)",
    "rise": "bpc at 2x-4x the trained context minus at 1x-2x",
    # what a run leaves for later cells (not numbers)
    "history": "the run's History (losses and evaluations by step)",
    "confusion": "the confusion matrix on the test set",
    "model": "the trained model",
    "run": "the image-folder recipe's result (a RecipeResult: model, history, splits, scores)",
    "curves": "scores by step",
    "turns": "each validation turn's format scores (lesson 09's turn_format)",
    "label": "a readable name of the run's setting",
    "how": "how the run trained (e.g. 'linear probe')",
}
# settings a run may echo in its record beside the grid's axes
SETTINGS = ("method", "schedule", "target", "seed", "factor", "arm", "lr")
_PATTERNS = {r"x\d+": "bpc past the trained context when reading N times it (lesson 10)",
             r"test_\d+-\d+": "exact-match retrieval on test records whose queried line lies at that distance "
                              "(lesson 10)"}


def check_record(record: dict, coordinates: Iterable[str] = ()) -> dict:
    """``record`` itself, after checking that it is a dict whose every key that is not a coordinate is a name of
    :data:`MEASURES`; with ``coordinates`` a dict (the grid's point), a coordinate the record echoes must keep its
    value (a run that reports another setting than it was given is an error, not a silent relabel)."""
    if not isinstance(record, dict):
        raise ValueError(f"a run returned {type(record).__name__} {str(record)[:60]!r}, not a record: return a dict of "
                         "measures, e.g. {'accuracy': 0.9, 'val_accuracy': 0.88}")
    point = coordinates if isinstance(coordinates, dict) else {}
    changed = [key for key in point if key in record and record[key] != point[key]]
    if changed:
        raise ValueError(f"a run at {point} returned {changed[0]}={record[changed[0]]!r}: a record may echo its "
                         "coordinates but not change them")
    allowed = set(coordinates) | set(SETTINGS)
    for key in record:
        if key in allowed or key in MEASURES or any(re.fullmatch(p, str(key)) for p in _PATTERNS):
            continue
        raise ValueError(f"record key {key!r} is not a measure's name: use one of {', '.join(MEASURES)} "
                         f"(or add it to MEASURES with its meaning)")
    return record


class Results(list):
    """A list of result records (dicts) with helpers to select, summarise over seeds, and print."""

    def where(self, **filters) -> Results:
        """The records whose fields equal every given value."""
        return Results(r for r in self if all(r.get(k) == v for k, v in filters.items()))

    def values(self, metric: str = "accuracy", **filters) -> list[float]:
        """``metric`` of every matching record, in run order (so, usually, by seed)."""
        return [r[metric] for r in self.where(**filters)]

    def mean(self, metric: str = "accuracy", **filters) -> float:
        values = self.values(metric, **filters)
        return statistics.fmean(values) if values else math.nan

    def std(self, metric: str = "accuracy", **filters) -> float:
        """The sample standard deviation (n - 1) of ``metric`` over the matching records; 0.0 for fewer than two,
        nan where a value is not finite (a diverged run)."""
        values = self.values(metric, **filters)
        if len(values) < 2:
            return 0.0
        return sample_std(values) if all(math.isfinite(v) for v in values) else math.nan

    def differences(self, field: str, first, second, metric: str = "accuracy", **filters) -> list[float]:
        """Per seed: ``metric`` where ``field`` is ``first`` minus ``metric`` where it is ``second``.

        The other ``filters`` pick the rest of the setting; records are paired by their ``seed``, which must give
        exactly one record on each side. E.g. ``results.differences("method", "fine-tune", "scratch", n=5)``.
        """
        sides = [self.where(**filters, **{field: value}) for value in (first, second)]
        seeds = [side.unique("seed") for side in sides]
        for value, side, side_seeds in zip((first, second), sides, seeds):
            if not side or len(side_seeds) != len(side):
                raise ValueError(f"{field}={value!r} with {filters} should give one record per seed, "
                                 f"got {len(side)} record(s) for seeds {side_seeds}")
        if set(seeds[0]) != set(seeds[1]):
            raise ValueError(f"{field}={first!r} ran seeds {seeds[0]} but {field}={second!r} ran {seeds[1]}")
        return [sides[0].values(metric, seed=s)[0] - sides[1].values(metric, seed=s)[0] for s in seeds[0]]

    def twin_difference(self, live: Iterable[dict], metrics: Sequence[str], match: dict[str, str] | None = None,
                        **filters) -> tuple[int, float]:
        """How many ``live`` records have a stored twin here, and the largest absolute difference between twins over
        ``metrics`` (those the live record holds; 0 if none): a live rerun checked against the stored run it repeats.

        A live record's twin is the first record here that matches ``filters`` and, for each ``stored: field`` of
        ``match`` (default ``{"arm": "arm", "seed": "seed"}``), has the live record's ``field`` as its ``stored``.
        """
        match = match or {"arm": "arm", "seed": "seed"}
        pairs = [(r, self.where(**filters, **{key: r[field] for key, field in match.items()})) for r in live]
        pairs = [(r, twin[0]) for r, twin in pairs if twin]
        return len(pairs), max((abs(r[m] - twin[m]) for r, twin in pairs for m in metrics if m in r), default=0.0)

    def unique(self, field: str) -> list:
        """The distinct values of ``field``, in first-seen order."""
        return list(dict.fromkeys(r[field] for r in self))

    def table(self, rows: str, columns: str, metric: str = "accuracy", percent: bool = True) -> str:
        """A text table of ``metric``'s mean ± std over the other fields (usually seeds): one row per value of
        ``rows``, one column per value of ``columns``."""
        headers = [f"{columns}={c}" for c in self.unique(columns)]
        spec = [Column(h, metric, where={columns: c}, scale=100 if percent else 1)
                for h, c in zip(headers, self.unique(columns))]
        return table(self, rows, spec, width=max([16] + [len(h) + 2 for h in headers]))


# --- the one choose rule ------------------------------------------------------------------------------------------

def choose(results: Results, field: str, seed: int | None = None, **where):
    """The value of ``field`` chosen on validation data: the course's one rule.

    The best mean validation accuracy (``val_accuracy``, means over the seeds; with ``seed``, that seed's runs
    alone, one practitioner's data) wins. Ties (equal to 9 decimals, whatever the order of the floating-point sums)
    go to the lower mean validation loss where the records have one (``val_loss``), and then to the value met first
    in the grid: each grid lists its most conservative setting first (the weaker strength, the lower rate). Records
    with a validation loss and no accuracy (a language model's bits per character) rank by their loss in accuracy's
    place: the lower mean loss wins (equal to 9 decimals: the value met first). A setting whose mean is NaN or
    infinite (a diverged run) ranks last. The test set (``accuracy``, a language model's test loss) is never read.
    """
    runs = Results(results).where(**where, **({} if seed is None else {"seed": seed}))
    if not runs:
        raise ValueError(f"no runs to choose {field!r} from with {where}" + ("" if seed is None else f", seed {seed}"))
    loss_only = all("val_loss" in r and "val_accuracy" not in r for r in runs)  # a language model's records
    accuracy = "val_loss" if loss_only else "val_accuracy"
    for key in (field, accuracy):
        if any(key not in r for r in runs):
            raise ValueError(f"choose({field!r}) needs {key!r} in every run's record; a run has only "
                             f"{sorted(next(r for r in runs if key not in r))}")
    values = runs.unique(field)

    def scores(value) -> tuple[float, float]:
        chosen = runs.where(**{field: value})
        loss = chosen.mean("val_loss") if all("val_loss" in r for r in chosen) else 0.0
        if loss_only:  # the loss takes accuracy's place, negated: rounded alike, and a NaN still ranks last
            return -loss, loss
        return chosen.mean("val_accuracy"), loss

    return values[selection.best([scores(value) for value in values])]  # the library's rule (the recipe's too)


def at_chosen(results: Iterable[dict], chosen: dict, by: Sequence[str], field: str = "lr") -> Results:
    """The records whose ``field`` holds the value chosen for them: ``chosen`` is nested by the fields of ``by``
    (their values as text, as JSON keeps them), e.g. ``chosen["prose"]["40"]["pi"]`` for ``("task", "steps",
    "arm")``. A stored sweep's choosing seeds ran every value; this keeps, for every seed, the runs it reports."""
    def value_for(record: dict):
        value = chosen
        for key in by:
            value = value[str(record[key])]
        return value

    return Results(r for r in results if r[field] == value_for(r))


# --- the one table printer ----------------------------------------------------------------------------------------

def spread(mean: float, std: float, *, scale: float = 100, digits: int = 1, sign: str = "", unit: str = "",
           width: int = 0) -> str:
    """``"88.5 ± 1.2"``: a mean and its spread (std or an interval's half-width) times ``scale``; ``"-"`` for nan.

    ``sign="+"`` prints the mean's sign (``+0.0`` for a mean that rounds to zero), ``unit`` follows the spread,
    ``width`` right-aligns the mean alone.
    """
    if math.isnan(mean):
        return "-"
    number = f"{round(scale * mean, digits) + 0.0:{sign}.{digits}f}"  # + 0.0: a mean that rounds to 0 prints no "-"
    return f"{number:>{width}} ± {scale * std:.{digits}f}{unit}"


def layout(header: Sequence[str], rows: Sequence[Sequence[str]], *, lead: int, width: int | Sequence[int],
           align: str | Sequence[str] = ">") -> str:
    """Text lines: the first column left-aligned in ``lead`` characters, the others aligned (``align``) in
    ``width`` characters each (one value, or one per column)."""
    count = len(header) - 1
    widths = [width] * count if isinstance(width, int) else list(width)
    aligns = [align] * count if isinstance(align, str) else list(align)
    return "\n".join(f"{line[0]:<{lead}}" + "".join(f"{cell:{a}{w}}" for cell, a, w in zip(line[1:], aligns, widths))
                     for line in [header, *rows])


@dataclass(frozen=True)
class Column:
    """One column of :func:`table`: ``header`` over the mean ± std of ``metric`` (times ``scale``, ``digits``
    decimals) over the records of the row that also match ``where``; or ``cell(records)`` for any other text."""

    header: str
    metric: str = "accuracy"
    where: dict = field(default_factory=dict)
    scale: float = 100
    digits: int = 1
    cell: Callable[[Results], str] | None = None
    width: int = 0
    align: str = ">"

    def text(self, records: Results) -> str:
        if self.cell is not None:
            return self.cell(records)
        selected = records.where(**self.where)
        return spread(selected.mean(self.metric), selected.std(self.metric), scale=self.scale, digits=self.digits)


def table(results: Results, rows: str, columns: Sequence[Column], *, lead: int = 28, width: int = 16,
          title: str | None = None, names: dict | None = None) -> str:
    """The course's table printer: one line per value of ``rows`` (labelled by ``names`` where given), one cell per
    :class:`Column`, under a header (``title``, default ``rows``). Columns are at least ``width`` characters wide
    and wider than their header; the first is wide enough for every label."""
    values = results.unique(rows)
    labels = [str((names or {}).get(v, v)) for v in values]
    lead = max([lead] + [len(label) + 2 for label in labels])
    widths = [c.width or max(width, len(c.header) + 2) for c in columns]
    lines = [[label, *(c.text(results.where(**{rows: v})) for c in columns)] for v, label in zip(values, labels)]
    return layout([rows if title is None else title, *(c.header for c in columns)], lines, lead=lead, width=widths,
                  align=[c.align for c in columns])
