"""The shape of the package: a public API per module, the library apart from the course, short notebook code."""

import ast
import importlib
import json
import pkgutil
from pathlib import Path

import pytest

import ftlib

ROOT = Path(ftlib.__file__).resolve().parent
COURSE_ONLY = {"lessons", "course", "bench", "widgets"}  # what the library must never import


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


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
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


def test_the_library_never_imports_what_only_the_course_needs():
    library = [p for p in ROOT.rglob("*.py") if p.relative_to(ROOT).parts[0] not in
               {*COURSE_ONLY, "lessons", "__main__.py"} and p.stem not in COURSE_ONLY]
    offenders = {str(p.relative_to(ROOT)): sorted(i for i in _imports(p) if i.split(".")[:2] in
                                                   [["ftlib", c] for c in COURSE_ONLY])
                 for p in library}
    assert not {k: v for k, v in offenders.items() if v}


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
    assert not long, f"move these into ftlib.lessons: {long}"
