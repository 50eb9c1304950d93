"""Learner copies of the lessons: the same cells and sources as the executed reference notebooks, with no outputs.

``notebooks/NN_topic.ipynb`` are the executed reference copies (every answer shown; nbval, the browser tests and
``python -m ftlib refresh`` use them). ``notebooks/clean/NN_topic.ipynb`` are what a learner opens: nothing in them
shows a result before its exercise asks for a prediction. ``python -m ftlib clean-copies`` writes them (``refresh``
rewrites the copy of each lesson it refreshes) and ``python -m ftlib clean-copies --check`` says which are stale.
"""

from __future__ import annotations

import copy
import os
import re
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from ftlib.course.runner import lessons
from ftlib.paths import NOTEBOOK_DIR

__all__ = ["CLEAN_DIR", "PREDICT_HEADING", "clean_path", "learner_copy", "lesson_notebooks", "mismatches",
           "predict_exercises", "write_learner_copies"]

CLEAN_DIR = NOTEBOOK_DIR / "clean"  # the learner copies, one per lesson, same file names
PREDICT_HEADING = re.compile(r"^###\s+Exercise\s+\d+\s+·\s+predict\b", re.M)  # "### Exercise 1 · predict: ..."


def clean_path(reference: str | Path) -> Path:
    """Where the learner copy of the lesson ``reference`` lives: ``clean/`` beside it, same file name."""
    reference = Path(reference)
    return reference.parent / "clean" / reference.name


def learner_copy(notebook: NotebookNode) -> NotebookNode:
    """``notebook`` with every output, execution count and stored widget state removed; cells, sources, cell ids and
    cell metadata (tags, folded solutions) unchanged."""
    clean = copy.deepcopy(notebook)
    clean.metadata.pop("widgets", None)
    for cell in clean.cells:
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
    return clean


def lesson_notebooks(notebooks: list[str | Path] | None = None) -> list[Path]:
    """The given lesson notebooks (``NN_topic.ipynb`` files, not learner copies in ``clean/``), or every lesson; a
    ``ValueError`` naming anything else, or saying that there is no lesson at all."""
    paths = [Path(p) for p in notebooks] if notebooks else lessons()
    if not paths:
        raise ValueError(f"no lesson notebooks (NN_topic.ipynb) in {NOTEBOOK_DIR}: run this in a clone of the "
                         "course, or name the lessons")
    for path in paths:
        if not re.fullmatch(r"\d\d_.+\.ipynb", path.name) or not path.is_file():
            raise ValueError(f"{path} is not a lesson notebook (notebooks/NN_topic.ipynb that exists)")
        if path.resolve().parent.name == "clean":
            raise ValueError(f"{path} is a learner copy (in clean/), not a lesson: name the lesson, "
                             f"notebooks/{path.name}")
    return paths


def _read(path: Path) -> NotebookNode:
    """The notebook ``path``; a ``ValueError`` naming it if it cannot be read or is not a notebook."""
    try:
        return nbformat.read(path, as_version=4)
    except OSError as error:
        raise ValueError(f"{path} cannot be read ({error.strerror or error})") from None
    except (ValueError, nbformat.ValidationError, KeyError, AttributeError) as error:
        raise ValueError(f"{path} is not a valid notebook ({str(error).splitlines()[0][:200]})") from None


def _write(notebook: NotebookNode, target: Path) -> None:
    """Write ``notebook`` to ``target`` whole or not at all (aside first, then renamed into place); a
    ``ValueError`` naming ``target`` if its folder cannot be written."""
    aside = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        target.parent.mkdir(exist_ok=True)
        nbformat.write(notebook, aside)
        os.replace(aside, target)
    except OSError as error:
        raise ValueError(f"cannot write {target} ({error.strerror or error}); the learner copy there is as it "
                         "was") from None
    finally:
        aside.unlink(missing_ok=True)


def write_learner_copies(notebooks: list[str | Path] | None = None) -> list[Path]:
    """Write the learner copy of each lesson in ``notebooks`` (default: every lesson) to ``clean/`` beside it;
    returns the paths written. Every lesson is read before any copy is written, and each copy is written whole or
    not at all."""
    references = lesson_notebooks(notebooks)
    copies = [(clean_path(reference), learner_copy(_read(reference))) for reference in references]
    for target, notebook in copies:
        _write(notebook, target)
    return [target for target, _ in copies]


def mismatches(reference: str | Path) -> list[str]:
    """What is wrong with the learner copy of ``reference``, one line each (empty: it is up to date): missing,
    a different cell list or source, or outputs and counts left in."""
    reference = lesson_notebooks([reference])[0]
    target = clean_path(reference)
    if not target.is_file():
        return [f"{target} is missing (python -m ftlib clean-copies)"]
    ref, clean = _read(reference), _read(target)
    problems = []
    if [(c.cell_type, c.source) for c in ref.cells] != [(c.cell_type, c.source) for c in clean.cells]:
        problems.append(f"{target}: its cells or sources differ from {reference}")
    if [c.metadata for c in ref.cells] != [c.metadata for c in clean.cells]:
        problems.append(f"{target}: its cell metadata (tags, folded solutions) differ from {reference}")
    shown = [i for i, c in enumerate(clean.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    if shown:
        problems.append(f"{target}: cells {shown} keep outputs or execution counts")
    if "widgets" in clean.metadata:
        problems.append(f"{target}: keeps stored widget state")
    return problems


def predict_exercises(notebook: NotebookNode) -> list[int]:
    """Indices of the markdown cells that open a predict exercise (``### Exercise N · predict...``)."""
    return [i for i, cell in enumerate(notebook.cells)
            if cell.cell_type == "markdown" and PREDICT_HEADING.search(cell.source)]
