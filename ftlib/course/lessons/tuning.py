"""The course's tuning table: every arm of every comparison at its setting chosen on validation, from one grid.

A lesson that compares two ways to fine-tune (scratch against fine-tuning, one freeze depth against another) is
only fair if each arm runs at its own best setting, chosen alike. :data:`ARMS` lists every arm the lessons compare:
the lesson's driver that trains it, the settings the comparison fixes (target, labels, steps), and the knobs tuned
with their grid (the course's one rate grid, :data:`RATES`, unless the lesson studies another). For each arm,
:func:`build` trains every grid point on :data:`SEEDS`, chooses on held-out *validation* labels only (never the
test set) and applies the course's one choose rule (:func:`~ftlib.course.lessons.records.choose`). The result ships
as ``data/tuning.json``; ``python -m ftlib tune --check`` rebuilds it bit for bit (same thread count and torch).

Lessons only read it (:func:`load`): they print how each arm was set (:meth:`Table.show`), read back their arms'
runs at the chosen setting on the table's seeds (:func:`run_plan`: each grid point's run also stores its test
accuracy and the driver's other measures, read back by the lessons and never chosen on), run the other seeds live,
and re-run one or two arms live against the stored runs (:meth:`Table.recheck`), so a stale table fails the lesson.
The stored choices are also the same on every machine, where choices made at run time flip on CPUs whose float sums
differ.
"""

from __future__ import annotations

import functools
import importlib
import itertools
import json
import math
import numbers
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ftlib.course.lessons.records import Results, choose, layout, spread
from ftlib.course.lessons.workers import independent
from ftlib.paths import DATA_DIR

__all__ = ["ARMS", "N_VAL", "RATES", "SEEDS", "TABLE", "Arm", "Table", "build", "load", "run_arm", "run_arms",
           "run_chosen", "run_plan"]

TABLE = DATA_DIR / "tuning.json"
RATES = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1)  # the course's one grid of peak rates (lowest first: ties)
SEEDS = (0, 1, 2)  # the seeds every grid point trains on (the lessons' default seeds)
N_VAL = 20  # held-out labels per class that score every grid point (disjoint from training and test)
ROUND = 6  # decimals kept of a validation loss (accuracies are exact fractions of the validation set)


@dataclass(frozen=True)
class Arm:
    """One arm of one lesson's comparison: ``run`` (a lesson driver, ``"module:function"`` under
    :mod:`ftlib.course.lessons`) called with ``fixed``, one grid point of ``grid`` and a seed.

    ``grid`` maps each tuned knob to its values, the most conservative first (a tie goes to it); an empty grid
    means nothing is tuned (a linear probe is fitted exactly). ``note`` says why a knob is fixed on purpose.
    ``rates`` names how a knob reaches the driver: ``"head/10"`` turns ``lr`` into per-block rates with the
    backbone at a tenth of the head's (the ratio fixed on purpose).
    """

    lesson: str
    name: str
    run: str
    fixed: dict
    grid: dict = field(default_factory=lambda: {"lr": RATES})
    note: str = ""
    rates: str = ""

    @property
    def key(self) -> str:
        """``"03 scratch, gratings"``: the lesson and the arm's name, unique in the table."""
        return f"{self.lesson} {self.name}"

    def candidates(self) -> list[dict]:
        """Every grid point, in grid order (the first knob varies slowest)."""
        return [dict(zip(self.grid, point)) for point in itertools.product(*self.grid.values())]

    def options(self, point: dict) -> dict:
        """The driver's keyword arguments for the grid ``point`` (``lr`` made per-block where ``rates`` says)."""
        if self.rates == "head/10" and "lr" in point:
            return {**point, "lr": {"backbone": point["lr"] / 10, "head": point["lr"]}}
        return dict(point)

    def driver(self) -> Callable[..., dict]:
        module, function = self.run.split(":")
        return getattr(importlib.import_module(f"ftlib.course.lessons.{module}"), function)


def _lesson01() -> list[Arm]:
    """Lesson 01's data-efficiency curve: scratch, the linear probe and two ways to fine-tune, at each N."""
    arms = []
    for n in (1, 5, 10, 20):
        fixed = {"target": "mnist", "n": n, "steps": 100}
        arms += [Arm("01", f"scratch, N={n}", "experiments:transfer_run", {"method": "scratch", **fixed}),
                 Arm("01", f"linear probe, N={n}", "experiments:transfer_run", {"method": "linear probe", **fixed},
                     grid={}, note="no rate: the head is fitted exactly; its L2 penalty 1e-3 is fixed on purpose, "
                                   "not tuned"),
                 Arm("01", f"fine-tune, N={n}", "experiments:transfer_run", {"method": "fine-tune", **fixed}),
                 Arm("01", f"fine-tune, low backbone LR, N={n}", "experiments:transfer_run",
                     {"method": "fine-tune, low backbone LR", **fixed}, rates="head/10",
                     note="backbone at a tenth of the head's rate, on purpose")]
    return arms


def _lesson02() -> list[Arm]:
    """Lesson 02: one rate or per-block rates under one-cycle; the schedules at a rate too high on purpose."""
    fixed = {"n": 5, "steps": 80}
    return [Arm("02", "one rate", "learning_rate:rate_run", fixed),
            Arm("02", "per-layer rates", "learning_rate:rate_run", fixed, rates="head/10",
                note="backbone at a tenth of the head's rate, on purpose"),
            *(Arm("02", f"{schedule}, lr 0.03", "learning_rate:rate_run", {**fixed, "schedule": schedule, "lr": 3e-2},
                  grid={}, note="rate fixed on purpose: too high, to see what each part of a schedule does")
              for schedule in ("constant", "warm-up only", "decay only", "one-cycle, beta1 fixed",
                               "onecycle"))]


def _lesson03() -> list[Arm]:
    """Lesson 03: each freeze depth and scratch on a near and a far target; LP-FT and gradual unfreezing (near); the
    head alone on a frozen backbone with BatchNorm statistics frozen, moving (the trap) or re-estimated (AdaBN)."""
    arms = []
    for target in ("font_digits", "gratings"):
        fixed = {"target": target, "n": 10, "steps": 60}
        arms += [Arm("03", f"freeze k={k}, {target}", "freezing:depth_run", {"k": k, **fixed}) for k in range(4)]
        arms += [Arm("03", f"freeze k=4, {target}", "freezing:depth_run", {"k": 4, **fixed}, grid={},
                     note="no rate: the head is fitted exactly (the linear probe)"),
                 Arm("03", f"scratch, {target}", "experiments:transfer_run", {"method": "scratch", **fixed})]
    arms += [Arm("03", f"{plan}, font_digits", "freezing:staged_run",
                 {"recipe_name": plan, "target": "font_digits", "n": 10, "steps": 60})
             for plan in ("LP-FT", "gradual unfreezing")]
    return arms + [Arm("03", f"head only, BN {bn}, {target}", "freezing:frozen_head_run",
                       {"target": target, "n": 10, "steps": 60, "bn": bn})
                   for target in ("font_digits", "textures", "gratings") for bn in ("frozen", "moving", "AdaBN")]


def _lesson04() -> list[Arm]:
    """Lesson 04: scratch and fine-tuning at each augmentation strength (each its own arm); other augmentations;
    scratch at N = 15, where its accuracy without augmentation is near fine-tuning's at N = 5 (the matched control),
    without augmentation and at scratch's strength chosen at N = 5."""
    arms = [Arm("04", f"{method}, strength {s:g}", "augmentation:augmented_run",
                {"method": method, "strength": s, "n": 5, "steps": 100})
            for method in ("scratch", "fine-tune") for s in (0, 0.5, 1, 2)]
    arms += [Arm("04", f"scratch, {kind} 1", "augmentation:augmented_run",
                 {"method": "scratch", "strength": 1, "kind": kind, "n": 5, "steps": 100})
             for kind in ("elastic", "erasing")]
    return arms + [Arm("04", f"scratch, N=15, strength {s:g}", "augmentation:augmented_run",
                       {"method": "scratch", "strength": s, "n": 15, "steps": 100},
                       note="" if s == 0 else "strength fixed on purpose at scratch's choice at N = 5: only N changes")
                   for s in (0, 0.5)]


def _lesson05() -> list[Arm]:
    """Lesson 05: no penalty (its rate tuned); each penalty's strength tuned at that rate, with the letters kept
    traced over the strengths; each penalty at one strong setting fixed on purpose (the mechanisms), and weight
    decay on every parameter, BatchNorm's gamma/beta included (the naive way), beside it; at a rate too
    high on purpose, no penalty and L2-SP (its strength tuned)."""
    fixed = {"n": 5, "steps": 100, "target": "mnist"}
    run = "weight_regularization:regularized_run"
    one_rate = ("rate fixed on purpose at no penalty's chosen rate: the ways of holding the weights are compared "
                "at one rate")
    strengths = {"decay": (0.01, 0.1, 1.0, 3.0, 10.0), "l2": (0.001, 0.01, 0.1, 1.0, 10.0),
                 "l2sp": (0.001, 0.01, 0.1, 1.0, 10.0, 100.0, 1000.0)}  # weakest first: a tie goes to the weakest
    shown = {"decay": 10.0, "l2": 1.0, "l2sp": 1.0}  # strong enough to show what each does to the weights
    names = {"decay": "weight decay", "l2": "L2 in the loss", "l2sp": "L2-SP"}
    arms = [Arm("05", "no penalty", run, {"penalty": "none", "alpha": 0.0, **fixed})]
    arms += [Arm("05", names[p], run, {"penalty": p, "lr": 3e-3, **fixed}, grid={"alpha": strengths[p]},
                 note=one_rate) for p in strengths]
    arms += [Arm("05", f"{names[p]} {shown[p]:g}, shown", run, {"penalty": p, "alpha": shown[p], "lr": 3e-3, **fixed},
                 grid={}, note="strength fixed on purpose: strong enough to show what the penalty does to the "
                 "weights") for p in shown]
    arms += [Arm("05", "weight decay 10 on every parameter, shown", run,
                 {"penalty": "decay_all", "alpha": 10.0, "lr": 3e-3, **fixed}, grid={},
                 note="fixed on purpose: the naive AdamW(model.parameters()), which decays BatchNorm's gamma/beta "
                 "too, beside weight decay 10 on the convolutions only")]
    high = ("rate fixed on purpose: 10x no penalty's chosen rate, too high for no penalty, to see what holding the "
            "weights does there")
    return arms + [Arm("05", "no penalty, lr 0.03", run, {"penalty": "none", "alpha": 0.0, "lr": 3e-2, **fixed},
                       grid={}, note=high),
                   Arm("05", "L2-SP, lr 0.03", run, {"penalty": "l2sp", "lr": 3e-2, **fixed},
                       grid={"alpha": strengths["l2sp"]}, note=high)]


def _lesson06() -> list[Arm]:
    """Lesson 06: each stopping policy a project can run, on long runs over noisy labels, at its rate chosen on the
    noisy validation set carved from the labelled digits (the driver's own: no held-out clean labels); under the
    lesson's constant rate and, as its check, under one-cycle (the batch is 32 in both)."""
    fixed = {"n_labelled": 25, "noise": 0.3, "val_fraction": 0.2, "max_steps": 150, "eval_every": 10}
    notes = {"constant": "batch 32 and a constant rate, fixed on purpose: a stop cuts the budget short",
             "onecycle": "batch 32 fixed on purpose, as under the constant rate: only the schedule changes"}
    stops = {"train to the end": {}, "early stopping, patience 5": {"patience": 5, "min_delta": 0.0}}
    return [Arm("06", name + ("" if schedule == "constant" else ", one-cycle"), "early_stopping:policy_run",
                {"policy": name.split(",")[0], **fixed, **rule, "schedule": schedule}, note=notes[schedule])
            for schedule in ("constant", "onecycle") for name, rule in stops.items()]


def _lesson07() -> list[Arm]:
    """Lesson 07: scratch, the probe and fine-tuning with a low backbone rate on each target of the ladder, and on
    the far one fine-tuning at one rate for every block and the probe after AdaBN; a probe on each block of each
    target; fine-tuning the sound and the flawed checkpoint on upright digits (from a fresh head, as a probe, as
    LP-FT, with augmentation; the flawed one with the other remedies), chosen on held-out fine-tuning data."""
    from ftlib.models import BLOCKS as BLOCK_NAMES

    run, fixed = "transfer_limits:ladder_run", {"n": 5, "steps": 80}
    probe_note = "no rate: the head is fitted exactly; its L2 penalty 1e-3 is fixed on purpose, not tuned"
    arms = []
    for target in ("font_digits", "textures", "gratings"):
        arms += [Arm("07", f"scratch, {target}", run, {"method": "scratch", "target": target, **fixed}),
                 Arm("07", f"linear probe, {target}", run, {"method": "linear probe", "target": target, **fixed},
                     grid={}, note=probe_note),
                 Arm("07", f"fine-tune, low backbone LR, {target}", run,
                     {"method": "fine-tune, low backbone LR", "target": target, **fixed}, rates="head/10",
                     note="backbone at a tenth of the head's rate, on purpose")]
    arms += [Arm("07", "fine-tune, one rate, gratings", run, {"method": "fine-tune", "target": "gratings", **fixed}),
             Arm("07", "linear probe, AdaBN, gratings", run,
                 {"method": "linear probe, AdaBN", "target": "gratings", **fixed}, grid={}, note=probe_note)]
    arms += [Arm("07", f"probe {block}, {target}", "transfer_limits:probe_run",
                 {"target": target, "n": 5, "block": block}, grid={}, note=probe_note)
             for target in ("font_digits", "textures", "gratings") for block in BLOCK_NAMES]
    settings = ("sound", "sound, linear probe", "sound, LP-FT", "sound + augmentation", "flawed",
                "flawed, linear probe", "flawed, LP-FT", "flawed, LP-FT without AdaBN", "flawed + augmentation",
                "flawed + diverse data", "flawed + re-initialise block4")
    return arms + [Arm("07", setting, "transfer_limits:flaw_setting_run", {"setting": setting, **fixed},
                       **({"grid": {}, "note": probe_note} if "probe" in setting else
                          {"rates": "head/10", "note": "backbone at a tenth of the head's rate, on purpose (a "
                                                       "re-initialised block at the head's)"}))
                   for setting in settings]


def _lesson08() -> list[Arm]:
    """Lesson 08: LoRA at ranks 1 and 8 beside its controls on the far gratings (the linear probe, the head trained
    by fit, the blocks that carry the adapters fine-tuned in full, full fine-tuning); on the near digits, LoRA r=1
    beside full fine-tuning and the probe (the comparison of Hu et al.). Every trained method at its own rate."""
    fixed = {"n": 20, "steps": 100, "blocks": ["block3", "block4"], "alpha": 8.0}
    methods = {"gratings": ("linear probe", "head only (fit)", "LoRA r=1", "LoRA r=8", "fine-tune blocks 3-4",
                            "fine-tune"),
               "mnist": ("linear probe", "LoRA r=1", "fine-tune")}
    probe = {"grid": {}, "note": "no rate: the head is fitted exactly (the linear probe)"}
    return [Arm("08", f"{method}, {target}", "adapters:method_run", {"method": method, "target": target, **fixed},
                **(probe if method == "linear probe" else {}))
            for target, names in methods.items() for method in names]


def _arms() -> list[Arm]:
    """Every lesson's arms (one function per lesson)."""
    return [*_lesson03(), *_lesson04(), *_lesson02(), *_lesson01(), *_lesson05(), *_lesson06(),
            *_lesson07(), *_lesson08()]


ARMS: list[Arm] = _arms()
_OWN_VALIDATION = ("augmentation:", "early_stopping:")  # drivers that always hold out their own validation data
# a run's seconds (wall clock or processor) differ from machine to machine: the table must rebuild bit for bit
_NOT_STORED = ("seconds", "cpu_seconds")
_EXACT = ("accuracy", "val_accuracy")  # exact fractions of a test or validation set, kept as they are


@independent
def run_arm(arm: Arm, point: dict, seed: int) -> dict:
    """Train ``arm`` at grid ``point`` on ``seed`` and return what the table stores of the run: every number or word
    of the driver's record but its ``seconds`` (they vary from machine to machine): the validation scores the choice
    reads, and the test ``accuracy`` and other measures the lessons read back, never chosen on. Accuracies are kept
    exact (fractions of a test or validation set), other fractional numbers rounded to :data:`ROUND` decimals."""
    extra = {} if arm.run.startswith(_OWN_VALIDATION) else {"n_val": N_VAL}
    record = arm.driver()(**arm.fixed, **arm.options(point), seed=seed, **extra)
    return {key: _stored(key, value) for key, value in record.items()
            if key not in _NOT_STORED and isinstance(value, (numbers.Real, str))}


def _stored(key: str, value):
    """``value`` as the table keeps it: exact accuracies, integers and words; other numbers rounded."""
    if isinstance(value, str) or isinstance(value, numbers.Integral):
        return value if isinstance(value, (str, bool)) else int(value)
    return float(value) if key in _EXACT else round(float(value), ROUND)


def tune(arm: Arm, seeds: Iterable[int] | None = None, progress: Callable[[str], None] | None = None) -> dict:
    """The table's entry for ``arm``: every grid point's validation scores on every seed, and the point chosen by
    the course's one rule (:func:`~ftlib.course.lessons.records.choose`)."""
    from ftlib.course.lessons.workers import run_calls

    candidates = arm.candidates()
    runs = [(position, point, seed) for position, point in enumerate(candidates)
            for seed in (SEEDS if seeds is None else seeds)]
    scores = run_calls([(run_arm, {"arm": arm, "point": point, "seed": seed}) for _, point, seed in runs])
    records = Results({"candidate": position, **point, "seed": seed, **score}
                      for (position, point, seed), score in zip(runs, scores))
    for position, point in enumerate(candidates):
        if progress:
            progress(f"{arm.key}: {point or 'no knob'}: validation "
                     f"{records.mean('val_accuracy', candidate=position):.1%}")
    chosen = candidates[choose(records, "candidate")]
    return {"lesson": arm.lesson, "arm": arm.name, "run": arm.run, "fixed": arm.fixed,
            "grid": {k: list(v) for k, v in arm.grid.items()}, "rates": arm.rates, "note": arm.note,
            "chosen": chosen,
            "records": [{k: v for k, v in r.items() if k != "candidate"} for r in records]}


def settings() -> dict:
    """What made the table: the seeds, the validation size, the rate grid, the thread count and the torch build."""
    import torch

    return {"seeds": list(SEEDS), "n_val": N_VAL, "rates": list(RATES), "threads": 2, "torch": torch.__version__,
            "rule": "records.choose: best mean val_accuracy (9 dp), then lower mean val_loss, then grid order",
            "stored": "each run's validation scores (chosen on), its test accuracy and the driver's other measures "
                      f"(read back by the lessons, never chosen on; {ROUND} decimals but accuracies), not its seconds"}


def build(path: Path, lessons: Iterable[str] | None = None, base: Path | None = None,
          progress: Callable[[str], None] | None = None) -> dict:
    """Tune every arm (or those of ``lessons``, keeping the other entries of ``base``) and write the table to
    ``path`` as JSON, all at once (a temporary file, then renamed: an interrupted build leaves ``path`` as it was);
    return it. Each entry is a pure function of its arm, so a partial rebuild merged into the shipped table gives the
    same bytes as a full one. With ``progress``, the arms done so far are also kept in a file in the system's
    temporary folder (its path is reported first), never beside ``path``."""
    from ftlib.runtime import seed_everything

    lessons = None if lessons is None else set(lessons)
    unknown = sorted((lessons or set()) - {a.lesson for a in ARMS})
    if unknown:
        raise ValueError(f"lessons {unknown} have no arms in the tuning table: choose from "
                         f"{sorted({a.lesson for a in ARMS})}")
    kept = {e["lesson"] + " " + e["arm"]: e for e in _contents(Path(base))["arms"]} if base else {}
    missing = [a.key for a in ARMS if not (lessons is None or a.lesson in lessons) and a.key not in kept]
    if missing:
        raise ValueError(f"{missing[0]} is not in {base}: rebuild lesson {missing[0][:2]} too")
    so_far = Path(tempfile.gettempdir()) / f"ftlib-tune-{os.getpid()}-{Path(path).name}"
    if progress:
        progress(f"the arms done so far are kept in {so_far} while the build runs")
    entries = []
    target = Path(path)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        for arm in ARMS:
            if lessons is None or arm.lesson in lessons:
                seed_everything(0)  # pins the thread count the stored numbers were made with
                entries.append(tune(arm, progress=progress))
                if progress:
                    so_far.write_text(json.dumps({"settings": settings(), "arms": entries}, indent=1))
            else:
                entries.append(kept[arm.key])
        table = {"settings": settings(), "arms": entries}
        temporary.write_text(json.dumps(table, indent=1) + "\n")
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
        so_far.unlink(missing_ok=True)
    return table


def run_chosen(key: str, seeds: Iterable[int], table: Table | None = None, live: bool = False, **changes) -> Results:
    """Arm ``key`` of the table at its chosen setting on ``seeds``, scored on test and on validation: the records of
    a lesson's comparison (see :func:`run_plan`; ``live`` runs even the table's seeds again).

    ``changes`` replace fixed settings (a learner's ``steps=200``; ``n=40`` with the arm of the nearest tuned N):
    the setting then stays the one chosen for the table's settings, and each record's ``label`` says so. Each
    record also holds the arm's fixed settings and ``label``: the arm's name (plus what changed).
    """
    return run_plan([(key, changes)], seeds, table, live=[key] if live else ())


def run_arms(keys: Iterable[str], seeds: Iterable[int], table: Table | None = None,
             live: bool | Iterable[str] = (), live_seeds: Iterable[int] = (), **changes) -> Results:
    """:func:`run_chosen` for each arm of ``keys`` on ``seeds``, in one :class:`Results`: test and validation
    scores, each record labelled with its arm (``changes`` as there, e.g. ``steps=200``; ``live``: the arms to run
    again even on the table's seeds, ``True`` for all, e.g. those a lesson re-checks; ``live_seeds``: the seeds
    every arm runs again, e.g. the one whose curves a lesson plots)."""
    keys = list(keys)
    return run_plan([(key, changes) for key in keys], seeds, table, live=keys if live is True else live or (),
                    live_seeds=live_seeds)


def run_plan(plan: Iterable[tuple[str, dict]], seeds: Iterable[int], table: Table | None = None,
             live: Iterable[str] = (), live_seeds: Iterable[int] = ()) -> Results:
    """Each ``(key, changes)`` of ``plan`` at its chosen setting on every seed of ``seeds`` (as :func:`run_chosen`);
    the records in the order of ``plan``, then ``seeds``.

    A run the table already made (its chosen point, on one of its seeds, with no setting changed) is read back from
    it, ``from_table`` set, without its ``seconds`` (or ``history``); an arm of ``live``, a seed of ``live_seeds``
    and every other run train now, all sharing the cores at once (:func:`~ftlib.course.lessons.workers.run_calls`)."""
    from ftlib.course.lessons.records import check_record
    from ftlib.course.lessons.workers import run_calls

    table = table or load()
    seeds, live, live_seeds = list(seeds), set(live), set(live_seeds)
    slots, runs = [], []
    for key, changes in plan:
        arm = table.arm(key)
        unknown = sorted(set(changes) - set(arm.fixed))
        if unknown:
            raise ValueError(f"{key} has no fixed setting {unknown[0]!r} to change: it fixes {', '.join(arm.fixed)}")
        changed = {k: v for k, v in changes.items() if v != arm.fixed[k]}
        label = arm.name + "".join(f" ({k} {v}, tuned at {arm.fixed[k]})" for k, v in changed.items())
        extra = {} if arm.run.startswith(_OWN_VALIDATION) else {"n_val": N_VAL}
        stored = {} if changed or key in live else table.stored(key)
        for seed in seeds:
            coordinates = {**arm.fixed, **changes, **table.options(key), "seed": seed, **extra}
            if seed in stored and seed not in live_seeds:
                slots.append({**stored[seed], **coordinates, "label": label, "from_table": True})
            else:
                slots.append(len(runs))
                runs.append((arm.driver(), coordinates, label))
    records = run_calls([(driver, coordinates) for driver, coordinates, _ in runs])
    done = [{**coordinates, **check_record(record, coordinates=coordinates), "label": label}
            for (_, coordinates, label), record in zip(runs, records)]
    return Results(done[slot] if isinstance(slot, int) else slot for slot in slots)


class Table:
    """The shipped tuning table, read: each arm's chosen setting, its grid and its validation scores."""

    def __init__(self, contents: dict, source: str = "") -> None:
        self.settings = contents["settings"]
        self.entries = {e["lesson"] + " " + e["arm"]: e for e in contents["arms"]}
        self.source = source

    def entry(self, key: str) -> dict:
        if key not in self.entries:
            raise ValueError(f"arm {key!r} is not in the tuning table {self.source}: known arms of lesson "
                             f"{key[:2]}: {', '.join(k for k in self.entries if k[:2] == key[:2]) or 'none'}")
        return self.entries[key]

    def nearest(self, template: str, **value) -> str:
        """The key made by ``template`` (``"01 scratch, N={n}"``) for the tuned value nearest ``value`` (on a log
        scale): the exact key where the table has it, e.g. the arm tuned at N = 20 for N = 40."""
        (name, wanted), = value.items()
        keys = {k: e["fixed"][name] for k, e in self.entries.items()
                if name in e["fixed"] and k == template.format(**{name: e["fixed"][name]})}
        if not keys:
            raise ValueError(f"no arm of the tuning table matches {template!r}")
        return min(keys, key=lambda k: (abs(math.log(keys[k]) - math.log(wanted)), keys[k]))

    def arm(self, key: str) -> Arm:
        """The :class:`Arm` of ``key`` as the table stored it."""
        e = self.entry(key)
        return Arm(e["lesson"], e["arm"], e["run"], e["fixed"], {k: tuple(v) for k, v in e["grid"].items()},
                   e["note"], e["rates"])

    def chosen(self, key: str) -> dict:
        """The grid point chosen for ``key`` on validation, e.g. ``{"lr": 0.003}``."""
        return dict(self.entry(key)["chosen"])

    def options(self, key: str) -> dict:
        """The driver's keyword arguments that set ``key`` at its chosen point (per-block rates where the arm says)."""
        return self.arm(key).options(self.chosen(key))

    def records(self, key: str, **point) -> Results:
        """The stored validation records of ``key`` (at ``point``, default: the chosen one)."""
        point = point or self.chosen(key)
        return Results(r for r in self.entry(key)["records"] if all(r[k] == v for k, v in point.items()))

    def stored(self, key: str) -> dict[int, dict]:
        """The runs of ``key`` at its chosen point that the lessons read back, by seed: every stored measure (test
        ``accuracy`` included) but the grid point; ``{}`` for a table made before test scores were stored."""
        point = self.chosen(key)
        return {r["seed"]: {k: v for k, v in r.items() if k not in point and k != "seed"}
                for r in self.records(key) if "accuracy" in r}

    def val_accuracy(self, key: str) -> float:
        """The mean validation accuracy over :data:`SEEDS` of ``key`` at its chosen point."""
        return self.records(key).mean("val_accuracy")

    def show(self, keys: Iterable[str], names: dict[str, str] | None = None) -> str:
        """How each arm was set: its chosen setting, its validation accuracy (mean ± std over the table's seeds) and
        the grid it was chosen from, or why nothing was tuned; ``names`` relabels arms."""
        rows = []
        for key in keys:
            e = self.entry(key)
            setting = ", ".join(f"{k} {_number(v)}" for k, v in e["chosen"].items()) or "-"
            if e["rates"] == "head/10" and "lr" in e["chosen"]:
                setting = f"head {_number(e['chosen']['lr'])}, backbone {_number(e['chosen']['lr'] / 10)}"
            grid = "; ".join(f"{k} " + " ".join(_number(v) for v in values) for k, values in e["grid"].items())
            runs = self.records(key)
            rows.append([(names or {}).get(key, e["arm"]), setting,
                         spread(runs.mean("val_accuracy"), runs.std("val_accuracy")), "   " + (grid or e["note"])])
            if e["grid"] and e["note"]:
                rows.append(["", "", "", f"   ({e['note']})"])
        seeds = len(self.settings["seeds"])
        return layout(["arm", "setting", f"validation % ({seeds} seeds)", "   chosen from"], rows,
                      lead=max(len(r[0]) for r in rows) + 2,
                      width=[max(9, *(len(r[1]) for r in rows)), 24, 0], align=["<", ">", "<"])

    def results(self, key: str) -> Results:
        """Every stored validation record of ``key``: each grid point on each of the table's seeds."""
        return Results(self.entry(key)["records"])

    def recheck(self, key: str, results: Results, tolerance: float = 0.03, **point) -> str:
        """Compare the lesson's own live runs of ``key`` (records with ``seed``, ``accuracy`` and ``val_accuracy``,
        e.g. :func:`run_chosen` with ``live=True``) at grid ``point`` (default: the chosen one) with the table's,
        seed by seed; raise where a seed's test or validation accuracy differs by more than ``tolerance`` (a stale
        table, or training that changed). Returns one line to print."""
        if any(r.get("from_table") for r in results):
            raise ValueError(f"re-check {key} with runs made now (run_chosen(..., live=True)), not with runs read back "
                             "from the table")
        stored = {r["seed"]: r for r in self.records(key, **point)}
        if any("tuned at" in r.get("label", "") for r in results):
            return f"{key}: run at other settings than the table's (see the labels): nothing to re-check"
        shared = [r for r in results if r["seed"] in stored]
        if not shared:
            return f"{key}: no run on the table's seeds {sorted(stored)} to re-check"
        scores = [name for name in ("val_accuracy", "accuracy") if all(name in stored[r["seed"]] for r in shared)]
        gaps = {name: max(abs(r[name] - stored[r["seed"]][name]) for r in shared) for name in scores}  # a check
        for name, worst in gaps.items():
            if worst > tolerance:
                raise AssertionError(f"the tuning table is stale for {key}: {name} differs by {100 * worst:.1f} "
                                     f"points from the stored runs; rebuild it with "
                                     f"`python -m ftlib tune --lessons {key[:2]}`")
        what = " and ".join({"val_accuracy": "validation", "accuracy": "test"}[name] for name in scores)
        return (f"re-ran {key} on {len(shared)} seed(s): its {what} accuracy matches the table's (within "
                f"{100 * tolerance:g} points in every seed)")


def _number(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _contents(path: Path) -> dict:
    """The JSON of a tuning table, checked for its two parts; a one-line ``ValueError`` naming the file otherwise."""
    if not path.is_file():
        raise ValueError(f"tuning table {path} does not exist: rebuild it with `python -m ftlib tune`")
    try:
        contents = json.loads(path.read_text())
        if not isinstance(contents.get("settings"), dict) or not isinstance(contents.get("arms"), list):
            raise ValueError("it needs 'settings' and 'arms'")
    except (ValueError, AttributeError, UnicodeDecodeError) as error:
        raise ValueError(f"tuning table {path} is not a tuning table ({str(error)[:80]}): rebuild it with "
                         "`python -m ftlib tune`") from None
    return contents


@functools.lru_cache(maxsize=2)
def _read(path: str) -> Table:
    return Table(_contents(Path(path)), source=path)


def load(path: Path | str = TABLE) -> Table:
    """The tuning table at ``path`` (default: the shipped one)."""
    return _read(str(path))

