import ipywidgets
import pytest

from ftlib.course.widgets import LIVE_CLASS, live_slider, slider, text_box
from ftlib.runtime import HEADLESS


def test_slider_makes_one_control_and_calls_show_with_the_chosen_value(monkeypatch):
    monkeypatch.delenv(HEADLESS, raising=False)  # as in JupyterLab
    seen = []

    def show(patience, min_delta=0.5):
        seen.append((patience, min_delta))

    widget = slider(show, "patience", [1, 2, 5], 5, "patience (evaluations without a new best)")
    controls = [c for c in widget.children if isinstance(c, ipywidgets.ValueWidget)]
    assert len(controls) == 1 and controls[0].description.startswith("patience")
    controls[0].value = 2
    assert seen[-1] == (2, 0.5)


@pytest.mark.parametrize("value, description, message", [(3, "labels (N)", "start value 3"),
                                                          (1, "  ", "description")])
def test_bad_slider_settings_are_clear_errors(value, description, message):
    with pytest.raises(ValueError, match=message):
        slider(lambda n: None, "n", [1, 2], value, description)


def test_headless_slider_makes_no_widget_describes_itself_and_draws_once(monkeypatch, capsys):
    monkeypatch.setenv(HEADLESS, "1")
    seen = []
    made = []
    monkeypatch.setattr(ipywidgets.Widget, "__init__", lambda *a, **k: made.append(a))  # any widget at all
    assert slider(lambda patience: seen.append(patience), "patience", [1, 2, 5], 5, "patience (evaluations)") is None
    assert seen == [5] and made == []
    assert capsys.readouterr().out == "[slider] patience (evaluations): patience = 5 (of 1, 2, 5)\n"


def test_headless_slider_still_refuses_bad_settings(monkeypatch):
    monkeypatch.setenv(HEADLESS, "1")
    with pytest.raises(ValueError, match="start value 3"):
        slider(lambda n: None, "n", [1, 2], 3, "labels (N)")


def test_headless_zero_means_a_front_end_is_there(monkeypatch):
    monkeypatch.setenv(HEADLESS, "0")
    assert isinstance(slider(lambda n: None, "n", [1, 2], 1, "labels (N)"), ipywidgets.interactive)


def test_text_box_answers_once_headless_and_is_live_otherwise(monkeypatch, capsys):
    asked = []
    monkeypatch.setenv(HEADLESS, "1")
    assert text_box(lambda question: asked.append(question), "question", "why?", "Your question") is None
    assert asked == ["why?"] and "[text box] Your question: question = 'why?'" in capsys.readouterr().out
    monkeypatch.delenv(HEADLESS)
    box = text_box(lambda question: asked.append(question), "question", "why?", "Your question")
    [control] = [c for c in box.children if isinstance(c, ipywidgets.Text)]
    control.value = "how?"
    assert asked[-1] == "how?"


def test_live_slider_runs_compute_for_each_release_and_says_when_it_is_done(monkeypatch):
    monkeypatch.delenv(HEADLESS, raising=False)
    seen = []
    box = live_slider(lambda steps: seen.append(steps), "steps", [10, 20, 40], 20, "fine-tuning steps")
    control, status = box.children[0].children
    assert seen == [20] and status.value.startswith("done in") and not control.continuous_update
    assert LIVE_CLASS in box._dom_classes
    control.value = 40
    assert seen == [20, 40] and status.value.startswith("done in")


def test_live_slider_headless_runs_nothing_says_what_it_controls_and_refuses_bad_settings(monkeypatch, capsys):
    monkeypatch.setenv(HEADLESS, "1")
    seen = []
    assert live_slider(lambda steps: seen.append(steps), "steps", [10, 20], 10, "steps") is None
    assert seen == [] and capsys.readouterr().out == \
        "[live slider] steps: steps = 10 (of 10, 20): in JupyterLab every move runs it\n"
    with pytest.raises(ValueError, match="start value 5"):
        live_slider(lambda steps: None, "steps", [10, 20], 5, "steps")


def test_a_live_slider_puts_its_output_in_its_widget_from_the_kernel_in_order(monkeypatch):
    """Nothing is routed through a front end (nbclient issue 312): the output area's state holds the lines."""
    import sys

    monkeypatch.delenv(HEADLESS, raising=False)

    def show(n):
        print(f"n = {n}")
        print("a warning", file=sys.stderr)
        print("after it")

    widget = slider(show, "n", [1, 2], 1, "labels (N)")
    assert [(o["name"], o["text"]) for o in widget.out.outputs] == [("stdout", "n = 1\n"), ("stderr", "a warning\n"),
                                                                     ("stdout", "after it\n")]
    [control] = [c for c in widget.children if isinstance(c, ipywidgets.ValueWidget)]
    control.value = 2
    assert widget.out.outputs[0]["text"] == "n = 2\n"  # replaced, not appended


def test_an_error_in_a_slider_shows_in_its_widget_and_goes_no_further(monkeypatch):
    monkeypatch.delenv(HEADLESS, raising=False)
    widget = slider(lambda n: print("start") or 1 / (n - 1), "n", [1, 2], 1, "labels (N)")
    [stream, error] = widget.out.outputs
    assert stream["text"] == "start\n" and error["output_type"] == "error" and error["ename"] == "ZeroDivisionError"


def test_captured_keeps_the_order_of_lines_and_figures_and_figures_as_text(monkeypatch):
    from types import SimpleNamespace

    from ftlib.course.widgets import captured

    shell = SimpleNamespace(display_pub="the kernel's publisher")  # where IPython's display() publishes
    monkeypatch.setattr("IPython.get_ipython", lambda: shell)
    output = ipywidgets.Output()
    with captured(output):
        print("before")
        shell.display_pub.publish({"image/png": b"\x89PNG", "text/plain": "<Figure>"})
        print("after")
    [before, figure, after] = output.outputs
    assert (before["text"], after["text"]) == ("before\n", "after\n")
    assert figure["data"] == {"image/png": "iVBORw==", "text/plain": "<Figure>"}  # base64, as Jupyter sends it
    assert shell.display_pub == "the kernel's publisher"  # given back
