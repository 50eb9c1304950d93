"""Run the course headless: every lesson notebook through papermill, into an output folder, with a summary."""

from __future__ import annotations

import ast
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from .paths import NOTEBOOK_DIR

HEADLINE_PREFIX = "Headline: "


def headline(text: str) -> None:
    """Print a lesson's one-line result; the course runner shows it in its summary table."""
    print(f"{HEADLINE_PREFIX}{text}")


def points(differences: Iterable[float]) -> str:
    """Per-seed differences in accuracy (fractions) as percentage points: ``"+3.1 points, -0.4 points"``."""
    return ", ".join(f"{100 * d:+.1f} points" for d in differences)


def lessons(directory: str | Path = NOTEBOOK_DIR) -> list[Path]:
    """The lesson notebooks (``NN_topic.ipynb``) in teaching order."""
    return sorted(p for p in Path(directory).glob("[0-9][0-9]_*.ipynb"))


def parse_value(text: str):
    """A ``-p`` value as Python would read it (``3``, ``0.1``, ``[1, 5]``, ``True``), else the text itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def notebook_parameters(path: str | Path) -> dict[str, str]:
    """The parameters a notebook declares in its cell tagged ``parameters``: name -> default (as source text)."""
    import papermill

    return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}


def check_parameters(notebooks: list[Path], parameters: dict) -> None:
    """Raise a ``ValueError`` for a parameter that none of ``notebooks`` declares, naming the allowed ones."""
    declared = {name for nb in notebooks for name in notebook_parameters(nb)}
    unknown = sorted(set(parameters) - declared)
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {', '.join(nb.name for nb in notebooks)}; "
                         f"allowed: {', '.join(sorted(declared)) or 'none'}")


@dataclass
class LessonRun:
    """The outcome of one notebook run."""

    notebook: str
    status: str  # "ok" or "failed"
    seconds: float
    headline: str = ""
    error: str = ""
    output: str = ""


def _headline(notebook) -> str:
    found = ""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            for line in output.get("text", "").splitlines():
                if line.startswith(HEADLINE_PREFIX):
                    found = line[len(HEADLINE_PREFIX):]
    return found


def run_notebook(path: str | Path, out_dir: str | Path, parameters: dict | None = None,
                 kernel: str = "python3", timeout: int = 600) -> LessonRun:
    """Execute one notebook with papermill into ``out_dir`` (never over the source) and report how it went.

    Only the parameters the notebook declares are passed to it.
    """
    import nbformat
    import papermill

    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    if output.resolve() == path.resolve():
        raise ValueError(f"output folder {out_dir} holds the source notebook; choose another folder")
    declared = notebook_parameters(path)
    own = {k: v for k, v in (parameters or {}).items() if k in declared}
    start = time.perf_counter()
    try:
        papermill.execute_notebook(str(path), str(output), parameters=own, kernel_name=kernel,
                                   cwd=str(path.parent), progress_bar=False, execution_timeout=timeout)
    except papermill.PapermillExecutionError as error:
        return LessonRun(path.name, "failed", time.perf_counter() - start,
                         error=f"cell {error.cell_index}: {error.ename}: {error.evalue}", output=str(output))
    seconds = time.perf_counter() - start
    return LessonRun(path.name, "ok", seconds, _headline(nbformat.read(output, as_version=4)), output=str(output))


def run_course(notebooks: list[Path] | None = None, out_dir: str | Path = "runs", parameters: dict | None = None,
               kernel: str = "python3", echo: bool = True) -> list[LessonRun]:
    """Run every lesson (or the given notebooks) headless, print a summary table, and return the runs."""
    notebooks = [Path(nb) for nb in notebooks] if notebooks else lessons()
    missing = [str(nb) for nb in notebooks if not nb.exists()]
    if missing:
        raise ValueError(f"notebook(s) not found: {missing}; the lessons are {[p.name for p in lessons()]}")
    parameters = parameters or {}
    check_parameters(notebooks, parameters)
    runs = []
    for nb in notebooks:
        run = run_notebook(nb, out_dir, parameters, kernel)
        runs.append(run)
        if echo:
            print(f"{run.notebook}: {run.status} in {run.seconds:.1f} s", flush=True)
    if echo:
        print(summary_table(runs))
    return runs


def summary_table(runs: list[LessonRun]) -> str:
    """A plain-text table: notebook, status, seconds, and its headline (or the failing cell)."""
    width = max([len("notebook")] + [len(r.notebook) for r in runs])
    lines = [f"{'notebook':<{width}}  status  seconds  result", "-" * (width + 40)]
    for r in runs:
        lines.append(f"{r.notebook:<{width}}  {r.status:<6}  {r.seconds:7.1f}  {r.headline or r.error}")
    return "\n".join(lines)
