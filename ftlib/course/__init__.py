"""What only the course needs: the lessons' drivers and exercises, the headless runner, the benchmark, the sliders,
the rebuilds of shipped data and the version warnings. It imports the library (the rest of :mod:`ftlib`); the
library never imports it (``tests/test_api.py`` checks every module), except the command line's course commands.

* :mod:`~ftlib.course.lessons`: the experiment runner (``experiments``), the plots, one module per lesson, and the
  exercise checks (``lessons.exercises``).
* :mod:`~ftlib.course.runner`: every lesson through papermill, headless, with a summary (``python -m ftlib run``),
  and the helpers a lesson prints with (:func:`headline`, :func:`points`, :func:`scratch_folder`).
* :mod:`~ftlib.course.bench` (``python -m ftlib bench``), :mod:`~ftlib.course.widgets` (sliders),
  :mod:`~ftlib.course.picker` (a file picker for lesson 11).
* :mod:`~ftlib.course.learner_copies` (the lessons without outputs, ``notebooks/clean/``),
  :mod:`~ftlib.course.replay` (the replay sliders' stored frames) and :mod:`~ftlib.course.site` (the rendered course,
  ``python -m ftlib site``).
* rebuilds of shipped files, bit for bit: :mod:`~ftlib.course.pretrain` (GlyphNet), :mod:`~ftlib.course.pretrain_lm`
  (TinyLM), :mod:`~ftlib.course.example_images` (the example folder), and lesson 10's sweep
  (:mod:`~ftlib.course.lessons.context_sweep`); :mod:`~ftlib.course.versions` warns when the installed versions
  differ from those that made them.
"""

from __future__ import annotations

from ftlib.course.runner import headline, points, scratch_folder

__all__ = ["headline", "points", "scratch_folder"]
