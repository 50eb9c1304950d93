"""Lesson 11's additions: both trained arms tuned alike on validation (and the picker's fine-tune), the paired count
(its exact McNemar test: tests/test_stats.py), early stopping replayed with less patience, the recipe's LP-FT start,
the exercises and the live slider."""

from pathlib import Path

import pytest
import torch
from torch import nn

from ftlib import recipe, selection
from ftlib.course import example_images, picker
from ftlib.course.lessons import records, your_own_images
from ftlib.course.lessons.exercises import lesson11
from ftlib.data import ImageSet
from ftlib.stopping import History


class Fixed(nn.Module):
    def __init__(self, predictions):
        super().__init__()
        self.predictions = torch.tensor(predictions)

    def forward(self, x):
        return nn.functional.one_hot(self.predictions, 2).float()


def test_paired_counts_the_images_only_one_model_gets_right():
    test = ImageSet(torch.zeros(5, 1, 28, 28), torch.tensor([0, 1, 0, 1, 0]), ("a", "b"), "t")
    assert your_own_images.paired(Fixed([0, 1, 1, 0, 0]), Fixed([0, 0, 0, 1, 1]), test) == (2, 2)


def test_replaying_less_patience_stops_where_fit_would():
    h = History()
    h.step = list(range(1, 101))
    h.eval_step = list(range(10, 101, 10))
    h.val_loss = [1.0, 0.8, 0.9, 0.95, 0.9, 0.7, 0.6, 0.65, 0.66, 0.67]
    assert your_own_images.replay_patience(h, 3) == (50, 0.8)
    assert your_own_images.replay_patience(h, 8) == (100, 0.6)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny11")
    example_images.generate(root, seed=5, per_class=6)
    return root


@pytest.mark.slow
def test_scratch_chooses_its_rate_on_validation_as_fine_tuning_chooses_its_factor(tiny):
    runs, results, choices = your_own_images.compare_runs(tiny, "glyphnet", 2, steps=20, eval_every=5, test=0.5)
    assert choices.unique("method") == ["fine-tune", "scratch"] and choices.unique("factor") == [0.3, 1.0]
    for seed in range(2):
        base, lower = (choices.where(method="scratch", seed=seed, factor=f)[0]["run"] for f in (1.0, 0.3))
        assert base.range_test is not None and lower.range_test is None  # the lower rate reuses the seed's test
        assert lower.lr == pytest.approx({"backbone": 0.3 * base.lr["head"], "head": 0.3 * base.lr["head"]})
        assert your_own_images.range_test_of(choices, "scratch", seed) is base.range_test
        fine = choices.where(method="fine-tune", seed=seed)  # one recipe run per seed: one range test, every factor
        assert fine[0]["run"].range_test is fine[1]["run"].range_test is not None
        assert fine[1]["run"].lr["head"] == fine[0]["run"].lr["head"] == runs["LP-FT", seed].lr["head"]
        assert [r["run"].lr["backbone"] / r["run"].lr["head"] for r in fine] == pytest.approx([0.3, 1.0])
        exported = runs["recipe", seed].chosen  # the recipe's own choice, the probe included
        candidates = fine[0]["run"].candidates
        best = candidates[selection.best([(c.val_accuracy, c.val_loss) for c in candidates])]
        assert exported == best.name and [c.name for c in candidates][1:] == ["fine-tune x0.3", "fine-tune x1"]
        for method in ("fine-tune", "scratch"):  # the kept run is the one the course's rule chose on validation
            chosen = records.choose(choices, "factor", seed=seed, method=method)
            assert runs[method, seed] is choices.where(method=method, seed=seed, factor=chosen)[0]["run"]
            assert results.where(method=method, seed=seed)[0]["factor"] == chosen
    table = your_own_images.how_set(results, choices)
    assert table.splitlines()[0].split() == ["arm", "chosen", "per", "seed", "validation", "%", "chosen", "from"]
    assert "every block at 0.3 1 x its range-test rate" in table and "scratch, seed 1: x0.3 " in table
    with pytest.raises(ValueError, match="leave out lr="):
        your_own_images.compare_runs(tiny, "glyphnet", 2, lr=0.01)


@pytest.mark.slow
def test_the_pickers_fine_tune_exports_the_factor_validation_chose(tiny, tmp_path, monkeypatch, capsys):
    result = picker.finetune_chosen(tiny, "glyphnet", tmp_path / "out", steps=20, eval_every=5)
    assert [c.name for c in result.candidates] == ["linear probe", "fine-tune x0.3", "fine-tune x1"]
    assert result.export_path == tmp_path / "out" / "model.safetensors"
    best = selection.best([(c.val_accuracy, c.val_loss) for c in result.candidates])
    assert result.chosen == result.candidates[best].name and result.model is result.candidates[best].model
    monkeypatch.setenv("FTLIB_HEADLESS", "1")
    assert picker.picker(tiny, factors=(0.3, 1.0)) is None
    assert "backbone factor 0.3 or 1, chosen on validation" in capsys.readouterr().out


def test_the_picker_shows_a_folder_of_the_checkout_relative_to_where_it_runs(tmp_path, monkeypatch, capsys):
    """Lesson 11 review 2, L9: the stored widget named a developer's worktree path."""
    from ftlib.paths import ROOT

    monkeypatch.chdir(ROOT / "notebooks")
    assert picker.shown_path(example_images.EXAMPLE_DIR) == str(Path("..") / "data" / "example_images")
    assert Path(picker.shown_path(example_images.EXAMPLE_DIR)).resolve() == example_images.EXAMPLE_DIR.resolve()
    assert picker.shown_path(tmp_path) == str(tmp_path)  # outside the checkout: as given
    widget = picker.picker(example_images.EXAMPLE_DIR)
    if widget is None:  # headless: the one line says the same
        assert f"image folder {Path('..') / 'data' / 'example_images'}," in capsys.readouterr().out
    else:
        assert widget.children[0].children[0].value == str(Path("..") / "data" / "example_images")


@pytest.mark.slow
def test_lp_ft_starts_fine_tuning_from_the_probe_head(tiny, monkeypatch):
    seen = []
    original = recipe.fit

    def spy(model, *args, **kwargs):
        seen.append(model.head.weight.detach().clone())
        return original(model, *args, **kwargs)

    monkeypatch.setattr(recipe, "fit", spy)
    fresh = recipe.finetune(tiny, steps=10, batch_size=16, eval_every=5, backbone_factor=0.3)
    lp_ft = recipe.finetune(tiny, steps=10, batch_size=16, eval_every=5, backbone_factor=0.3, lp_ft=True)
    assert fresh.probe_accuracy == lp_ft.probe_accuracy  # the same probe baseline either way
    assert seen[0].abs().max() < 0.2 < seen[1].abs().max()  # a fresh head is small; the probe's is fitted


# Exercises and the live slider (issue #24)

@pytest.fixture(scope="module")
def seed0():
    """The lesson's seed-0 fine-tuning run (seed 0 keeps the backbone factor 1.0 on validation), about 4 s."""
    return recipe.finetune(example_images.EXAMPLE_DIR, seed=0, backbone_factor=1.0, test=0.5).arm("fine-tune x1")


@pytest.mark.slow
def test_fewer_images_with_every_image_repeats_the_recipe_run_and_checks_its_count(tiny):
    run = recipe.finetune(tiny, steps=20, test=0.5, backbone_factor=1.0).arm("fine-tune x1")
    most = int(run.splits["train"].labels.bincount().min())
    accuracy, history = your_own_images.fewer_images(run, most, 0, 20)
    assert accuracy == pytest.approx(run.test.accuracy) and history.val_loss == run.history.val_loss
    assert your_own_images.live_values(run) == list(range(1, most + 1))
    with pytest.raises(ValueError, match="choose an integer from 1 to"):
        your_own_images.fewer_images(run, most + 1, 0, 20)


@pytest.mark.slow
def test_the_live_slider_names_its_value_first_and_trains_for_real(seed0, capsys):
    import matplotlib.pyplot as plt

    assert your_own_images.live_values(seed0) == [1, 2, 3, 6, 9, 12]
    your_own_images.show_fewer_images(seed0, 3)  # about 1.5 s on 2 cores
    plt.close("all")
    first, second = capsys.readouterr().out.splitlines()[:2]
    assert first.startswith("3 training images per class: test accuracy") and "up to 100 steps" in first
    assert f"{seed0.test.accuracy:.1%}" in second


def test_exercise_arrange_folder(capsys):
    assert lesson11.arrange_folder(...).passed is None
    assert "Exercise not attempted yet" in capsys.readouterr().out
    assert lesson11.arrange_folder(lesson11.SOLUTIONS["arrange_folder"]).passed is True
    assert "24 images in 8 classes" in capsys.readouterr().out  # the loader's report is shown
    wrong = lesson11.arrange_folder(lesson11.WRONG_ANSWERS["arrange_folder"][0][0])
    assert wrong.passed is False and "no class folders" in wrong.message and "one sub-folder per class" in wrong.message
    for lazy, words in lesson11.WRONG_ANSWERS["arrange_folder"][1:]:  # the whole example folder; an extra copy
        feedback = lesson11.arrange_folder(lazy)
        assert feedback.passed is False and words in feedback.message and "not the inbox's files" in feedback.message

    def one_class_per_file(inbox, root):
        for file in Path(inbox).iterdir():
            (Path(root) / file.stem).mkdir(parents=True)
            (Path(root) / file.stem / file.name).write_bytes(file.read_bytes())

    assert "the 8 names before the '_'" in lesson11.arrange_folder(one_class_per_file).message


@pytest.mark.slow
def test_exercise_half_the_images(seed0, capsys, monkeypatch):
    with monkeypatch.context() as m:  # untouched: nothing is trained
        m.setattr(your_own_images, "fewer_images", None)
        assert lesson11.half_the_images(..., seed0, 200).passed is None
        assert "half the training images per" in capsys.readouterr().out
        for lazy in (10, 12, 8, 11.2, 8.5, "10", True, None, "e", "ab"):  # numbers printed above the cell fail too
            lazy_feedback = lesson11.half_the_images(lazy, seed0, 200)
            assert lazy_feedback.passed is False and "not one of the options" in lazy_feedback.message, lazy
    right = lesson11.half_the_images(lesson11.SOLUTIONS["half_the_images"], seed0, 200)  # about 3.5 s
    assert right.passed is True and "a linear probe on the letter features" in right.message
    assert lesson11.half_the_images(" B ", seed0, 200).passed  # case and spaces ignored, as in a Question
    # a drop of exactly 10 points stands in for the measured one, so that the wrong answers train nothing
    monkeypatch.setattr(your_own_images, "fewer_images", lambda *args: (seed0.test.accuracy - 0.10, None))
    for answer, words in lesson11.WRONG_ANSWERS["half_the_images"]:
        wrong = lesson11.half_the_images(answer, seed0, 200)
        assert wrong.passed is False and words in wrong.message and "10.0" not in wrong.message, (answer, wrong)
    assert right.passed and "randomly initialised GlyphNet" in right.message


def test_half_the_images_bands_cover_every_drop_once():
    edges = [(low, high) for low, high, _ in lesson11.DROP_BANDS]
    assert edges[0][0] <= -100 and edges[-1][1] >= 100 and all(a[1] == b[0] for a, b in zip(edges, edges[1:]))
    assert sum(low <= 10.0 < high for low, high in edges) == 1


def test_exercise_feedback_and_hints_do_not_give_the_answer_away():
    """Lesson 11 review 2, L5: option (c)'s feedback restated the answer; arrange's second hint was its solution."""
    right = next(o for o in lesson11.TEST_CHOOSES.choices if o.correct)
    for option in lesson11.TEST_CHOOSES.choices:
        if not option.correct:
            assert "best of several" not in option.feedback and "biased" not in option.feedback, option.text
    assert "best of several" in right.text
    last_hint = lesson11.HINTS["arrange_folder"][-1]
    assert "split('_')" not in last_hint and "write_bytes" not in last_hint and "copy the file" not in last_hint


def test_exercise_test_must_not_choose(capsys):
    assert lesson11.test_must_not_choose(...).passed is None
    assert ") The reported test accuracy would be biased upwards" in capsys.readouterr().out
    assert lesson11.test_must_not_choose(lesson11.SOLUTIONS["test_must_not_choose"]).passed is True
    wrong = lesson11.test_must_not_choose(lesson11.WRONG_ANSWERS["test_must_not_choose"][0][0])
    assert wrong.passed is False and "No weight ever sees a test image" in wrong.message
