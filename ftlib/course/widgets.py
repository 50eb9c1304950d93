"""Sliders over results that are already computed: they redraw instantly and run headless without blocking.

Pattern for a lesson: call ``show(value)`` once as a plain cell (nbval checks its output), then
``slider(show, ...)`` in a cell tagged ``nbval-ignore-output`` (nbval cannot see widget output).

Every widget here puts what its function prints, draws and displays into its output area from the kernel
(:func:`captured`), so it needs nothing back from whoever runs the notebook. ipywidgets' own ``with output:``
asks the front end to route the kernel's messages into the widget and to send the widget's new state back;
nbclient (plain ``papermill``, ``jupyter nbconvert --execute``) sends that state on the shell socket on which it
is waiting for the cell's reply, and now and then misses the reply and waits forever (nbclient issue 312): a
lesson stalled on its first slider. With :func:`captured` a plain ``papermill NOTEBOOK OUT`` runs every widget.

The course's own runs (``python -m ftlib run``, nbval, the tests) also set ``$FTLIB_HEADLESS=1`` for the kernels
they start: there :func:`slider` prints what its control would be and draws ``show`` once at the start value, as
plain text that nbval can compare, and a live slider runs nothing. JupyterLab never sets the variable.
"""

from __future__ import annotations

import base64
import contextlib
import io
import sys
import time
from collections.abc import Callable, Iterator, Sequence

import ipywidgets as widgets
from IPython.core.displaypub import DisplayPublisher

from ftlib.course.replay import record_frames, recording
from ftlib.runtime import headless

__all__ = ["LIVE_CLASS", "captured", "describe", "live_slider", "slider", "text_box"]

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
    return _Interactive(lambda **chosen: show(**chosen), **{name: control})


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
        with captured(output):  # the old output stays until the new one is complete
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
    return _Interactive(lambda **typed: act(**typed), **{name: box})


class _Interactive(widgets.interactive):
    """``ipywidgets.interactive`` (without ``manual``) whose function's output reaches its output area through
    :func:`captured`, not through a front end."""

    def update(self, *args) -> None:
        """Call the function with the controls' values and show what it prints, draws and displays."""
        from IPython.display import display
        from ipywidgets.widgets.interaction import show_inline_matplotlib_plots

        show_inline_matplotlib_plots()  # figures drawn before the call stay where they were drawn
        with captured(self.out):
            self.kwargs = {control._kwarg: control.get_interact_value() for control in self.kwargs_widgets}
            self.result = self.f(**self.kwargs)
            show_inline_matplotlib_plots()
            if self.auto_display and self.result is not None:
                display(self.result)


@contextlib.contextmanager
def captured(output: widgets.Output) -> Iterator[None]:
    """Put what the ``with`` block prints, warns, displays and draws into ``output``, in order, replacing what it
    showed, in one update at the end of the block (the old output stays until then). An exception in the block
    shows there as its traceback and goes no further, as in ipywidgets' ``with output:``.

    Unlike ``with output:``, nothing is asked of the front end: the kernel collects the outputs and sets the
    widget's ``outputs`` itself, so a client that runs the notebook (papermill, nbclient) only receives messages and
    never has to answer one (nbclient issue 312: answering while it waits for a cell's reply can lose the reply).
    """
    from IPython import get_ipython

    shell = get_ipython()
    outputs: list[dict] = []
    saved_streams, saved_publisher = (sys.stdout, sys.stderr), getattr(shell, "display_pub", None)
    for stream in saved_streams:
        stream.flush()  # what was printed before the block stays where it was printed
    sys.stdout, sys.stderr = _StreamInto(outputs, "stdout"), _StreamInto(outputs, "stderr")
    if shell is not None:
        shell.display_pub = _PublisherInto(outputs)
    try:
        yield
    except Exception as error:
        outputs.append(_error_output(error, shell))
    finally:
        sys.stdout, sys.stderr = saved_streams
        if shell is not None:
            shell.display_pub = saved_publisher
        output.outputs = tuple(outputs)


class _StreamInto(io.TextIOBase):
    """A text stream (``sys.stdout`` or ``sys.stderr``) that appends what is written to a list of outputs."""

    encoding = "utf-8"

    def __init__(self, outputs: list[dict], name: str) -> None:
        super().__init__()
        self.outputs, self.name = outputs, name

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        last = self.outputs[-1] if self.outputs else {}
        if last.get("output_type") == "stream" and last.get("name") == self.name:
            last["text"] += text
        elif text:
            self.outputs.append({"output_type": "stream", "name": self.name, "text": text})
        return len(text)


class _PublisherInto(DisplayPublisher):
    """IPython's display publisher for :func:`captured`: ``display`` (figures too) appends to a list of outputs."""

    def __init__(self, outputs: list[dict]) -> None:
        super().__init__()
        self.outputs = outputs

    def publish(self, data, metadata=None, source=None, *, transient=None, update=False, **kwargs) -> None:
        data = {kind: base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
                for kind, value in data.items()}  # as Jupyter sends an image; widget state must not hold bytes
        self.outputs.append({"output_type": "display_data", "data": data, "metadata": metadata or {}})

    def clear_output(self, wait: bool = False) -> None:
        self.outputs.clear()  # the widget itself keeps its old output until the block ends


def _error_output(error: Exception, shell) -> dict:
    """A notebook error output (name, message, traceback) for ``error``, coloured as IPython shows it."""
    import traceback

    if shell is not None:
        lines = shell.InteractiveTB.structured_traceback(type(error), error, error.__traceback__)
    else:
        lines = traceback.format_exception(error)
    return {"output_type": "error", "ename": type(error).__name__, "evalue": str(error), "traceback": lines}
