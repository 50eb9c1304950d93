"""The rendered course (``python -m ftlib site``): its pages from the stored outputs, and the built site in headless
Chromium: every page renders with its title and figures, solutions are folded, every replay slider changes its
output, no console error, no request leaves the machine.

The site's tools come with the ``site`` extra (the ``test`` extra includes it); the browser tests need Debian's
Chromium. Without them the tests are skipped, except under CI (``CI`` set), where they fail.
"""

import base64
import functools
import http.server
import io
import os
import threading
from pathlib import Path

import nbformat
import pytest

from ftlib.__main__ import main
from ftlib.course import replay
from ftlib.course.runner import lessons
from ftlib.course.site import build_site, missing_tools
from ftlib.course.site.pages import NEEDS_KERNEL, NO_FRAMES, landing_page, lesson_page, readme_rows, replay_html
from ftlib.paths import ROOT

CHROMIUM = Path("/usr/bin/chromium")
LESSONS = lessons()
FIXTURE = "99_replay_fixture"  # a lesson-like page whose slider cell holds frames, as `refresh` stores them


def _require(what: list[str]) -> None:
    if what:
        message = f"the rendered-course tests need {' and '.join(what)}"
        if os.environ.get("CI"):
            pytest.fail(f"{message}; CI must run them", pytrace=False)
        pytest.skip(message)


def _png(value: int) -> str:
    """A small PNG (a bar of height ``value``), base64 as a notebook stores it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.bar([0], [value])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _frames(values=(1, 2, 3), start=1) -> dict:
    frames = [[{"output_type": "stream", "name": "stdout", "text": f"k = {v}\n"},
               {"output_type": "display_data", "data": {"image/png": _png(v), "text/plain": "<Figure>"},
                "metadata": {}}] for v in values]
    return {"name": "k", "description": "the k", "labels": [str(v) for v in values], "start": start,
            "frames": frames}


def _fixture_lesson(folder: Path) -> Path:
    """A notebook shaped like a refreshed lesson: a replay slider cell with its frames, a solution, a live slider."""
    widget = {"output_type": "execute_result", "execution_count": 2, "metadata": {},
              "data": {"text/plain": "interactive(...)", "application/vnd.jupyter.widget-view+json":
                       {"model_id": "0" * 32, "version_major": 2, "version_minor": 0}}}
    frames = {"output_type": "display_data", "metadata": {},
              "data": {replay.MIME: _frames(), "text/plain": "[replay frames]"}}
    cells = [nbformat.v4.new_markdown_cell("# Lesson 99 · Replay fixture\n\nA page made by the tests."),
             nbformat.v4.new_code_cell('slider(show, "k", [1, 2, 3], 2, "the k")',
                                       outputs=[nbformat.from_dict(frames), nbformat.from_dict(widget)]),
             nbformat.v4.new_markdown_cell("**Solution** (open it when stuck).\n\n```python\nk = 2\n```",
                                           metadata={"tags": ["solution"], "jupyter": {"source_hidden": True}}),
             nbformat.v4.new_code_cell('live_slider(train, "k", [1, 2], 1, "k, trained")',
                                       outputs=[nbformat.from_dict(widget)])]
    path = folder / f"{FIXTURE}.ipynb"
    metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                "language_info": {"name": "python"}}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata=metadata), path)
    return path


def test_a_lesson_page_folds_solutions_and_renders_replay_frames(tmp_path):
    page = lesson_page(nbformat.read(_fixture_lesson(tmp_path), as_version=4))
    solution = page.cells[2].source
    assert solution.startswith('<details class="ftlib-solution">\n<summary>Solution (open it when stuck).</summary>')
    assert "```python\nk = 2\n```" in solution and solution.rstrip().endswith("</details>")
    [rendered] = page.cells[1].outputs
    assert 'class="ftlib-replay"' in rendered.data["text/html"]
    assert rendered.data["text/html"].count('class="ftlib-replay-frame"') == 3
    assert page.cells[3].outputs[0].data["text/html"].endswith(f"{NEEDS_KERNEL}</p>")


def test_replay_html_shows_only_the_start_frame():
    text = replay_html(_frames(values=(1, 2, 3, 4), start=2))
    assert text.count(" hidden>") == 3 and 'data-index="2">' in text and 'value="2"' in text and 'max="3"' in text
    assert "<output>3</output>" in text and "k = 3" in text


@pytest.mark.parametrize("lesson", LESSONS, ids=lambda p: p.stem)
def test_every_widget_of_a_lesson_becomes_a_replay_or_a_note(lesson):
    """A replay slider with stored frames becomes an HTML slider, one without says so, a live control needs a kernel."""
    reference = nbformat.read(lesson, as_version=4)
    page = lesson_page(reference)
    for before, after in zip(reference.cells, page.cells):
        if not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in before.get("outputs", [])):
            assert after == before or "solution" in before.metadata.get("tags", [])
            continue
        [output] = after.outputs
        text = output.data["text/html"]
        if replay.find_frames(before.outputs) is not None:
            assert text.startswith('<div class="ftlib-replay"')
        elif before.source.lstrip().startswith("slider("):
            assert NO_FRAMES in text.replace("&#x27;", "'")
        elif "live_slider(" in before.source:
            assert NEEDS_KERNEL in text


def test_the_landing_page_lists_every_lesson_with_the_readme_columns():
    readme = (ROOT / "README.md").read_text()
    assert sorted(readme_rows(readme)) == [f"{i:02d}" for i in range(1, 12)]
    text = landing_page([(p.stem, f"Lesson {p.stem[:2]} · title {p.stem[:2]}") for p in LESSONS], readme)
    for p in LESSONS:
        assert f"{{doc}}`title {p.stem[:2]} <{p.stem}>`" in text
    assert "predict fine-tuning's gain over scratch at N=5" in text  # lesson 01's row, from the README


def test_site_refuses_an_output_folder_it_did_not_build(tmp_path, capsys):
    _require([f"{name} (pip install -e '.[site]')" for name in missing_tools()])
    (tmp_path / "mine.txt").write_text("keep me")
    assert main(["site", "--out", str(tmp_path)]) == 2
    assert "other files in it" in capsys.readouterr().err and (tmp_path / "mine.txt").exists()
    assert main(["site", "--out", str(ROOT / "notebooks" / "site")]) == 2
    assert "shipped folder" in capsys.readouterr().err


# The built site in headless Chromium ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def site(tmp_path_factory):
    """The rendered course (every lesson and the replay fixture), served on loopback."""
    _require([f"{name} (pip install -e '.[site]')" for name in missing_tools()] +
             ([] if CHROMIUM.exists() else [f"Chromium at {CHROMIUM} (apt-get install -y chromium)"]))
    out = tmp_path_factory.mktemp("site") / "html"
    fixture = _fixture_lesson(tmp_path_factory.mktemp("fixture"))
    index = build_site(out, [*LESSONS, fixture])
    handler = functools.partial(_QuietHandler, directory=str(out))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield {"url": f"http://127.0.0.1:{server.server_address[1]}", "index": index}
    server.shutdown()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="session")
def browser(site, chromium):
    """Headless Debian Chromium (tests/conftest.py), once the site is served."""
    return chromium


def _open(browser, url: str):
    """A page at ``url`` with every problem recorded: console errors, page errors, failed loads, and any request
    that is not to the local server (aborted)."""
    page = browser.new_page()
    problems = []
    local = url.split("/")[2]

    def route(r):
        target = r.request.url
        if target.startswith("data:") or target.split("/")[2] == local:
            r.continue_()
        else:
            problems.append(f"request leaves the machine: {target}")
            r.abort()

    page.route("**/*", route)
    page.on("console", lambda m: m.type == "error" and problems.append(f"console error: {m.text}"))
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status}: {r.url}"))
    page.goto(url, wait_until="networkidle")
    return page, problems


@pytest.mark.slow
@pytest.mark.browser
def test_the_landing_page_links_every_lesson(site, browser):
    page, problems = _open(browser, f"{site['url']}/index.html")
    for path in LESSONS:
        assert page.locator(f"table a[href='{path.stem}.html']").count() == 1, path.stem
    assert not problems, problems
    page.close()


@pytest.mark.slow
@pytest.mark.browser
@pytest.mark.parametrize("name", [p.stem for p in LESSONS] + [FIXTURE])
def test_every_lesson_page_renders_offline_with_folded_solutions_and_moving_replays(site, browser, name):
    page, problems = _open(browser, f"{site['url']}/{name}.html")
    heading = page.locator("article h1").first.inner_text()
    assert heading.startswith(f"Lesson {name[:2]} ·"), heading
    images = page.locator("article img")
    assert images.count() >= 1
    assert page.evaluate("Array.from(document.querySelectorAll('article img')).every(i => i.naturalWidth > 0)")
    solutions = page.locator("details.ftlib-solution")
    assert solutions.count() >= 1 and page.locator("details.ftlib-solution[open]").count() == 0
    solutions.first.locator("summary").click()
    assert solutions.first.evaluate("d => d.open")
    replays = page.locator(".ftlib-replay")
    for i in range(replays.count()):
        box = replays.nth(i)
        before, label = box.locator(".ftlib-replay-frame:visible").inner_html(), box.locator("output").inner_text()
        assert box.locator(".ftlib-replay-frame:visible").count() == 1
        slider = box.locator("input[type=range]")
        at_end = slider.evaluate("s => s.value === s.max")
        slider.focus()
        page.keyboard.press("ArrowLeft" if at_end else "ArrowRight")
        assert box.locator(".ftlib-replay-frame:visible").count() == 1
        assert box.locator(".ftlib-replay-frame:visible").inner_html() != before, f"{name}: replay {i} did not move"
        assert box.locator("output").inner_text() != label
    if name == FIXTURE:
        assert replays.count() == 1 and page.locator(".ftlib-needs-kernel").count() == 1
    assert not problems, f"{name}: {problems}"
    page.close()
