"""pytest --nbval on a lesson alone: the kernels nbval starts run headless (see tests/conftest.py).

``clean/`` holds the learner copies (no outputs, so nbval would run them while checking nothing): left out."""

from ftlib.runtime import run_headless

collect_ignore = ["clean"]


def pytest_configure(config):
    run_headless()
