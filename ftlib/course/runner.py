"""Run the course headless: every lesson notebook through papermill, into an output folder, with a summary."""

from __future__ import annotations

import ast
import atexit
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ftlib.paths import NOTEBOOK_DIR
from ftlib.runtime import HEADLESS

__all__ = ["CELL_TIMEOUT", "COUNTS", "HEADLINE_PREFIX", "LessonRun", "check_kernel", "check_out_dir",
           "check_parameters", "check_value", "headless_kernels", "headline", "lessons", "notebook_parameters",
           "parse_value", "points", "run_course", "run_notebook", "scratch_folder", "summary_table"]

HEADLINE_PREFIX = "Headline: "
CELL_TIMEOUT = 180  # seconds a lesson cell may run headless; the slowest takes about 30 s on 2 cores
COUNTS = ("seeds", "steps", "n", "n_labelled", "pretrain_steps", "batch_size", "eval_every", "patience",
          "rank")  # lesson parameters that count something: a positive integer


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
    import nbformat
    import papermill

    try:
        nbformat.validate(nbformat.read(path, as_version=4))  # e.g. a JSON list is not a notebook
        return {name: info["default"] for name, info in papermill.inspect_notebook(str(path)).items()}
    except (OSError, ValueError, AttributeError, TypeError, KeyError, nbformat.ValidationError) as error:
        raise ValueError(f"{path} is not a readable notebook ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''})") from None


def check_kernel(kernel: str) -> None:
    """A ``ValueError`` naming ``kernel`` and the installed ones unless Jupyter knows a kernel of that name."""
    from jupyter_client.kernelspec import KernelSpecManager

    installed = sorted(KernelSpecManager().find_kernel_specs())
    if kernel not in installed:
        raise ValueError(f"--kernel {kernel!r} is not an installed Jupyter kernel; installed: "
                         f"{', '.join(installed) or 'none'} (`jupyter kernelspec list`)")


def check_out_dir(out_dir: str | Path, notebooks: list[Path]) -> None:
    """A ``ValueError`` unless ``out_dir`` is (or can become) a folder whose outputs are none of ``notebooks``
    (also through a hard or symbolic link)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"--out {out_dir} is an existing file: give a folder for the executed notebooks")
    for nb in notebooks:
        output = out_dir / nb.name
        if output.exists() and (output.resolve() == nb.resolve() or os.path.samefile(output, nb)):
            raise ValueError(f"--out {out_dir}: {output} is the source notebook {nb} (the same file, or a link "
                             "to it); choose another folder")


def check_parameters(notebooks: list[Path], parameters: dict) -> None:
    """Raise a ``ValueError`` for a parameter that none of ``notebooks`` declares (naming the allowed ones), or
    whose value does not fit the default a notebook declares (:func:`check_value`)."""
    declared: dict[str, list[tuple[str, str]]] = {}
    for nb in notebooks:
        for name, default in notebook_parameters(nb).items():
            declared.setdefault(name, []).append((nb.name, default))
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise ValueError(f"unknown parameter(s) {unknown} for {', '.join(nb.name for nb in notebooks)}; "
                         f"allowed: {', '.join(sorted(declared)) or 'none'}")
    for name, value in parameters.items():
        for notebook, default in declared[name]:
            check_value(name, value, parse_value(default), notebook)


def check_value(name: str, value, default, notebook: str = "the notebook") -> None:
    """A ``ValueError`` unless ``value`` is of the kind of the parameter's ``default`` (numbers, ints and floats
    alike, must be finite; any value fits a ``None`` default), and a count (:data:`COUNTS`) is a positive integer."""
    def kind(v) -> str:
        return "bool" if isinstance(v, bool) else "number" if isinstance(v, (int, float)) else type(v).__name__

    if default is not None and kind(value) != kind(default):
        raise ValueError(f"-p {name} {value!r} is not allowed: {notebook} declares {name} = {default!r}, "
                         f"so give a {kind(default)}")
    if any(isinstance(v, float) and not math.isfinite(v) for v in _leaves(value)):
        raise ValueError(f"-p {name} {value!r} is not allowed: give finite numbers")
    if name in COUNTS and not (isinstance(value, int) and value >= 1):
        raise ValueError(f"-p {name} {value!r} is not allowed: {name} counts something, give a positive integer")


def _leaves(value) -> Iterator:
    """``value`` itself, or every value nested in it (lists, tuples, sets, dict keys and values)."""
    if isinstance(value, dict):
        for item in value.items():
            yield from _leaves(item)
    elif isinstance(value, (list, tuple, set, frozenset)):
        for item in value:
            yield from _leaves(item)
    else:
        yield value


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


@contextmanager
def headless_kernels() -> Iterator[None]:
    """Kernels started inside this block know that no front end renders widgets (``$FTLIB_HEADLESS=1``), so
    :func:`ftlib.course.widgets.slider` prints its control and draws once, as text that nbval can compare, and a
    live slider trains nothing. (Live widgets do not stall a run either: they never wait on the client.)"""
    before = os.environ.get(HEADLESS)
    os.environ[HEADLESS] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(HEADLESS, None)
        else:
            os.environ[HEADLESS] = before


def _timed_out_cell(output: Path, seconds: int) -> str:
    """``cell N timed out ...`` for the last cell that papermill started in the ``output`` notebook."""
    import nbformat

    cells = nbformat.read(output, as_version=4).cells
    started = [i for i, c in enumerate(cells) if c.metadata.get("papermill", {}).get("start_time")]
    index = started[-1] if started else 0
    first = cells[index].source.strip().splitlines()[0] if cells and cells[index].source.strip() else ""
    return f"cell {index}: timed out after {seconds} s (a stalled or far too slow cell): {first}"


def run_notebook(path: str | Path, out_dir: str | Path, parameters: dict | None = None,
                 kernel: str = "python3", timeout: int = CELL_TIMEOUT) -> LessonRun:
    """Execute one notebook with papermill into ``out_dir`` (never over the source) and report how it went.

    Only the parameters the notebook declares are passed to it. The kernel runs headless (see
    :func:`headless_kernels`), and a cell that runs longer than ``timeout`` seconds fails the run, naming it.
    """
    import nbformat
    import papermill
    from nbclient.exceptions import DeadKernelError

    path, out_dir = Path(path), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    output = out_dir / path.name
    if output.resolve() == path.resolve() or (output.exists() and os.path.samefile(output, path)):
        raise ValueError(f"output folder {out_dir} holds the source notebook (or a link to it); choose another "
                         "folder")
    declared = notebook_parameters(path)
    own = {k: v for k, v in (parameters or {}).items() if k in declared}
    start = time.perf_counter()
    try:
        with headless_kernels():
            papermill.execute_notebook(str(path), str(output), parameters=own, kernel_name=kernel,
                                       cwd=str(path.parent), progress_bar=False, execution_timeout=timeout)
    except papermill.PapermillExecutionError as error:
        return LessonRun(path.name, "failed", time.perf_counter() - start,
                         error=f"cell {error.cell_index}: {error.ename}: {error.evalue}", output=str(output))
    except TimeoutError:  # nbclient's CellTimeoutError
        return LessonRun(path.name, "failed", time.perf_counter() - start,
                         error=_timed_out_cell(output, timeout), output=str(output))
    except DeadKernelError as error:  # the process running the lesson ended: the other lessons still run
        return LessonRun(path.name, "failed", time.perf_counter() - start,
                         error=f"the kernel died: out of memory? ({error})".replace(" ()", ""), output=str(output))
    seconds = time.perf_counter() - start
    return LessonRun(path.name, "ok", seconds, _headline(nbformat.read(output, as_version=4)), output=str(output))


def run_course(notebooks: list[Path] | None = None, out_dir: str | Path = "runs", parameters: dict | None = None,
               kernel: str = "python3", echo: bool = True, timeout: int = CELL_TIMEOUT) -> list[LessonRun]:
    """Run every lesson (or the given notebooks) headless, print a summary table, and return the runs."""
    notebooks = [Path(nb) for nb in notebooks] if notebooks else lessons()
    missing = [str(nb) for nb in notebooks if not nb.exists()]
    if missing:
        raise ValueError(f"notebook(s) not found: {missing}; the lessons are {[p.name for p in lessons()]}")
    parameters = parameters or {}
    check_out_dir(out_dir, notebooks)
    check_kernel(kernel)
    check_parameters(notebooks, parameters)
    runs = []
    for nb in notebooks:
        run = run_notebook(nb, out_dir, parameters, kernel, timeout)
        runs.append(run)
        if echo:
            print(f"{run.notebook}: {run.status} in {run.seconds:.1f} s", flush=True)
    if echo:
        print(summary_table(runs))
    return runs


def scratch_folder(prefix: str = "ftlib-") -> Path:
    """A new empty temporary folder that is removed when the Python process (e.g. the lesson's kernel) ends."""
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def summary_table(runs: list[LessonRun]) -> str:
    """A plain-text table: notebook, status, seconds, and its headline (or the failing cell)."""
    width = max([len("notebook")] + [len(r.notebook) for r in runs])
    lines = [f"{'notebook':<{width}}  status  seconds  result", "-" * (width + 40)]
    for r in runs:
        lines.append(f"{r.notebook:<{width}}  {r.status:<6}  {r.seconds:7.1f}  {r.headline or r.error}")
    return "\n".join(lines)
