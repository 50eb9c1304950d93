"""Shared test settings: a private data cache, two threads, and small helpers."""

import pytest


def pytest_configure(config):
    """Register the marker of the slow tests that drive JupyterLab in a real browser (deselect: -m "not browser")."""
    config.addinivalue_line("markers", "browser: runs a lesson in JupyterLab in headless Chromium (slow)")


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the data cache of the test run out of the user's home (the module reads it on every call)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FTLIB_CACHE_DIR", str(tmp_path_factory.mktemp("ftlib-cache")))
    yield
    mp.undo()
