"""The learner copies (notebooks/clean/): the reference lessons' cells and sources, no outputs, nothing shown
before a predict exercise, and runnable from their own folder."""

import ast

import nbformat
import pytest

from ftlib.__main__ import main
from ftlib.course import learner_copies
from ftlib.course.runner import lessons
from ftlib.paths import NOTEBOOK_DIR

LESSONS = lessons()


def test_every_lesson_has_a_learner_copy_and_the_runner_lists_each_lesson_once():
    assert len(LESSONS) == 11 and all(p.parent == NOTEBOOK_DIR for p in LESSONS)
    assert sorted(p.name for p in learner_copies.CLEAN_DIR.glob("*.ipynb")) == [p.name for p in LESSONS]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_the_learner_copy_has_the_reference_sources_and_no_outputs(lesson):
    assert learner_copies.mismatches(lesson) == []


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_no_result_shows_before_a_predict_exercise(lesson):
    clean = nbformat.read(learner_copies.clean_path(lesson), as_version=4)
    exercises = learner_copies.predict_exercises(clean)
    assert exercises, f"{lesson.name} has no '### Exercise N · predict' heading"
    for index in exercises:
        shown = [i for i, cell in enumerate(clean.cells[:index]) if cell.get("outputs")]
        assert not shown, f"{lesson.name}: cells {shown} show results before the predict exercise in cell {index}"


def test_the_reference_copies_do_show_results_before_a_predict_exercise():
    """What the learner copies take away: lesson 01's reference shows its figures before its prediction."""
    reference = nbformat.read(LESSONS[0], as_version=4)
    [index] = learner_copies.predict_exercises(reference)
    assert any(cell.get("outputs") for cell in reference.cells[:index])


def _string_literals(source: str):
    code = "\n".join(line for line in source.splitlines() if not line.lstrip().startswith(("%", "!")))
    return [node.value for node in ast.walk(ast.parse(code))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_the_lessons_read_no_path_relative_to_the_notebook(lesson):
    """A learner copy runs from notebooks/clean/, one folder down: a lesson may reach the course's files only
    through ftlib.paths (or the modules that use it), never through a path relative to its working directory."""
    relative = [text for cell in nbformat.read(lesson, as_version=4).cells if cell.cell_type == "code"
                for text in _string_literals(cell.source)
                if text.startswith(("../", "./", "data/", "notebooks/")) or "/data/" in text]
    assert not relative, f"{lesson.name} reads paths relative to its folder: {relative}"


def test_a_stale_or_unstripped_copy_is_named(tmp_path):
    reference = tmp_path / LESSONS[0].name
    reference.write_bytes(LESSONS[0].read_bytes())
    assert learner_copies.mismatches(reference) == [f"{tmp_path / 'clean' / reference.name} is missing "
                                                    "(python -m ftlib clean-copies)"]
    assert main(["clean-copies", "--check", str(reference)]) == 1
    assert main(["clean-copies", str(reference)]) == 0
    assert learner_copies.mismatches(reference) == [] and main(["clean-copies", "--check", str(reference)]) == 0

    nb = nbformat.read(reference, as_version=4)
    nb.cells[0].source += "\nedited"
    nbformat.write(nb, reference)
    [problem] = learner_copies.mismatches(reference)
    assert "sources differ" in problem

    learner_copies.write_learner_copies([reference])
    copy = nbformat.read(learner_copies.clean_path(reference), as_version=4)
    copy.cells[2].outputs = [nbformat.v4.new_output("stream", text="a result\n")]
    nbformat.write(copy, learner_copies.clean_path(reference))
    assert learner_copies.mismatches(reference) == [f"{learner_copies.clean_path(reference)}: cells [2] keep "
                                                    "outputs or execution counts"]


def test_clean_copies_refuses_a_file_that_is_not_a_lesson(tmp_path, capsys):
    other = tmp_path / "notes.ipynb"
    other.write_text("{}")
    assert main(["clean-copies", str(other)]) == 2
    assert "is not a lesson notebook" in capsys.readouterr().err
