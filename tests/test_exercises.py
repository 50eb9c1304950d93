"""The exercise checks: an untouched exercise only says what to do; right and wrong answers get their feedback."""

import pytest

from ftlib.lessons.exercises import Option, Question, attempted, check_prediction, check_target

QUESTION = Question("Why does fine-tuning beat scratch at N=5?", {
    "a": Option("The pretrained features already separate the classes", True, "The probe shows it."),
    "b": Option("Fine-tuning trains for longer", False, "Both train the same steps."),
})


def test_an_untouched_exercise_prints_what_to_do_and_neither_passes_nor_fails(capsys):
    assert not attempted(...) and attempted(0)
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
