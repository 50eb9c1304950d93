"""The recipe end to end on a tiny folder, the ResNet-18 path with a locally saved state dict, the export round trip,
the command line, and a 2-process torchrun run in which rank 0 alone writes the export and both ranks end with the
same weights."""

import json
import os
import subprocess
import sys

import pytest
import torch
import torchvision

from ftlib import backbones, distributed, export, recipe
from ftlib.analysis import REPORT_FILES
from ftlib.course import example_images
from ftlib.folder import load_folder


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The example generator's symbols, 6 per class (48 images): enough for a split, quick to train on."""
    root = tmp_path_factory.mktemp("tiny")
    example_images.generate(root, seed=5, per_class=6)
    return root


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    """A random ResNet-18 state dict saved as torchvision saves ImageNet weights (no download)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("weights") / backbones.RESNET18_FILE
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def test_the_test_report_counts_precision_and_recall():
    report = recipe.TestReport(("a", "b"), torch.tensor([[3, 1], [0, 4]]))
    assert report.accuracy == pytest.approx(7 / 8)
    assert report.precision == pytest.approx([1.0, 0.8]) and report.recall == pytest.approx([0.75, 1.0])
    assert "test accuracy 87.5% on 8 images" in str(report) and "75.0%" in str(report)


def test_the_recipe_trains_exports_and_the_export_predicts_the_same_labels(tiny, tmp_path):
    result = recipe.finetune(tiny, steps=20, batch_size=16, eval_every=5, out=tmp_path)
    assert result.export_path == tmp_path / "model.safetensors" and result.export_path.exists()
    tuned = result.candidate("fine-tune x0.3")
    assert tuned.history.loss[-1] < tuned.history.loss[0]
    assert tuned.lr["backbone"] == pytest.approx(tuned.lr["head"] * 0.3) and result.probe_accuracy is not None
    assert [c.name for c in result.candidates] == ["linear probe", "fine-tune x0.3", "fine-tune x1"]
    assert int(result.test.counts.sum()) == len(result.splits["test"])
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["classes"] == list(example_images.CLASSES) and meta["world_size"] == 1

    files = sorted(str(p) for p in tiny.rglob("*.*"))
    predictions = export.predict(result.export_path, files)
    data, _ = load_folder(tiny, 28, 1, bright_ink=True)
    with torch.no_grad():
        probabilities = torch.softmax(result.model.eval()(data.images), 1)
    assert [p.label for p in predictions] == [data.classes[i] for i in probabilities.argmax(1)]
    assert torch.allclose(torch.tensor([p.probability for p in predictions]), probabilities.max(1).values, atol=1e-5)
    assert sum(predictions[0].probabilities.values()) == pytest.approx(1.0)


def test_scratch_runs_the_same_recipe_with_one_rate_and_no_probe(tiny):
    result = recipe.finetune(tiny, pretrained=False, steps=10, batch_size=16, eval_every=5)
    assert result.probe_accuracy is None and result.export_path is None
    assert result.lr["backbone"] == result.lr["head"]


@pytest.mark.slow
def test_resnet_loads_a_local_state_dict_and_fine_tunes(tiny, tmp_path, resnet_file):
    saved = torch.load(resnet_file, weights_only=True)
    model = backbones.build("resnet18", 8, seed=0, weights=resnet_file)
    assert torch.equal(model.block4[1].conv2.weight, saved["layer4.1.conv2.weight"])
    assert [n for n, _ in model.named_children()] == ["stem", "block1", "block2", "block3", "block4", "head"]
    result = recipe.finetune(tiny, "resnet18", weights=resnet_file, steps=8, batch_size=16, eval_every=4,
                             range_steps=10,
                             out=tmp_path)
    reloaded = export.load(result.export_path)
    images = result.splits["test"].images
    with torch.no_grad():
        assert torch.allclose(reloaded.model(images), result.model.eval()(images), atol=1e-5)
    assert images.shape[1:] == (3, 64, 64)


def test_missing_resnet_weights_say_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    with pytest.raises(FileNotFoundError, match=r"(?s)never downloads.*IMAGENET1K_V1"):
        backbones.build("resnet18", 3, seed=0)
    with pytest.raises(ValueError, match="does not hold ResNet-18 weights"):
        torch.save({"x": torch.zeros(1)}, tmp_path / "bad.pth")
        backbones.build("resnet18", 3, seed=0, weights=tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="unknown backbone 'vgg'"):
        backbones.spec("vgg")


def test_a_file_that_is_not_an_export_is_refused(tmp_path, tiny):
    model = backbones.build("glyphnet", 8, seed=0)
    from ftlib import checkpoint

    checkpoint.save_checkpoint(model, tmp_path / "m.safetensors", {"format": "something else"})
    with pytest.raises(ValueError, match="not an ftlib export"):
        export.load(tmp_path / "m.safetensors")


@pytest.mark.slow
def test_the_command_line_reports_errors_and_results(tiny, tmp_path, capsys):
    """Through ``python -m ftlib finetune`` and ``python -m ftlib predict``, as the README shows them."""
    from ftlib.__main__ import main

    assert main(["finetune", str(tmp_path / "nowhere")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["finetune", str(tiny), "--steps", "10", "--out", str(tmp_path / "o"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "48 images in 8 classes" in out and "rank 0: exported to" in out
    first = sorted(tiny.rglob("*.png"))[0]
    assert main(["predict", str(tmp_path / "o" / "model.safetensors"), str(first)]) == 0
    assert capsys.readouterr().out.startswith(f"{first}: ")


def test_the_command_line_passes_the_patience_to_the_recipe(tiny, monkeypatch, capsys):
    seen = []

    def stop_at_once(*args, **kwargs):
        seen.append(kwargs["patience"])
        raise ValueError("not training in this test")

    monkeypatch.setattr(recipe, "finetune", stop_at_once)
    assert recipe.cli([str(tiny)]) == 2 and recipe.cli([str(tiny), "--patience", "3"]) == 2
    assert seen == [recipe.PATIENCE, 3] and "not training in this test" in capsys.readouterr().err


def test_block_rates_reach_the_blocks_inside_a_wrapper():
    model = backbones.build("glyphnet", 4, seed=0)
    optimizer = distributed.block_adamw(model, {"backbone": 1e-4, "head": 1e-2})([])
    assert [g["name"] for g in optimizer.param_groups][-1] == "head"
    assert {g["lr"] for g in optimizer.param_groups} == {1e-4, 1e-2}
    single = distributed.Context()
    assert distributed.wrap(model, single) is model and distributed.unwrap(model) is model


def test_torchrun_with_two_processes_trains_identically_and_rank_0_alone_exports(tiny, tmp_path):
    out = tmp_path / "export"
    env = {**os.environ, "FTLIB_THREADS": "1", "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "ftlib", "finetune", str(tiny), "--out", str(out), "--steps", "20", "--batch-size", "16",
               "--no-progress", "--backbone-factor", "1"]
    run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=180)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.count("exported to") == 1 and "rank 0: exported to" in run.stdout
    assert "rank 1: trained on its shard; rank 0 writes the export" in run.stdout
    assert sorted(p.name for p in out.iterdir()) == sorted(["model.json", "model.safetensors", *REPORT_FILES])
    meta = json.loads((out / "model.json").read_text())
    assert meta["world_size"] == 2 and meta["written_by_rank"] == 0
    assert meta["test_accuracy"] > 1 / len(example_images.CLASSES)
    assert set(meta["validation"]) == {"linear probe", "fine-tune x1"} and meta["chosen"] in meta["validation"]
    assert meta["weight_gap_between_ranks"] == 0.0  # DDP averaged the gradients: both ranks end identical


def test_the_recipe_runs_on_classes_of_exactly_three_images(tmp_path):
    """Issue 37 row 2: three images per class (the documented minimum) with lesson 11's test share of 0.5."""
    example_images.generate(tmp_path / "few", seed=3, per_class=3)
    result = recipe.finetune(tmp_path / "few", steps=4, batch_size=4, eval_every=2, range_steps=4, test=0.5)
    for part in result.splits.values():
        assert (torch.bincount(part.labels, minlength=part.num_classes) >= 1).all()
    history = result.candidate("fine-tune x1").history
    assert history.val_loss and all(loss == loss for loss in history.val_loss)  # scored, not NaN
