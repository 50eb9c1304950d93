"""Shared test settings: a private data cache, optional packages, and small helpers."""

import os

import pytest

from ftlib.runtime import run_headless


def pytest_configure(config):
    """Run headless: kernels that papermill and nbval start inherit ``$FTLIB_HEADLESS=1``, so sliders draw once
    without a widget round trip that can stall (the browser tests start JupyterLab without it). The markers
    (``slow``, ``browser``) are registered in pyproject.toml."""
    run_headless()


def pytest_addoption(parser):
    parser.addoption("--rebuild", action="store_true",
                     help="also run the tests marked rebuild: a shipped file rebuilt whole, minutes each (the default "
                          "run checks each recipe's fingerprint instead, in seconds)")


def pytest_xdist_auto_num_workers(config) -> int:
    """``-n auto`` (pyproject's addopts): one test process per core, at most 4 (each runs lessons in JupyterLab with
    two worker processes of its own)."""
    return max(1, min(len(os.sched_getaffinity(0)), 4))


LONGEST = "test_pretrain_check_rebuilds"  # about 110 s on 2 idle cores: started first, it never ends a run alone


def pytest_collection_modifyitems(config, items):
    """The tests marked ``rebuild`` only with ``--rebuild`` (deselected, not skipped). The slow tests first, the
    longest of them at the head (the test processes then share out the long ones and fill the gaps with quick ones),
    else in the order collected (``--dist loadgroup``: any test to any process)."""
    if not config.getoption("--rebuild"):
        deselected = [item for item in items if item.get_closest_marker("rebuild")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker("rebuild")]
    items.sort(key=lambda item: (item.get_closest_marker("slow") is None,  # stable: else the order collected
                                 not item.name.startswith(LONGEST)))
    for item in items:  # the rendered site is built once (about 40 s): its browser tests share one process
        if "site" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("rendered-site"))


@pytest.fixture(autouse=True, scope="session")
def _private_cache(tmp_path_factory):
    """Keep the data cache of the test run out of the user's home (the module reads it on every call). The test
    processes of one run share it (``data`` writes each file whole, by rename), so each is built once."""
    mp = pytest.MonkeyPatch()
    shared = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):  # each process has its own base under one folder of the run
        shared = shared.parent
    (shared / "ftlib-cache").mkdir(exist_ok=True)
    mp.setenv("FTLIB_CACHE_DIR", str(shared / "ftlib-cache"))
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


@pytest.fixture(scope="session")
def chromium():
    """One headless Debian Chromium per test process, driven by Playwright (never a downloaded browser), shared by
    the JupyterLab and the rendered-site tests: Playwright's sync API cannot run two at once in one process. Each
    module checks first that Chromium and Playwright are there (and says how to install them)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        yield browser
        browser.close()
