"""Compare a lesson's freshly run outputs with its committed ones exactly as nbval does, with nbval's own code.

nbval runs a notebook in a kernel of its own; the browser tests run each lesson once in JupyterLab instead (where its
sliders can be moved) and hand the saved notebook here. Each code cell is checked as ``pytest --nbval`` checks it:
the same cell options (``nbval-ignore-output``, ``nbval-skip``, ``# NBVAL_...`` comments), the same stream
merging (:func:`nbval.plugin.coalesce_streams`), the same sanitizing (``tests/nbval_sanitize.cfg``) and the same
comparison and report (:meth:`nbval.plugin.IPyNbCell.compare_outputs`, borrowed below).
"""

from __future__ import annotations

import copy
from collections import defaultdict
from pathlib import Path
from types import SimpleNamespace

from nbformat import NotebookNode
from nbval.plugin import (
    IPyNbCell,
    coalesce_streams,
    find_comment_markers,
    find_metadata_tags,
    get_sanitize_patterns,
    nocolors,
)

__all__ = ["SANITIZE_FILE", "SKIP_COMPARE", "output_mismatches"]

SANITIZE_FILE = Path(__file__).resolve().parent / "nbval_sanitize.cfg"  # pyproject's --nbval-sanitize-with
# The output fields nbval leaves out of the comparison (IPyNbFile.__init__, without --nbdime: images too).
SKIP_COMPARE = ("metadata", "traceback", "prompt_number", "output_type", "name", "execution_count",
                "application/vnd.jupyter.widget-view+json", "image/png", "image/jpeg")


class _NbvalCell:
    """The few attributes of a collected nbval cell that its comparison reads, and the comparison itself."""

    compare_outputs = IPyNbCell.compare_outputs
    format_output_compare = IPyNbCell.format_output_compare
    sanitize = IPyNbCell.sanitize

    def __init__(self, patterns: dict, config=None):
        self.parent = SimpleNamespace(sanitize_patterns=patterns, skip_compare=SKIP_COMPARE)
        self.colors = nocolors
        self.config = config
        # With pytest's config, a mismatch is shown as pytest shows a failed ==; without, as nbval's fallback.
        self.ihook = config.hook if config is not None else SimpleNamespace(pytest_assertrepr_compare=lambda **_: [])


def _options(cell: NotebookNode) -> defaultdict:
    """nbval's options for a cell: its tags, then its ``# NBVAL_...`` comments (these win), checked by default."""
    options = defaultdict(bool, find_metadata_tags(cell.metadata))
    options.update(find_comment_markers(cell.source))
    options.setdefault("check", True)
    return options


def output_mismatches(ran: NotebookNode, committed: NotebookNode, sanitize_file: Path = SANITIZE_FILE,
                      config=None) -> list[str]:
    """One report per code cell of ``committed`` whose outputs in ``ran`` (the same notebook, run) differ, as
    nbval would report it; an empty list when every checked cell matches.

    A cell counts as different too when it did not run, or when its source changed (``ran`` must be a run of
    ``committed``). ``config`` (pytest's) makes the differences read like pytest's assertion diffs.
    """
    patterns = dict(get_sanitize_patterns(Path(sanitize_file).read_text()))
    ran_cells = [c for c in ran.cells if c.cell_type == "code"]
    committed_cells = [c for c in committed.cells if c.cell_type == "code"]
    if len(ran_cells) != len(committed_cells):
        return [f"the run has {len(ran_cells)} code cells, the committed notebook {len(committed_cells)}"]
    reports = []
    for number, (test, reference) in enumerate(zip(ran_cells, committed_cells)):
        options = _options(reference)
        where = f"Cell {number}"  # nbval's numbering: code cells only, from 0
        if test.source != reference.source:
            reports.append(f"{where}: its source differs from the committed one\n\nInput:\n{reference.source}")
        elif options["skip"] or not options["check"] or reference.execution_count is None:
            continue  # nbval-skip, nbval-ignore-output, or a committed cell that was never run: nbval checks nothing
        elif test.execution_count is None:
            reports.append(f"{where}: did not run\n\nInput:\n{reference.source}")
        else:
            cell = _NbvalCell(patterns, config)
            # Copies: coalesce_streams appends to the first stream output it finds.
            if not cell.compare_outputs(coalesce_streams(copy.deepcopy(test.outputs)),
                                        coalesce_streams(copy.deepcopy(reference.outputs))):
                details = "\n".join(cell.comparison_traceback)
                reports.append(f"{where}: Cell outputs differ\n\nInput:\n{reference.source}\n\n{details}")
    return reports
