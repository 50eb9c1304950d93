"""Runs cannot stall on widgets: the runner's kernels are headless, a stalled cell fails fast, named, and every
lesson's widget calls finish under a plain ``papermill`` (no headless flag, as a user runs a lesson)."""

import ast
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from ftlib.__main__ import main
from ftlib.course import runner as course
from ftlib.runtime import HEADLESS

ROOT = Path(__file__).resolve().parent.parent


def _notebook(path: Path, *sources: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(source) for source in sources]
    nbformat.write(nb, path)
    return path


def test_the_runner_starts_headless_kernels_and_a_slider_draws_once_without_a_widget(tmp_path, monkeypatch):
    monkeypatch.delenv(HEADLESS, raising=False)
    nb = _notebook(tmp_path / "01_slider.ipynb", "from ftlib.course.widgets import slider",
                   "slider(lambda n: print(f'drawn at {n}'), 'n', [1, 2, 3], 2, 'labels per class (N)')")
    run = course.run_notebook(nb, tmp_path / "out")
    assert run.status == "ok", run.error
    outputs = nbformat.read(run.output, as_version=4).cells[1].outputs
    text = "".join(o.get("text", "") for o in outputs)
    assert text == "[slider] labels per class (N): n = 2 (of 1, 2, 3)\ndrawn at 2\n"
    assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs)
    assert HEADLESS not in os.environ  # the flag was for the kernel only


def test_a_stalled_cell_fails_fast_and_the_failure_names_it(tmp_path, capsys):
    nb = _notebook(tmp_path / "02_stall.ipynb", "x = 1", "import time\ntime.sleep(60)  # a cell that never replies")
    assert main(["run", str(nb), "--out", str(tmp_path / "out"), "--timeout", "3"]) == 1
    err = capsys.readouterr().err
    assert "FAILED 02_stall.ipynb: cell 1: timed out after 3 s" in err and "import time" in err


def test_cell_timeouts_are_short_enough_to_fail_fast():
    [nbval] = re.findall(r"--nbval-cell-timeout (\d+)", (ROOT / "pyproject.toml").read_text())
    assert int(nbval) == course.CELL_TIMEOUT
    assert 60 <= course.CELL_TIMEOUT <= 180  # the slowest lesson cell takes about 30 s on 2 cores


def test_stall_check_finds_the_widget_cells_of_every_lesson():
    import importlib.util

    spec = importlib.util.spec_from_file_location("stall_check", ROOT / "tests" / "stall_check.py")
    stall_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stall_check)
    for lesson in course.lessons():
        cells = stall_check.widget_cells(nbformat.read(lesson, as_version=4))
        assert cells, f"{lesson.name} has no slider cell to check"



# Each lesson's widget calls, live (no headless flag), as a client that runs the notebook sees them. ipywidgets'
# `with output:` made the client route the kernel's output into the widget and send the widget's state back on the
# shell socket on which it waits for the cell's reply; now and then nbclient (papermill, nbconvert --execute) missed
# the reply and waited forever (nbclient issue 312). The lessons' shows need their trained runs, so each call gets a
# cheap stand-in that prints and draws, as the shows do; the helper and the control's name are the lesson's.
WIDGET_HELPERS = ("slider", "live_slider", "text_box")  # picker's form runs nothing until a button is clicked
PLAIN_ROUNDS = 12  # rounds of every lesson's widget calls (300 cells): the old widgets stalled 2-3 cells in 100
PLAIN_RUN_LIMIT_S = 300  # 12 rounds take ~70 s on 2 cores shared with 10 busy processes; a stall never ends
STAND_IN = '''\
%matplotlib inline
import matplotlib.pyplot as plt
from ftlib.course.widgets import live_slider, slider, text_box


def stand_in(**chosen):
    """What a lesson's show does, cheaply: print a line or two and draw a figure."""
    [(name, value)] = chosen.items()
    print(f"{name} = {value!r}")
    print("a second line of the table")
    _, axis = plt.subplots(figsize=(1.2, 0.8))
    axis.plot([0, 1], [0, len(str(value))])'''


def lesson_widget_calls(lesson: Path) -> list[tuple[str, str]]:
    """(helper, control name) of each widget call in the lesson's cells, in order."""
    calls = []
    for cell in nbformat.read(lesson, as_version=4).cells:
        if cell.cell_type != "code" or not any(f"{helper}(" in cell.source for helper in WIDGET_HELPERS):
            continue
        for node in ast.walk(ast.parse(cell.source)):
            helper = getattr(node, "func", None)
            if isinstance(node, ast.Call) and isinstance(helper, ast.Name) and helper.id in WIDGET_HELPERS:
                calls.append((helper.id, node.args[1].value))
    return calls


def _widget_notebook(path: Path, rounds: int) -> Path:
    """A notebook that makes every lesson's widgets ``rounds`` times (one per cell), each cell printing first
    which lesson's call it stands in for."""
    calls = {lesson.name: lesson_widget_calls(lesson) for lesson in course.lessons()}
    assert all(calls.values()), f"a lesson without widget calls: {calls}"
    cells = []
    for round_ in range(rounds):
        for lesson, found in calls.items():
            for helper, name in found:
                label = f"{lesson} {helper}({name!r}) round {round_}"
                start = '"a question"' if helper == "text_box" else "[0, 1, 2], 1"
                cells.append(f'print("{label}")\n{helper}(stand_in, {name!r}, {start}, "stand-in for {label}")')
    return _notebook(path, STAND_IN, *cells)


def _widget_views(nb) -> int:
    return sum("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for c in nb.cells for o in c.outputs)


def test_live_widgets_ask_nothing_of_the_client_that_runs_the_notebook(tmp_path, monkeypatch):
    """The cause of the stall, checked every time: no output is routed through the client, nothing is sent back."""
    from nbclient import NotebookClient
    from nbclient.output_widget import OutputWidget

    monkeypatch.delenv(HEADLESS, raising=False)  # live widgets, as under a plain papermill
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    asked = []
    monkeypatch.setattr(NotebookClient, "register_output_hook", lambda self, msg_id, hook: asked.append(msg_id))
    monkeypatch.setattr(NotebookClient, "remove_output_hook", lambda self, msg_id, hook: None)
    monkeypatch.setattr(OutputWidget, "send", lambda self, *args, **kwargs: asked.append(args))
    nb = nbformat.read(_widget_notebook(tmp_path / "widget_calls.ipynb", rounds=1), as_version=4)
    client = NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    assert asked == [], "a widget's output was routed through the client, which then answers on the shell socket"
    assert _widget_views(nb) == len(nb.cells) - 1  # live widgets, not the headless descriptions
    shown = [state["outputs"] for state in client.widget_state.values() if state.get("_model_name") == "OutputModel"]
    drawn = [outputs for outputs in shown if outputs and " = " in outputs[0].get("text", "")
             and "image/png" in outputs[-1].get("data", {})]
    assert len(drawn) == len(nb.cells) - 1, shown  # each widget shows its function's lines and figure


@pytest.mark.slow
def test_every_lessons_widget_calls_finish_under_plain_papermill_many_times(tmp_path):
    """The symptom: a plain ``papermill`` (no flag, no timeout) that never came back, hunted over 300 cells."""
    nb = _widget_notebook(tmp_path / "widget_calls.ipynb", PLAIN_ROUNDS)
    env = {key: value for key, value in os.environ.items() if key != HEADLESS}  # as a user runs papermill
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))  # this ftlib
    log = tmp_path / "papermill.log"
    start = time.perf_counter()
    with log.open("w") as sink:
        papermill = subprocess.Popen([sys.executable, "-m", "papermill", str(nb), str(tmp_path / "out.ipynb"),
                                      "--log-output", "--no-progress-bar",
                                      # no rewrite of the growing output notebook around every cell (quadratic
                                      # time); the saves come between cells, never while a reply is awaited
                                      "--no-request-save-on-cell-execute"], env=env, cwd=tmp_path, stdout=sink,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            papermill.wait(PLAIN_RUN_LIMIT_S)
        except subprocess.TimeoutExpired:
            os.killpg(papermill.pid, signal.SIGKILL)  # papermill and the kernel it started
            papermill.wait()
    seconds, text = time.perf_counter() - start, log.read_text()
    started = re.findall(r"^\d\d_\S+ \w+\('\w+'\) round \d+$", text, re.MULTILINE)
    assert papermill.returncode == 0, (f"papermill stalled or failed (exit {papermill.returncode}) after "
                                       f"{seconds:.0f} s at {started[-1] if started else 'the set-up cell'}; "
                                       f"log tail:\n{text[-1500:]}")
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert _widget_views(out) == len(out.cells) - 1  # live widgets, not the headless descriptions
