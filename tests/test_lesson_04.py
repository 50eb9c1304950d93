"""Lesson 04's helpers: the validation split, the batched augmentations, choosing a strength, numeric plot order."""

import matplotlib

matplotlib.use("Agg")

import pytest  # noqa: E402
import torch  # noqa: E402

from ftlib import augment, data  # noqa: E402
from ftlib.course.lessons import augmentation, plots  # noqa: E402
from ftlib.course.lessons.experiments import Results  # noqa: E402


@pytest.mark.parametrize("name", augmentation.EXTRA)
def test_batched_augmentations_draw_per_image_and_stay_in_range(name):
    copies = data.few_shot("mnist", 1, 0).images[:1].expand(6, 1, 28, 28)
    out = augmentation.batched(name, 1.0)(copies, torch.Generator().manual_seed(0))
    assert out.shape == copies.shape and out.min() >= 0 and out.max() <= 1
    assert len({tuple(x.flatten().tolist()) for x in out}) == 6  # one draw per image
    same = augmentation.batched(name, 1.0)(copies, torch.Generator().manual_seed(0))
    assert torch.equal(out, same)  # seeded


def _ramp_shift_rms(distort) -> float:
    """RMS horizontal move (pixels) that ``distort`` gives the interior pixels of 64 ramps (value = column / 27):
    bilinear sampling of a ramp is exact, so each output pixel's value reads where it was sampled from."""
    ramp = (torch.arange(28.0) / 27).expand(64, 1, 28, 28).contiguous()
    moved = 27 * distort(ramp)[:, 0, 6:-6, 6:-6] - torch.arange(28.0)[6:-6]
    return moved.pow(2).mean().sqrt().item()


def _interior_rms(alpha_pixels, radius) -> float:
    field = augmentation.smoothed_field(512, 28, 28, augmentation.ELASTIC_SIGMA, torch.Generator().manual_seed(1),
                                        radius)
    return alpha_pixels * field[..., 6:-6, 6:-6].pow(2).mean().sqrt().item()


def test_elastic_alpha_follows_torchvisions_convention_alpha_over_2_pixels():
    """The lesson's batched elastic and v2.ElasticTransform both move pixels by alpha/2 times the smoothed field
    (not alpha pixels, Simard's convention): measured on ramps, against the field's own RMS."""
    from torchvision.transforms import v2

    half = augmentation.ELASTIC_ALPHA / 2
    lesson = _ramp_shift_rms(lambda x: augmentation.batched("elastic", 1.0)(x, torch.Generator().manual_seed(0)))
    assert lesson == pytest.approx(_interior_rms(half, augmentation.ELASTIC_RADIUS), rel=0.1)
    torch.manual_seed(0)
    elastic = v2.ElasticTransform(alpha=augmentation.ELASTIC_ALPHA, sigma=augmentation.ELASTIC_SIGMA)
    assert _ramp_shift_rms(lambda x: torch.stack([elastic(i) for i in x])) == pytest.approx(
        _interior_rms(half, round(4 * augmentation.ELASTIC_SIGMA)), rel=0.1)


def test_displacement_rms_in_pixels():
    assert augmentation.displacement_rms(3.0, 1.0, radius=0) == pytest.approx(3 / 3 ** 0.5, rel=0.01)  # uniform
    smooth = augmentation.displacement_rms(3.0, 4.0)
    assert smooth < augmentation.displacement_rms(3.0, 1.0) and augmentation.displacement_rms(6.0, 4.0) == \
        pytest.approx(2 * smooth)
    lesson = augmentation.displacement_rms(augmentation.ELASTIC_ALPHA / 2, augmentation.ELASTIC_SIGMA,
                                           augmentation.ELASTIC_RADIUS)
    simard = augmentation.displacement_rms(augmentation.SIMARD_ALPHA, augmentation.SIMARD_SIGMA)
    assert 0.4 < lesson < 0.6 and 1.5 < simard < 1.9  # a reviewer measured 0.50 and 1.70 px
    for bad in ({"alpha_pixels": -1.0, "sigma": 3.0}, {"alpha_pixels": 1.0, "sigma": 0.0},
                {"alpha_pixels": 1.0, "sigma": 3.0, "radius": 28}):
        with pytest.raises(ValueError):
            augmentation.displacement_rms(**bad)


def test_batched_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown augmentation"):
        augmentation.batched("mixup")


def test_best_strength_uses_validation_and_prefers_the_weaker_on_ties():
    rows = Results([{"method": "m", "strength": s, "seed": 0, "val_accuracy": v, "accuracy": 1 - v}
                    for s, v in [(0, 0.5), (2, 0.8), (0.5, 0.8), (1, 0.7)]])
    assert augmentation.best_strength(rows, "m") == 0.5


def test_ink_removed_is_a_share_per_image_and_grows_with_the_strength():
    digits = data.few_shot("mnist", 5, 0).images
    weak, strong = augmentation.ink_removed(digits, 1.0), augmentation.ink_removed(digits, 4.0)
    assert weak.shape == (50,) and weak.min() >= 0 and weak.max() <= 1
    assert strong.mean() > weak.mean()


def test_digit_changes_in_points():
    before = torch.tensor([[9, 1], [0, 10]])
    after = torch.tensor([[5, 5], [0, 10]])
    assert augmentation.digit_changes(before, after).tolist() == pytest.approx([-40.0, 0.0])


def test_plot_results_draws_numeric_x_in_increasing_order():
    rows = Results({"strength": s, "method": "m", "accuracy": a, "seed": 0}
                   for s, a in [(0, 0.1), (1, 0.3), (0.5, 0.2), (2, 0.4)])
    ax = plots.plot_results(rows, x="strength")
    assert list(ax.lines[0].get_xdata()) == [0, 0.5, 1, 2]
    assert list(ax.lines[0].get_ydata()) == pytest.approx([10, 20, 30, 40])
    labels = Results({"block": b, "method": "m", "accuracy": 0.5, "seed": 0} for b in ["block2", "block1"])
    assert list(plots.plot_results(labels, x="block").lines[0].get_xdata()) == ["block2", "block1"]


# --- Exercises (ftlib.course.lessons.exercises.lesson04) and the live slider's run ------------------------------------

def test_choose_on_validation_question_gives_each_misconception_its_feedback(capsys):
    from ftlib.course.lessons.exercises import lesson04 as ex

    assert ex.choose_on_validation(...).passed is None and "best of several noisy test" in capsys.readouterr().out
    assert ex.choose_on_validation(ex.SOLUTIONS["choose_on_validation"]).passed is True
    wrong = ex.choose_on_validation(ex.WRONG_ANSWERS["choose_on_validation"][0][0])
    assert wrong.passed is False and "Nothing guarantees it" in wrong.message


@pytest.mark.slow
def test_shifted_digits_needs_shifts_as_wide_as_the_digits(capsys):
    from ftlib.course.lessons.exercises import lesson04 as ex

    def build():
        ...  # the notebook's placeholder

    assert ex.shifted_digits(build).passed is None and "Exercise not attempted yet" in capsys.readouterr().out
    def forgot_return():
        augment.standard(1)

    assert "returned nothing" in ex.shifted_digits(forgot_return).message
    assert ex.shifted_digits(ex.SOLUTIONS["shifted_digits"]).passed is True
    wrong = ex.shifted_digits(ex.WRONG_ANSWERS["shifted_digits"][0][0])
    assert wrong.passed is False and "shifts by only ±10%·s" in wrong.message
    assert ex.shifted_digits(lambda: augment.random_affine(0, 0.0, (1.0, 1.0))).passed is False  # no augmentation


def test_shifted_digits_refuses_a_shift_narrower_than_the_test_digits_before_training():
    """augment.standard(1), the strength printed in section 3, scored 79.4% (above the 77.6% target) by the seeds'
    luck: it shifts by only ±10%; the check now fails it, without training."""
    from ftlib.course.lessons.exercises import lesson04 as ex

    assert ex.shift_reach(augment.standard(1)) < ex.REACH <= ex.shift_reach(ex.SOLUTIONS["shifted_digits"]())
    assert ex.shift_reach(augment.standard(2)) >= ex.REACH  # a strength that truly shifts ±20% is allowed
    # a ±15% shift (a reviewer's correct answer, 80.3% on the shifted digits) is trained, not turned away
    assert ex.shift_reach(augment.standard(1.5)) >= ex.REACH
    for lazy in (lambda: augment.standard(1), lambda: augment.standard(0.5), lambda: (lambda x, g: x)):
        feedback = ex.shifted_digits(lazy)
        assert feedback.passed is False and "widen the shift" in feedback.message


@pytest.mark.slow
def test_shifted_digits_reference_is_what_the_lessons_strength_scores_and_the_target_clears_it():
    from statistics import fmean

    from ftlib.course.lessons.exercises import lesson04 as ex

    reference = fmean(s["shifted"] for s in ex.shifted_scores(augment.standard(0.5)))
    assert reference == pytest.approx(ex.REFERENCE_ACCURACY, abs=1.0)
    assert ex.TARGET_ACCURACY >= reference + 4  # a margin larger than the noise of a 3-seed mean (~1.1 points)


@pytest.mark.slow
def test_shifted_digits_accepts_a_v2_transform_that_shifts_as_far(capsys):
    from torchvision.transforms import v2

    from ftlib.course.lessons.exercises import lesson04 as ex

    feedback = ex.shifted_digits(lambda: v2.RandomAffine(0, (ex.SHIFT, ex.SHIFT), interpolation=augment.BILINEAR))
    assert feedback.passed is True and "a v2 transform" in capsys.readouterr().out


def test_shifted_set_moves_each_digit_by_its_own_fixed_amount():
    from ftlib.course.lessons.exercises import lesson04 as ex

    copies = data.few_shot("mnist", 1, 0)
    moved = ex.shifted_set(copies)
    assert torch.equal(moved.images, ex.shifted_set(copies).images) and torch.equal(moved.labels, copies.labels)
    assert not torch.equal(moved.images, copies.images)
    # whole-pixel moves, no blur: each moved digit is its original rolled by whole pixels (MNIST's border is blank)
    for original, shifted in zip(copies.images, moved.images):
        assert min((shifted - torch.roll(original, (dy, dx), (1, 2))).abs().max().item()
                   for dy in range(-6, 7) for dx in range(-6, 7)) < 1e-4


def _confusions(six_nine_correct: int) -> dict:
    confusion = 100 * torch.eye(10, dtype=torch.long)
    for digit, other in ((6, 9), (9, 6)):
        confusion[digit, digit], confusion[digit, other] = six_nine_correct, 100 - six_nine_correct
    return {"confusion": confusion}


def test_six_nine_turn_compares_the_guess_with_the_mean_change(capsys):
    from ftlib.course.lessons.exercises import lesson04 as ex

    safe, turned = [_confusions(100), _confusions(98)], [_confusions(75), _confusions(73)]  # -25 points each
    assert ex.six_nine_turn(..., safe, turned).passed is None and "guess_six_nine" in capsys.readouterr().out
    right = ex.six_nine_turn(ex.SOLUTIONS["six_nine_turn"], safe, turned)
    assert right.passed is True and "measured -25.0 points" in right.message  # a right guess reveals the change
    for answer, words in ex.WRONG_ANSWERS["six_nine_turn"]:
        wrong = ex.six_nine_turn(answer, safe, turned)
        assert wrong.passed is False and words in wrong.message
    for lazy in (0, None, "-25", float("nan")):  # no change, nothing, text, not a number
        assert ex.six_nine_turn(lazy, safe, turned).passed is False, lazy


def test_six_nine_turn_runs_before_the_result_is_printed_and_a_miss_reveals_nothing(capsys):
    """The check comes before the lesson prints the 6-and-9 accuracies: a miss tells its side and what to think
    about, never the measured change, the explanation, or to read it off the results."""
    from ftlib.course.lessons.exercises import lesson04 as ex

    safe, turned = [_confusions(100), _confusions(98)], [_confusions(75), _confusions(73)]
    for guess in (2.0, -60.0):
        message = ex.six_nine_turn(guess, safe, turned).message
        assert "-25" not in message and "keeps its label 6" not in message and "above" not in message
        assert "guess_six_nine" in message and "exercises.hint('six_nine_turn')" in message
    assert ex.six_nine_turn(-25.0, safe, [_confusions(100), _confusions(98)]).passed is False  # measured: no change


@pytest.mark.slow
def test_live_augmentation_trains_one_strength_and_names_it_first(capsys):
    import time

    start = time.perf_counter()
    augmentation.live_augmentation(0.5, "erasing", lr=0.01)
    seconds = time.perf_counter() - start
    lines = capsys.readouterr().out.splitlines()
    first = "erasing strength = 0.5: scratch, N = 5 digits per class, seed 0, 60 steps at lr 0.01 in"
    assert lines[0].startswith(first)
    assert lines[1].startswith("validation accuracy ") and "test" not in lines[1]
    print(f"live_augmentation(0.5): {seconds:.2f} s")  # about 1.5 s on 2 cores (shown with pytest -s)


# --- Reading the tuning table: the arms by strength, their stored validation records, a ranking ---------------------

def _table():
    from ftlib.course.lessons import tuning

    def entry(name, fixed, lr, accuracies):
        records = [{"lr": r, "seed": s, "val_accuracy": a - (r != lr) * 0.2, "val_loss": 1.0}
                   for r in (1e-3, 1e-2) for s, a in enumerate(accuracies)]
        return {"lesson": "04", "arm": name, "run": "augmentation:augmented_run", "fixed": fixed,
                "grid": {"lr": [1e-3, 1e-2]}, "rates": "", "note": "", "chosen": {"lr": lr}, "records": records}

    arms = [entry(f"m, strength {s:g}", {"method": "m", "strength": s, "n": 5, "steps": 100}, 1e-2, accuracies)
            for s, accuracies in ((1, (0.7, 0.7)), (0, (0.5, 0.6)), (0.5, (0.7, 0.7)))]
    arms.append(entry("m, erasing 1", {"method": "m", "strength": 1, "kind": "erasing", "n": 5, "steps": 100},
                      1e-3, (0.4, 0.5)))
    return tuning.Table({"settings": {"seeds": [0, 1]}, "arms": arms})


def test_strength_arms_finds_the_standard_arms_weakest_first():
    table = _table()
    assert augmentation.strength_arms(table, "m") == {0: "04 m, strength 0", 0.5: "04 m, strength 0.5",
                                                       1: "04 m, strength 1"}
    with pytest.raises(ValueError, match="no lesson-04 arm of method 'm' at n=15"):
        augmentation.strength_arms(table, "m", n=15)


def test_the_strength_is_chosen_from_the_stored_records_at_each_arms_chosen_rate():
    table = _table()
    stored = augmentation.stored_validation(table, augmentation.strength_arms(table, "m").values())
    assert len(stored) == 6 and {r["lr"] for r in stored} == {1e-2}  # the chosen point only, both seeds
    assert stored[0]["label"] == "m, strength 0" and stored[0]["strength"] == 0
    assert augmentation.best_strength(stored, "m") == 0.5  # 0.5 and 1 tie: the weaker wins


def test_rank_on_validation_orders_by_the_choose_rule():
    table = _table()
    keys = {"none": "04 m, strength 0", "affine": "04 m, strength 1", "erasing": "04 m, erasing 1",
            "half": "04 m, strength 0.5"}
    runs = Results({**r, "way": way} for way, key in keys.items() for r in table.records(key))
    assert augmentation.rank_on_validation(runs, "way") == ["affine", "half", "none", "erasing"]
