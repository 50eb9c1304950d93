"""Fine-Tuning Lab's library: what a practitioner reuses, apart from what only the course needs.

The library (each module lists its public names in ``__all__``):

* data and models: ``data`` (offline datasets and few-shot splits), ``models`` (GlyphNet, the shipped checkpoint,
  a seeded pretrained start), ``backbones`` (GlyphNet or a local ResNet-18), ``checkpoint`` (safetensors, no pickle)
* training: ``train`` (``fit``), ``schedules``, ``stopping`` (``History``, early stopping), ``evaluation``
  (``evaluate``, confusion matrix), ``probe`` (features, the linear probe), ``runtime`` (seeds, threads, device,
  eval mode, headless runs), ``checks`` (one-line errors that name the setting), ``stats`` (sample std, t
  intervals over seeds, paired differences, exact McNemar)
* one module per technique: ``lr`` (range test), ``freeze`` (blocks, BatchNorm, per-block rates), ``augment``,
  ``regularize`` (L2, L2-SP, drift, retention), ``lora``, ``unfreezing`` (stage plans: LP-FT, gradual unfreezing),
  ``transfer`` (task distance, truncation)
* your own images: ``folder`` (image folders), ``recipe`` (the whole recipe), ``export`` (save and predict),
  ``distributed`` (torchrun), ``picker`` (a file picker for JupyterLab)
* ``lm``: a tiny character-level transformer, chat fine-tuning and context extension
* ``paths``: where the shipped data lives; ``versions``: the versions that made the stored outputs

What only the course needs: ``lessons`` (the experiment runner and one module per lesson), ``course`` (the headless
runner), ``bench``, ``widgets``, ``pretrain`` and ``example_images`` (rebuild the shipped files).

``import ftlib`` loads nothing heavy; ``ftlib.models`` (or ``from ftlib import models``) imports on first use.
"""

from __future__ import annotations

import importlib

__all__ = ["augment", "backbones", "bench", "checkpoint", "checks", "course", "data", "distributed", "evaluation",
           "example_images", "export", "folder", "freeze", "lessons", "lm", "lora", "lr", "models", "paths", "picker",
           "pretrain", "probe", "recipe", "regularize", "runtime", "schedules", "stats", "stopping", "train",
           "transfer", "unfreezing", "versions", "widgets"]


def __getattr__(name: str):
    """Import a submodule on first use, so that ``import ftlib`` stays instant."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'ftlib' has no attribute {name!r}")
