"""Lesson 06's printed helpers: the curve described, the one-cycle rate, the gap closed, and the two watched scores."""

import pytest

from ftlib import stopping
from ftlib.lessons import early_stopping


def _history():
    return stopping.History(step=list(range(1, 51)), loss=[1.0] * 10 + [0.5] * 30 + [0.2] * 10,
                            eval_step=[10, 20, 30, 40, 50], val_loss=[0.9, 0.5, 0.6, 0.7, 0.8],
                            val_accuracy=[0.5, 0.6, 0.6, 0.7, 0.6], eval_accuracy=[0.1, 0.6, 0.5, 0.4, 0.3])


def test_describe_curve():
    text = early_stopping.describe_curve(_history())
    assert "1.00 at the start, 0.20 at the end" in text
    assert "lowest at step 20 (0.50)" in text and "peaks at step 20 (60.0%) and ends at 30.0%" in text


def test_onecycle_rate_starts_low_peaks_at_a_quarter_and_ends_near_zero():
    assert early_stopping.onecycle_rate(1, 100) == pytest.approx(0.04)
    assert early_stopping.onecycle_rate(26, 100) == pytest.approx(1.0, abs=1e-3)
    assert early_stopping.onecycle_rate(100, 100) < 0.01


def test_gap_closed_and_the_two_watched_scores():
    history = _history()
    compared = early_stopping.policies([history], patience=2, min_delta=0.0)
    assert "closes 100% of the gap" in early_stopping.gap_closed(compared)
    history.eval_accuracy = [0.1, 0.5, 0.6, 0.4, 0.3]  # the oracle is step 30; val_loss restores step 20
    compared = early_stopping.policies([history], patience=2, min_delta=0.0)
    lines = early_stopping.compare_monitors(early_stopping.tradeoff([history], [1, 3]), compared)
    assert lines[0].startswith("watching val_loss: as good as the oracle in 0/1, 0/1 seeds at patience 1, 3; ")
    assert lines[0].endswith("mean test accuracy 50.0% to 50.0% over these patiences")
    assert lines[1].startswith("watching val_accuracy: as good as the oracle in 0/1, 0/1 seeds at patience 1, 3")
    assert lines[2].endswith("val_accuracy against val_loss: equal at patience 1; lower at patience 3")
