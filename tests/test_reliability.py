"""Hostile and mistaken inputs (issue 18): each gives a clear one-line error naming the input, exit status 2 on the
command line, and nothing written or overwritten; or the correct result. Every file here is made by the test."""

import json
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from ftlib import backbones, checkpoint, data, export, folder, paths, recipe, runtime, train
from ftlib.__main__ import main
from ftlib.course import example_images, pretrain
from ftlib.course import runner as course


# ----------------------------------------------------------------------------------------------- small files
def _png(path: Path, value: int = 200, size: int = 20) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((size, size), np.uint8)
    array[size // 4:-size // 4, size // 4:-size // 4] = value
    Image.fromarray(array).save(path)
    return path


def _bomb(path: Path) -> Path:
    """A 69-byte PNG whose header claims 50000 x 50000 pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 50000, 50000, 8, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 100))
                     + chunk(b"IEND", b""))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny")
    example_images.generate(root, seed=5, per_class=6)
    return root


@pytest.fixture
def model_file(tmp_path):
    """An untrained export with three classes (quick; its labels are not the point)."""
    model = backbones.build("glyphnet", 3, seed=0)
    return export.save(model, tmp_path / "export" / "model.safetensors", "glyphnet", ["a", "b", "c"])


@pytest.fixture
def no_training(monkeypatch):
    """Fail the test if the recipe gets as far as reading images."""
    def fail(*args, **kwargs):
        raise AssertionError("the recipe started although its settings were bad")

    monkeypatch.setattr(recipe, "load_folder", fail)


def _one_line_error(capsys, *needles: str) -> str:
    """The error on stderr, without the warning lines before it (a colour folder on GlyphNet, issue 36)."""
    err = "\n".join(line for line in capsys.readouterr().err.strip().splitlines() if not line.startswith("warning: "))
    assert err.startswith("error: ") and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ----------------------------------------------------------------------------------------------- row 1: wide images
@pytest.mark.parametrize("array", [
    (np.arange(400).reshape(20, 20) * 5 + 1000).astype(np.uint16),  # 16-bit, values 1000..2995
    np.linspace(-3.0, 5.0, 400, dtype=np.float32).reshape(20, 20),  # float, any range
], ids=["I;16", "F"])
def test_16_bit_and_float_images_are_scaled_by_their_own_range(array):
    image = Image.fromarray(array)
    assert image.mode in folder.WIDE_MODES
    out = folder.to_tensor(image, 20, 1)
    assert out.min() == 0 and out.max() == 1  # darkest pixel black, brightest white: not all white / all black
    expected = (array - array.min()) / (array.max() - array.min())
    assert np.abs(out[0].numpy() - expected).max() < 1 / 255 + 1e-6


def test_a_float_image_with_nan_pixels_is_skipped_with_its_reason(tmp_path):
    _png(tmp_path / "cats" / "ok.png")
    _png(tmp_path / "dogs" / "ok.png")
    bad = np.ones((20, 20), np.float32)
    bad[3, 3] = np.nan
    Image.fromarray(bad).save(tmp_path / "cats" / "nan.tif")
    with pytest.warns(UserWarning, match=r"nan\.tif is not a readable image .*NaN or infinite"):
        _, report = folder.load_folder(tmp_path)
    assert dict(report.skipped) == {"cats/nan.tif": "not a readable image"}


# ----------------------------------------------------------------------------------------------- row 2: pretrain
def test_pretrain_with_other_settings_never_overwrites_the_shipped_file(monkeypatch, capsys, tmp_path):
    built = []
    monkeypatch.setattr(pretrain, "pretrain", lambda path, **settings: built.append(path) or {})
    before = checkpoint.file_digest(pretrain.checkpoint_path())
    assert main(["pretrain", "--steps", "5"]) == 2
    _one_line_error(capsys, "--steps 5 would overwrite the shipped", "--out PATH")
    assert built == [] and checkpoint.file_digest(pretrain.checkpoint_path()) == before
    monkeypatch.undo()
    with pytest.raises(ValueError, match="give a path"):  # the library function refuses too, before training
        pretrain.pretrain(steps=5)


def test_pretrain_writes_elsewhere_or_over_the_shipped_file_only_when_told(monkeypatch, tmp_path):
    built = []

    def fake(path, **settings):
        built.append((Path(path), settings["steps"]))
        return {"val_bpc": 2.0, "val_text": "prose"}

    monkeypatch.setattr(pretrain, "pretrain", fake)
    assert main(["pretrain", "--steps", "5", "--out", str(tmp_path / "mine.safetensors")]) == 0
    assert main(["pretrain", "--steps", "5", "--overwrite-shipped"]) == 0
    assert main(["pretrain"]) == 0  # the README's bit-identical rebuild keeps working
    assert built == [(tmp_path / "mine.safetensors", 5), (pretrain.checkpoint_path(), 5),
                     (pretrain.checkpoint_path(), pretrain.SETTINGS["steps"])]


def test_pretrain_check_removes_its_temporary_folder(monkeypatch):
    written = []

    def fake(path, **settings):
        Path(path).write_bytes(b"x")
        written.append(Path(path))
        return {"val_bpc": 2.0, "val_text": "prose"}

    monkeypatch.setattr(pretrain, "pretrain", fake)
    assert main(["pretrain", "--check"]) == 1
    assert not written[0].parent.exists()


@pytest.mark.parametrize("args, needle", [(["--steps", "0"], "--steps 0"), (["--threads", "-2"], "--threads -2"),
                                          (["--seed", str(2**70)], f"--seed {2**70}")])
def test_bad_pretrain_flags_are_named(args, needle, monkeypatch, capsys):
    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: pytest.fail("built despite a bad flag"))
    assert main(["pretrain", *args, "--out", "/tmp/never-written.safetensors"]) == 2
    _one_line_error(capsys, needle)


# ----------------------------------------------------------------------------------------------- row 3: rates
@pytest.mark.parametrize("factor", ["nan", "inf", "1e30", "0", "-1"])
def test_absurd_backbone_factors_are_refused_before_training(factor, tiny, tmp_path, capsys, no_training):
    assert main(["finetune", str(tiny), "--backbone-factor", factor, "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, f"--backbone-factor {float(factor)!r}")
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), 1e30, {"backbone": float("nan"), "head": 1e-3}])
def test_fit_refuses_non_finite_or_absurd_rates(lr):
    model = backbones.build("glyphnet", 2, seed=0)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tiny_set = data.ImageSet(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]), ("a", "b"))
    with pytest.raises(ValueError, match="lr"):
        train.fit(model, tiny_set, 2, lr=lr, batch_size=2)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_fit_checks_the_rates_of_groups_an_optimizer_callable_makes():
    model = backbones.build("glyphnet", 2, seed=0)
    tiny_set = data.ImageSet(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]), ("a", "b"))
    bad = lambda groups: torch.optim.SGD([{"params": model.parameters(), "lr": float("inf")}])
    with pytest.raises(ValueError, match="rate of parameter group 0"):
        train.fit(model, tiny_set, 2, optimizer=bad, batch_size=2)


def test_a_loss_that_turns_non_finite_stops_training_before_the_weights_change():
    model = backbones.build("glyphnet", 2, seed=0)
    with torch.no_grad():
        model.head.bias.fill_(float("inf"))
    before = {k: v.clone() for k, v in model.named_parameters()}
    tiny_set = data.ImageSet(torch.rand(4, 1, 28, 28), torch.tensor([0, 1, 0, 1]), ("a", "b"))
    with pytest.raises(train.NonFiniteLoss, match="at step 1"):
        train.fit(model, tiny_set, 3, batch_size=2)
    assert all(torch.equal(v, before[k]) for k, v in model.named_parameters())  # no optimizer step was taken


def test_finetune_whose_loss_turns_non_finite_exports_nothing(tiny, tmp_path, monkeypatch, capsys):
    def diverge(*args, **kwargs):
        raise train.NonFiniteLoss("the training loss became nan at step 3")

    monkeypatch.setattr(recipe, "fit", diverge)
    assert main(["finetune", str(tiny), "--out", str(tmp_path / "o"), "--no-progress"]) == 1
    _one_line_error(capsys, "nan at step 3", "nothing was exported")
    assert not (tmp_path / "o" / "model.safetensors").exists()


# ----------------------------------------------------------------------------------------------- rows 4, 5: Ctrl+C
def test_interrupted_finetune_exits_130_and_keeps_the_previous_export(tiny, tmp_path, monkeypatch, capsys,
                                                                      model_file):
    before = {p.name: p.read_bytes() for p in model_file.parent.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "fit", interrupted)
    assert main(["finetune", str(tiny), "--out", str(model_file.parent), "--no-progress"]) == 130
    assert "interrupted: nothing was exported" in capsys.readouterr().err
    assert {p.name: p.read_bytes() for p in model_file.parent.iterdir()} == before


def test_an_interrupt_inside_a_grid_stops_the_grid():
    from ftlib.course.lessons import experiments

    ran = []

    def run(seed):
        ran.append(seed)
        if seed == 1:
            raise KeyboardInterrupt
        return {"accuracy": 1.0}

    with pytest.raises(KeyboardInterrupt) as stopped:
        experiments.run_grid(run, seed=range(4))
    assert ran == [0, 1]
    assert stopped.value.results == [{"seed": 0, "accuracy": 1.0}]  # the runs that finished are kept


# ----------------------------------------------------------------------------------------------- row 6: metadata
def test_the_header_is_the_source_of_truth_and_a_disagreeing_json_is_an_error(model_file):
    meta_path = checkpoint.metadata_path(model_file)
    header = checkpoint.read_metadata(model_file)
    assert header["classes"] == ["a", "b", "c"]
    edited = {**header, "classes": ["c", "b", "a"]}  # reordered labels: silently wrong before
    meta_path.write_text(json.dumps(edited))
    with pytest.raises(ValueError, match="does not agree with the metadata in"):
        export.load(model_file)
    meta_path.unlink()  # the readable copy is optional: the header alone is enough
    assert export.load(model_file).classes == ("a", "b", "c")


def test_a_save_interrupted_between_the_two_files_is_detected(model_file, monkeypatch):
    old_json = checkpoint.metadata_path(model_file).read_text()
    export.save(backbones.build("glyphnet", 2, seed=1), model_file, "glyphnet", ["x", "y"])
    checkpoint.metadata_path(model_file).write_text(old_json)  # as if the second rename never happened
    with pytest.raises(ValueError, match="interrupted"):
        export.load(model_file)


def test_non_finite_metadata_is_never_written(tmp_path):
    model = backbones.build("glyphnet", 2, seed=0)
    with pytest.raises(ValueError, match="non-finite"):
        export.save(model, tmp_path / "m.safetensors", "glyphnet", ["a", "b"], extra={"test_accuracy": float("nan")})
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------- rows 7, 8: folders
def test_a_decompression_bomb_and_hidden_folders_are_skipped(tmp_path):
    _png(tmp_path / "at" / "ok.png")
    _bomb(tmp_path / "at" / "bomb.png")
    _png(tmp_path / "at" / ".thumbnails" / "thumb.png")
    _png(tmp_path / "at" / ".hidden.png")
    _png(tmp_path / "to" / "ok.png")
    with pytest.warns(UserWarning, match=r"bomb\.png is too large to decode safely"):
        images, report = folder.load_folder(tmp_path)
    assert report.counts == {"at": 1, "to": 1} and len(images) == 2
    assert dict(report.skipped) == {"at/bomb.png": "too large to decode safely"}


# ----------------------------------------------------------------------------------------------- row 9: predict
def test_predict_reports_each_bad_file_and_labels_the_others(model_file, tmp_path, capsys):
    good = _png(tmp_path / "images" / "good.png")
    more = tmp_path / "more"
    _png(more / "one.png")
    _png(more / "sub" / "two.png")
    corrupt = tmp_path / "images" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    fifo = tmp_path / "images" / "pipe.png"
    os.mkfifo(fifo)
    bomb = _bomb(tmp_path / "images" / "bomb.png")
    missing = tmp_path / "images" / "missing.png"
    assert main(["predict", str(model_file), str(good), str(corrupt), str(fifo), str(missing), str(bomb),
                 str(more)]) == 2
    out, err = capsys.readouterr()
    labelled = [line.split(": ")[0] for line in out.splitlines()]
    assert labelled == [str(good), str(more / "one.png"), str(more / "sub" / "two.png")]
    assert "Traceback" not in err
    for path, why in [(corrupt, "is not a readable image"), (fifo, "is not a regular file"),
                      (missing, "does not exist"), (bomb, "is too large to decode safely")]:
        assert f"error: {path} {why}" in err
    assert "4 of 7 file(s) could not be labelled" in err


@pytest.mark.parametrize("damage, needle", [
    ("missing model", "does not exist"),
    ("text as model", "is damaged or not a safetensors file"),
    ("directory as model", "is not a regular file"),
])
def test_predict_with_an_unusable_export_is_one_clear_line(damage, needle, model_file, tmp_path, capsys):
    target = model_file
    if damage == "missing model":
        target = tmp_path / "nothing.safetensors"
    elif damage == "text as model":
        target.write_text("hello, I am not a model")
    else:
        target = tmp_path / "folder.safetensors"
        target.mkdir()
    image = _png(tmp_path / "x.png")
    assert main(["predict", str(target), str(image)]) == 2
    err = _one_line_error(capsys, needle)
    assert "pretrain" not in err  # rebuilding a shipped checkpoint cannot fix a user's export


def test_predict_with_a_missing_json_uses_the_header(model_file, tmp_path, capsys):
    checkpoint.metadata_path(model_file).unlink()
    assert main(["predict", str(model_file), str(_png(tmp_path / "x.png"))]) == 0
    assert capsys.readouterr().out.split(": ")[1].split(" ")[0] in "abc"


def test_the_message_for_a_missing_shipped_checkpoint_says_how_to_rebuild(tmp_path, monkeypatch):

    monkeypatch.setattr(paths, "SHIPPED_DIRS", (tmp_path,))
    with pytest.raises(FileNotFoundError, match="python -m ftlib pretrain"):
        checkpoint.read_metadata(tmp_path / "glyphnet_letters.safetensors")


# ----------------------------------------------------------------------------------------------- row 10: --out
@pytest.mark.parametrize("where", ["existing file", "under a file", "model.safetensors is a folder"])
def test_a_bad_out_is_refused_before_any_training(where, tiny, tmp_path, capsys, no_training):
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me")
    out = {"existing file": blocker, "under a file": blocker / "sub",
           "model.safetensors is a folder": tmp_path / "o"}[where]
    if where == "model.safetensors is a folder":
        (out / "model.safetensors").mkdir(parents=True)
    assert main(["finetune", str(tiny), "--out", str(out)]) == 2
    _one_line_error(capsys, f"--out {out}")
    assert blocker.read_text() == "keep me"


# ----------------------------------------------------------------------------------------------- row 11: weights files
def _hostile_pickle(path: Path, marker: Path) -> Path:
    class Hostile:
        def __reduce__(self):
            return os.system, (f"touch {marker}",)

    torch.save({"conv1.weight": Hostile()}, path)
    return path


@pytest.mark.parametrize("kind", ["list", "text .pth", "text .safetensors", "hostile pickle"])
def test_weights_files_that_are_not_state_dicts_are_clear_errors(kind, tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = {"list": tmp_path / "list.pth", "text .pth": tmp_path / "text.pth",
            "text .safetensors": tmp_path / "text.safetensors", "hostile pickle": tmp_path / "evil.pth"}[kind]
    if kind == "list":
        torch.save([torch.zeros(2)], path)
    elif kind == "hostile pickle":
        _hostile_pickle(path, marker)
    else:
        path.write_text("these are not weights")
    with pytest.raises(ValueError, match=str(path)) as caught:
        backbones.read_state_dict(path)
    message = str(caught.value)
    assert "weights_only=False" not in message and "weights_only` set to `False" not in message
    assert "\n" not in message and not marker.exists()


def test_a_hostile_weights_file_on_the_command_line(tiny, tmp_path, capsys):
    marker = tmp_path / "pwned"
    path = _hostile_pickle(tmp_path / "evil.pth", marker)
    assert main(["finetune", str(tiny), "--backbone", "resnet18", "--weights", str(path),
                 "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, str(path), "never runs pickled code")
    assert not marker.exists() and not (tmp_path / "o").exists()


# ----------------------------------------------------------------------------------------------- row 12: --weights
@pytest.mark.parametrize("args", [["--weights", "nowhere.pth"], ["--backbone", "resnet18", "--scratch",
                                                                  "--weights", "nowhere.pth"]])
def test_weights_where_they_have_no_meaning_is_an_error(args, tiny, tmp_path, capsys, no_training):
    assert main(["finetune", str(tiny), *args, "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "--weights 'nowhere.pth' has no meaning")


# ------------------------------------------------------------------------------------- row 13: devices, threads
@pytest.mark.parametrize("args, env, needle", [
    (["--device", "bogus"], {}, "--device 'bogus' is not allowed"),
    ([], {"FTLIB_DEVICE": "bogus"}, "FTLIB_DEVICE='bogus' is not allowed"),
    ([], {"FTLIB_THREADS": "0"}, "FTLIB_THREADS='0' is not allowed"),
    ([], {"FTLIB_THREADS": "abc"}, "FTLIB_THREADS='abc' is not allowed"),
    (["--threads", "-2"], {}, "--threads -2 is not allowed"),
    (["--seed", str(2**70)], {}, f"--seed {2**70} is not allowed"),
    (["--steps", "0"], {}, "--steps 0 is not allowed"),
])
def test_bad_devices_threads_and_seeds_name_their_flag_or_variable(args, env, needle, tiny, tmp_path, monkeypatch,
                                                                    capsys, no_training):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert main(["finetune", str(tiny), *args, "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, needle)


def test_a_gpu_that_is_not_there_is_named(monkeypatch, tiny, tmp_path, capsys, no_training):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["finetune", str(tiny), "--device", "cuda", "--out", str(tmp_path / "o")]) == 2
    _one_line_error(capsys, "--device 'cuda': this machine has no CUDA device")


def test_predict_names_a_bad_thread_count(model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FTLIB_THREADS", "abc")
    assert main(["predict", str(model_file), str(_png(tmp_path / "x.png"))]) == 2
    _one_line_error(capsys, "FTLIB_THREADS='abc'")


# ----------------------------------------------------------------------------------------------- row 14: -p values
@pytest.mark.parametrize("value, needle", [("notanumber", "give a number"), ("0", "give a positive integer"),
                                           ("2.5", "give a positive integer"), ("2**70", "give a number")])
def test_lesson_parameters_are_checked_against_their_declared_default(value, needle, tmp_path, capsys):
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cell = nbformat.v4.new_code_cell("seeds = 3")
    cell.metadata["tags"] = ["parameters"]
    nb.cells = [cell, nbformat.v4.new_code_cell("open('ran', 'w').write('yes')")]
    nbformat.write(nb, tmp_path / "01_p.ipynb")
    assert main(["run", str(tmp_path / "01_p.ipynb"), "-p", "seeds", value, "--out", str(tmp_path / "out")]) == 2
    _one_line_error(capsys, f"-p seeds {course.parse_value(value)!r}", needle)
    assert not (tmp_path / "ran").exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("name, value, default", [("strength", 0.5, 1), ("folder", "my/images", None),
                                                  ("ns", [1, 5], [1, 2, 5]), ("lr", 1, 3e-3)])
def test_values_of_the_declared_kind_are_accepted(name, value, default):
    course.check_value(name, value, default)


# ----------------------------------------------------------------------------------------------- row 15: cache
@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04truncated", "half"])
def test_a_damaged_cache_file_is_rebuilt(damage, tmp_path, monkeypatch):
    monkeypatch.setenv("FTLIB_CACHE_DIR", str(tmp_path))
    arrays = {"x": np.arange(1000)}
    data._cached_npz("probe", lambda: arrays)
    [path] = tmp_path.glob("probe-*.npz")
    path.write_bytes(path.read_bytes()[:len(path.read_bytes()) // 2] if damage == "half" else damage)
    rebuilt = data._cached_npz("probe", lambda: {"x": np.arange(1000)})
    assert np.array_equal(rebuilt["x"], arrays["x"])
    assert np.array_equal(np.load(path)["x"], arrays["x"])


# ----------------------------------------------------------------------------------------------- side effects
def test_seeding_for_weights_leaves_the_thread_count_alone():
    torch.set_num_threads(1)
    try:
        backbones.build("glyphnet", 3, seed=0)
        runtime.seed_rngs(0)
        assert torch.get_num_threads() == 1
        runtime.seed_everything(0)  # the lessons' call pins (to 2, or $FTLIB_THREADS)
        assert torch.get_num_threads() == runtime.thread_count()
    finally:
        runtime.seed_everything(0)


def test_the_command_line_uses_every_core_unless_told(tiny, monkeypatch):
    seen = []

    def record(*args, **kwargs):
        seen.append(kwargs["threads"])
        raise ValueError("not training here")

    monkeypatch.setattr(recipe, "finetune", record)
    monkeypatch.delenv("FTLIB_THREADS", raising=False)
    cores = torch.get_num_threads()
    assert recipe.cli([str(tiny)]) == 2 and recipe.cli([str(tiny), "--threads", "1"]) == 2
    monkeypatch.setenv("FTLIB_THREADS", "3")
    assert recipe.cli([str(tiny)]) == 2
    assert seen == [cores, 1, 3]


def test_training_stays_on_the_cpu_unless_a_gpu_is_asked_for(monkeypatch):
    monkeypatch.delenv("FTLIB_DEVICE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    assert runtime.get_device() == torch.device("cpu")
    assert runtime.get_device("mps") == torch.device("mps")
    monkeypatch.setenv("FTLIB_DEVICE", "cuda")
    assert runtime.get_device() == torch.device("cuda")


def test_a_scratch_folder_is_removed_when_the_process_ends():
    code = "from ftlib.course import scratch_folder; f = scratch_folder(); (f / 'x').write_text('1'); print(f)"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    assert not Path(run.stdout.strip()).exists()


# ------------------------------------------------------------------------------ issue 37 row 1: --out and data/
def _digests(*folders: Path) -> dict[Path, str]:
    return {p: checkpoint.file_digest(p) for folder in folders for p in folder.iterdir() if p.is_file()}


@pytest.mark.parametrize("args, needle", [
    (["--variant", "full", "--out", "data/glyphnet_narrow.safetensors"], "in a shipped folder"),
    (["--out", "data/glyphnet_letters.safetensors", "--steps", "7"], "in a shipped folder"),
    (["--out", "data/glyphnet_letters.bin"], "must end in .safetensors"),
    (["--out", "notebooks/01_pretraining_vs_finetuning.ipynb"], "must end in .safetensors"),
    (["--out", "notebooks/x.safetensors"], "in a shipped folder"),
    (["--out", "ftlib/weights/glyphnet_letters.safetensors", "--steps", "7"], "in a shipped folder"),
    (["--out", "m.json"], "must end in .safetensors"),
    (["--check", "--out", "x.safetensors"], "--check rebuilds into a temporary folder"),
    (["--check", "--steps", "10"], "could never pass"),
    (["--check", "--overwrite-shipped"], "has no meaning with it"),
])
def test_pretrain_out_never_touches_course_files_and_conflicts_are_named(args, needle, monkeypatch, capsys):
    from ftlib.paths import DATA_DIR, NOTEBOOK_DIR, WEIGHTS_DIR

    monkeypatch.setattr(pretrain, "pretrain", lambda *a, **k: pytest.fail("built despite a bad --out"))
    monkeypatch.chdir(DATA_DIR.parent)
    before = _digests(DATA_DIR, NOTEBOOK_DIR, WEIGHTS_DIR)
    assert main(["pretrain", *args]) == 2
    _one_line_error(capsys, needle)
    assert _digests(DATA_DIR, NOTEBOOK_DIR, WEIGHTS_DIR) == before


def test_pretrain_out_into_data_only_with_overwrite_shipped(monkeypatch, tmp_path):
    from ftlib import paths

    built = []
    monkeypatch.setattr(pretrain, "pretrain", lambda path, **settings: built.append(Path(path)) or {"val_bpc": 2.0,
                                                                                              "val_text": "prose"})
    monkeypatch.setattr(paths, "DATA_DIR", tmp_path)  # a stand-in data/ folder: nothing real is written
    assert main(["pretrain", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert main(["pretrain", "--out", str(tmp_path / "x.safetensors"), "--overwrite-shipped"]) == 0
    assert built == [tmp_path / "x.safetensors"]


@pytest.mark.parametrize("command", ["context-sweep", "retrieval-sweep", "chat-sweep"])
@pytest.mark.parametrize("args, needle", [
    (["--out", "data/tinylm.json"], "in a shipped folder"),
    (["--out", "notebooks/new.json"], "in a shipped folder"),
    (["--out", "sweep.safetensors"], "must end in .json"),
    (["--out", ""], "must end in .json"),
    (["--out", "no/such/folder/x.json"], "does not exist"),
    (["--check", "--out", "x.json"], "--check rebuilds into a temporary folder"),
    (["--check", "--overwrite-shipped"], "--check never writes"),
])
def test_every_stored_sweeps_out_is_guarded_the_same_way(command, args, needle, monkeypatch, capsys):
    import importlib

    from ftlib.paths import DATA_DIR

    sweep = importlib.import_module(f"ftlib.course.lessons.{command.replace('-', '_')}")
    monkeypatch.setattr(sweep, "build", lambda *a, **k: pytest.fail("built despite a bad --out"))
    monkeypatch.chdir(DATA_DIR.parent)
    before = _digests(DATA_DIR)
    assert main([command, *args]) == 2
    _one_line_error(capsys, needle)
    assert _digests(DATA_DIR) == before


# ------------------------------------------------------------------------------ issue 37 row 4: atomic export
def _export_state(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in folder.iterdir()}


def _replace_with(monkeypatch, between):
    """``os.replace`` in the checkpoint module, calling ``between()`` after its first call."""
    real, calls = os.replace, []

    def replace(src, dst):
        real(src, dst)
        calls.append(dst)
        if len(calls) == 1:
            between()

    monkeypatch.setattr(checkpoint.os, "replace", replace)
    return calls


def test_a_fault_between_the_two_replaces_keeps_the_old_export_whole(model_file, monkeypatch):
    before = _export_state(model_file.parent)

    calls, real = [], os.replace

    def fail_second(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", fail_second)
    with pytest.raises(ValueError, match="Input/output error; any earlier export there is as it was"):
        export.save(backbones.build("glyphnet", 2, seed=1), model_file, "glyphnet", ["x", "y"])
    monkeypatch.undo()
    assert _export_state(model_file.parent) == before  # no temporary or backup file either
    assert export.load(model_file).classes == ("a", "b", "c")


@pytest.mark.parametrize("signum", ["SIGINT", "SIGTERM"])
def test_a_signal_between_the_two_replaces_waits_until_both_are_in_place(signum, model_file, monkeypatch):
    import signal

    caught = []
    # a known handler for the signal, whatever this process inherited (a test process may have been started with
    # Ctrl+C ignored): Python's own for SIGINT (it raises KeyboardInterrupt), a recording one for SIGTERM
    handler = signal.default_int_handler if signum == "SIGINT" else lambda *a: caught.append("term")
    old = signal.signal(getattr(signal, signum), handler)
    calls = _replace_with(monkeypatch, lambda: os.kill(os.getpid(), getattr(signal, signum)))
    try:
        if signum == "SIGINT":
            with pytest.raises(KeyboardInterrupt):
                export.save(backbones.build("glyphnet", 2, seed=1), model_file, "glyphnet", ["x", "y"])
        else:
            export.save(backbones.build("glyphnet", 2, seed=1), model_file, "glyphnet", ["x", "y"])
            assert caught == ["term"]
    finally:
        signal.signal(getattr(signal, signum), old)
    monkeypatch.undo()
    assert len(calls) == 2 and sorted(p.name for p in model_file.parent.iterdir()) == ["model.json",
                                                                                       "model.safetensors"]
    assert export.load(model_file).classes == ("x", "y")  # both new, and they agree


def test_two_saves_into_one_folder_at_once_never_mix(model_file, monkeypatch):
    import threading
    import time

    _replace_with(monkeypatch, lambda: time.sleep(0.3))  # widen the gap between the two replaces
    models = [(backbones.build("glyphnet", 2, seed=1), ["x", "y"]), (backbones.build("glyphnet", 4, seed=2),
                                                                     ["p", "q", "r", "s"])]
    threads = [threading.Thread(target=export.save, args=(m, model_file, "glyphnet", c)) for m, c in models]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    monkeypatch.undo()
    assert export.load(model_file).classes in {("x", "y"), ("p", "q", "r", "s")}
    assert len(list(model_file.parent.iterdir())) == 2


def test_a_full_disk_at_export_is_one_line_and_leaves_no_temporary_file(model_file, monkeypatch):
    import errno

    before = _export_state(model_file.parent)

    def full(state, filename, metadata=None):
        Path(filename).write_bytes(b"")  # as a real full disk leaves it: a 0-byte file
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "save_file", full)
    with pytest.raises(ValueError, match="No space left on device; nothing was written") as caught:
        export.save(backbones.build("glyphnet", 2, seed=1), model_file, "glyphnet", ["x", "y"])
    assert "\n" not in str(caught.value)
    assert _export_state(model_file.parent) == before


def test_finetune_on_a_full_disk_is_one_line_exit_2(tiny, tmp_path, monkeypatch, capsys):
    import errno

    def full(state, filename, metadata=None):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "save_file", full)
    assert main(["finetune", str(tiny), "--steps", "2", "--out", str(tmp_path / "o"), "--no-progress"]) == 2
    out_err = capsys.readouterr().err.strip().splitlines()
    assert out_err[-1].startswith("error: cannot write") and "No space left on device" in out_err[-1]
    assert list((tmp_path / "o").iterdir()) == []


def test_an_interrupt_after_the_export_says_the_export_is_complete(tiny, tmp_path, monkeypatch, capsys):
    def export_then_interrupt(folder, backbone, **settings):
        export.save(backbones.build("glyphnet", 2, seed=1), Path(settings["out"]) / "model.safetensors",
                    "glyphnet", ["x", "y"])
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "finetune", export_then_interrupt)
    assert main(["finetune", str(tiny), "--out", str(tmp_path / "o"), "--no-progress"]) == 130
    err = capsys.readouterr().err
    assert "was complete before it stopped" in err and "nothing was exported" not in err


# ------------------------------------------------------------------------------ issue 37 row 5: predict streams
def test_predict_streams_in_batches_and_keeps_the_order(model_file, tmp_path, monkeypatch):
    files = [_png(tmp_path / "images" / f"{i:02d}.png", value=40 * i) for i in range(5)]
    (tmp_path / "images" / "03.png").write_bytes(b"broken")
    predictor = export.load(model_file)
    read, real = [], predictor.read
    monkeypatch.setattr(predictor, "read", lambda path: read.append(path) or real(path))
    results = predictor.stream([str(tmp_path / "images")], batch_size=2)
    first = next(results)
    assert first.path == str(files[0]) and len(read) == 2  # labelled before the later files were read
    rest = list(results)
    assert [r.path if isinstance(r, export.Prediction) else r[0] for r in rest] == [str(f) for f in files[1:]]
    assert isinstance(rest[2], tuple)  # the broken file, in its place
    whole, failed = export.load(model_file).predict_each([str(tmp_path / "images")])
    streamed = [r for r in [first, *rest] if not isinstance(r, tuple)]
    assert [p.path for p in whole] == [p.path for p in streamed] and len(failed) == 1
    for one, other in zip(whole, streamed):  # the same model, batches of other sizes: equal to float rounding
        assert list(one.probabilities.values()) == pytest.approx(list(other.probabilities.values()), abs=1e-5)


@pytest.mark.parametrize("args, needle", [([""], "an empty image path '' is not allowed"),
                                          (["x.png", "--batch-size", "0"], "--batch-size 0 is not allowed")])
def test_predict_refuses_an_empty_path_and_a_bad_batch_size(args, needle, model_file, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    _png(tmp_path / "here" / "x.png")
    assert main(["predict", str(model_file), *args]) == 2
    _one_line_error(capsys, needle)
    assert capsys.readouterr().out == ""


# ------------------------------------------------------------------------------ issue 37 row 6: trusted metadata
def _edit_header(path: Path, edit) -> None:
    """Rewrite the safetensors header of ``path`` with ``edit(header)`` (the .json copy is removed)."""
    raw = path.read_bytes()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    path.write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    checkpoint.metadata_path(path).unlink(missing_ok=True)


def _set_meta(**changes):
    def edit(header):
        meta = json.loads(header["__metadata__"]["ftlib"])
        for key, value in changes.items():
            if value is ...:
                meta.pop(key)
            else:
                meta[key] = value
        header["__metadata__"]["ftlib"] = json.dumps(meta)
    return edit


@pytest.mark.parametrize("edit, needle", [
    (_set_meta(size=60000), "size=60000"), (_set_meta(size=0), "size=0"), (_set_meta(size="28"), "size='28'"),
    (_set_meta(size=-5), "size=-5"), (_set_meta(channels=3), "channels=3"), (_set_meta(channels=2), "channels=2"),
    (_set_meta(backbone=...), "backbone=None"), (_set_meta(bright_ink="yes"), "bright_ink='yes'"),
    (lambda h: h["__metadata__"].update(ftlib="[1, 2]"), "a JSON list, not an object"),
    (lambda h: h["conv1.weight" if "conv1.weight" in h else next(k for k in h if k.endswith("weight"))]
     .update(dtype="I32"), "stores its tensors in the wrong type"),
])
def test_damaged_export_metadata_and_dtypes_are_one_line_errors(edit, needle, model_file, tmp_path, capsys):
    _edit_header(model_file, edit)
    assert main(["predict", str(model_file), str(_png(tmp_path / "x.png"))]) == 2
    err = _one_line_error(capsys, "cannot use the export", needle)
    assert str(tmp_path / "x.png") not in err  # the export is blamed, not the image


def test_a_negated_batchnorm_variance_is_caught_not_printed_as_nan(model_file, tmp_path, capsys):
    from safetensors.torch import load_file, save_file

    state = load_file(model_file)
    name = next(k for k in state if k.endswith("running_var"))
    state[name] = -state[name]
    save_file(state, model_file, metadata={"ftlib": json.dumps(checkpoint.read_metadata(model_file),
                                                               sort_keys=True)})
    assert main(["predict", str(model_file), str(_png(tmp_path / "x.png"))]) == 2
    _one_line_error(capsys, "negative BatchNorm variances")


def test_a_non_finite_output_is_a_failed_file_not_nan_percent(model_file, tmp_path, monkeypatch):
    predictor = export.load(model_file)
    monkeypatch.setattr(predictor, "probabilities", lambda images: torch.full((len(images), 3), float("nan")))
    labelled, failed = predictor.predict_each([str(_png(tmp_path / "x.png"))])
    assert labelled == [] and "NaN or infinite" in failed[0][1]


# ------------------------------------------------------------------------------ issue 37 row 7: unreadable folders
def _deny(monkeypatch, *blocked: Path) -> None:
    """Listing any of ``blocked`` raises PermissionError, as for a user without read access (tests run as root)."""
    real = os.scandir

    def scandir(path="."):
        if Path(path) in blocked:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)


def test_an_unreadable_subfolder_is_listed_in_skipped(tmp_path, monkeypatch):
    _png(tmp_path / "at" / "ok.png")
    _png(tmp_path / "at" / "locked" / "hidden_from_us.png")
    _png(tmp_path / "to" / "ok.png")
    _deny(monkeypatch, tmp_path / "at" / "locked")
    with pytest.warns(UserWarning, match="locked: it cannot be read"):
        _, report = folder.load_folder(tmp_path)
    assert report.counts == {"at": 1, "to": 1}
    assert dict(report.skipped) == {"at/locked/": "folder not readable (Permission denied)"}


def test_an_unreadable_class_folder_is_a_one_line_error(tmp_path, monkeypatch):
    _png(tmp_path / "at" / "ok.png")
    _png(tmp_path / "to" / "ok.png")
    _deny(monkeypatch, tmp_path / "at")
    with pytest.raises(ValueError, match=r"class folder .*at cannot be read \(Permission denied\)"):
        folder.load_folder(tmp_path)


def test_predict_names_an_unreadable_folder(model_file, tmp_path, monkeypatch, capsys):
    _png(tmp_path / "images" / "ok.png")
    _png(tmp_path / "images" / "locked" / "x.png")
    _deny(monkeypatch, tmp_path / "images" / "locked")
    assert main(["predict", str(model_file), str(tmp_path / "images")]) == 2
    out, err = capsys.readouterr()
    assert out.startswith(str(tmp_path / "images" / "ok.png"))
    assert f"error: {tmp_path / 'images' / 'locked'} is a folder that cannot be read (Permission denied)" in err


# ------------------------------------------------------------------------------ issue 37 row 9: one-line errors
@pytest.mark.parametrize("where", ["a file", "read-only"])
def test_an_unusable_cache_folder_is_one_line(where, tmp_path, monkeypatch):
    target = tmp_path / "cache"
    if where == "a file":
        target.write_text("not a folder")
    else:
        target.mkdir()
        monkeypatch.setattr(np, "savez_compressed", lambda path, **arrays: (_ for _ in ()).throw(
            PermissionError(13, "Permission denied", str(path))))  # root ignores chmod, so the write is refused here
    monkeypatch.setenv("FTLIB_CACHE_DIR", str(target))
    with pytest.raises(ValueError, match="FTLIB_CACHE_DIR") as caught:
        data._cached_npz("probe", lambda: {"x": np.arange(3)})
    assert "\n" not in str(caught.value) and not list(tmp_path.glob("cache/*.tmp*"))


@pytest.mark.parametrize("stored", [{"y": np.arange(1000)}, {"x": np.arange(10)}], ids=["keys", "shape"])
def test_a_cache_file_with_other_arrays_is_rebuilt(stored, tmp_path, monkeypatch):
    monkeypatch.setenv("FTLIB_CACHE_DIR", str(tmp_path))
    np.savez_compressed(tmp_path / f"probe-v{data._CACHE_VERSION}.npz", **stored)
    rebuilt = data._cached_npz("probe", lambda: {"x": np.arange(1000)}, {"x": (1000,)})
    assert np.array_equal(rebuilt["x"], np.arange(1000))
    assert np.array_equal(np.load(tmp_path / f"probe-v{data._CACHE_VERSION}.npz")["x"], np.arange(1000))


def _tiny_notebook(path: Path) -> Path:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell("x = 1")]
    nbformat.write(nb, path)
    return path


@pytest.mark.parametrize("case, needle", [
    ("kernel", "--kernel 'nosuchkernel' is not an installed Jupyter kernel"),
    ("out is a file", "is an existing file"),
    ("list json", "is not a readable notebook"),
    ("hard link", "is the source notebook"),
])
def test_run_refuses_bad_kernels_outputs_and_notebooks_in_one_line(case, needle, tmp_path, capsys):
    nb = _tiny_notebook(tmp_path / "01_x.ipynb")
    source = nb.read_bytes()
    out = tmp_path / "out"
    args = []
    if case == "kernel":
        args = ["--kernel", "nosuchkernel"]
    elif case == "out is a file":
        out.write_text("keep")
    elif case == "list json":
        nb.write_text("[1, 2]")
        source = nb.read_bytes()
    else:
        out.mkdir()
        os.link(nb, out / nb.name)
    assert main(["run", str(nb), "--out", str(out), *args]) == 2
    _one_line_error(capsys, needle)
    assert nb.read_bytes() == source


@pytest.mark.parametrize("args, needle", [(["--repeats", "0"], "--repeats 0"), (["--json", "afile/b.json"], "afile")])
def test_bench_checks_its_flags_before_the_benchmark(args, needle, tmp_path, monkeypatch, capsys):
    from ftlib.course import bench

    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("a file")
    monkeypatch.setattr(bench, "run_benchmark", lambda **k: pytest.fail("benchmarked despite a bad flag"))
    assert main(["bench", "--no-lessons", *args]) == 2
    _one_line_error(capsys, needle)


@pytest.mark.parametrize("missing", ["jupyter", "nbstripout"])
def test_refresh_needs_its_tools_before_touching_a_notebook(missing, tmp_path, monkeypatch, capsys):
    import shutil

    nb = _tiny_notebook(tmp_path / "01_x.ipynb")
    before = nb.read_bytes()
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool, *a, **k: None if tool == missing else real(tool, *a, **k))
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: pytest.fail("ran a tool despite a missing one"))
    assert main(["refresh", str(nb)]) == 2
    _one_line_error(capsys, missing, "no notebook was changed")
    assert nb.read_bytes() == before


def test_a_superscript_thread_count_is_one_line(model_file, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("FTLIB_THREADS", "²")
    assert main(["predict", str(model_file), str(_png(tmp_path / "x.png"))]) == 2
    _one_line_error(capsys, "FTLIB_THREADS='²'")


# ------------------------------------------------------------------------------ issue 37 row 10 (and 9's UTF-8)
def test_a_newline_in_a_class_or_file_name_cannot_forge_a_line(tmp_path, capsys):
    model = backbones.build("glyphnet", 2, seed=0)
    forged = export.save(model, tmp_path / "m" / "model.safetensors", "glyphnet", ["cat\nevil.png: dog (99.0%)",
                                                                                   "dog\nx"])
    image = _png(tmp_path / "images" / "a\nb.png")
    assert main(["predict", str(forged), str(image)]) == 0
    out = capsys.readouterr().out
    assert len(out.splitlines()) == 1 and "\\n" in out


def test_a_class_name_that_is_not_utf_8_prints_on_a_strict_terminal(tmp_path):
    name = os.fsdecode(b"caf\xe9")  # a Latin-1 folder name: a lone surrogate in Python
    _png(tmp_path / name / "a.png")
    _png(tmp_path / "ok" / "a.png")
    _, report = folder.load_folder(tmp_path)
    str(report).encode("utf-8")  # strict: raised UnicodeEncodeError before, after the whole training
    counts = torch.tensor([[1, 0], [0, 1]])
    str(recipe.TestReport(report.classes, counts)).encode("utf-8")


@pytest.mark.parametrize("value", [[1, 1e999], [[2, float("nan")]], {"a": float("-inf")}])
def test_numbers_nested_in_a_parameter_must_be_finite(value):
    with pytest.raises(ValueError, match="give finite numbers"):
        course.check_value("ns", value, [1, 2, 5] if isinstance(value, list) else {"a": 1})
