"""Fine-Tuning Lab's library: what a practitioner reuses. What only the course needs lives apart, in ``ftlib.course``.

The library (each module lists its public names in ``__all__``):

* data and models: ``data`` (offline datasets and few-shot splits), ``models`` (GlyphNet, the pretrained checkpoint
  shipped as package data, a seeded pretrained start), ``backbones`` (GlyphNet or a local ResNet-18), ``checkpoint``
  (safetensors, no pickle)
* training: ``train`` (``fit``), ``schedules``, ``stopping`` (``History``, early stopping), ``evaluation``
  (``evaluate``, confusion matrix), ``analysis`` (error analysis: per-file predictions, most-confused pairs, top
  losses, as CSV), ``probe`` (features, the linear probe), ``runtime`` (seeds, threads, device, eval mode,
  headless runs), ``checks`` (one-line errors that name the setting), ``stats`` (sample std, t intervals over
  seeds, paired differences, exact McNemar, an accuracy's Wilson interval), ``selection`` (the one rule that
  chooses a setting on validation, shared by the recipe and the course)
* one module per technique: ``lr`` (range test), ``freeze`` (blocks, BatchNorm, per-block rates), ``augment``,
  ``regularize`` (L2, L2-SP, drift, retention), ``lora``, ``unfreezing`` (stage plans: LP-FT, gradual unfreezing),
  ``transfer`` (task distance, truncation)
* your own images: ``folder`` (image folders), ``recipe`` (the whole recipe), ``export`` (save and predict),
  ``distributed`` (torchrun)
* ``lm``: a tiny character-level transformer, chat fine-tuning and context extension
* ``paths``: where the package's weights and the checkout's data live

``course`` is the course: the lessons' drivers and exercises, the headless runner, the benchmark, the sliders, the
rebuilds of shipped files and the version warnings. It imports the library; no library module imports it (the
command line reaches it only for its course commands: ``run``, ``refresh``, ``bench``, ``pretrain``,
``context-sweep``).

``import ftlib`` loads nothing heavy; ``ftlib.models`` (or ``from ftlib import models``) imports on first use.
"""

from __future__ import annotations

import importlib
import os as _os

# Idle OpenMP threads sleep instead of spinning. The course runs independent runs in two processes of two torch
# threads each (ftlib.course.lessons.workers); on two cores, spinning threads made one run 3x slower (measured).
# It changes no number, only how an idle thread waits, and it is read once, when torch loads: so before it.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__all__ = ["analysis", "augment", "backbones", "checkpoint", "checks", "course", "data", "distributed", "evaluation",
           "export", "folder", "freeze", "lm", "lora", "lr", "models", "paths", "probe", "recipe", "regularize",
           "runtime", "schedules", "selection", "stats", "stopping", "train", "transfer", "unfreezing"]


def __getattr__(name: str):
    """Import a submodule on first use, so that ``import ftlib`` stays instant."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'ftlib' has no attribute {name!r}")
