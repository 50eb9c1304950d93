"""Replay frames: a replay slider's output at every one of its values, stored in the notebook for the rendered course.

A replay slider (:func:`ftlib.course.widgets.slider`) redraws from results already computed, so its output at each
value can be drawn once and kept. When ``$FTLIB_REPLAY_FRAMES`` is set (``python -m ftlib refresh`` sets it for the
kernels it starts), the slider draws every value's output before it makes its widget and displays them as one
output of MIME type :data:`MIME` (a short ``text/plain`` line beside it is all JupyterLab shows). The rendered course
(:mod:`ftlib.course.site`) turns that output into an HTML slider that moves without a kernel. The random states of
Python, NumPy and torch are restored afterwards, so the cells after a slider draw the same numbers as without it.
"""

from __future__ import annotations

import base64
import io
import os
import random
from collections.abc import Callable, Sequence
from contextlib import contextmanager

__all__ = ["MIME", "RECORD_FRAMES", "find_frames", "record_frames", "recording"]

RECORD_FRAMES = "FTLIB_REPLAY_FRAMES"  # set (not 0) to store every replay slider's frames in its cell's outputs
MIME = "application/vnd.ftlib.replay+json"  # {"name", "description", "labels", "start", "frames": [[outputs]]}


_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def recording() -> bool:
    """True when replay sliders should store their frames: ``$FTLIB_REPLAY_FRAMES`` is 1 (or true, yes, on); unset,
    empty, 0, false, no or off is False, and anything else a :class:`~ftlib.checks.SettingError` naming it."""
    from ftlib.checks import SettingError

    text = os.environ.get(RECORD_FRAMES, "").strip().lower()
    if text not in _ON + _OFF:
        raise SettingError(f"{RECORD_FRAMES}={os.environ[RECORD_FRAMES]!r} is not allowed: set it to 1 (store every "
                           "replay slider's frames) or 0, or unset it")
    return text in _ON


def record_frames(show: Callable, name: str, values: Sequence, value, description: str) -> dict:
    """Draw ``show(**{name: v})`` for every ``v`` of ``values`` (its prints, displays, returned value and figures,
    in order, as notebook outputs), display them as one :data:`MIME` output and return that payload."""
    from IPython.display import display

    values = list(values)
    frames = []
    with _random_states_kept():
        for v in values:
            with _captured() as outputs:
                result = show(**{name: v})
                if result is not None:
                    display(result)
                _flush_figures()
            frames.append(outputs)
    payload = {"name": name, "description": description, "labels": [str(v) for v in values],
               "start": values.index(value), "frames": frames}
    display({MIME: payload, "text/plain": f"[replay frames: {len(values)} values of {name}, for the rendered course]"},
            raw=True)
    return payload


def find_frames(outputs: list) -> dict | None:
    """The replay payload among a cell's ``outputs`` (notebook output dicts), or ``None``."""
    for output in outputs:
        if MIME in output.get("data", {}):
            return output["data"][MIME]
    return None


def _flush_figures() -> None:
    """Show the figures ``show`` left open, as the slider's ``interact`` would."""
    from ipywidgets.widgets.interaction import show_inline_matplotlib_plots

    show_inline_matplotlib_plots()


@contextmanager
def _random_states_kept():
    """Restore the random states of Python, NumPy and torch (CPU) on exit."""
    import numpy as np
    import torch

    states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    try:
        yield
    finally:
        random.setstate(states[0])
        np.random.set_state(states[1])
        torch.set_rng_state(states[2])


def _jsonable(data: dict) -> dict:
    """A display's MIME bundle with binary payloads (e.g. PNG bytes) as base64 text, as a notebook stores them."""
    return {mime: base64.b64encode(v).decode("ascii") if isinstance(v, bytes) else v for mime, v in data.items()}


@contextmanager
def _captured():
    """Collect what runs inside as notebook outputs, in order: stdout/stderr text (consecutive writes merged) and
    every display (through IPython's display publisher when a shell runs; elsewhere displays print as text)."""
    import sys

    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.getipython import get_ipython

    outputs: list[dict] = []

    class Stream(io.TextIOBase):
        def __init__(self, name: str):
            self.stream_name = name

        def write(self, text: str) -> int:
            if outputs and outputs[-1].get("name") == self.stream_name:
                outputs[-1]["text"] += text
            else:
                outputs.append({"output_type": "stream", "name": self.stream_name, "text": text})
            return len(text)

    class Publisher(CapturingDisplayPublisher):
        def publish(self, data, metadata=None, source=None, *, transient=None, update=False):
            outputs.append({"output_type": "display_data", "data": _jsonable(data), "metadata": metadata or {}})

        def clear_output(self, wait=False):
            outputs.clear()

    shell = get_ipython()
    saved = sys.stdout, sys.stderr, getattr(shell, "display_pub", None)
    sys.stdout, sys.stderr = Stream("stdout"), Stream("stderr")
    if shell is not None:
        shell.display_pub = Publisher()
    try:
        yield outputs
    finally:
        sys.stdout, sys.stderr = saved[0], saved[1]
        if shell is not None:
            shell.display_pub = saved[2]
