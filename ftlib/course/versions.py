"""The package versions that made the stored lesson outputs and the shipped checkpoints, and a warning when they differ.

``.ci/constraints.txt`` pins every package of the environment that made them (CI installs exactly those). The course
runner and the checkpoint rebuilds call :func:`warn_if_different`: with another torch, torchvision or numpy, lessons
still run, but the numbers can differ in their last digits from the committed outputs, and a rebuilt checkpoint is
no longer bit-identical to the shipped one.
"""

from __future__ import annotations

import re
import sys
from importlib import metadata
from pathlib import Path

from ftlib.paths import ROOT

__all__ = ["CHECKED", "CONSTRAINTS", "differences", "installed", "pinned", "warn_if_different"]

CONSTRAINTS = ROOT / ".ci" / "constraints.txt"
CHECKED = ("torch", "torchvision", "numpy")  # the packages whose arithmetic the outputs and checkpoints depend on


def _normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503: "Typing_Extensions" and "typing-extensions" are one


def pinned(path: str | Path = CONSTRAINTS) -> dict[str, str]:
    """``name == version`` lines of a constraints file, by normalized name; {} if there is no such file."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:  # an installed wheel carries no .ci/: nothing to compare with
        return {}
    pins = {}
    for line in text.splitlines():
        match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+).*", line)
        if match:
            pins[_normalize(match[1])] = match[2]
    return pins


def installed(name: str) -> str | None:
    """The installed version of distribution ``name``, or None."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def differences(names: tuple[str, ...] = CHECKED, path: str | Path = CONSTRAINTS) -> list[str]:
    """``"torch 2.15.0 (pinned 2.14.1)"`` for each of ``names`` whose installed version is not the pinned one.

    Local build labels are ignored (``2.14.1+cpu`` and ``2.14.1+cu130`` are both 2.14.1, as for pip's ``==``).
    """
    pins = pinned(path)
    found = []
    for name in names:
        want, have = pins.get(_normalize(name)), installed(name)
        if want is not None and (have or "").split("+")[0] != want:
            found.append(f"{name} {have or 'not installed'} (pinned {want})")
    return found


def warn_if_different(made: str, names: tuple[str, ...] = CHECKED, path: str | Path = CONSTRAINTS) -> str | None:
    """Print one warning line to stderr when ``names`` differ from the pins; return it (None when all match).

    ``made``: what the pinned versions made, e.g. ``"the stored lesson outputs"``.
    """
    found = differences(names, path)
    if not found:
        return None
    message = (f"warning: {', '.join(found)}: {made} were made with the versions in .ci/constraints.txt, so numbers "
               "may differ (pip install -c .ci/constraints.txt -e . installs them)")
    print(message, file=sys.stderr, flush=True)
    return message
