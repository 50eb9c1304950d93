"""Where the course's files live: one place for every path the library and the lessons read."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent  # the checkout: data/, notebooks/, tests/ ...
DATA_DIR = ROOT / "data"  # shipped data and checkpoints
NOTEBOOK_DIR = ROOT / "notebooks"  # the lessons

__all__ = ["DATA_DIR", "NOTEBOOK_DIR", "ROOT", "in_course_folders"]


def in_course_folders(path: str | Path) -> bool:
    """True if ``path`` (once resolved: links and ``..`` followed) lies in ``data/`` or ``notebooks/``, whose
    files ship with the course; commands write there only when told (``--overwrite-shipped``)."""
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(folder.resolve()) for folder in (DATA_DIR, NOTEBOOK_DIR))
