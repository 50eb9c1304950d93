"""Shared test settings: a private data cache, optional packages, and small helpers."""

import os

import pytest

from ftlib.runtime import run_headless


def pytest_configure(config):
    """Run headless: kernels that papermill and nbval start inherit ``$FTLIB_HEADLESS=1``, so sliders draw once
    without a widget round trip that can stall (the browser tests start JupyterLab without it). The markers
    (``slow``, ``browser``) are registered in pyproject.toml."""
    run_headless()


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the data cache of the test run out of the user's home (the module reads it on every call)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FTLIB_CACHE_DIR", str(tmp_path_factory.mktemp("ftlib-cache")))
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
