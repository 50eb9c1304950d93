"""Headless runs cannot stall on widgets: the runner's kernels are headless, and a stalled cell fails fast, named."""

import os
import re
from pathlib import Path

import nbformat

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
