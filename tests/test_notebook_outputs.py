"""The lesson-output comparison the browser tests use: it passes a lesson as committed, and fails, readably, when an
output changes, a cell did not run, or its source changed; masked digits and ignored cells never fail it."""

import copy
import re

import nbformat
import pytest
from notebook_outputs import SANITIZE_FILE, output_mismatches

from ftlib.course import runner as course

ROOT = SANITIZE_FILE.parent.parent
LESSON = course.lessons()[0]


def _code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def _checked_stream(nb):
    """The first code cell that nbval checks and that prints, and its first stream output."""
    for number, cell in enumerate(_code_cells(nb)):
        if "nbval-ignore-output" in cell.metadata.get("tags", []):
            continue
        for output in cell.outputs:
            if output.output_type == "stream" and output.text.strip():
                return number, output
    raise AssertionError(f"{LESSON.name} prints nothing in a checked cell")


@pytest.fixture
def committed():
    return nbformat.read(LESSON, as_version=4)


def test_the_committed_lesson_matches_itself(committed, pytestconfig):
    assert output_mismatches(copy.deepcopy(committed), committed, config=pytestconfig) == []


@pytest.mark.parametrize("config", [True, False], ids=["pytest diff", "nbval fallback"])
def test_an_altered_output_fails_and_the_report_names_the_cell_and_both_texts(committed, config, pytestconfig):
    ran = copy.deepcopy(committed)
    number, output = _checked_stream(ran)
    reference = output.text
    output.text = reference.replace(reference.strip().split()[0], "CHANGED", 1)
    [report] = output_mismatches(ran, committed, config=pytestconfig if config else None)
    assert report.startswith(f"Cell {number}: Cell outputs differ") and "mismatch 'stdout'" in report
    assert "CHANGED" in report and _code_cells(committed)[number].source in report


def test_masked_digits_may_differ_but_a_verdict_may_not(tmp_path, committed):
    ran = copy.deepcopy(committed)
    cell = _code_cells(ran)[0]
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="accuracy 91.2% (3.1 s), claim holds\n")]
    reference = copy.deepcopy(ran)
    reference.cells[ran.cells.index(cell)].outputs[0].text = "accuracy 88.7% (2.4 s), claim holds\n"
    assert output_mismatches(ran, reference) == []
    cell.outputs[0].text = "accuracy 91.2% (13.1 s), claim holds\n"  # a slow machine: wider, padded columns
    reference.cells[ran.cells.index(cell)].outputs[0].text = "accuracy 88.7% ( 2.4 s), claim holds\n"
    assert output_mismatches(ran, reference) == []
    cell.outputs[0].text = "accuracy 91.2% (3.1 s), claim fails\n"
    assert output_mismatches(ran, reference)


def test_streams_are_merged_as_nbval_merges_them(committed):
    ran = copy.deepcopy(committed)
    number, output = _checked_stream(ran)
    cell = _code_cells(ran)[number]
    head, tail = output.text[:5], output.text[5:]
    at = cell.outputs.index(output)
    cell.outputs[at:at + 1] = [nbformat.v4.new_output("stream", name="stdout", text=head),
                               nbformat.v4.new_output("stream", name="stdout", text=tail)]
    assert output_mismatches(ran, committed) == []


def test_ignored_cells_are_not_compared_but_must_not_change_their_source(committed):
    ran = copy.deepcopy(committed)
    ignored = [c for c in _code_cells(ran) if "nbval-ignore-output" in c.metadata.get("tags", [])]
    assert ignored, f"{LESSON.name} has no nbval-ignore-output cell (its sliders carry the tag)"
    ignored[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="anything at all\n")]
    assert output_mismatches(ran, committed) == []
    ignored[0].source += "\n# edited"
    [report] = output_mismatches(ran, committed)
    assert "its source differs" in report


def test_a_cell_that_did_not_run_fails(committed):
    ran = copy.deepcopy(committed)
    number, _ = _checked_stream(ran)
    cell = _code_cells(ran)[number]
    cell.outputs, cell.execution_count = [], None
    [report] = output_mismatches(ran, committed)
    assert report.startswith(f"Cell {number}: did not run")


def test_a_missing_cell_fails(committed):
    ran = copy.deepcopy(committed)
    ran.cells.remove(_code_cells(ran)[-1])
    [report] = output_mismatches(ran, committed)
    assert re.search(r"the run has \d+ code cells, the committed notebook \d+", report)


def test_the_sanitize_file_is_the_one_nbval_uses():
    assert f"--nbval-sanitize-with {SANITIZE_FILE.relative_to(ROOT)}" in (ROOT / "pyproject.toml").read_text()
