"""Settings for every pytest run, the lessons under nbval included: kernels started by it run headless."""

import os

from ftlib.widgets import HEADLESS


def pytest_configure(config):
    """Kernels that nbval and papermill start inherit ``$FTLIB_HEADLESS=1``: sliders draw once, without a widget
    round trip that can stall a headless run (the browser tests start JupyterLab without it)."""
    os.environ[HEADLESS] = "1"
