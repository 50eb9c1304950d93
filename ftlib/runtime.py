"""Where and how code runs, image or language: seeds, threads, the device, and eval mode with the mode restored."""

from __future__ import annotations

import contextlib
import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn

from .checks import SettingError, check_seed, named

__all__ = ["DEFAULT_THREADS", "DEVICES", "HEADLESS", "deterministic_cuda", "evaluating", "get_device", "headless",
           "model_device", "pin_threads", "run_headless", "seed_everything", "seed_rngs", "thread_count"]


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Put ``model`` in eval mode for the ``with`` block, then give it back the mode it had (train or eval)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


DEFAULT_THREADS = 2


def thread_count(threads: int | None = None, default: int | None = DEFAULT_THREADS,
                 flag: str = "threads") -> int | None:
    """The thread count to use: ``threads`` if given, else ``$FTLIB_THREADS`` if set, else ``default``.

    A value that is not a positive integer is a :class:`SettingError` naming ``flag`` or ``FTLIB_THREADS``.
    """
    if threads is not None:
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise SettingError(f"{named(flag, threads)} is not allowed: choose a positive integer (e.g. 2)")
        return threads
    text = os.environ.get("FTLIB_THREADS", "").strip()
    if not text:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) < 1:  # '²'.isdigit() is True, int('²') fails
        raise SettingError(f"FTLIB_THREADS={text!r} is not allowed: set it to a positive integer (e.g. 2) or unset it")
    return int(text)


def pin_threads(threads: int | None = None, default: int | None = DEFAULT_THREADS, flag: str = "threads") -> int:
    """Pin torch's CPU thread count to :func:`thread_count` (``threads``, else ``$FTLIB_THREADS``, else
    ``default``; ``None``: leave torch's count, every core, as it is) and return the count in use."""
    count = thread_count(threads, default, flag)
    if count is not None:
        torch.set_num_threads(count)
    return torch.get_num_threads()


def seed_rngs(seed: int) -> None:
    """Seed Python, NumPy and torch (nothing else changes; library code that draws weights calls this)."""
    check_seed(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def seed_everything(seed: int, threads: int | None = None) -> None:
    """The lessons' reproducibility call: :func:`seed_rngs` and :func:`pin_threads` (``threads``, else
    ``$FTLIB_THREADS``, else 2) for the whole process.

    Results are bit-identical only for the same seed *and* the same thread count. Library functions that only
    need seeded weights call :func:`seed_rngs`, so the command line keeps the machine's cores.
    """
    seed_rngs(seed)
    pin_threads(threads)


DEVICES = ("cpu", "cuda", "mps")


def get_device(name: str | None = None, flag: str = "device") -> torch.device:
    """``name`` (or ``$FTLIB_DEVICE``) if given, else the CPU: a GPU only when asked for, so lessons give the same
    numbers everywhere.

    An unknown name, or a GPU that this machine lacks, is a :class:`SettingError` naming ``flag`` (or
    ``FTLIB_DEVICE``).
    """
    source = flag
    if name is None or name == "":
        name, source = os.environ.get("FTLIB_DEVICE", "").strip(), "FTLIB_DEVICE"
    if not name:
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        device = None
    if device is None or device.type not in DEVICES:
        raise SettingError(f"{named(source, name)} is not allowed: choose one of {', '.join(DEVICES)} (e.g. cuda:0)")
    available = {"cpu": True, "cuda": torch.cuda.is_available(), "mps": torch.backends.mps.is_available()}
    if not available[device.type]:
        raise SettingError(f"{named(source, name)}: this machine has no {device.type.upper()} device that torch can "
                           "use; choose cpu")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise SettingError(f"{named(source, name)}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if device.type == "cuda":
        deterministic_cuda()
    return device


def deterministic_cuda() -> None:
    """Same seed, same numbers on one GPU too: deterministic cuDNN and cuBLAS kernels (PyTorch's reproducibility
    notes), so that a lesson that replays a run gets exactly the same weights. An operation with no deterministic
    kernel warns instead of failing."""
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # read when cuBLAS starts
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    torch.use_deterministic_algorithms(True, warn_only=True)


def model_device(model: nn.Module) -> torch.device:
    """The device of ``model``'s weights: where its inputs must go (the CPU for a model without parameters)."""
    return next(model.parameters(), torch.empty(0)).device


HEADLESS = "FTLIB_HEADLESS"  # set to 1 by whoever starts a kernel that no front end will render widgets for


def run_headless() -> None:
    """Mark this process and the kernels it starts as headless (``$FTLIB_HEADLESS=1``): no front end renders widgets."""
    os.environ[HEADLESS] = "1"


def headless() -> bool:
    """True when this process runs where no front end renders widgets (``$FTLIB_HEADLESS`` is set, not 0)."""
    return os.environ.get(HEADLESS, "").strip() not in ("", "0")
