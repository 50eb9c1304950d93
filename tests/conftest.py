"""Shared test settings: a private data cache, optional packages, and small helpers."""

import os

import pytest

from ftlib.runtime import run_headless


def pytest_configure(config):
    """Run headless: kernels that papermill and nbval start inherit ``$FTLIB_HEADLESS=1``, so sliders draw once
    without a widget round trip that can stall (the browser tests start JupyterLab without it). The markers
    (``slow``, ``browser``) are registered in pyproject.toml."""
    run_headless()


BROWSER_GROUPS = 2  # the lessons' browser tests are split into this many groups, one JupyterLab per xdist worker


def pytest_collection_modifyitems(config, items):
    """Group the tests for pytest-xdist (``-n 2 --dist loadgroup`` in pyproject.toml): a file's tests stay on one
    worker (module fixtures are built once; a notebook's cells run in order in one kernel), except the lessons'
    browser tests, which alternate between two groups so that the two workers share the longest file."""
    browser = 0
    for item in items:
        callspec = getattr(item, "callspec", None)
        if item.get_closest_marker("browser") and callspec is not None and "notebook" in callspec.params:
            group, browser = f"browser-{browser % BROWSER_GROUPS}", browser + 1
        else:
            group = item.nodeid.split("::")[0]
        item.add_marker(pytest.mark.xdist_group(group))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the data cache of the test run out of the user's home (the module reads it on every call). Under
    pytest-xdist the workers share it (each file is written to a temporary name, then renamed into place)."""
    root = tmp_path_factory.getbasetemp()
    shared = root.parent if os.environ.get("PYTEST_XDIST_WORKER") else root
    mp = pytest.MonkeyPatch()
    cache = shared / "ftlib-cache"
    cache.mkdir(exist_ok=True)
    mp.setenv("FTLIB_CACHE_DIR", str(cache))
    yield
    mp.undo()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under CI, a test skipped for a missing package (pytest.importorskip) fails: CI installs the test extra."""
    report = (yield).get_result()
    if (os.environ.get("CI") and report.skipped and call.excinfo is not None
            and "could not import" in str(call.excinfo.value)):
        report.outcome = "failed"
        report.longrepr = f"{call.excinfo.value}: under CI this fails (pip install -e '.[test]' installs it)"
