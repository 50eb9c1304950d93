"""The exercise checks: an untouched exercise only says what to do; right and wrong answers get their feedback."""

import importlib
import inspect
from collections import Counter

import nbformat
import numpy as np
import pytest

from ftlib.course import runner as course
from ftlib.course.lessons.exercises import (
    NOT_RUN,
    Option,
    Question,
    attempted,
    check_prediction,
    check_target,
    not_attempted,
    reached,
    solution_text,
    watch_for_missing_cells,
)

QUESTION = Question("Why does fine-tuning beat scratch at N=5?", [
    Option("The pretrained features already separate the classes", True, "The probe shows it."),
    Option("Fine-tuning trains for longer", False, "Both train the same steps."),
], seed="test")
RIGHT, WRONG = QUESTION.letter_of(0), QUESTION.letter_of(1)


def test_an_untouched_exercise_prints_what_to_do_and_neither_passes_nor_fails(capsys):
    assert not attempted(...) and attempted(0)

    def build(model):
        ...

    def stub(model):
        pass

    def written(model):
        return model

    assert not attempted(build) and attempted(stub) and attempted(written) and attempted(lambda m: m)
    for feedback in (check_prediction(..., 12.0, tolerance=3, quantity="the gain", why="features"),
                     not_attempted("build it"), QUESTION.check(...)):
        assert feedback.passed is None and "not attempted" in feedback.message
    out = capsys.readouterr().out
    assert f"({RIGHT}) The pretrained features" in out and "12.0" not in out  # the question shown, the result not


def test_a_prediction_passes_within_its_tolerance_and_says_which_side_it_missed():
    assert check_prediction(10.0, 12.0, tolerance=3, quantity="the gain", why="W.", unit=" pts").passed
    high = check_prediction(20.0, 12.0, tolerance=3, quantity="the gain", why="Because W.")
    assert high.passed is False and "too high" in high.message and "Because W." not in high.message
    assert check_prediction(2.0, 12.0, tolerance=3, quantity="g", why="W.").message.startswith("Not yet: your")
    assert check_prediction("ten", 12.0, tolerance=3, quantity="g", why="W.").passed is False
    for number in (np.int64(11), np.float32(11.0)):  # NumPy's numbers are numbers (an index, a mean...)
        assert check_prediction(number, 12.0, tolerance=3, quantity="g", why="W.").passed is True
    for flag in (True, False):  # a bool is not a prediction, though Python counts it as 1 or 0
        feedback = check_prediction(flag, 1.0, tolerance=3, quantity="g", why="W.")
        assert feedback.passed is False and "finite number" in feedback.message
    for odd in (float("nan"), float("inf"), -float("inf")):  # not "too low": not a number to compare
        feedback = check_prediction(odd, 12.0, tolerance=3, quantity="g", why="W.")
        assert feedback.passed is False and "finite number" in feedback.message
    with pytest.raises(ValueError, match="tolerance"):
        check_prediction(1.0, 1.0, tolerance=-1, quantity="g", why="W.")


def test_a_target_is_met_from_the_right_side_and_a_miss_gives_the_hint():
    assert check_target(85.0, target=80, quantity="accuracy", hint="h").passed
    miss = check_target(70.0, target=80, quantity="accuracy", hint="try a lower rate")
    assert miss.passed is False and "try a lower rate" in miss.message
    assert check_target(0.5, target=1.0, quantity="drift", hint="h", at_least=False).passed
    assert check_target(1.5, target=1.0, quantity="drift", hint="h", at_least=False).passed is False


def test_a_question_gives_each_option_its_own_feedback_and_rejects_unknown_letters():
    assert QUESTION.check(f" {RIGHT.upper()} ").passed and "probe" in QUESTION.check(RIGHT).message
    wrong = QUESTION.check(WRONG)
    assert wrong.passed is False and "same steps" in wrong.message
    assert QUESTION.check("z").passed is False and QUESTION.check(None).passed is False
    with pytest.raises(ValueError, match="exactly one correct"):
        Question("?", [Option("x", False, "f"), Option("y", False, "g")], seed="s")


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
        assert f"import lesson{notebook.name[:2]} as exercises" in cells[i].source, \
            f"cell {i} imports its exercises, so that a restarted kernel says which cells to run"
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
    shell.run_cell("from ftlib.course.lessons.exercises import not_attempted\n"
                   "not_attempted('build it')")
    out = capsys.readouterr().out
    assert out.count("Exercise not attempted yet") == 1 and "Feedback(" not in out


# --- Every exercise of every lesson coaches (issue 35 item 3) ---------------------------------------------------------

MODULES = [importlib.import_module(f"ftlib.course.lessons.exercises.lesson{n:02d}") for n in range(1, 12)]
EXERCISES = [(m, name) for m in MODULES for name in m.SOLUTIONS]
QUESTIONS = [(m, q) for m in MODULES for q in vars(m).values() if isinstance(q, Question)]


def _ids(case):
    return f"{case[0].__name__.rsplit('.', 1)[-1]}.{case[1]}" if isinstance(case[1], str) else None


def _required(module, name):
    """The parameters the check of exercise ``name`` cannot do without: the answer, then any lesson state."""
    parameters = inspect.signature(getattr(module, name)).parameters.values()
    return [p for p in parameters if p.default is inspect.Parameter.empty]


def _call(module, name, answer):
    """The check with ``answer`` and None for the lesson state it would need (enough for what returns early)."""
    return getattr(module, name)(answer, *[None] * (len(_required(module, name)) - 1))


@pytest.mark.parametrize("case", EXERCISES, ids=_ids)
def test_each_exercise_has_two_hints_shown_one_at_a_time_and_its_solution(case, capsys):
    module, name = case
    assert len(module.HINTS[name]) == 2 and all(len(h) > 20 for h in module.HINTS[name])
    first, second, again = module.hint(name), module.hint(name), module.hint(name)
    assert first.startswith("Hint 1 of 2") and second.startswith("Hint 2 of 2") and again == second
    assert module.HINTS[name][0] in first and "exercises.solution" in second
    assert solution_text(module.SOLUTIONS[name]) in module.solution(name)
    with pytest.raises(ValueError, match="no exercise named"):
        module.hint("nope")


@pytest.mark.parametrize("case", EXERCISES, ids=_ids)
def test_an_untouched_exercise_is_not_attempted_and_a_none_answer_is_a_wrong_one(case, capsys):
    module, name = case
    untouched = _call(module, name, ...)
    assert untouched.passed is None and "not attempted" in untouched.message
    if isinstance(module.SOLUTIONS[name], (int, float)):
        return  # a prediction reads the lesson's results first: None is tested on check_prediction itself
    lazy = _call(module, name, None)
    assert lazy.passed is False and f"exercises.hint({name!r})" in lazy.message


@pytest.mark.parametrize("case", [c for c in EXERCISES if isinstance(c[0].SOLUTIONS[c[1]], str)
                                  and len(c[0].SOLUTIONS[c[1]]) == 1 and len(_required(*c)) == 1], ids=_ids)
def test_each_question_passes_its_solution_and_fails_each_wrong_answer_with_its_own_feedback(case, capsys):
    """Letter answers that need no lesson state (a letter measured against the lesson's runs, lesson 11's
    half_the_images, is tested with them in its lesson's tests)."""
    module, name = case
    assert _call(module, name, module.SOLUTIONS[name]).passed is True
    for answer, words in module.WRONG_ANSWERS[name]:
        wrong = _call(module, name, answer)
        assert wrong.passed is False and words in wrong.message


def test_every_exercise_has_wrong_answers_with_the_words_of_their_feedback():
    for module in MODULES:
        assert set(module.WRONG_ANSWERS) == set(module.SOLUTIONS) == set(module.HINTS), module.__name__
        for name, wrongs in module.WRONG_ANSWERS.items():
            assert wrongs and all(isinstance(words, str) and words for _, words in wrongs), name


def test_the_right_options_are_spread_over_the_letters_and_their_lengths_do_not_betray_them():
    letters = Counter(q.right_letter for _, q in QUESTIONS)
    assert len(QUESTIONS) == 11 and set(letters) == set("abcd") and max(letters.values()) <= 3, letters
    longest = shortest = 0
    for module, question in QUESTIONS:
        lengths = [len(o.text) for o in question.options.values()]
        assert max(lengths) <= 1.5 * min(lengths), (module.__name__, lengths)
        right = len(question.options[question.right_letter].text)
        longest, shortest = longest + (right == max(lengths)), shortest + (right == min(lengths))
        for letter, option in question.options.items():
            if not option.correct:  # a wrong option's feedback never names the right one
                assert question.right_letter not in _letters_named(option.feedback), (module.__name__, letter)
                assert question.options[question.right_letter].text not in option.feedback
    # "pick the longest" (or the shortest) must not be a strategy: at most a third of the questions each
    assert longest <= len(QUESTIONS) // 3 and shortest <= len(QUESTIONS) // 3, (longest, shortest)


def _letters_named(text):
    return {m for m in "abcd" if f"({m})" in text or f"'{m}'" in text}


def test_the_shuffle_is_fixed_by_the_seed():
    options = [Option("right", True, "r"), Option("w1", False, "1"), Option("w2", False, "2"), Option("w3", False, "3")]
    one, two = Question("?", options, seed="x"), Question("?", options, seed="x")
    assert one.options == two.options and one.letter_of(0) == one.right_letter
    assert {Question("?", options, seed=str(s)).right_letter for s in range(20)} == set("abcd")


def test_a_function_whose_source_is_only_an_ellipsis_is_a_placeholder_but_none_is_an_answer():
    def placeholder(model):
        ...  # your code

    def passes(model):
        pass

    def returns_none(model):
        return None

    assert not attempted(...) and not attempted(placeholder) and not attempted(lambda m: ...)
    assert all(attempted(a) for a in (None, passes, returns_none, lambda m: None, lambda *a: None, 0, ""))


def test_a_tolerance_or_target_is_met_at_its_edge_and_the_message_agrees():
    edge = 1.0000000000000009  # lesson 05's 'lose 1.0 points (at most 1)' that used to fail
    assert reached(edge, 1, at_least=False) and reached(1 - 1e-15, 1, at_least=True)
    assert not reached(1.01, 1, at_least=False)
    met = check_target(edge, target=1, quantity="the cost", hint="h", at_least=False)
    assert met.passed is True and "1.0 (at most 1)" in met.message
    near = check_target(1.04, target=1, quantity="the cost", hint="h", at_least=False)
    assert near.passed is False and "1.04" in near.message  # not '1.0, the target is at most 1'
    assert check_prediction(17.0, 12.0 + 5 * (1 + 1e-16), tolerance=5, quantity="g", why="W.").passed is True


def test_a_missed_prediction_is_told_its_side_but_not_the_measured_value():
    for guess in (2.0, 30.0):
        miss = check_prediction(guess, 16.25, tolerance=5, quantity="the gain", why="Because W.", unit=" points")
        assert miss.passed is False and "16.2" not in miss.message and "Because W." not in miss.message
        assert ("too low" if guess < 16 else "too high") in miss.message
    hit = check_prediction(15.0, 16.25, tolerance=5, quantity="the gain", why="Because W.")
    assert hit.passed is True and "16.2" in hit.message and "Because W." in hit.message
    assert check_prediction(None, 16.25, tolerance=5, quantity="g", why="W.").passed is False


def test_a_failed_check_points_at_its_hints_and_an_empty_result_says_the_cells_have_not_run(capsys):
    from ftlib.course.lessons.exercises import lesson01, lesson06
    from ftlib.course.lessons.experiments import Results

    wrong = lesson01.why_pretraining_wins(lesson01.WRONG_ANSWERS["why_pretraining_wins"][0][0])
    assert "Stuck? exercises.hint('why_pretraining_wins')" in wrong.message
    missing = lesson01.gain_at_five(15, Results([]))
    assert missing.passed is None and missing.not_run and NOT_RUN in capsys.readouterr().out
    assert lesson06.stop_a_real_run(lesson06.SOLUTIONS["stop_a_real_run"], []).not_run


@pytest.mark.parametrize("notebook", course.lessons(), ids=lambda p: p.stem)
def test_an_exercise_cell_run_before_the_cells_above_says_so_in_one_line(notebook, capsys):
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    assert watch_for_missing_cells(shell)
    cells = [c for c in nbformat.read(notebook, as_version=4).cells if "exercise" in c.metadata.get("tags", [])]
    for cell in cells:
        shell.reset(new_session=False)  # a restarted kernel: nothing above has run
        result = shell.run_cell(cell.source)
        out = capsys.readouterr().out
        assert "Traceback" not in out and "NameError" not in out, out
        assert "Exercise not attempted yet" in out or NOT_RUN in out, out
        if result.error_in_exec is not None:
            assert isinstance(result.error_in_exec, NameError) and out.count(NOT_RUN) == 1
    shell.reset(new_session=False)
    shell.run_cell("from ftlib.course.lessons.exercises import lesson01 as exercises\nexercises.hint(undefined_name)")
    assert NOT_RUN in capsys.readouterr().out  # a statement that calls no check keeps its traceback:
    shell.run_cell("undefined_name")
    assert NOT_RUN not in capsys.readouterr().out
