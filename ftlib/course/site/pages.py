"""The pages of the rendered course: each executed lesson made ready for static HTML, and the landing page.

A lesson page is its reference notebook with three changes, nothing recomputed: each solution (a markdown cell
tagged ``solution``) is folded in a ``<details>`` block; each replay slider whose cell holds its frames
(:mod:`ftlib.course.replay`) becomes an HTML slider over them; every other widget (live sliders, text boxes, a
replay slider stored without frames) becomes one line saying that it needs JupyterLab.
"""

from __future__ import annotations

import copy
import html
import json
import re
from pathlib import Path

from nbformat import NotebookNode

from ftlib.course.replay import find_frames

__all__ = ["REPLAY_CLASS", "landing_page", "lesson_page", "lesson_title", "readme_rows", "replay_html",
           "write_lesson_page"]

REPLAY_CLASS = "ftlib-replay"  # CSS class of a rendered replay slider (ftlib-replay.js drives it)
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
NEEDS_KERNEL = ("This control needs a running kernel: open the lesson in JupyterLab "
                "(notebooks/clean/) to move it.")
NO_FRAMES = ("Replay slider: its frames are not stored in this notebook yet (python -m ftlib refresh stores them); "
             "open the lesson in JupyterLab to move it.")


def lesson_title(notebook: NotebookNode, fallback: str) -> str:
    """The first ``# `` heading of ``notebook``, else ``fallback``."""
    for cell in notebook.cells:
        if cell.cell_type == "markdown":
            match = re.search(r"^#\s+(.+)$", cell.source, re.M)
            if match:
                return match[1].strip()
    return fallback


def _html_output(text: str) -> NotebookNode:
    return NotebookNode(output_type="display_data", metadata={}, data={"text/html": text})


def _output_html(output: dict) -> str:
    """One notebook output as HTML: text in ``<pre>``, images inline, HTML as it is."""
    if output.get("output_type") == "stream":
        return f'<pre class="ftlib-replay-{output.get("name", "stdout")}">{html.escape(output.get("text", ""))}</pre>'
    data = output.get("data", {})
    for mime in ("image/png", "image/jpeg"):
        if mime in data:
            alt = html.escape(data.get("text/plain", "figure"))
            return f'<img src="data:{mime};base64,{"".join(data[mime].split())}" alt="{alt}">'
    if "image/svg+xml" in data:
        return data["image/svg+xml"]
    if "text/html" in data:
        return data["text/html"]
    return f"<pre>{html.escape(data.get('text/plain', ''))}</pre>"


def replay_html(payload: dict) -> str:
    """A replay slider as static HTML: a range input over every stored frame (all in the page, one shown)."""
    labels, start, description = payload["labels"], payload["start"], html.escape(payload["description"])
    frames = "".join(f'<div class="ftlib-replay-frame" data-index="{i}"{"" if i == start else " hidden"}>'
                     f'{"".join(_output_html(o) for o in frame)}</div>' for i, frame in enumerate(payload["frames"]))
    return (f'<div class="{REPLAY_CLASS}" data-labels="{html.escape(json.dumps(labels))}">'
            f'<label class="ftlib-replay-control">{description}'
            f'<input type="range" min="0" max="{len(labels) - 1}" step="1" value="{start}" aria-label="{description}">'
            f"<output>{html.escape(labels[start])}</output></label>{frames}</div>")


def _fold(source: str) -> str:
    """A solution's markdown inside ``<details>``, its first line (``**Solution** ...``) as the summary."""
    first, _, rest = source.partition("\n")
    summary = html.escape(first.replace("**", "").strip() or "Solution")
    return f'<details class="ftlib-solution">\n<summary>{summary}</summary>\n\n{rest.strip()}\n\n</details>\n'


def lesson_page(notebook: NotebookNode) -> NotebookNode:
    """``notebook`` (an executed lesson) made ready for static HTML: solutions folded, replay sliders rendered from
    their frames, other widgets replaced by a note; everything else as stored."""
    page = copy.deepcopy(notebook)
    page.metadata.pop("widgets", None)
    for cell in page.cells:
        if cell.cell_type == "markdown" and "solution" in cell.metadata.get("tags", []):
            cell.source = _fold(cell.source)
        if cell.cell_type != "code" or not any(WIDGET_MIME in o.get("data", {}) for o in cell.outputs):
            continue
        frames = find_frames(cell.outputs)
        if frames is not None:
            cell.outputs = [_html_output(replay_html(frames))]
        else:
            is_replay = re.search(r"(?<![\w.])slider\(", cell.source) is not None
            note = NO_FRAMES if is_replay else NEEDS_KERNEL
            cell.outputs = [_html_output(f'<p class="ftlib-needs-kernel">{html.escape(note)}</p>')]
    return page


def readme_rows(readme: str) -> dict[str, list[str]]:
    """The README's lesson table: lesson number (``"01"``) -> its columns after the notebook link."""
    rows = {}
    for line in readme.splitlines():
        match = re.match(r"^\|\s*(\d\d)\s*\|[^|]*\|(.*)\|\s*$", line)
        if match:
            rows[match[1]] = [column.strip() for column in match[2].split("|")]
    return rows


def landing_page(lessons: list[tuple[str, str]], readme: str) -> str:
    """The landing page (MyST markdown): what the course is, how to read it, and the lesson table, each lesson
    linked (``lessons``: (page name, title) in teaching order), with the README's columns where it has them."""
    rows = readme_rows(readme)
    table = ["| # | lesson | what you measure | what you do |", "|---|---|---|---|"]
    for name, title in lessons:
        number = name[:2]
        columns = (rows.get(number, []) + ["", ""])[:2]
        label = title.split("·", 1)[-1].strip().replace("`", "")
        table.append(f"| {number} | {{doc}}`{label} <{name}>` | {' | '.join(columns)} |")
    toctree = "\n".join(name for name, _ in lessons)
    return f"""# Fine-Tuning Lab

A hands-on course on fine-tuning deep-learning models, on a laptop CPU. This is the course rendered from its
executed reference notebooks: every table, plot and printed number is the one stored in `notebooks/`, nothing is
recomputed. Each solution is folded below its exercise (click to open it). Replay sliders move here without a
kernel (every value's output is stored in the page); live sliders, which train for real, need JupyterLab: to work
through a lesson, open its learner copy in `notebooks/clean/` (`jupyter lab notebooks/clean/`).

{chr(10).join(table)}

```{{toctree}}
:hidden:
:maxdepth: 1

{toctree}
```
"""


def write_lesson_page(notebook_path: Path, target: Path) -> str:
    """Write the page of the lesson at ``notebook_path`` to ``target`` (a notebook); returns the lesson's title."""
    import nbformat

    notebook = nbformat.read(notebook_path, as_version=4)
    nbformat.write(lesson_page(notebook), target)
    return lesson_title(notebook, notebook_path.stem)
