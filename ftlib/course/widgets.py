"""Sliders over results that are already computed: they redraw instantly and run headless without blocking.

Pattern for a lesson: call ``show(value)`` once as a plain cell (nbval checks its output), then
``slider(show, ...)`` in a cell tagged ``nbval-ignore-output`` (nbval cannot see widget output).

Headless runs (papermill, nbval, ``python -m ftlib run``, the tests) set ``$FTLIB_HEADLESS=1`` for the kernels
they start. There no front end renders a widget, and a cell that creates one can wait for a reply that never
comes (nbclient issue 312), so :func:`slider` prints what its control would be and draws ``show`` once at the
start value instead. JupyterLab never sets the variable and gets the live slider.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import ipywidgets as widgets

from ftlib.course.replay import record_frames, recording
from ftlib.runtime import headless

__all__ = ["LIVE_CLASS", "describe", "live_slider", "slider", "text_box"]

LIVE_CLASS = "ftlib-live-slider"  # CSS class of a live slider's box, for the browser tests


def slider(show: Callable, name: str, values: Sequence, value, description: str) -> widgets.interactive | None:
    """An ``interact`` slider that calls ``show(**{name: v})`` for each chosen value ``v`` of ``values``.

    It is the only control: ``show``'s other parameters keep their defaults.

    ``description`` is the label a person reads beside the slider; it must say what the slider sets. When
    :func:`ftlib.course.replay.recording` (``python -m ftlib refresh``), every value's output is also stored in the
    cell (one more output) for the rendered course. When
    :func:`headless`, no widget is made: one line describes the control, ``show`` runs once at ``value`` (its
    result is displayed, as ``interact`` would), and the return value is ``None``.
    """
    values = _checked(values, value, description)
    if recording():  # python -m ftlib refresh: every value's output, stored for the rendered course
        record_frames(show, name, values, value, description)
    if headless():
        return _draw_once(show, name, values, value, description)
    control = _selection(values, value, description, continuous_update=True)
    # Call through **kwargs so that interactive makes only this one control: show's other parameters keep their
    # defaults instead of growing sliders of their own.
    return widgets.interactive(lambda **chosen: show(**chosen), **{name: control})


def live_slider(compute: Callable, name: str, values: Sequence, value, description: str) -> widgets.VBox | None:
    """A slider whose every move runs ``compute(**{name: v})`` for real (trains or evaluates), not a cached replay.

    It updates when the handle is released (not while dragging), shows "running ..." beside the slider while
    ``compute`` works and then how long it took, and draws what ``compute`` displays or returns below. Keep
    ``compute`` to about 2 s. Headless (papermill, nbval), nobody can move it: it prints one line saying what it
    controls and runs nothing, so a live slider adds no time to a headless lesson. The box carries the CSS class
    ``ftlib-live-slider``, which the browser tests look for.
    """
    values = _checked(values, value, description)
    if headless():
        print(f"[live {describe(name, values, value, description)[1:]}: in JupyterLab every move runs it")
        return None
    from IPython.display import display
    from ipywidgets.widgets.interaction import show_inline_matplotlib_plots

    control = _selection(values, value, description, continuous_update=False)
    status, output = widgets.Label(""), widgets.Output()

    def rerun(change=None) -> None:
        status.value = "running ..."
        start = time.perf_counter()
        with output:
            output.clear_output(wait=True)
            result = compute(**{name: control.value})
            if result is not None:
                display(result)
            show_inline_matplotlib_plots()
        status.value = f"done in {time.perf_counter() - start:.1f} s"

    control.observe(rerun, names="value")
    rerun()
    box = widgets.VBox([widgets.HBox([control, status]), output])
    box.add_class(LIVE_CLASS)
    return box


def _checked(values: Sequence, value, description: str) -> list:
    """The slider's values as a list, once its start value and description are known to be usable."""
    values = list(values)
    if value not in values:
        raise ValueError(f"start value {value!r} is not one of the slider's values {values}")
    if not description.strip():
        raise ValueError("a slider needs a description a person can read")
    return values


def _selection(values: list, value, description: str, continuous_update: bool) -> widgets.SelectionSlider:
    return widgets.SelectionSlider(options=values, value=value, description=description, tooltip=description,
                                   continuous_update=continuous_update, style={"description_width": "initial"},
                                   layout=widgets.Layout(width="480px"))


def describe(name: str, values: Sequence, value, description: str) -> str:
    """One line that says what a slider controls, its values and its start value."""
    return f"[slider] {description}: {name} = {value!r} (of {', '.join(repr(v) for v in values)})"


def _draw_once(show: Callable, name: str, values: list, value, description: str) -> None:
    """The headless stand-in for a slider: its description, then ``show`` at the start value."""
    from IPython.display import display

    print(describe(name, values, value, description))
    result = show(**{name: value})
    if result is not None:
        display(result)


def text_box(act: Callable, name: str, value: str, description: str) -> widgets.interactive | None:
    """A text box that calls ``act(**{name: text})`` each time a text is submitted (Enter), starting with ``value``.

    When :func:`headless`, no widget is made: one line describes the box and ``act`` runs once with ``value``.
    """
    if not description.strip():
        raise ValueError("a text box needs a description a person can read")
    if headless():
        print(f"[text box] {description}: {name} = {value!r}")
        act(**{name: value})
        return None
    box = widgets.Text(value=value, description=description, continuous_update=False,
                       style={"description_width": "initial"}, layout=widgets.Layout(width="480px"))
    return widgets.interactive(lambda **typed: act(**typed), **{name: box})
