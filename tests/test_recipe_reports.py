"""Issue 36, the recipe as a practitioner's tool: the error analysis written beside the export (and its
all-or-nothing save), the flags for the split, the augmentation and the learning rate (with one-line errors), the
colour warning for a greyscale backbone, and ``predict --top-k`` / ``--json``."""

import csv
import io
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from ftlib import analysis, backbones, checkpoint, export, folder, recipe
from ftlib.__main__ import main
from ftlib.course import example_images
from ftlib.data import ImageSet


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The example generator's symbols (in colour), 6 per class: 48 images."""
    root = tmp_path_factory.mktemp("tiny")
    example_images.generate(root, seed=5, per_class=6)
    return root


@pytest.fixture(scope="module")
def run(tiny, tmp_path_factory):
    """A few steps of the recipe at a given rate (no range test), exported with its error analysis."""
    out = tmp_path_factory.mktemp("export")
    return recipe.finetune(tiny, steps=4, batch_size=8, eval_every=2, lr=3e-3, out=out, backbone_factor=0.3)


def _table(path):
    return list(csv.reader(io.StringIO(path.read_text())))


def _one_line_error(capsys, *needles):
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


# ------------------------------------------------------------------------------------------ the error analysis
def test_most_confused_and_top_losses_rank_the_mistakes():
    counts = torch.tensor([[5, 1, 3], [0, 4, 0], [1, 1, 2]])
    assert analysis.most_confused(("a", "b", "c"), counts) == [("a", "c", 3), ("a", "b", 1), ("c", "a", 1),
                                                                ("c", "b", 1)]
    assert analysis.most_confused(("a", "b"), torch.eye(2, dtype=torch.long)) == []
    with pytest.raises(ValueError, match="do not fit 3 classes"):
        analysis.most_confused(("a", "b", "c"), torch.zeros(2, 2))
    rows = [analysis.FilePrediction(name, "a", "b", 0.5, loss) for name, loss in [("x", 0.1), ("y", 2.0), ("z", 0.7)]]
    assert [p.file for p in analysis.top_losses(rows, 2)] == ["y", "z"]


def test_the_csv_files_quote_names_with_commas_and_newlines():
    text = analysis.csv_text([["file", "class"], ["a,b.png", "line\nbreak"]])
    assert list(csv.reader(io.StringIO(text))) == [["file", "class"], ["a,b.png", "line\nbreak"]]


def test_file_predictions_agree_with_the_confusion_matrix_and_the_loss():
    model = backbones.build("glyphnet", 3, seed=0)
    data = ImageSet(torch.rand(7, 1, 28, 28), torch.tensor([0, 1, 2, 0, 1, 2, 0]), ("a", "b", "c"))
    rows = analysis.file_predictions(model, data, [f"f{i}.png" for i in range(7)])
    from ftlib.evaluation import confusion_matrix

    counts = confusion_matrix(model, data)
    for t, true in enumerate(data.classes):
        for p, predicted in enumerate(data.classes):
            assert sum(r.true == true and r.predicted == predicted for r in rows) == counts[t, p]
    with torch.no_grad():
        logits = model.eval()(data.images)
    expected = torch.nn.functional.cross_entropy(logits, data.labels, reduction="none")
    assert [r.loss for r in rows] == pytest.approx(expected.tolist(), abs=1e-5)
    with pytest.raises(ValueError, match="one name per image"):
        analysis.file_predictions(model, data, ["only one"])


def test_finetune_writes_the_error_analysis_beside_the_export(run, tiny):
    out = run.export_path.parent
    assert sorted(p.name for p in out.iterdir()) == sorted(["model.json", "model.safetensors",
                                                            *analysis.REPORT_FILES])
    assert run.reports == [out / name for name in analysis.REPORT_FILES]

    split = _table(out / "split.csv")
    assert split[0] == ["file", "class", "split"]
    everything = sorted(p.relative_to(tiny).as_posix() for p in tiny.rglob("*.*"))
    assert sorted(r[0] for r in split[1:]) == everything  # every file once
    assert all(r[0].split("/")[0] == r[1] for r in split[1:])
    for part in ("train", "val", "test"):  # the split rebuilds each set, row for row
        listed = [r[0] for r in split[1:] if r[2] == part]
        assert sorted(listed) == sorted(p.relative_to(tiny).as_posix() for p in run.files[part])
        assert len(listed) == len(run.splits[part])

    predictions = _table(out / "test_predictions.csv")
    assert predictions[0] == ["file", "true", "predicted", "probability", "loss"]
    assert sorted(r[0] for r in predictions[1:]) == sorted(r[0] for r in split[1:] if r[2] == "test")
    for _, true, predicted, probability, loss in predictions[1:]:
        assert 0 < float(probability) <= 1 and float(loss) >= 0
        if true == predicted:  # the loss is -ln p(true)
            assert float(loss) == pytest.approx(-math.log(float(probability)), abs=1e-3)

    matrix = _table(out / "confusion_matrix.csv")
    assert matrix[0] == ["true \\ predicted", *example_images.CLASSES]
    assert [r[0] for r in matrix[1:]] == list(example_images.CLASSES)
    assert torch.equal(torch.tensor([[int(v) for v in r[1:]] for r in matrix[1:]]), run.test.counts)
    pairs = [(t, p) for _, t, p, _, _ in predictions[1:] if t != p]
    confused = _table(out / "most_confused.csv")
    assert confused[0] == ["true", "predicted", "count"]
    assert {(t, p): int(n) for t, p, n in confused[1:]} == {pair: pairs.count(pair) for pair in set(pairs)}
    assert [int(r[2]) for r in confused[1:]] == sorted((int(r[2]) for r in confused[1:]), reverse=True)

    top = _table(out / "top_losses.csv")
    assert top[0] == predictions[0] and len(top) - 1 == min(analysis.TOP_LOSSES, len(predictions) - 1)
    losses = sorted((float(r[4]) for r in predictions[1:]), reverse=True)
    assert [float(r[4]) for r in top[1:]] == losses[:len(top) - 1]


def test_the_given_rate_replaces_the_range_test(run):
    assert run.range_test is None
    assert run.candidate("fine-tune x0.3").lr == pytest.approx({"head": 3e-3, "backbone": 3e-3 * 0.3})
    assert json.loads((run.export_path.parent / "model.json").read_text())["lr"] == run.lr


def test_the_reports_are_part_of_the_all_or_nothing_save(tmp_path, monkeypatch):
    model = backbones.build("glyphnet", 2, seed=1)
    target = tmp_path / "model.safetensors"
    export.save(model, target, "glyphnet", ["x", "y"], beside={"report.csv": "old\n"})
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def full(state, filename, metadata=None):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:  # a full disk: nothing new, no temporary file left
        patch.setattr(checkpoint, "save_file", full)
        with pytest.raises(ValueError, match="nothing was written"):
            export.save(model, target, "glyphnet", ["p", "q"], beside={"report.csv": "new\n"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    with monkeypatch.context() as patch:  # the pair cannot be put in place: the report stays the old one
        patch.setattr(checkpoint, "_replace_both", lambda *args: (_ for _ in ()).throw(OSError(5, "I/O error")))
        with pytest.raises(ValueError, match="is as it was"):
            export.save(model, target, "glyphnet", ["p", "q"], beside={"report.csv": "new\n"})
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before

    export.save(model, target, "glyphnet", ["p", "q"], beside={"report.csv": "new\n"})
    assert (tmp_path / "report.csv").read_text() == "new\n" and export.load(target).classes == ("p", "q")
    for name in ("../escape.csv", "model.json", "", "sub/x.csv"):
        with pytest.raises(ValueError, match="is not allowed"):
            export.save(model, target, "glyphnet", ["p", "q"], beside={name: "x"})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json", "model.safetensors", "report.csv"]


def test_an_interrupt_during_training_leaves_no_report(tiny, tmp_path, monkeypatch, capsys):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "fit", interrupted)
    assert main(["finetune", str(tiny), "--out", str(tmp_path / "o"), "--no-progress", "--lr", "0.003"]) == 130
    assert not (tmp_path / "o").exists() or list((tmp_path / "o").iterdir()) == []


# ------------------------------------------------------------------------------------------------ the new flags
def test_the_command_line_passes_the_split_augmentation_and_rate(tiny, monkeypatch, capsys):
    seen = []

    def record(*args, **kwargs):
        seen.append({name: kwargs[name] for name in ("val", "test", "strength", "lr")})
        raise ValueError("not training in this test")

    monkeypatch.setattr(recipe, "finetune", record)
    monkeypatch.setattr(recipe, "colour_warning", lambda *args: None)
    assert recipe.cli([str(tiny)]) == 2
    assert recipe.cli([str(tiny), "--val-fraction", "0.25", "--test-fraction", "0.5", "--augment", "0",
                       "--lr", "0.01"]) == 2
    assert seen == [{"val": 0.2, "test": 0.5, "strength": 1.0, "lr": None},
                    {"val": 0.25, "test": 0.5, "strength": 0.0, "lr": 0.01}]
    assert capsys.readouterr().err.count("not training in this test") == 2


@pytest.mark.parametrize("flags, needles", [
    (["--val-fraction", "0"], ["--val-fraction 0.0 is not allowed", "between 0 and 1"]),
    (["--test-fraction", "1"], ["--test-fraction 1.0 is not allowed"]),
    (["--val-fraction", "nan"], ["--val-fraction nan is not allowed"]),
    (["--val-fraction", "0.5", "--test-fraction", "0.5"], ["--val-fraction 0.5 and --test-fraction 0.5 add up to 1",
                                                           "less than 1"]),
    (["--augment", "-1"], ["--augment -1.0 is not allowed", "from 0 (no augmentation) to 5"]),
    (["--augment", "6"], ["--augment 6.0 is not allowed"]),
    (["--lr", "0"], ["--lr 0.0 is not allowed", "positive"]),
    (["--lr", "20"], ["--lr 20.0 is not allowed", "at most 10"]),
])
def test_bad_flag_values_are_one_line_errors_before_any_work(flags, needles, tiny, tmp_path, monkeypatch, capsys):
    def fail(*args, **kwargs):
        raise AssertionError("the recipe started although a flag was bad")

    monkeypatch.setattr(recipe, "load_folder", fail)
    monkeypatch.setattr(recipe, "colour_image", fail)
    assert main(["finetune", str(tiny), "--out", str(tmp_path / "o"), *flags]) == 2
    _one_line_error(capsys, *needles)
    assert not (tmp_path / "o").exists()


def test_the_recipe_function_checks_its_new_settings_too(tiny, monkeypatch):
    monkeypatch.setattr(recipe, "load_folder", lambda *a, **k: pytest.fail("started"))
    for settings, needle in [({"strength": 7}, "strength=7 is not allowed"), ({"lr": -1.0}, "lr=-1.0"),
                             ({"val": 0.6, "test": 0.4}, "val=0.6 and test=0.4 add up to 1")]:
        with pytest.raises(ValueError, match=needle):
            recipe.finetune(tiny, **settings)


def test_augment_zero_trains_without_augmentation(tiny, monkeypatch):
    seen = []

    def record(*args, **kwargs):
        seen.append(kwargs["augment"])
        raise KeyboardInterrupt

    monkeypatch.setattr(recipe, "fit", record)
    for strength in (0, 1.0):
        with pytest.raises(KeyboardInterrupt):
            recipe.finetune(tiny, pretrained=False, lr=1e-3, strength=strength, val=0.3, test=0.3)
    assert seen[0] is None and callable(seen[1])


# ------------------------------------------------------------------------------------------- the colour warning
def _image(path, rgb):
    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.zeros((40, 40, 3), np.uint8)
    array[10:30, 10:30] = rgb
    Image.fromarray(array, "RGB").save(path)
    return path


def test_colour_is_told_from_grey_cheaply(tmp_path):
    assert folder.is_colour(_image(tmp_path / "red.png", (200, 30, 30)))
    assert not folder.is_colour(_image(tmp_path / "grey_rgb.png", (120, 120, 120)))
    grey_jpeg = tmp_path / "grey.jpg"
    Image.open(_image(tmp_path / "g.png", (90, 90, 90))).save(grey_jpeg, quality=60)
    assert not folder.is_colour(grey_jpeg)  # JPEG rounding is not colour
    Image.new("L", (30, 30), 200).save(tmp_path / "l.png")
    assert not folder.is_colour(tmp_path / "l.png")
    (tmp_path / "broken.png").write_bytes(b"not an image")
    assert not folder.is_colour(tmp_path / "broken.png")


def test_a_colour_folder_on_the_greyscale_backbone_gets_one_warning_line(tiny, tmp_path, monkeypatch, capsys):
    grey = tmp_path / "grey"
    for c in ("a", "b"):
        for i in range(3):
            _image(grey / c / f"{i}.png", (60 * i, 60 * i, 60 * i))
    assert recipe.colour_warning(grey, "glyphnet") is None
    assert recipe.colour_warning(tiny, "resnet18") is None  # it sees colour
    assert recipe.colour_warning(tmp_path / "missing", "glyphnet") is None
    warning = recipe.colour_warning(tiny, "glyphnet")
    assert "holds colour images" in warning and "28x28 greyscale" in warning and "--backbone resnet18" in warning

    monkeypatch.setattr(recipe, "finetune", lambda *a, **k: (_ for _ in ()).throw(ValueError("stop here")))
    assert main(["finetune", str(tiny), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and err[0].startswith("warning: ") and "--backbone resnet18" in err[0]
    assert err[1] == "error: stop here"


# --------------------------------------------------------------------------------------- predict --top-k, --json
@pytest.fixture
def model_file(tmp_path):
    model = backbones.build("glyphnet", 3, seed=0)
    return export.save(model, tmp_path / "export" / "model.safetensors", "glyphnet", ["a", "b", "c"])


@pytest.fixture
def images(tmp_path):
    return [_image(tmp_path / "images" / f"{i}.png", (40 * i, 200 - 30 * i, 90)) for i in range(3)]


def test_predict_top_k_prints_the_k_most_likely_labels(model_file, images, capsys):
    assert main(["predict", str(model_file), *map(str, images), "--top-k", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = export.load(model_file).predict(images)
    assert len(lines) == 3
    for line, prediction in zip(lines, expected):
        (a, pa), (b, pb) = prediction.top(2)
        assert line == f"{prediction.path}: {a} ({pa:.1%}), {b} ({pb:.1%})" and pa >= pb and a == prediction.label
    assert main(["predict", str(model_file), str(images[0]), "--top-k", "9"]) == 0  # at most every class
    assert capsys.readouterr().out.count("%") == 3
    assert main(["predict", str(model_file), str(images[0])]) == 0  # the default: as before
    p = expected[0]
    assert capsys.readouterr().out == f"{p.path}: {p.label} ({p.probability:.1%})\n"


@pytest.mark.parametrize("value", ["0", "-2"])
def test_predict_refuses_a_top_k_below_1(value, model_file, images, capsys):
    assert main(["predict", str(model_file), str(images[0]), "--top-k", value]) == 2
    _one_line_error(capsys, f"--top-k {value} is not allowed", "positive integer")


def test_predict_json_writes_one_object_per_file_in_order(model_file, images, tmp_path, capsys):
    missing = tmp_path / "missing.png"
    assert main(["predict", str(model_file), str(images[0]), str(missing), str(images[1]), "--json",
                 "--top-k", "3", "--batch-size", "1"]) == 2
    captured = capsys.readouterr()
    lines = [json.loads(line) for line in captured.out.splitlines()]
    assert [line["file"] for line in lines] == [str(images[0]), str(missing), str(images[1])]
    assert "does not exist" in lines[1]["error"] and "error: " in captured.err
    first = lines[0]
    assert set(first) == {"file", "label", "probability", "top"} and len(first["top"]) == 3
    assert first["top"][0] == {"label": first["label"], "probability": first["probability"]}
    assert sum(t["probability"] for t in first["top"]) == pytest.approx(1.0)
    assert [t["probability"] for t in first["top"]] == sorted((t["probability"] for t in first["top"]), reverse=True)


def test_predict_json_quotes_any_file_name(model_file, tmp_path, capsys):
    odd = _image(tmp_path / "a\nb, \"c\".png", (10, 200, 10))
    assert main(["predict", str(model_file), str(odd), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count("\n") == 1 and json.loads(out)["file"] == str(odd)
