"""Sliders over results that are already computed: they redraw instantly and run headless without blocking.

Pattern for a lesson: call ``show(value)`` once as a plain cell (nbval checks its output), then
``slider(show, ...)`` in a cell tagged ``nbval-ignore-output`` (nbval cannot see widget output).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import ipywidgets as widgets

__all__ = ["slider"]


def slider(show: Callable, name: str, values: Sequence, value, description: str) -> widgets.interactive:
    """An ``interact`` slider that calls ``show(**{name: v})`` for each chosen value ``v`` of ``values``.

    It is the only control: ``show``'s other parameters keep their defaults.

    ``description`` is the label a person reads beside the slider; it must say what the slider sets.
    """
    values = list(values)
    if value not in values:
        raise ValueError(f"start value {value!r} is not one of the slider's values {values}")
    if not description.strip():
        raise ValueError("a slider needs a description a person can read")
    control = widgets.SelectionSlider(options=values, value=value, description=description, tooltip=description,
                                      continuous_update=True, style={"description_width": "initial"},
                                      layout=widgets.Layout(width="480px"))
    # Call through **kwargs so that interactive makes only this one control: show's other parameters keep their
    # defaults instead of growing sliders of their own.
    return widgets.interactive(lambda **chosen: show(**chosen), **{name: control})
