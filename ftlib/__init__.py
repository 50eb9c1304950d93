"""Fine-Tuning Lab's library: what a practitioner reuses, apart from what only the course needs.

The library (each module lists its public names in ``__all__``):

* data and models: ``data`` (offline datasets and few-shot splits), ``models`` (GlyphNet, the shipped checkpoint,
  a seeded pretrained start), ``backbones`` (GlyphNet or a local ResNet-18), ``checkpoint`` (safetensors, no pickle)
* training: ``train`` (``fit``, ``evaluate``, early stopping, the linear probe), ``runtime`` (eval mode and back)
* one module per technique: ``lr`` (range test), ``freeze`` (blocks, BatchNorm, per-block rates), ``augment``,
  ``regularize`` (L2, L2-SP, drift, retention), ``lora``, ``unfreezing`` (stage plans: LP-FT, gradual unfreezing),
  ``transfer`` (task distance, truncation)
* your own images: ``folder`` (image folders), ``recipe`` (the whole recipe), ``export`` (save and predict),
  ``distributed`` (torchrun), ``picker`` (a file picker for JupyterLab)
* ``lm``: a tiny character-level transformer, chat fine-tuning and context extension
* ``paths``: where the shipped data lives

What only the course needs: ``lessons`` (the experiment runner and one module per lesson), ``course`` (the headless
runner), ``bench``, ``widgets``, ``pretrain`` and ``example_images`` (rebuild the shipped files).

``import ftlib`` loads nothing heavy; ``ftlib.models`` (or ``from ftlib import models``) imports on first use.
"""

from __future__ import annotations

import importlib

__all__ = ["augment", "backbones", "bench", "checkpoint", "course", "data", "distributed", "example_images", "export",
           "folder", "freeze", "lessons", "lm", "lora", "lr", "models", "paths", "picker", "pretrain", "recipe",
           "regularize", "runtime", "train", "transfer", "unfreezing", "widgets"]


def __getattr__(name: str):
    """Import a submodule on first use, so that ``import ftlib`` stays instant."""
    if name in __all__:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module 'ftlib' has no attribute {name!r}")
