"""Lesson 10's retrieval sweep: every way to read 256 characters, and the 64-character model fine-tuned alike, each
at its rate chosen on validation, fine-tuned on long records for each budget of steps, in six seeds.

For each budget, each arm trains at every rate of :data:`SETTINGS`' grid on the choosing seeds (0, 1, 2); its rate
is chosen by the course's one rule (:func:`~ftlib.course.lessons.records.choose`: the best mean validation accuracy,
records of *validation* keys, over all distances), and the remaining seeds train at that rate only. The test scores
(records of other keys) are never chosen on. It takes far longer than a lesson may (on 2 cores: 67 minutes for the
40- and 160-step budgets, one run at a time on two threads; 65 minutes for the 640-step budget, two runs at a time on
one thread each), so it ships in ``data/retrieval_sweep.json`` and ``python -m ftlib retrieval-sweep`` rebuilds it
bit for bit (same thread counts, per budget, and torch build; ``--check`` compares the bytes). Each record is a pure
function of its arm, rate, seed and steps, so the lesson re-runs two of its 40-step seed-0 runs live and compares
them with their stored twins.

Each long reader is also read at 512 characters on records whose line lies past 256 (Giraffe's evaluation-time
scale: :meth:`~ftlib.course.lessons.long_retrieval.LongRetrieval.reread`).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import torch

from ftlib.course import pretrain_retrieval
from ftlib.course.lessons.long_retrieval import LongRetrieval, table
from ftlib.course.lessons.records import Results, at_chosen, choose, spread
from ftlib.course.lessons.tuning import RATES
from ftlib.course.lessons.workers import independent, run_calls
from ftlib.course.versions import warn_if_different
from ftlib.lm import corpus
from ftlib.paths import DATA_DIR
from ftlib.runtime import pin_threads, seed_everything
from ftlib.stats import verdict

__all__ = ["ARMS", "CHOOSING_SEEDS", "SETTINGS", "SWEEP", "budget_records", "budget_table", "build", "chosen",
           "gap_table", "gaps", "largest_difference", "load", "rate_margins", "report", "run", "study", "sweep_file",
           "untrained"]

SWEEP = DATA_DIR / "retrieval_sweep.json"
ARMS = ("window", "naive", "pi", "base", "parts", "truncated")  # "window": tuned at 64, read through a window
CHOOSING_SEEDS = (0, 1, 2)
SETTINGS = {
    "budgets": [40, 160, 640],  # fine-tuning steps: separate runs (each its own warm-up and decay), each its rates
    "seeds": 6,
    "length": 256,
    "rows": {"records": 2, "prose": 1},  # rows of 256 characters per step (4 times as many of 64 for "window")
    "per_band": 100,  # test records per band of distances
    "val_per_band": 150,  # validation records per band (what each rate is chosen on)
    "prose_eval_chars": 8192,
    "rates": list(RATES[:5]),  # the course's grid, its five lowest rates: 1e-4 to 1e-2 (1e-2 diverged for every arm)
    # torch threads per run, per budget: bit-identical rebuilds need the same count. The 640-step runs take one
    # thread each, two at a time (TinyLM's matrices are too small for a second thread to pay); the shorter budgets
    # keep the two threads they were first built with, one run at a time.
    "threads": {"40": 2, "160": 2, "640": 1},
}


def study(settings: dict = SETTINGS, rates: dict[str, float] | None = None) -> LongRetrieval:
    """The runs' driver: the shipped retrieval base, the training prose, the validation prose to score on (and,
    where given, each arm's chosen rate)."""
    train_text, val_text = corpus.split_text()
    return LongRetrieval(pretrain_retrieval.load_pretrained(), train_text, val_text[:settings["prose_eval_chars"] + 1],
                         length=settings["length"], steps=settings["budgets"][0], rows=dict(settings["rows"]),
                         per_band=settings["per_band"], val_per_band=settings["val_per_band"],
                         rates=dict(rates or {}))


@functools.lru_cache(maxsize=2)
def _cached_study(settings: str) -> LongRetrieval:
    return study(json.loads(settings))


def _rounded(record: dict) -> dict:
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in record.items()}


@independent
def run(arm: str, seed: int, lr: float | None = None, settings: dict = SETTINGS, rates: dict | None = None,
        val: bool = True, near_window: bool = False, steps: int | None = None) -> dict:
    """One run of the sweep (a pure function of its arm, seed, rate, steps and settings), its scores rounded to 4
    decimals as stored: the arm's reader fine-tuned on long records for ``steps`` (default: the first budget) at
    ``lr`` (default: ``rates[str(steps)][arm]``, the rate chosen for that budget; :meth:`LongRetrieval.run`;
    ``near_window`` adds its control, which the stored runs do not hold). It pins the budget's thread count
    (``settings["threads"]``); a worker builds the study once and keeps it."""
    steps = settings["budgets"][0] if steps is None else steps
    lr = rates[str(steps)][arm] if lr is None else lr
    pin_threads(settings["threads"][str(steps)])
    return _rounded(_cached_study(json.dumps(settings, sort_keys=True)).run(arm, seed, lr, steps, val=val,
                                                                             near_window=near_window))


@independent
def untrained(arm: str, settings: dict = SETTINGS, per_band: int | None = None) -> dict:
    """The arm's reader before any fine-tune, scored on the test records (the first ``per_band`` of each band, or
    all) and the prose, rounded as the sweep rounds."""
    task = _cached_study(json.dumps(settings, sort_keys=True))
    return _rounded(task.scores(task.reader(arm), arm, val=False, per_band=per_band))


def budget_records(steps: int, settings: dict = SETTINGS, progress: bool = True) -> tuple[dict[str, float], list[dict]]:
    """One budget of the sweep: each arm at every rate on the choosing seeds, its rate chosen
    (:func:`~ftlib.course.lessons.records.choose`), the other seeds at that rate. Returns the chosen rate per arm and
    the records, arm by arm (the choosing runs, then the others). Runs on one thread go two at a time
    (:func:`~ftlib.course.lessons.workers.run_calls`), the others one after the other here."""
    def runs(calls: list[tuple]) -> list[dict]:
        # two 2-thread runs at once would share 2 cores: those run here, one after the other
        found = run_calls(calls) if settings["threads"][str(steps)] == 1 else [fn(**options) for fn, options in calls]
        for record in found if progress else ():
            print(f"{steps} steps, {record['arm']} lr {record['lr']:g} seed {record['seed']}: val "
                  f"{record['val_accuracy']:.3f}, far (test) {record['far']:.3f}, prose {record['past']:.4f} bpc",
                  flush=True)
        return found

    def call(arm: str, seed: int, lr: float) -> tuple:
        return run, {"arm": arm, "seed": seed, "lr": lr, "settings": settings, "steps": steps}

    first = Results(runs([call(arm, seed, lr) for arm in ARMS for lr in settings["rates"] for seed in CHOOSING_SEEDS]))
    rates = {arm: choose(first, "lr", arm=arm, steps=steps) for arm in ARMS}
    rest = Results(runs([call(arm, seed, rates[arm]) for arm in ARMS
                         for seed in range(len(CHOOSING_SEEDS), settings["seeds"])]))
    return rates, [record for arm in ARMS for record in (*first.where(arm=arm), *rest.where(arm=arm))]


def sweep_file(settings: dict, chosen: dict[str, dict[str, float]], records: list[dict]) -> dict:
    """What the sweep's file holds: its settings, torch's version, the rule, each budget's chosen rates and every
    record."""
    return {"settings": settings, "torch": torch.__version__.split("+")[0],
            "rule": "records.choose: best mean val_accuracy over seeds 0-2 (validation keys, every distance), "
                    "then the lower rate; for each budget of steps apart", "chosen": chosen, "records": records}


def build(path: str | Path = SWEEP, progress: bool = True) -> dict:
    """Run the sweep with :data:`SETTINGS`, budget by budget, and write it to ``path`` as JSON; returns what was
    written."""
    warn_if_different("the shipped sweep")
    seed_everything(0, SETTINGS["threads"][str(SETTINGS["budgets"][0])])
    chosen, records = {}, []
    for steps in SETTINGS["budgets"]:
        chosen[str(steps)], found = budget_records(steps, SETTINGS, progress)
        records += found
    sweep = sweep_file(SETTINGS, chosen, records)
    Path(path).write_text(json.dumps(sweep, indent=1) + "\n")
    return sweep


def load(path: str | Path = SWEEP) -> tuple[dict, dict[str, dict[str, float]], Results]:
    """The shipped sweep: its settings, each budget's chosen rate per arm (``chosen["40"]["pi"]``), and its records
    (filter with ``arm=``, ``lr=``, ``seed=``, ``steps=``)."""
    sweep = json.loads(Path(path).read_text())
    return sweep["settings"], sweep["chosen"], Results(sweep["records"])


def chosen(records: Results, rates: dict[str, dict[str, float]]) -> Results:
    """The records at each arm's rate chosen for their budget (every seed, every budget)."""
    return at_chosen(records, rates, ("steps", "arm"))


def largest_difference(stored: Results, live: Results | list[dict], metrics: tuple[str, ...]) -> tuple[int, float]:
    """How many ``live`` records (arm, seed, lr, steps) have a stored twin, and the largest absolute difference
    between twins over ``metrics`` (0 if none; :meth:`Results.twin_difference`)."""
    return stored.twin_difference(live, metrics, {key: key for key in ("arm", "seed", "lr", "steps")})


def gaps(records: Results, metric: str, over: str = "window") -> dict[str, list[float]]:
    """Per arm, the per-seed ``metric`` minus the ``over`` arm's in the same seed (records at the chosen rates)."""
    return {arm: records.differences("arm", arm, over, metric=metric) for arm in records.unique("arm") if arm != over}


def gap_table(records: Results, names: dict[str, str], over: str = "window") -> str:
    """A line per arm, minus the ``over`` arm seed by seed (mean ± 95% interval over the seeds, and the verdict):
    retrieval at every distance, retrieval inside the trained context (points), and the prose loss past it (bpc)."""
    overall, near, past = (gaps(records, metric, over) for metric in ("overall", "test_0-64", "past"))
    lines = []
    for arm in overall:
        cells = []
        for label, values, scale, unit in (("all distances", overall[arm], 100, " points"),
                                           ("inside 64", near[arm], 100, " points"),
                                           ("prose", past[arm], 1, " bpc")):
            mean, half, word = verdict(values, "higher", "lower", "not resolved")
            digits = 1 if scale == 100 else 2
            cells.append(f"{label} {scale * mean:+.{digits}f} ± {scale * half:.{digits}f}{unit} ({word})")
        lines.append(f"{names.get(arm, arm):<26} " + "; ".join(cells))
    return "\n".join(lines)


def budget_table(records: Results, names: dict[str, str], metric: str = "far") -> str:
    """A line per arm: ``metric`` (a share, printed in %) at each budget of the records (each at its own chosen
    rate: :func:`chosen`), mean ± std over the seeds, then each budget minus the one before it, seed by seed (mean ±
    95% interval in points, and its verdict)."""
    budgets = sorted(records.unique("steps"))
    steps_pairs = list(zip(budgets, budgets[1:]))
    header = "".join(f"{f'{steps} steps':>14}" for steps in budgets) + "".join(
        f"{f'{later} minus {earlier}':>26}" for earlier, later in steps_pairs)
    lines = [f"{'':<26} {header}"]
    for arm in records.unique("arm"):
        cells = [spread(records.where(arm=arm, steps=steps).mean(metric),
                        records.where(arm=arm, steps=steps).std(metric), digits=0) for steps in budgets]
        for earlier, later in steps_pairs:
            mean, half, word = verdict(records.differences("steps", later, earlier, metric=metric, arm=arm),
                                       "higher", "lower", "not resolved")
            cells.append(f"{spread(mean, half, digits=0, sign='+')} ({word})")
        lines.append(f"{names.get(arm, arm):<26} " + "".join(f"{cell:>14}" for cell in cells[:len(budgets)])
                     + "".join(f"{cell:>26}" for cell in cells[len(budgets):]))
    return "\n".join(lines)


def report(sweep: Results, rates: dict[str, dict[str, float]], steps: int, names: dict[str, str]) -> str:
    """One budget of the stored sweep: the rates chosen on validation (:func:`rate_margins`), the table by distance
    at those rates (:func:`~ftlib.course.lessons.long_retrieval.table`) and each long reader minus the window arm
    fine-tuned alike (:func:`gap_table`)."""
    runs = chosen(sweep, rates).where(steps=steps)
    seeds = len(runs.unique("seed"))
    return "\n".join([
        f"rates chosen on validation keys for {steps} steps (mean validation accuracy, seeds 0-2; the runner-up in "
        "brackets):", rate_margins(sweep.where(steps=steps), rates[str(steps)], names),
        f"\nthe stored sweep after {steps} steps, mean ± std over {seeds} seeds", table(runs, names),
        f"\nafter {steps} steps, minus the window arm ({names.get('window', 'window')}; seed by seed, 95% "
        "intervals):", gap_table(runs, names)])


def rate_margins(records: Results, rates: dict[str, float], names: dict[str, str]) -> str:
    """A line per arm: its chosen rate and mean validation accuracy on the choosing seeds, and the runner-up's (the
    rate the same rule chooses once the chosen one is set aside): how close the choice was."""
    lines = []
    for arm, chosen_rate in rates.items():
        runs = Results(r for r in records.where(arm=arm) if r["seed"] in CHOOSING_SEEDS)
        others = Results(r for r in runs if r["lr"] != chosen_rate)
        runner_up = choose(others, "lr")
        best, second = (runs.where(lr=lr).mean("val_accuracy") for lr in (chosen_rate, runner_up))
        lines.append(f"  {names.get(arm, arm):<26} {chosen_rate:g}: {100 * best:.1f}%  "
                     f"({runner_up:g}: {100 * second:.1f}%)")
    return "\n".join(lines)
