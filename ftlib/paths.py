"""Where ftlib's files live: one place for every path the library and the lessons read.

``WEIGHTS_DIR`` ships inside the package (``pip install .`` brings it): the pretrained GlyphNet that the library's
defaults need. The others are the course's checkout (a clone of the repository): its data and its lessons; an
installed wheel has no ``data/`` or ``notebooks/`` beside it.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent  # ftlib/
WEIGHTS_DIR = PACKAGE_DIR / "weights"  # package data: the pretrained GlyphNet (the recipe's default backbone)
ROOT = PACKAGE_DIR.parent  # the checkout: data/, notebooks/, tests/ ...
DATA_DIR = ROOT / "data"  # the course's shipped data and checkpoints
NOTEBOOK_DIR = ROOT / "notebooks"  # the lessons
SHIPPED_DIRS = (WEIGHTS_DIR, DATA_DIR)  # where shipped checkpoints live: rebuilt by `python -m ftlib pretrain`

__all__ = ["DATA_DIR", "NOTEBOOK_DIR", "PACKAGE_DIR", "ROOT", "SHIPPED_DIRS", "WEIGHTS_DIR", "in_course_folders",
           "shipped_folder"]


def in_course_folders(path: str | Path) -> bool:
    """True if ``path`` (once resolved: links and ``..`` followed) lies in ``data/``, ``notebooks/`` or the package's
    ``weights/``, whose files ship with the course and the library; commands write there only when told
    (``--overwrite-shipped``)."""
    resolved = Path(path).resolve()
    return any(resolved.is_relative_to(folder.resolve()) for folder in (DATA_DIR, NOTEBOOK_DIR, WEIGHTS_DIR))


def shipped_folder(path: str | Path) -> Path | None:
    """The folder among ``data/``, ``notebooks/`` and the package ``ftlib/`` (its code and ``weights/``) that
    ``path`` lies in once resolved, else ``None``: a command's own output (an export, the rendered course) never
    belongs there."""
    resolved = Path(path).resolve()
    for folder in (DATA_DIR, NOTEBOOK_DIR, PACKAGE_DIR):
        if resolved.is_relative_to(folder.resolve()):
            return folder
    return None
