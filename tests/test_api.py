"""The shape of the package: a public API per module, the library apart from the course, short notebook code."""

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import ftlib

ROOT = Path(ftlib.__file__).resolve().parent
COURSE = "ftlib.course"  # what only the course needs: the library must never import it


def _modules():
    return sorted(info.name for info in pkgutil.walk_packages([str(ROOT)], "ftlib.") if info.name != "ftlib.__main__")


def test_ftlib_lists_every_top_level_module_and_gives_each_on_first_use():
    top = {p.stem for p in ROOT.glob("*.py") if not p.stem.startswith("_")} | {p.name for p in ROOT.iterdir()
                                                                              if (p / "__init__.py").exists()}
    assert set(ftlib.__all__) == top
    assert ftlib.paths.DATA_DIR.is_dir()
    with pytest.raises(AttributeError, match="no attribute 'nonsense'"):
        ftlib.nonsense  # noqa: B018


@pytest.mark.parametrize("name", _modules())
def test_every_module_declares_its_public_names_and_they_exist(name):
    module = importlib.import_module(name)
    if name.endswith("__init__") or not hasattr(module, "__file__") or module.__file__.endswith("__init__.py"):
        return
    assert hasattr(module, "__all__"), f"{name} has no __all__"
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{name}.__all__ names what it does not define: {missing}"


def _imports(path: Path, source: str | None = None) -> set[str]:
    """What the module at ``path`` imports (``source`` read from it unless given); relative imports resolved."""
    tree = ast.parse(path.read_text() if source is None else source)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the file's package
                package = path.relative_to(ROOT.parent).with_suffix("").parts[:-1]
                base = ".".join(package[:len(package) - node.level + 1] + ((base,) if base else ()))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


def _library_files() -> list[Path]:
    """Every library module: all of ftlib but the course subpackage and the command line's entry point."""
    return [p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] not in {"course", "__main__.py"}]


def _course_imports(path: Path, source: str | None = None) -> list[str]:
    return sorted(i for i in _imports(path, source) if i == COURSE or i.startswith(COURSE + "."))


def test_the_library_never_imports_what_only_the_course_needs():
    library = _library_files()
    assert len(library) > 25 and ROOT / "train.py" in library and ROOT / "lm" / "model.py" in library
    offenders = {str(p.relative_to(ROOT)): _course_imports(p) for p in library}
    assert not {k: v for k, v in offenders.items() if v}


def test_the_import_check_catches_a_library_module_that_imports_the_course():
    """The check above can fail: absolute, relative and plain imports of the course are all found."""
    probe = ROOT / "_import_probe.py"  # never written: relative imports resolve against this place in ftlib/
    for source in ("from ftlib.course.lessons import experiments", "from .course import runner",
                   "import ftlib.course.bench", "from . import course", "from ftlib import course"):
        assert _course_imports(probe, source), source
    assert not _course_imports(probe, "from . import models\nfrom ftlib.lm import chat")


def test_the_command_line_reaches_the_course_only_for_course_commands():
    """``__main__`` is the one bridge: it imports ``ftlib.course`` lazily, inside the course commands, and
    ``finetune`` / ``predict`` run with the course made unimportable."""
    tree = ast.parse((ROOT / "__main__.py").read_text())
    top_level = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
    assert not [ast.unparse(n) for n in top_level if "course" in ast.unparse(n)]
    blocker = ("import sys, importlib.abc\n"
               "class Block(importlib.abc.MetaPathFinder):\n"
               "    def find_spec(self, name, path, target=None):\n"
               "        if name == 'ftlib.course' or name.startswith('ftlib.course.'):\n"
               "            raise ImportError('the course was imported: ' + name)\n"
               "sys.meta_path.insert(0, Block())\n"
               "from ftlib.__main__ import main\n"
               "for command in (['finetune', '--help'], ['predict', '--help']):\n"
               "    try:\n"
               "        main(command)\n"
               "    except SystemExit as done:\n"
               "        assert done.code == 0, (command, done.code)\n"
               "print('course untouched')\n")
    result = subprocess.run([sys.executable, "-c", blocker], capture_output=True, text=True, cwd=ROOT.parent)
    assert result.returncode == 0 and "course untouched" in result.stdout, result.stderr[-2000:]


def test_no_notebook_cell_defines_a_long_function():
    long = []
    for path in sorted((ROOT.parent / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        for i, cell in enumerate(json.loads(path.read_text())["cells"]):
            if cell["cell_type"] != "code":
                continue
            source = "\n".join(line for line in "".join(cell["source"]).splitlines() if not line.startswith("%"))
            for node in ast.walk(ast.parse(source)):
                if isinstance(node, ast.FunctionDef) and node.end_lineno - node.lineno + 1 > 12:
                    long.append(f"{path.name} cell {i}: {node.name}")
    assert not long, f"move these into ftlib.course.lessons: {long}"
