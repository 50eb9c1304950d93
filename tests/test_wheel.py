"""``pip install .`` gives a working library: from a wheel, in a folder outside the checkout, the recipe fine-tunes
on an image folder with the default (pretrained GlyphNet) backbone, exports, and predicts."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parent.parent
# one test process builds the wheel for both tests: two builds at once in the checkout's build/ folder collide
pytestmark = pytest.mark.xdist_group("wheel")


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory) -> Path:
    """The wheel built from the checkout, installed (without dependencies: they are this environment's) into a
    folder of its own; returns that folder, to put first on PYTHONPATH."""
    build = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--quiet",
                    "--wheel-dir", str(build), str(CHECKOUT)], check=True, capture_output=True, text=True)
    wheel = next(build.glob("ftlib-*.whl"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, text=True)
    return target


def _outside(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site), "FTLIB_THREADS": "2"}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_wheel_carries_the_pretrained_backbone_and_no_course_data(installed_wheel):
    package = installed_wheel / "ftlib"
    assert (package / "weights" / "glyphnet_letters.safetensors").is_file()
    assert (package / "weights" / "glyphnet_letters.json").is_file()
    assert not (installed_wheel / "data").exists() and not (installed_wheel / "notebooks").exists()


@pytest.mark.slow
def test_finetune_and_predict_from_the_wheel_outside_the_checkout(installed_wheel, tmp_path):
    work = tmp_path / "elsewhere"
    shutil.copytree(CHECKOUT / "data" / "example_images", work / "data" / "example_images")
    where = _outside(installed_wheel, work, "-c", "import ftlib; print(ftlib.__file__)")
    assert where.stdout.strip().startswith(str(installed_wheel)), where  # the wheel's ftlib, not the checkout's
    tuned = _outside(installed_wheel, work, "-m", "ftlib", "finetune", "data/example_images", "--out", "OUT",
                     "--steps", "60", "--no-progress")
    assert tuned.returncode == 0, tuned.stderr[-3000:]
    assert (work / "OUT" / "model.safetensors").is_file()
    assert json.loads((work / "OUT" / "model.json").read_text())["classes"]
    image = next((work / "data" / "example_images" / "euro").glob("*.png"))
    predicted = _outside(installed_wheel, work, "-m", "ftlib", "predict", "OUT/model.safetensors", str(image))
    assert predicted.returncode == 0, predicted.stderr[-3000:]
    assert image.name in predicted.stdout and "%" in predicted.stdout
