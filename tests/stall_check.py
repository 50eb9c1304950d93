"""Stall check (run by hand, not collected by pytest): does any lesson's widget cell stall a run with no front end?

For each lesson: start one kernel without the headless flag (as a plain ``papermill`` starts it, so the cells make
live widgets), run the lesson once through nbclient, then run its widget cells (``slider(``, ``interact(``,
``picker(``, ``text_box(``) again ``--repeats`` times, timing each execute reply. A reply slower than ``--limit``
seconds counts as a stall (nbclient issue 312: the kernel is idle but the reply never arrives; it came from widgets
whose output the client had to route and answer for). ``--headless`` sets ``$FTLIB_HEADLESS=1`` for the kernel, as
``python -m ftlib run`` and pytest do, to compare. Exit status 1 if anything stalled or failed.

    python tests/stall_check.py                       # every lesson, 30 repeats (CPU-heavy: the lessons run)
    python tests/stall_check.py notebooks/06_*.ipynb --repeats 30 --seeds 2
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellTimeoutError

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from ftlib.course import runner as course  # noqa: E402
from ftlib.runtime import HEADLESS  # noqa: E402

WIDGET_CALLS = ("slider(", "interact(", "picker(", "text_box(")
LESSON_TIMEOUT = 900  # seconds for each cell of the lesson's own run, before the widget cells are repeated


def widget_cells(nb) -> list[int]:
    """Indices of the code cells that make (or, headless, stand in for) a widget."""
    return [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and any(w in c.source for w in WIDGET_CALLS)]


@contextmanager
def _without_headless_flag() -> Iterator[None]:
    """Kernels started inside this block make live widgets, as under a plain ``papermill`` (the flag is restored)."""
    before = os.environ.pop(HEADLESS, None)
    try:
        yield
    finally:
        if before is not None:
            os.environ[HEADLESS] = before


def _timed(client: NotebookClient, nb, index: int) -> float:
    start = time.perf_counter()
    client.execute_cell(nb.cells[index], index)
    return time.perf_counter() - start


def check_lesson(path: Path, repeats: int, limit: float, seeds: int | None, headless: bool) -> dict:
    """Run one lesson, then its widget cells ``repeats`` times; the reply times and the stalls."""
    nb = nbformat.read(path, as_version=4)
    if seeds is not None:
        [params] = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
        nb.cells.insert(params + 1, nbformat.v4.new_code_cell(f"seeds = {seeds}"))
    cells = widget_cells(nb)
    # the lesson itself gets a generous timeout (a loaded machine can be several times slower); the widget
    # cells get ``limit``
    client = NotebookClient(nb, timeout=max(limit, LESSON_TIMEOUT), kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    times, stalls, failed, current = [], [], "", 0
    start = time.perf_counter()
    with course.headless_kernels() if headless else _without_headless_flag(), client.setup_kernel():
        try:
            for current, cell in enumerate(nb.cells):
                if cell.cell_type == "code":
                    client.execute_cell(cell, current)
            client.timeout = limit
            for round_ in range(repeats):
                for current in cells:
                    try:
                        seconds = _timed(client, nb, current)
                    except CellTimeoutError:
                        seconds = float("inf")
                    times.append(seconds)
                    if seconds > limit:
                        stalls.append((round_, current))
        except Exception as error:  # a lesson that fails is reported, the others still run
            first = str(error).strip().splitlines()[0] if str(error).strip() else ""
            failed = f"cell {current}: {type(error).__name__}: {first}"
    return {"lesson": path.name, "cells": cells, "replies": len(times), "stalls": stalls, "failed": failed,
            "max": max(times, default=0.0), "mean": statistics.fmean(times) if times else 0.0,
            "seconds": time.perf_counter() - start}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="lessons to check (default: every lesson)")
    parser.add_argument("--repeats", type=int, default=30, help="runs of each widget cell after the lesson (30)")
    parser.add_argument("--limit", type=float, default=60, help="seconds after which a reply counts as a stall (60)")
    parser.add_argument("--seeds", type=int, help="override the lesson's seeds parameter (faster)")
    parser.add_argument("--headless", action="store_true",
                        help="set $FTLIB_HEADLESS=1 for the kernels (sliders draw once, no widgets), to compare")
    args = parser.parse_args(argv)
    bad = 0
    print(f"{'lesson':<34}{'cells':>7}{'replies':>9}{'mean s':>8}{'max s':>8}{'stalls':>8}{'total s':>9}")
    for path in args.notebooks or course.lessons():
        r = check_lesson(path, args.repeats, args.limit, args.seeds, args.headless)
        bad += bool(r["stalls"] or r["failed"])
        print(f"{r['lesson']:<34}{len(r['cells']):>7}{r['replies']:>9}{r['mean']:>8.2f}{r['max']:>8.2f}"
              f"{len(r['stalls']):>8}{r['seconds']:>9.1f}  {r['failed']}", flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
