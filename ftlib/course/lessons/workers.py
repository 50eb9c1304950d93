"""A lesson's independent runs on every core: the same records as one after the other, in the same order.

A GlyphNet run at this size keeps about one core busy: torch's second thread speeds it up by only a few percent,
so a lesson that trains one run after the other leaves half of a 2-core laptop idle. :func:`run_calls` hands
independent runs to a small pool of worker processes and returns their records in the order asked.

The numbers do not change. Every lesson driver seeds its own run (:func:`ftlib.runtime.seed_everything` in
:func:`~ftlib.course.lessons.experiments.make_model`), so a run does not depend on what ran before it, and a worker
pins the same thread count as the kernel (``$FTLIB_THREADS``, else 2; the tests compare the bits). The workers are
fresh processes ('spawn'): a process forked from a kernel whose OpenMP threads have run can hang. They start once per
kernel (a few seconds, while the kernel trains the first run) and import the course themselves, so a run must be a
function of a module: one written in the notebook (a learner's ``build``) or a lambda runs in the kernel, as before.

Only a driver marked :func:`independent` goes to the pool: one whose record is all it leaves behind. A driver that
also writes somewhere (a model kept in a dictionary the notebook reads later) would write into a worker's copy and
lose it, so an unmarked one runs in the kernel.

``$FTLIB_WORKERS`` sets the pool's size (``1``: everything in the kernel). The default is one per core up to
:data:`MOST` in a notebook's kernel, a ``python -m`` command or the tests, and 1 on a GPU (one process keeps it
busy) or in a script run by its path (a worker would import the script again: set ``FTLIB_WORKERS`` there, with the
script's work under ``if __name__ == "__main__":``).
"""

from __future__ import annotations

import atexit
import functools
import io
import multiprocessing
import os
import pickle
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from ftlib.checks import SettingError

__all__ = ["MOST", "independent", "run_calls", "worker_count"]

MOST = 2  # processes at most by default: the course is written for a 2-core laptop
_pool: ProcessPoolExecutor | None = None
_pool_size = 0


def worker_count() -> int:
    """How many processes run independent runs: ``$FTLIB_WORKERS``, else 1 on a GPU or in a script run by its path,
    else the cores up to :data:`MOST`. A value that is not a positive integer is a one-line
    :class:`~ftlib.checks.SettingError` (a ``ValueError``)."""
    text = os.environ.get("FTLIB_WORKERS", "").strip()
    if text:
        if not (text.isascii() and text.isdigit()) or int(text) < 1:
            raise SettingError(f"FTLIB_WORKERS={text!r} is not allowed: set it to a positive integer (1 runs "
                               "everything in this process) or unset it")
        return int(text)
    if os.environ.get("FTLIB_DEVICE", "").strip() not in ("", "cpu") or not _main_is_safe():
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(MOST, cores))


def _main_is_safe() -> bool:
    """Whether a worker can start without running this process's main script again: a kernel or a command started
    with ``python -m``, pytest, or an interactive session."""
    main = sys.modules.get("__main__")
    if main is None or not hasattr(main, "__spec__"):  # replaced by a tool: spawn could not read it
        return False
    spec = main.__spec__
    path = getattr(main, "__file__", None)
    return spec is not None or path is None or os.path.basename(path) in ("pytest", "py.test")


def independent(run: Callable[..., dict]) -> Callable[..., dict]:
    """Mark ``run`` as a driver whose record is all it leaves behind (it seeds itself and writes nowhere else), so
    that :func:`run_calls` may run it in a worker; returns ``run``."""
    run.independent = True
    return run


def _is_independent(run: Callable[..., dict]) -> bool:
    while isinstance(run, functools.partial):
        run = run.func
    return getattr(run, "independent", False) is True


class _FromMain(Exception):
    """Raised while pickling an object that a worker could not import: something defined in ``__main__``."""


class _MainProbe(pickle.Pickler):
    """A pickler that stops at the first function or class of ``__main__`` (a notebook's own), which a worker cannot
    import. It looks at the objects, not at the bytes: a text that merely mentions ``__main__`` (Python's own docs,
    the course's prose) travels."""

    def reducer_override(self, obj: object):
        if isinstance(obj, type) or callable(obj):
            if getattr(obj, "__module__", None) == "__main__":
                raise _FromMain
        elif getattr(type(obj), "__module__", None) == "__main__":
            raise _FromMain
        return NotImplemented


def _travels(calls: Sequence[tuple[Callable[..., dict], dict]]) -> bool:
    """Whether every run can be sent to a worker: an :func:`independent` driver of a module, with arguments that
    pickle and hold nothing of ``__main__`` (a notebook's own function or a lambda cannot travel)."""
    if not all(_is_independent(run) for run, _ in calls):
        return False
    try:
        _MainProbe(io.BytesIO(), protocol=pickle.HIGHEST_PROTOCOL).dump(list(calls))
    except (_FromMain, pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def _call(run: Callable[..., dict], options: dict) -> dict:
    return run(**options)


def _start_worker() -> None:
    """Each worker ignores Ctrl+C: the kernel that owns the pool handles it (it cancels the runs not started), and an
    interrupt sent to the whole process group at shutdown prints no traceback from an idle worker. Then it pays
    torch's one-off start-up costs (:func:`_warm_up`), so that a worker's first run is timed like its next ones."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _warm_up()


def _warm_up() -> None:
    """A few steps of a tiny convolutional network on random images, untimed: the first backward pass and optimizer
    step of a process cost about 1.5 s of processor time more than the next ones (measured on 2 cores), which a
    timed run would otherwise pay. Torch's random state is restored, so no run's numbers change (each run seeds
    itself anyway)."""
    import torch
    from torch import nn

    from ftlib.data import ImageSet
    from ftlib.runtime import pin_threads
    from ftlib.train import fit

    pin_threads()  # the thread count every run pins: the warmed-up thread pool is the one the runs use
    with torch.random.fork_rng():
        model = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
                              nn.Flatten(), nn.Linear(8, 2))
        images = ImageSet(torch.randn(16, 1, 28, 28), torch.arange(16) % 2, ("a", "b"), "warm-up")
        fit(model, images, 3, batch_size=8)  # the course's one loop, so its own first-call costs are paid too


def _executor(size: int) -> ProcessPoolExecutor:
    """The pool, started once per process and kept for the next runs."""
    global _pool, _pool_size
    if _pool is None or _pool_size != size:
        _shutdown()
        _pool = ProcessPoolExecutor(size, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_start_worker)
        _pool_size = size
    return _pool


def _shutdown() -> None:
    global _pool
    if _pool is not None:
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


atexit.register(_shutdown)


def run_calls(calls: Sequence[tuple[Callable[..., dict], dict]], progress: Callable[[], None] | None = None
              ) -> list[dict]:
    """``run(**options)`` for each ``(run, options)`` of ``calls``: their records, in the order of ``calls``.

    With more than one worker (:func:`worker_count`) and more than one call, the runs go to the pool; otherwise,
    or where a run is not :func:`independent` or cannot travel, they run here one after the other. ``progress`` is
    called once per finished run. An interrupt (Ctrl+C) cancels the runs not started and carries the records
    finished in order as ``.results``.
    """
    calls = list(calls)
    spawnable = hasattr(sys.modules.get("__main__"), "__spec__")  # a stand-in __main__ (a tool's) cannot be spawned
    if min(worker_count(), len(calls)) <= 1 or not spawnable or not _travels(calls):
        records: list[dict] = []
        try:
            for run, options in calls:
                records.append(run(**options))
                if progress:
                    progress()
        except KeyboardInterrupt as interrupt:
            interrupt.results = records
            raise
        return records
    return _in_pool(calls, progress)


def _in_pool(calls: list, progress: Callable[[], None] | None) -> list[dict]:
    pool = _executor(worker_count())
    futures = [pool.submit(_call, run, options) for run, options in calls]
    records = []
    try:
        for future in futures:
            records.append(future.result())
            if progress:
                progress()
    except KeyboardInterrupt as interrupt:
        _cancel(futures)
        interrupt.results = records
        raise
    except BrokenProcessPool:
        _shutdown()  # a worker died (out of memory?): the next call starts a fresh pool
        raise
    except BaseException:
        _cancel(futures)  # one run failed: the runs not started never start
        raise
    return records


def _cancel(futures: list) -> None:
    for future in futures:
        future.cancel()
