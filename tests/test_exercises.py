"""The exercise checks: an untouched exercise only says what to do; right and wrong answers get their feedback."""

import importlib

import nbformat
import pytest

from ftlib.course import runner as course
from ftlib.course.lessons.exercises import Option, Question, attempted, check_prediction, check_target, solution_text

QUESTION = Question("Why does fine-tuning beat scratch at N=5?", {
    "a": Option("The pretrained features already separate the classes", True, "The probe shows it."),
    "b": Option("Fine-tuning trains for longer", False, "Both train the same steps."),
})


def test_an_untouched_exercise_prints_what_to_do_and_neither_passes_nor_fails(capsys):
    assert not attempted(...) and attempted(0)

    def build(model):
        ...

    def stub(model):
        pass

    def written(model):
        return model

    assert not attempted(build) and not attempted(stub) and attempted(written) and attempted(lambda m: m)
    for feedback in (check_prediction(..., 12.0, tolerance=3, quantity="the gain", why="features"),
                     check_target(None, target=80, quantity="accuracy", hint="the rate"),
                     QUESTION.check(...)):
        assert feedback.passed is None and "not attempted" in feedback.message
    out = capsys.readouterr().out
    assert "(a) The pretrained features" in out and "12.0" not in out  # the question is shown, the result is not


def test_a_prediction_passes_within_its_tolerance_and_says_which_side_it_missed():
    assert check_prediction(10.0, 12.0, tolerance=3, quantity="the gain", why="W.", unit=" pts").passed
    high = check_prediction(20.0, 12.0, tolerance=3, quantity="the gain", why="Because W.")
    assert high.passed is False and "(high)" in high.message and "Because W." in high.message
    assert check_prediction(2.0, 12.0, tolerance=3, quantity="g", why="W.").message.startswith("Off by 10.0 (low)")
    assert check_prediction("ten", 12.0, tolerance=3, quantity="g", why="W.").passed is False
    with pytest.raises(ValueError, match="tolerance"):
        check_prediction(1.0, 1.0, tolerance=-1, quantity="g", why="W.")


def test_a_target_is_met_from_the_right_side_and_a_miss_gives_the_hint():
    assert check_target(85.0, target=80, quantity="accuracy", hint="h").passed
    miss = check_target(70.0, target=80, quantity="accuracy", hint="try a lower rate")
    assert miss.passed is False and "try a lower rate" in miss.message
    assert check_target(0.5, target=1.0, quantity="drift", hint="h", at_least=False).passed
    assert check_target(1.5, target=1.0, quantity="drift", hint="h", at_least=False).passed is False


def test_a_question_gives_each_option_its_own_feedback_and_rejects_unknown_letters():
    assert QUESTION.check(" A ").passed and "probe" in QUESTION.check("a").message
    wrong = QUESTION.check("b")
    assert wrong.passed is False and "same steps" in wrong.message
    assert QUESTION.check("z").passed is False
    with pytest.raises(ValueError, match="exactly one correct"):
        Question("?", {"a": Option("x", False, "f"), "b": Option("y", False, "g")})


def test_solution_text_is_a_functions_source_or_a_values_repr():
    def freeze_two(model):
        return model

    assert solution_text(freeze_two) == "def freeze_two(model):\n    return model"
    assert solution_text(3e-3) == "0.003" and solution_text("b") == "'b'"


@pytest.mark.parametrize("notebook", course.lessons(), ids=lambda p: p.stem)
def test_every_lesson_has_two_or_three_exercises_each_with_its_solution_folded_below(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    module = importlib.import_module(f"ftlib.course.lessons.exercises.lesson{notebook.name[:2]}")
    assert set(module.SOLUTIONS) == set(module.WRONG_ANSWERS), "every exercise needs a solution and a wrong answer"
    exercises = [i for i, c in enumerate(cells) if "exercise" in c.metadata.get("tags", [])]
    assert 2 <= len(exercises) <= 3 and len(module.SOLUTIONS) == len(exercises)
    solutions = []
    for i in exercises:
        shown = "".join(o.get("text", "") for o in cells[i].outputs)
        assert "Exercise not attempted yet" in shown, f"cell {i}: an untouched exercise says what to do"
        below = cells[i + 1]
        assert below.cell_type == "markdown" and "solution" in below.metadata.get("tags", []), \
            f"cell {i + 1} should be the exercise's solution (a markdown cell tagged solution)"
        assert below.metadata.get("jupyter", {}).get("source_hidden"), f"cell {i + 1}: the solution starts folded"
        solutions.append(below.source)
    for name, answer in module.SOLUTIONS.items():
        assert any(solution_text(answer) in text for text in solutions), f"{name}: its solution is not shown"


@pytest.mark.parametrize("notebook", course.lessons(), ids=lambda p: p.stem)
def test_every_lesson_has_a_live_slider(notebook):
    cells = nbformat.read(notebook, as_version=4).cells
    assert any("live_slider(" in c.source for c in cells if c.cell_type == "code"), \
        f"{notebook.name} should let the learner train or evaluate live (ftlib.course.widgets.live_slider)"


def test_a_cell_ending_with_a_check_shows_its_words_once(capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_cell("from ftlib.course.lessons.exercises import check_target\n"
                   "check_target(None, target=1, quantity='q', hint='h')")
    out = capsys.readouterr().out
    assert out.count("Exercise not attempted yet") == 1 and "Feedback(" not in out
