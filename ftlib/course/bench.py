"""Benchmarks: each lesson's headless time, ``fit`` against a plain PyTorch loop, data throughput, import time.

Run with ``python -m ftlib bench``; kept out of the test suite because its numbers are timings.
"""

from __future__ import annotations

import copy
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ftlib import augment, data
from ftlib.course.lessons.experiments import get_method, make_model
from ftlib.course.runner import lessons, run_notebook
from ftlib.runtime import seed_everything
from ftlib.train import fit

__all__ = ["FIT_SETTINGS", "GENERATED", "IMPORTS", "data_throughput", "fit_overhead", "format_report",
           "import_seconds", "lesson_seconds", "plain_loop", "run_benchmark"]

FIT_SETTINGS = {"target": "mnist", "n": 20, "steps": 100, "lr": 1e-3, "batch_size": 64}
GENERATED = ("letters", "font_digits", "greek", "shapes", "textures")
IMPORTS = {"import ftlib": "import ftlib",
           "a lesson's imports": "import ftlib.course.lessons.experiments, ftlib.course.lessons.plots, "
                                 "ftlib.course.widgets, ftlib.course.runner"}


def plain_loop(model: nn.Module, train: data.ImageSet, steps: int, lr: float, batch_size: int, seed: int) -> None:
    """The minimal hand-written loop that ``fit`` is measured against: same batches, AdamW and one-cycle schedule."""
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps, pct_start=0.25)
    generator = torch.Generator().manual_seed(seed)
    model.train()
    step = 0
    while step < steps:
        order = torch.randperm(len(train), generator=generator)
        for start in range(0, len(order) - batch_size + 1, batch_size):
            index = order[start:start + batch_size]
            loss = F.cross_entropy(model(train.images[index]), train.labels[index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            step += 1
            if step == steps:
                return


def fit_overhead(repeats: int = 5, seed: int = 0, steps: int = FIT_SETTINGS["steps"]) -> dict:
    """Time ``fit`` and :func:`plain_loop` alternately on the same model, data and steps (CPU, 2 threads).

    Returns the median seconds of each, their ratio (fit / plain), images per second for each, and whether the
    two loops ended with identical weights (they should: same batches, same optimizer, same schedule).
    """
    if repeats < 1:
        raise ValueError(f"repeats={repeats!r} is not allowed: need at least 1 timed round")
    s = {**FIT_SETTINGS, "steps": steps}
    seed_everything(seed)
    train = data.few_shot(s["target"], s["n"], seed)
    start_model = make_model(get_method("fine-tune"), train.num_classes, seed)
    loops = {
        "fit": lambda m: fit(m, train, s["steps"], lr=s["lr"], batch_size=s["batch_size"], seed=seed, device="cpu"),
        "plain": lambda m: plain_loop(m, train, s["steps"], s["lr"], s["batch_size"], seed),
    }
    seconds: dict[str, list[float]] = {name: [] for name in loops}
    final: dict[str, nn.Module] = {}
    for r in range(repeats + 1):  # the first round warms up caches and is not counted
        for name in (list(loops) if r % 2 else list(loops)[::-1]):
            model = copy.deepcopy(start_model)
            begin = time.perf_counter()
            loops[name](model)
            if r:
                seconds[name].append(time.perf_counter() - begin)
            final[name] = model
    medians = {name: statistics.median(times) for name, times in seconds.items()}
    images = s["steps"] * min(s["batch_size"], len(train))
    same = all(torch.equal(a, b) for a, b in zip(final["fit"].state_dict().values(),
                                                    final["plain"].state_dict().values()))
    return {"settings": s, "repeats": repeats, "median_seconds": medians, "ratio": medians["fit"] / medians["plain"],
            "images_per_second": {name: images / t for name, t in medians.items()}, "identical_weights": same}


def _rate(make, count: int, repeats: int = 3) -> float:
    make()  # warm up: fonts rendered, caches filled
    best = min(_timed(make) for _ in range(repeats))
    return count / best


def _timed(work) -> float:
    begin = time.perf_counter()
    work()
    return time.perf_counter() - begin


def data_throughput(count: int = 2000, seed: int = 0) -> dict[str, float]:
    """Images per second (best of 3) to generate each rendered target, stream letters, and augment a batch."""
    seed_everything(seed)
    rates = {}
    for target in GENERATED:
        labels = torch.arange(count) % len(data.test_set(target).classes)
        rates[f"generate {target}"] = _rate(lambda t=target, y=labels: data.generate(t, y, seed), count)
    stream = data.letter_batches(128, seed)
    rates["letter_batches (128)"] = _rate(lambda: [next(stream) for _ in range(count // 128)], count // 128 * 128)
    images = data.few_shot("mnist", 100, seed).images
    for name, aug in {"augment.standard": augment.standard(), "augment.pipeline (per image)":
                      augment.per_image(augment.pipeline())}.items():
        rates[name] = augment.images_per_second(aug, images, repeats=3, seed=seed)
    return rates


def import_seconds(repeats: int = 3) -> dict[str, float]:
    """Median wall time of each import statement in :data:`IMPORTS`, each in a fresh Python process."""
    result = {}
    for name, statement in IMPORTS.items():
        code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
        times = [float(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                      check=True).stdout) for _ in range(repeats)]
        result[name] = statistics.median(times)
    return result


def lesson_seconds(notebooks: list[Path] | None = None) -> dict[str, dict]:
    """Each lesson's headless wall time with its defaults, through the course runner's papermill path."""
    result = {}
    with tempfile.TemporaryDirectory() as out:
        for nb in notebooks or lessons():
            run = run_notebook(nb, out)
            result[run.notebook] = {"status": run.status, "seconds": run.seconds}
            print(f"  {run.notebook}: {run.status} in {run.seconds:.1f} s", flush=True)
    return result


def run_benchmark(with_lessons: bool = True, repeats: int = 5) -> dict:
    """Every benchmark above; lessons last (they take most of the time)."""
    report = {"machine": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                          "python": sys.version.split()[0]}}
    print("fit vs a plain loop ...", flush=True)
    report["fit_vs_plain"] = fit_overhead(repeats)
    print("data and augmentation throughput ...", flush=True)
    report["images_per_second"] = data_throughput()
    print("import times ...", flush=True)
    report["import_seconds"] = import_seconds()
    if with_lessons:
        print("lessons ...", flush=True)
        report["lessons"] = lesson_seconds()
    report["machine"]["threads"] = torch.get_num_threads()
    return report


def format_report(report: dict) -> str:
    """The benchmark as plain-text tables."""
    fvp = report["fit_vs_plain"]
    lines = ["fit vs a plain PyTorch loop ({steps} steps, batch {batch_size}, {target} N={n}, median of {r})".format(
                 r=fvp["repeats"], **fvp["settings"]),
             f"  fit    {fvp['median_seconds']['fit']:.3f} s  {fvp['images_per_second']['fit']:,.0f} images/s",
             f"  plain  {fvp['median_seconds']['plain']:.3f} s  {fvp['images_per_second']['plain']:,.0f} images/s",
             f"  ratio  {fvp['ratio']:.3f} (goal <= 1.05); identical weights: {fvp['identical_weights']}",
             "images per second"]
    lines += [f"  {name:<30} {rate:>10,.0f}" for name, rate in report["images_per_second"].items()]
    lines.append("import time (fresh process, median)")
    lines += [f"  {name:<30} {seconds:>8.2f} s" for name, seconds in report["import_seconds"].items()]
    if "lessons" in report:
        lines.append("lessons, headless with defaults (papermill)")
        lines += [f"  {name:<38} {r['status']:<6} {r['seconds']:6.1f} s" for name, r in report["lessons"].items()]
    return "\n".join(lines)
