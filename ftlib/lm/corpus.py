"""The prose the model learns English from: a shipped snapshot of CPython's documentation, and its batches.

The snapshot (``data/prose.jsonl.gz``) holds one record ``{"kind", "name", "text"}`` per document: the
documentation topics of ``pydoc_data.topics`` (kind ``"topic"``) and the docstrings of the standard library's
modules, classes and functions (kinds ``"module"``, ``"class"``, ``"function"``; names like ``"json.dumps"``).
The stdlib changes between Python versions, so the course ships the snapshot and :func:`build_snapshot`
documents how it was made. Text: the Python documentation, (c) Python Software Foundation, PSF License.

The documents stay whole and in order, so a longer context (a later lesson) can read long passages.
"""

from __future__ import annotations

import ast
import gzip
import inspect
import io
import json
import sysconfig
from collections.abc import Iterator
from pathlib import Path

import torch

from ..paths import DATA_DIR
from .tokenizer import clean, encode

__all__ = ["SEPARATOR", "SKIPPED_DIRS", "SNAPSHOT", "VAL_EVERY", "batches", "build_snapshot", "load_documents",
           "random_windows", "split_text"]

SNAPSHOT = DATA_DIR / "prose.jsonl.gz"
SKIPPED_DIRS = {"test", "tests", "idlelib", "lib2to3", "site-packages", "dist-packages", "turtledemo", "__pycache__"}
VAL_EVERY = 20  # every 20th document of the snapshot is validation text
SEPARATOR = "\n\n"  # between documents


def _kind(node: ast.AST) -> str:
    return {ast.Module: "module", ast.ClassDef: "class"}.get(type(node), "function")


def _docstrings(source: str, module: str) -> Iterator[tuple[str, str, str]]:
    tree = ast.parse(source)
    found = [(module, tree)]
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            found.append((f"{module}.{node.name}", node))
            if isinstance(node, ast.ClassDef):
                found += [(f"{module}.{node.name}.{m.name}", m) for m in node.body
                          if isinstance(m, (ast.FunctionDef, ast.AsyncFunctionDef))]
    for name, node in found:
        doc = ast.get_docstring(node, clean=False)
        if doc:
            yield _kind(node), name, doc


def build_snapshot(path: str | Path = SNAPSHOT, stdlib: str | Path | None = None) -> dict:
    """Write the prose snapshot from the running Python's ``pydoc_data.topics`` and stdlib docstrings.

    Documents come in a fixed order (topics by name, then source files by path), are cleaned to the 96-token
    vocabulary, and are gzipped with a zero timestamp, so the same Python gives the same bytes. Test suites,
    IDLE, lib2to3 and installed packages are left out. Returns counts of documents and characters.
    """
    from pydoc_data.topics import topics

    records = [{"kind": "topic", "name": f"topic:{key}", "text": clean(topics[key]).strip()} for key in sorted(topics)]
    root = Path(stdlib or sysconfig.get_paths()["stdlib"])
    for file in sorted(root.rglob("*.py")):
        relative = file.relative_to(root)
        if SKIPPED_DIRS & set(relative.parts[:-1]):
            continue
        module = ".".join(relative.with_suffix("").parts).removesuffix(".__init__")
        try:
            docs = list(_docstrings(file.read_text(encoding="utf-8"), module))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        records += [{"kind": kind, "name": name, "text": clean(inspect.cleandoc(doc)).strip()}
                    for kind, name, doc in docs]
    records = [r for r in records if r["text"]]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        with io.TextIOWrapper(gz, encoding="ascii", newline="\n") as out:
            for record in records:
                out.write(json.dumps(record, sort_keys=True) + "\n")
    return {"documents": len(records), "characters": sum(len(r["text"]) for r in records)}


def load_documents(path: str | Path = SNAPSHOT) -> list[dict]:
    """The snapshot's records, ``{"kind", "name", "text"}``, in order."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"prose snapshot {path} is missing; rebuild it with ftlib.lm.corpus.build_snapshot()")
    with gzip.open(path, "rt", encoding="ascii") as lines:
        return [json.loads(line) for line in lines]


def split_text(path: str | Path = SNAPSHOT) -> tuple[str, str]:
    """Training and validation prose: every ``VAL_EVERY``-th document is validation, joined by blank lines."""
    docs = [d["text"] for d in load_documents(path)]
    val = [t for i, t in enumerate(docs) if i % VAL_EVERY == 0]
    train = [t for i, t in enumerate(docs) if i % VAL_EVERY]
    return SEPARATOR.join(train), SEPARATOR.join(val)


def random_windows(tokens: torch.Tensor, batch_size: int, context: int,
                   generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """``batch_size`` random windows of ``tokens``: inputs (B, context) and targets shifted by one."""
    if len(tokens) <= context:
        raise ValueError(f"the text has {len(tokens)} tokens; it needs more than context={context}")
    starts = torch.randint(len(tokens) - context, (batch_size,), generator=generator)
    windows = torch.stack([tokens[s:s + context + 1] for s in starts.tolist()])
    return windows[:, :-1], windows[:, 1:]


def batches(text: str | torch.Tensor, batch_size: int, context: int,
            seed: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Endless seeded batches of random windows of ``text`` (a string or its token ids)."""
    tokens = encode(text) if isinstance(text, str) else text
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield random_windows(tokens, batch_size, context, generator)
