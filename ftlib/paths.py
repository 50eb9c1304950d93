"""Where the course's files live: one place for every path the library and the lessons read."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout: data/, notebooks/, tests/ ...
DATA_DIR = ROOT / "data"  # shipped data and checkpoints
NOTEBOOK_DIR = ROOT / "notebooks"  # the lessons

__all__ = ["DATA_DIR", "NOTEBOOK_DIR", "ROOT"]
