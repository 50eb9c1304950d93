"""pytest --nbval on a lesson alone: the kernels nbval starts run headless (see tests/conftest.py)."""

from ftlib.runtime import run_headless


def pytest_configure(config):
    run_headless()
