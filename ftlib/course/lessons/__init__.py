"""What only the course needs: the experiment runner and one module per lesson for its drivers and plots.

The library a practitioner reuses is the rest of :mod:`ftlib` (data, models, checkpoints, the training loop, one
module per technique, the image-folder recipe); nothing there imports this package.

* :mod:`~ftlib.course.lessons.experiments`: the standard methods (scratch, probe, fine-tune), one ``run`` helper
  (model for a method -> fit -> evaluate) and ``run_grid``.
* :mod:`~ftlib.course.lessons.records`: the record vocabulary, ``Results`` (summaries over seeds), the one rule
  that chooses a setting on validation (``choose``) and the one table printer (``table``).
* :mod:`~ftlib.course.lessons.plots`: the course's standard plots of results.
* one module per lesson that needs its own drivers (named after the notebook's topic).
"""
