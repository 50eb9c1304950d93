"""pytest --nbval on a lesson alone: the kernels nbval starts run headless (see tests/conftest.py).

``clean/`` holds the learner copies (no outputs, so nbval would run them while checking nothing): left out."""

import pytest

from ftlib.runtime import run_headless

collect_ignore = ["clean"]


def pytest_configure(config):
    run_headless()


@pytest.hookimpl(tryfirst=True)  # before pytest-xdist reads the groups
def pytest_collection_modifyitems(config, items):
    """nbval's cells of one notebook run in one kernel, in order: with ``-n`` (pyproject's addopts) they stay on one
    test process (``--dist loadgroup``); the notebooks of ``pytest notebooks`` are shared out whole."""
    for item in items:
        item.add_marker(pytest.mark.xdist_group(str(item.path)))
