"""The rendered course: static HTML built offline from the executed lessons' stored outputs
(``python -m ftlib site``).

Sphinx with myst-nb (execution off) and the book theme, installed by the ``site`` extra
(``pip install -e ".[site]"``); the learner install does not need them. The pages come from
:mod:`ftlib.course.site.pages`; the slider script and the style sheet are shipped in ``static/`` beside this file,
and the theme's own files are copied from its package: a built page fetches nothing from the network.
"""

from __future__ import annotations

import importlib
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from ftlib.course.runner import lessons
from ftlib.course.site.pages import landing_page, write_lesson_page
from ftlib.paths import ROOT, shipped_folder

__all__ = ["SITE_TOOLS", "STATIC_DIR", "build_site", "missing_tools"]

SITE_TOOLS = {"sphinx": "sphinx", "myst_nb": "myst-nb", "sphinx_book_theme": "sphinx-book-theme"}  # module: package
STATIC_DIR = Path(__file__).resolve().parent / "static"  # ftlib-replay.js, ftlib-site.css

CONF = '''# Written by `python -m ftlib site` (ftlib/course/site): the rendered course, built offline.
project = "Fine-Tuning Lab"
html_title = "Fine-Tuning Lab"
extensions = ["myst_nb"]
nb_execution_mode = "off"  # every output is the one stored in the executed reference notebook
nb_ipywidgets_js = {}  # no widget state is rendered, and nothing is fetched from a CDN
html_theme = "sphinx_book_theme"
html_theme_options = {"show_toc_level": 2, "use_download_button": False, "use_fullscreen_button": False}
html_context = {"default_mode": "light"}  # none given: the theme's script logs a console error
html_static_path = ["_static"]
html_js_files = ["ftlib-replay.js"]
html_css_files = ["ftlib-site.css"]
html_show_sourcelink = False
html_copy_source = False
exclude_patterns = ["_build"]
'''


def missing_tools() -> list[str]:
    """The packages of the ``site`` extra that cannot be imported (not installed, or broken), each with why."""
    missing = []
    for module, package in SITE_TOOLS.items():
        try:
            importlib.import_module(module)
        except ImportError as error:
            missing.append(package if isinstance(error, ModuleNotFoundError) and error.name == module
                           else f"{package} (installed but it fails to import: {error})")
    return missing


def _check_out(out: Path) -> None:
    """A ``ValueError`` unless ``out`` can take the site: outside the course's folders (data/, notebooks/, the
    package ftlib/), and either absent, empty or an earlier build (which is replaced)."""
    if not str(out) or str(out) == ".":
        raise ValueError(f"--out {str(out)!r} is not allowed: give a folder of its own for the site (e.g. site)")
    shipped = shipped_folder(out)
    if shipped is not None:
        raise ValueError(f"--out {out} lies in {shipped.name}/, a shipped folder of the course: choose a folder "
                         "outside data/, notebooks/ and ftlib/ (e.g. site)")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is not a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / ".buildinfo").is_file():
        raise ValueError(f"--out {out} is a folder with other files in it (not an earlier build of the site); "
                         "choose an empty or new folder")


def build_site(out: str | Path = "site", notebooks: list[str | Path] | None = None) -> Path:
    """Build the rendered course into ``out`` from the executed ``notebooks`` (default: every lesson); returns its
    landing page. ``ValueError``: a bad ``out`` or a missing tool; ``RuntimeError``: Sphinx failed (its messages)."""
    if not str(out):
        raise ValueError("--out '' names no folder: give a folder of its own for the site (e.g. site)")
    out = Path(out)
    missing = missing_tools()
    if missing:
        raise ValueError(f"the rendered course needs {', '.join(missing)}: pip install -e \".[site]\"")
    _check_out(out)
    paths = [Path(p) for p in notebooks] if notebooks else lessons()
    if not paths:
        raise ValueError("no lesson notebooks (notebooks/NN_topic.ipynb) to render: run this in a clone of the course")
    unreadable = [p for p in paths if not p.is_file()]
    if unreadable:
        raise ValueError(f"lesson notebook {unreadable[0]} does not exist (or is not a file)")
    with tempfile.TemporaryDirectory(prefix="ftlib-site-") as scratch:
        source = Path(scratch) / "source"
        shutil.copytree(STATIC_DIR, source / "_static")
        (source / "conf.py").write_text(CONF)
        pages = [(path.stem, _lesson_page(path, source / path.name)) for path in paths]
        readme = ROOT / "README.md"
        (source / "index.md").write_text(landing_page(pages, readme.read_text() if readme.is_file() else ""))
        built = Path(scratch) / "build" / "html"  # myst-nb also writes jupyter_execute/ beside it, in scratch
        command = [sys.executable, "-m", "sphinx", "-b", "html", "-q", "-E", "-d", str(Path(scratch) / "doctrees"),
                   str(source), str(built)]
        done = subprocess.run(command, capture_output=True, text=True)
        if done.returncode or not (built / "index.html").is_file():
            raise RuntimeError(f"sphinx failed ({done.returncode}), {out} is as it was: "
                               f"{done.stderr.strip()[-2000:]}")
        if done.stderr.strip():
            print(done.stderr.strip(), file=sys.stderr)
        _put_in_place(built, out)
    return out / "index.html"


def _lesson_page(path: Path, target: Path) -> str:
    """:func:`write_lesson_page`, with a notebook that cannot be read as a ``ValueError`` naming it."""
    import nbformat

    try:
        return write_lesson_page(path, target)
    except (ValueError, nbformat.ValidationError, KeyError, AttributeError) as error:
        raise ValueError(f"{path} is not a valid notebook ({str(error).splitlines()[0][:200]})") from None


def _put_in_place(built: Path, out: Path) -> None:
    """Replace ``out`` (absent, empty, or an earlier build) with the finished build ``built``: the old build is
    removed only once the new one is complete."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = out.with_name(f".{out.name}.new")
    shutil.rmtree(staged, ignore_errors=True)
    shutil.copytree(built, staged)  # the scratch folder may be on another file system
    if out.is_dir():
        shutil.rmtree(out)
    staged.rename(out)
