"""Shared test settings: a private data cache, optional packages, and small helpers."""

import importlib
import os

import pytest

from ftlib.widgets import run_headless


def pytest_configure(config):
    """Register the marker of the browser tests (deselect: -m "not browser"), and run headless: kernels that
    papermill and nbval start inherit ``$FTLIB_HEADLESS=1``, so sliders draw once without a widget round trip that
    can stall (the browser tests start JupyterLab without it)."""
    config.addinivalue_line("markers", "browser: runs a lesson in JupyterLab in headless Chromium (slow)")
    run_headless()


@pytest.fixture
def optional_package():
    """``need(name)`` imports an optional package, or skips the test without it (fails it under CI, where every
    optional package must be installed)."""
    def need(name: str):
        try:
            return importlib.import_module(name)
        except ImportError:
            message = f"needs the optional package {name} (pip install -r requirements.txt)"
            if os.environ.get("CI"):
                pytest.fail(f"{message}; CI must run this test", pytrace=False)
            pytest.skip(message)

    return need


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the data cache of the test run out of the user's home (the module reads it on every call)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("FTLIB_CACHE_DIR", str(tmp_path_factory.mktemp("ftlib-cache")))
    yield
    mp.undo()
