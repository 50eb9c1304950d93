"""The benchmark measures what it says: fit and the plain loop do the same work, and the report reads well."""

import copy

import pytest
import torch

from ftlib import data
from ftlib.course import bench
from ftlib.course.lessons.experiments import get_method, make_model
from ftlib.train import fit


@pytest.mark.slow
def test_plain_loop_trains_exactly_like_fit():
    train = data.few_shot("mnist", 3, 0)  # 30 images: batches of 16 wrap around epochs
    start = make_model(get_method("fine-tune"), 10, 0)
    a, b = copy.deepcopy(start), copy.deepcopy(start)
    fit(a, train, 7, lr=1e-3, batch_size=16, seed=4, device="cpu")
    bench.plain_loop(b, train, 7, 1e-3, 16, seed=4)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    bench.plain_loop(b, train, 1, 1e-3, 16, seed=4)
    assert not all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


def test_fit_overhead_reports_medians_ratio_and_identical_weights():
    report = bench.fit_overhead(repeats=1, steps=3)
    assert report["identical_weights"] is True
    assert report["ratio"] == pytest.approx(report["median_seconds"]["fit"] / report["median_seconds"]["plain"])
    assert report["images_per_second"]["fit"] > 0
    with pytest.raises(ValueError, match="repeats=0"):
        bench.fit_overhead(repeats=0)


def test_format_report_lists_every_measurement():
    report = {"fit_vs_plain": {"settings": bench.FIT_SETTINGS, "repeats": 5, "ratio": 1.01, "identical_weights": True,
                               "median_seconds": {"fit": 1.01, "plain": 1.0},
                               "images_per_second": {"fit": 6337.0, "plain": 6400.0}},
              "images_per_second": {"generate letters": 10500.0}, "import_seconds": {"import ftlib": 0.01},
              "lessons": {"01_x.ipynb": {"status": "ok", "seconds": 47.25}}}
    text = bench.format_report(report)
    for expected in ("ratio  1.010 (goal <= 1.05)", "6,337 images/s", "generate letters", "10,500",
                     "import ftlib", "01_x.ipynb", "47.2 s"):
        assert expected in text
