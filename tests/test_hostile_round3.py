"""A hostile pass over what round 3 added (issue 37): the recipe's export folder and error analysis, predict into a
closed pipe, the learner copies, the rendered site, replay frames, and the grid's records and choose rule. Each
test reproduces a bad behaviour found by hand (a traceback, a file written into the course, a partial write or a
silent wrong result) and checks that it is now a one-line error naming the input, or the right result."""

import csv
import io
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from ftlib import backbones, export, recipe
from ftlib.__main__ import main
from ftlib.checks import SettingError
from ftlib.course import learner_copies, replay, site
from ftlib.course.lessons.experiments import run_grid
from ftlib.course.lessons.records import Results, choose
from ftlib.paths import ROOT

FAST = ["--steps", "2", "--batch-size", "4", "--no-progress", "--lr", "0.003"]


def _folder(root: Path, classes, per_class: int = 4) -> Path:
    """``per_class`` small random PNGs in each class folder (names given as str, or bytes for raw names)."""
    rng = np.random.default_rng(0)
    for name in classes:
        folder = os.path.join(os.fsencode(root), name if isinstance(name, bytes) else os.fsencode(name))
        os.makedirs(folder, exist_ok=True)
        for i in range(per_class):
            Image.fromarray((rng.random((12, 12)) * 255).astype(np.uint8)).save(os.path.join(folder, b"%d.png" % i))
    return root


def _one_line_error(capsys, *needles) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def no_training(monkeypatch):
    monkeypatch.setattr(recipe, "fit", lambda *a, **k: pytest.fail("trained despite a bad --out or folder"))


# ------------------------------------------------------------------------------------ finetune: where it writes
@pytest.mark.parametrize("out", ["data/hostile-probe", "notebooks/hostile-probe", "ftlib/hostile-probe",
                                 "ftlib/weights/hostile-probe", "data"])
def test_finetune_never_exports_into_the_course_folders(out, tmp_path, capsys, no_training):
    """Before: --out data (or notebooks/, ftlib/, ftlib/weights/) wrote model.safetensors and five CSV files there."""
    images = _folder(tmp_path / "images", ["a", "b"])
    before = sorted(os.listdir(ROOT / out)) if (ROOT / out).is_dir() else None
    assert main(["finetune", str(images), "--out", str(ROOT / out), *FAST]) == 2
    _one_line_error(capsys, "shipped folder", out.split("/")[0])
    assert (sorted(os.listdir(ROOT / out)) if (ROOT / out).is_dir() else None) == before


def test_finetune_refuses_an_empty_out_and_one_inside_the_image_folder(tmp_path, capsys, no_training):
    """Before: --out '' exported into the current folder; --out FOLDER mixed the export with the images."""
    images = _folder(tmp_path / "images", ["a", "b"])
    assert main(["finetune", str(images), "--out", "", *FAST]) == 2
    _one_line_error(capsys, "--out ''")
    for out in (images, images / "a" / "sub"):
        assert main(["finetune", str(images), "--out", str(out), *FAST]) == 2
        _one_line_error(capsys, "inside the image folder")
    assert sorted(p.name for p in images.rglob("*")) == sorted(["a", "b"] + [f"{i}.png" for i in range(4)] * 2)


@pytest.mark.skipif(sys.platform != "linux", reason="names in raw bytes need a POSIX file system")
def test_a_name_that_is_not_utf8_is_named_before_training(tmp_path, capsys, no_training):
    """Before: trained, then failed on saving with "'utf-8' codec can't encode character '\\udcff'" (no name)."""
    images = _folder(tmp_path / "images", ["ok", b"bad\xff"])
    assert main(["finetune", str(images), "--out", str(tmp_path / "o"), *FAST]) == 2
    _one_line_error(capsys, "bad\\udcff", "not UTF-8", "rename it")
    assert not (tmp_path / "o" / "model.safetensors").exists()


def test_class_names_with_commas_quotes_and_newlines_survive_the_csv_files(tmp_path):
    names = ["a,b", 'q"uote', "new\nline"]
    images = _folder(tmp_path / "images", names, per_class=3)
    result = recipe.finetune(images, pretrained=False, steps=1, batch_size=4, eval_every=1, lr=3e-3,
                             out=tmp_path / "o")
    rows = list(csv.reader(io.StringIO((tmp_path / "o" / "split.csv").read_text())))
    assert sorted({row[1] for row in rows[1:]}) == sorted(names) and len(rows) == 10
    matrix = list(csv.reader(io.StringIO((tmp_path / "o" / "confusion_matrix.csv").read_text())))
    assert matrix[0][1:] == list(result.test.classes) and [row[0] for row in matrix[1:]] == list(result.test.classes)


# ------------------------------------------------------------------------------------------------- predict
def test_predict_into_a_closed_pipe_ends_without_a_traceback(tmp_path, monkeypatch):
    """Before: `predict ... | head -1` printed a BrokenPipeError traceback; now it ends quietly with status 141."""
    target = export.save(backbones.build("glyphnet", 2, seed=0), tmp_path / "m" / "model.safetensors", "glyphnet",
                         ["p", "q"])
    images = _folder(tmp_path / "images", ["a"], per_class=3)
    for extra in ([], ["--json"]):
        read_end, write_end = os.pipe()
        os.close(read_end)  # the reader is gone, as after `| head -1`
        closed = open(write_end, "w")
        monkeypatch.setattr(sys, "stdout", closed)
        assert main(["predict", str(target), str(images), "--batch-size", "1", *extra]) == 141
        closed.close()  # its descriptor now points at /dev/null: nothing left to flush into the closed pipe


# ------------------------------------------------------------------------------------------ clean-copies
def test_clean_copies_of_a_learner_copy_or_a_non_lesson_are_refused(capsys):
    """Before: a learner copy as the argument wrote notebooks/clean/clean/; --check README.md said 'STALE'."""
    learner = ROOT / "notebooks" / "clean" / "01_pretraining_vs_finetuning.ipynb"
    for args in (["clean-copies", str(learner)], ["clean-copies", "--check", str(learner)]):
        assert main(args) == 2
        _one_line_error(capsys, "is a learner copy")
    assert not (ROOT / "notebooks" / "clean" / "clean").exists()
    assert main(["clean-copies", "--check", "README.md"]) == 2
    _one_line_error(capsys, "README.md is not a lesson notebook")


def test_clean_copies_of_a_damaged_notebook_names_it_and_writes_nothing(tmp_path, capsys):
    """Before: "error: Notebook does not appear to be JSON" without the file, after making clean/ beside it."""
    (tmp_path / "01_bad.ipynb").write_text("{not json")
    assert main(["clean-copies", str(tmp_path / "01_bad.ipynb")]) == 2
    _one_line_error(capsys, "01_bad.ipynb is not a valid notebook")
    assert not (tmp_path / "clean").exists()


def test_a_copy_that_cannot_be_written_is_one_line_and_the_old_copy_stays(tmp_path, capsys, monkeypatch):
    """Before: a read-only clean/ (or a full disk) was a PermissionError traceback, and nbformat wrote in place."""
    lesson = shutil.copy(ROOT / "notebooks" / "01_pretraining_vs_finetuning.ipynb", tmp_path / "01_x.ipynb")
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "01_x.ipynb").write_text("old")

    def refused(notebook, path, **kwargs):
        Path(path).write_text("half")
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(learner_copies.nbformat, "write", refused)
    assert main(["clean-copies", str(lesson)]) == 2
    _one_line_error(capsys, "cannot write", "Permission denied")
    assert [p.name for p in (tmp_path / "clean").iterdir()] == ["01_x.ipynb"]
    assert (tmp_path / "clean" / "01_x.ipynb").read_text() == "old"


def test_clean_copies_without_any_lesson_is_an_error_not_a_silent_success(monkeypatch, capsys):
    """Before: without notebooks/ (an installed wheel) it wrote nothing, said '0 ... up to date' and exited 0."""
    monkeypatch.setattr(learner_copies, "lessons", lambda: [])
    for args in (["clean-copies"], ["clean-copies", "--check"]):
        assert main(args) == 2
        _one_line_error(capsys, "no lesson notebooks")


# ----------------------------------------------------------------------------------------------------- site
def _needs_site():
    if site.missing_tools():
        pytest.skip("the site extra is not installed")


@pytest.mark.parametrize("out", ["", ".", "ftlib/hostile-site", "ftlib/course"])
def test_site_refuses_the_package_and_the_current_folder(out, capsys):
    """Before: --out ftlib/x built the site inside the package (and ftlib/jupyter_execute beside it)."""
    _needs_site()
    assert main(["site", "--out", str(ROOT / out) if out not in ("", ".") else out]) == 2
    _one_line_error(capsys, "--out")
    assert not (ROOT / "ftlib" / "hostile-site").exists() and not (ROOT / "ftlib" / "jupyter_execute").exists()


def test_site_with_sphinx_that_cannot_be_imported_is_a_one_line_error(monkeypatch, tmp_path, capsys):
    """Before: a sphinx that is found but fails to import passed the check; the build failed with its traceback."""
    (tmp_path / "shim" / "sphinx").mkdir(parents=True)
    (tmp_path / "shim" / "sphinx" / "__init__.py").write_text("raise ImportError('a broken install')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "shim"))  # found by find_spec, fails on import
    monkeypatch.delitem(sys.modules, "sphinx", raising=False)
    assert main(["site", "--out", str(tmp_path / "s")]) == 2
    _one_line_error(capsys, "needs sphinx (installed but it fails to import: a broken install)",
                    'pip install -e ".[site]"')


def test_a_failed_build_keeps_the_earlier_site_and_nothing_lands_beside_it(monkeypatch, tmp_path):
    """Before: the earlier build was deleted before Sphinx ran, and myst-nb wrote jupyter_execute/ beside --out."""
    _needs_site()
    out = tmp_path / "site"
    out.mkdir()
    (out / ".buildinfo").write_text("earlier")
    (out / "index.html").write_text("earlier")
    lesson = [ROOT / "notebooks" / "01_pretraining_vs_finetuning.ipynb"]

    def sphinx(returncode):
        def run(command, **kwargs):
            built = Path(command[-1])
            (built.parent / "jupyter_execute").mkdir(parents=True)
            built.mkdir(parents=True)
            (built / "index.html").write_text("new")
            (built / ".buildinfo").write_text("new")
            return subprocess.CompletedProcess(command, returncode, "", "boom" if returncode else "")
        return run

    monkeypatch.setattr(site.subprocess, "run", sphinx(2))
    with pytest.raises(RuntimeError, match="is as it was"):
        site.build_site(out, lesson)
    assert (out / "index.html").read_text() == "earlier"
    monkeypatch.setattr(site.subprocess, "run", sphinx(0))
    assert site.build_site(out, lesson).read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]
    with pytest.raises(ValueError, match="does not exist"):
        site.build_site(out, [tmp_path / "02_missing.ipynb"])


# --------------------------------------------------------------------------------------------- replay frames
@pytest.mark.parametrize("value, expected", [("", False), ("0", False), ("false", False), ("Off", False),
                                             ("no", False), ("1", True), ("true", True), (" yes ", True)])
def test_replay_frames_read_off_as_off(value, expected, monkeypatch):
    """Before: FTLIB_REPLAY_FRAMES=false (or off, no) recorded frames."""
    monkeypatch.setenv(replay.RECORD_FRAMES, value)
    assert replay.recording() is expected


def test_an_odd_replay_frames_value_is_named(monkeypatch):
    monkeypatch.setenv(replay.RECORD_FRAMES, "maybe")
    with pytest.raises(SettingError, match="FTLIB_REPLAY_FRAMES='maybe' is not allowed"):
        replay.recording()


# ------------------------------------------------------------------------------------- the grid and choose
def test_run_grid_names_a_run_that_returns_no_record_and_a_misnamed_measure():
    """Before: a run returning None (a forgotten return) was "TypeError: 'NoneType' object is not iterable"."""
    with pytest.raises(ValueError, match="a run returned NoneType"):
        run_grid(lambda **point: None, x=[1])
    with pytest.raises(ValueError, match="record key 'acc' is not a measure's name"):
        run_grid(lambda **point: {"acc": 1.0}, x=[1])


def test_run_grid_refuses_a_string_axis_an_empty_axis_and_a_relabelled_run():
    """Before: x="abc" ran x='a', 'b', 'c'; x=[] ran nothing silently; a record's x=5 replaced the grid's x=1."""
    with pytest.raises(ValueError, match="axis x='abc' is not a list of values"):
        run_grid(lambda **point: {"accuracy": 1.0}, x="abc")
    with pytest.raises(ValueError, match="axis y has no values"):
        run_grid(lambda **point: {"accuracy": 1.0}, x=[1], y=[])
    with pytest.raises(ValueError, match="returned x=5"):
        run_grid(lambda **point: {"x": 5, "accuracy": 1.0}, x=[1])
    assert run_grid(lambda **point: {"x": point["x"], "accuracy": 1.0}, x=[1]) == [{"x": 1, "accuracy": 1.0}]


def test_choose_names_what_the_records_lack():
    """Before: KeyError 'val_accuracy' / KeyError 'y'; a plain list was an AttributeError."""
    with pytest.raises(ValueError, match="no runs to choose"):
        choose(Results(), "x")
    with pytest.raises(ValueError, match="needs 'val_accuracy'"):
        choose(Results([{"x": 1, "accuracy": 0.5}]), "x")
    with pytest.raises(ValueError, match="needs 'y'"):
        choose(Results([{"x": 1, "val_accuracy": 0.5}]), "y")
    assert choose([{"x": 1, "val_accuracy": 0.4}, {"x": 2, "val_accuracy": 0.5}], "x") == 2


def test_choose_never_picks_a_diverged_setting():
    """Before: a NaN mean validation accuracy won whenever it came first in the grid (NaN compares as neither)."""
    nan = math.nan
    for records in ([{"x": 1, "val_accuracy": nan}, {"x": 2, "val_accuracy": 0.5}],
                    [{"x": 2, "val_accuracy": 0.5}, {"x": 1, "val_accuracy": nan}],
                    [{"x": 1, "val_accuracy": 0.9, "val_loss": nan}, {"x": 2, "val_accuracy": 0.5, "val_loss": 1.0}]):
        assert choose(Results(records), "x") == 2
    assert choose(Results([{"x": 1, "val_accuracy": nan}]), "x") == 1  # the only one there is
