"""Every lesson in JupyterLab, in headless Chromium: run all cells, compare every output with the committed one (as
``pytest --nbval`` would), move the main slider and see its output change; then move the live slider and see it run
again for real.

This is the one run of each lesson in the default ``pytest``: nbval cannot see widgets (their output lives in widget
state), so the lesson runs where learners use it, and its saved outputs are then checked with nbval's own comparison
(tests/notebook_outputs.py; digits that vary between CPUs masked by tests/nbval_sanitize.cfg). One JupyterLab server
and one browser serve the whole module; each lesson gets a fresh page and its kernel is shut down afterwards.
Screenshots go to tests/screenshots/ (ignored by git).

Deselect these tests with ``pytest -m "not browser"`` (or ``-m "not slow"``). They need Debian's Chromium
(``apt-get install chromium``); without it they are skipped, except when the environment variable ``CI`` is set,
where they fail.
"""

import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import nbformat
import pytest
from notebook_outputs import SANITIZE_FILE, output_mismatches

from ftlib.course import runner as course
from ftlib.course.widgets import LIVE_CLASS
from ftlib.runtime import HEADLESS

CHROMIUM = Path("/usr/bin/chromium")
# How an error shows in an output (IPython's header), not the word alone: lesson 09's model can write "traceback"
ERROR = r"Traceback \(most recent call last\)"
SCREENSHOTS = Path(__file__).resolve().parent / "screenshots"
RUN_TIMEOUT_S = 1800  # a lesson takes ~50 s on 2 idle cores; leave room for a busy CI machine
CELL_TIMEOUT_S = 600  # longest wait for the next cell to finish (~30 s on 2 idle cores; a busy CI machine is slower)
NOTEBOOK = ".jp-NotebookPanel:not(.lm-mod-hidden)"  # the notebook on screen
STEP_TIMEOUT_S = 60  # a page to open, a kernel to start, a slider to redraw
KERNEL_IDLE = re.compile(r"\| Idle$")  # status bar: "Python 3 (ipykernel) | Idle"
SETTINGS = {  # JupyterLab settings for the test server: no news toast, every cell rendered (no windowing)
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false",
                                                                       "checkForUpdates": False},
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
}

def _require_browser():
    """Skip (or, under CI, fail) when Chromium or Playwright is missing, saying how to install them."""
    missing = []
    if not CHROMIUM.exists():
        missing.append(f"Chromium at {CHROMIUM} (sudo apt-get install -y chromium)")
    try:
        import playwright  # noqa: F401
    except ImportError:
        missing.append("Playwright for Python (pip install -e '.[test]'; never `playwright install`)")
    if missing:
        message = f"browser tests need {' and '.join(missing)}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run them", pytrace=False)
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _copy_lessons(target: Path) -> None:
    """A copy of the notebooks folder, lessons without their stored outputs: whatever shows up was run here.

    Each lesson keeps its parameters (its default seeds): its outputs are compared with the committed ones.
    """
    shutil.copytree(course.NOTEBOOK_DIR, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for path in course.lessons(target):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.outputs, cell.execution_count = [], None
        nbformat.write(nb, path)


def _api(lab: dict, path: str, method: str = "GET"):
    request = urllib.request.Request(f"{lab['url']}{path}?token={lab['token']}", method=method)
    with urllib.request.urlopen(request, timeout=10) as response:
        body = response.read()
    return json.loads(body) if body else None


def _server_env(state: Path) -> dict:
    """The server's environment: private state folders, and no headless flag (a person's JupyterLab renders
    widgets, so the lessons must get their live sliders even though the kernels pytest starts itself run headless;
    the committed outputs were made with widgets too, by ``python -m ftlib refresh``). Its kernels run every lesson's
    independent runs in the kernel (``FTLIB_WORKERS=1``, the same records): the two test processes already keep both
    cores busy, so a pool of two more processes per lesson would only add start-ups (the pool's own path is tested
    in tests/test_workers.py and by the papermill run of lesson 07 in tests/test_course.py)."""
    env = dict(os.environ)
    env.pop(HEADLESS, None)
    env["FTLIB_WORKERS"] = "1"
    for name in ("JUPYTER_CONFIG_DIR", "JUPYTER_DATA_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR",
                 "JUPYTERLAB_SETTINGS_DIR", "JUPYTERLAB_WORKSPACES_DIR"):
        env[name] = str(state / name.lower())
    return env


def _start_server(root: Path, state: Path) -> dict:
    env = _server_env(state)
    for name, values in SETTINGS.items():
        settings = state / "jupyterlab_settings_dir" / name
        settings.parent.mkdir(parents=True, exist_ok=True)
        settings.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(16)
    command = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
               f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        command.append("--allow-root")
    log = state / "server.log"
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    lab = {"process": process, "url": f"http://127.0.0.1:{port}", "token": token, "log": log, "root": root}
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline and process.poll() is None:
        try:
            _api(lab, "/api/status")
            return lab
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    _stop_server(lab)
    pytest.fail(f"JupyterLab did not answer within {STEP_TIMEOUT_S} s; its log:\n{log.read_text()[-3000:]}")


def _stop_server(lab: dict) -> None:
    lab["process"].terminate()
    try:
        lab["process"].wait(timeout=15)
    except subprocess.TimeoutExpired:
        lab["process"].kill()
        lab["process"].wait()


@pytest.fixture(scope="session")
def lab(tmp_path_factory):
    """One JupyterLab server on loopback (free port, token, private dirs) over a copy of the lessons: one per test
    process, started at its first lesson and stopped at the end of the run."""
    _require_browser()
    root = tmp_path_factory.mktemp("lessons") / "notebooks"
    _copy_lessons(root)
    lab = _start_server(root, tmp_path_factory.mktemp("jupyter-state"))
    yield lab
    _stop_server(lab)


@pytest.fixture(scope="session")
def browser(lab, chromium):
    """Headless Debian Chromium (tests/conftest.py), once JupyterLab is up."""
    return chromium


def _wait_for_last_cell(page, name: str) -> None:
    """Wait for the headline or an error; fail if no cell finishes for CELL_TIMEOUT_S, saying how far it got."""
    prompts = page.locator(f"{NOTEBOOK} .jp-CodeCell .jp-InputPrompt")
    done = page.locator(f"{NOTEBOOK} .jp-OutputArea-output").filter(
        has_text=re.compile(f"{course.HEADLINE_PREFIX}|{ERROR}"))
    start = last = time.monotonic()
    ran = -1
    while not done.count():
        now, texts = time.monotonic(), prompts.all_inner_texts()
        finished = sum(bool(re.fullmatch(r"\[\d+\]:", t.strip())) for t in texts)
        if finished > ran:
            ran, last = finished, now
        assert now - last < CELL_TIMEOUT_S and now - start < RUN_TIMEOUT_S, \
            f"{name}: {ran} of {len(texts)} code cells ran in {now - start:.0f} s, none in the last {now - last:.0f} s"
        time.sleep(1)


def _run_all(page, lab: dict, name: str) -> None:
    """Open a lesson, wait until its kernel is really ready, run all cells and wait for the last one."""
    page.goto(f"{lab['url']}/lab/workspaces/{Path(name).stem}/tree/{name}?reset&token={lab['token']}")
    # The toolbar says idle about a second before the kernel exists, and a Run All issued then is lost:
    # wait for the status bar's kernel item instead.
    page.get_by_role("button", name=KERNEL_IDLE).wait_for(timeout=STEP_TIMEOUT_S * 1000)
    page.get_by_role("menubar").get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    _wait_for_last_cell(page, name)
    outputs = page.locator(f"{NOTEBOOK} .jp-OutputArea-output")
    errors = outputs.filter(has_text=re.compile(ERROR))
    assert errors.count() == 0, f"{name} failed in the browser:\n{errors.first.inner_text()[-3000:]}"
    page.get_by_role("button", name=KERNEL_IDLE).wait_for(timeout=STEP_TIMEOUT_S * 1000)


def _save(page, lab: dict, name: str) -> nbformat.NotebookNode:
    """Save the notebook on screen (File > Save Notebook) and return it as written to disk: the lesson as run."""
    path = Path(lab["root"]) / name
    before = path.stat().st_mtime_ns
    page.get_by_role("menubar").get_by_role("menuitem", name="File", exact=True).click()
    page.get_by_role("menuitem", name=re.compile(r"^Save Notebook\b")).first.click()
    dirty = page.locator(".lm-TabBar-tab.lm-mod-current.jp-mod-dirty")  # the tab's unsaved-changes mark
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while (path.stat().st_mtime_ns == before or dirty.count()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert path.stat().st_mtime_ns != before and not dirty.count(), f"{name} was not saved in {STEP_TIMEOUT_S} s"
    return nbformat.read(path, as_version=4)


def _shutdown_kernels(lab: dict) -> None:
    for kernel in _api(lab, "/api/kernels"):
        _api(lab, f"/api/kernels/{kernel['id']}", method="DELETE")


def _names(value: str, line: str) -> bool:
    """Whether ``line`` shows ``value`` as a whole token ("4" is in "k = 4 blocks", not in "75,274 parameters")."""
    return re.search(rf"(?<![\w.,]){re.escape(value)}(?![\w,]|\.\d)", line) is not None


def _move_slider_and_check(page, name: str, widget=None, shot: str = "") -> str:
    """Check a slider is readable (by default the lesson's first replay slider), move it one step, wait for the
    redraw; return the new value."""
    widget = widget if widget is not None else page.locator(".widget-interact").first
    widget.scroll_into_view_if_needed()
    label = widget.locator(".widget-slider .widget-label")
    handle = widget.locator(".widget-slider .noUi-handle[role=slider]")
    readout = widget.locator(".widget-slider .widget-readout")
    text, image = widget.locator(".widget-output .jp-OutputArea-output pre"), widget.locator(".widget-output img")

    description = label.inner_text().strip()
    assert re.search(r"[A-Za-z]{3,}.*\s.*[A-Za-z]", description), \
        f"slider description {description!r} is not readable: say in words what it sets"
    assert label.evaluate("e => e.scrollWidth <= e.clientWidth"), f"description {description!r} is cut off"
    low, high, now = (int(float(handle.get_attribute(a))) for a in ("aria-valuemin", "aria-valuemax", "aria-valuenow"))
    assert 2 <= high - low + 1 <= 30, f"slider has {high - low + 1} positions; a learner needs 2 to 30"
    before_text = text.first.inner_text()
    before_image = image.first.get_attribute("src") if image.count() else None  # a live slider may only print
    shown = readout.inner_text().strip()
    assert _names(shown, before_text.splitlines()[0]), f"the first line should name the shown value {shown!r}"

    handle.focus()
    # one step down where it can (a live slider then trains with fewer steps, labels or rank: the cheaper run)
    page.keyboard.press("ArrowRight" if now == low else "ArrowLeft")
    moved = int(float(handle.get_attribute("aria-valuenow")))
    assert abs(moved - now) == 1, f"one key press should move the slider one step ({now} -> {moved})"
    value = readout.inner_text().strip()
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while time.monotonic() < deadline:  # text and plot arrive one after the other: wait until both are new
        after_text = text.first.inner_text() if text.count() else ""
        after_image = image.first.get_attribute("src") if image.count() else None
        if after_text != before_text and _names(value, after_text.partition("\n")[0]) \
                and (before_image is None or after_image not in (None, before_image)):
            break
        time.sleep(0.2)
    if image.count():  # bring the new plot into view and let it decode and paint, or the shot shows it half drawn
        image.first.scroll_into_view_if_needed()
        image.first.evaluate("img => img.decode()")
        page.evaluate("() => new Promise(done => requestAnimationFrame(() => requestAnimationFrame(done)))")
        page.wait_for_timeout(1000)
    widget.screenshot(path=SCREENSHOTS / f"{Path(name).stem}{shot}.png")
    first_line = after_text.partition("\n")[0]
    assert _names(value, first_line) and after_text != before_text, \
        f"after moving the slider to {value!r} the output should show it; it says {first_line!r}"
    assert before_image is None or after_image not in (None, before_image), \
        "after moving the slider the plot should be redrawn"
    return value


def _move_live_slider_and_check(page, name: str) -> str:
    """The lesson's live slider: it says when its first run is done, and a move runs the work again for real (the
    status says "done in ..." once more) and shows the new value's result."""
    live = page.locator(f"{NOTEBOOK} .{LIVE_CLASS}")
    assert live.count() >= 1, f"{name} should have a live slider (ftlib.course.widgets.live_slider)"
    status = live.first.locator(".widget-hbox > .widget-label")
    assert status.inner_text().startswith("done in"), f"its first run should be done: {status.inner_text()!r}"
    value = _move_slider_and_check(page, name, live.first, shot="-live")
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while not status.inner_text().startswith("done in") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert status.inner_text().startswith("done in"), f"the live run should finish: {status.inner_text()!r}"
    return value


def test_jupyterlab_gets_live_widgets_while_pytest_kernels_run_headless(tmp_path):
    assert os.environ.get(HEADLESS) == "1", "tests/conftest.py makes the kernels pytest starts headless"
    env = _server_env(tmp_path)
    assert HEADLESS not in env and env["IPYTHONDIR"].startswith(str(tmp_path)) and env["FTLIB_WORKERS"] == "1"


def test_missing_browser_skips_with_how_to_install(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install -y chromium"):
        _require_browser()


def test_missing_browser_fails_under_ci(monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "CHROMIUM", Path("/nonexistent/chromium"))
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must run them"):
        _require_browser()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("notebook", course.lessons(), ids=lambda p: p.stem)
def test_lesson_runs_as_committed_and_its_sliders_redraw_in_jupyterlab(notebook, lab, browser, pytestconfig):
    SCREENSHOTS.mkdir(exist_ok=True)
    page = browser.new_page(viewport={"width": 1280, "height": 2400})  # tall enough for the tallest widget
    page.set_default_timeout(STEP_TIMEOUT_S * 1000)
    try:
        _run_all(page, lab, notebook.name)
        ran = _save(page, lab, notebook.name)
        _move_slider_and_check(page, notebook.name)
        _move_live_slider_and_check(page, notebook.name)
    except Exception:
        page.screenshot(path=SCREENSHOTS / f"{notebook.stem}-failed.png")
        raise
    finally:
        page.close()
        _shutdown_kernels(lab)
    mismatches = output_mismatches(ran, nbformat.read(notebook, as_version=4), config=pytestconfig)
    assert not mismatches, (f"{notebook.name} run in JupyterLab differs from its committed outputs (compared as "
                            f"`pytest --nbval` compares, digits masked by {SANITIZE_FILE.name}):\n\n"
                            + "\n\n".join(mismatches))
